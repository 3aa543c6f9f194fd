#!/usr/bin/env bash
# A real Prometheus server (the Debian package's /usr/bin/prometheus) on
# 127.0.0.1, for offload's metrics integration test and by hand.
#
#   scripts/prometheus.sh start CONFIG_FILE   start a server on CONFIG_FILE (or reuse the one
#                                             running on it); last stdout line: 127.0.0.1:PORT
#   scripts/prometheus.sh stop                stop the server this script started (exit 0 if none)
#   scripts/prometheus.sh status              print the address and exit 0 if running, else exit 1
#
# One server per state directory: starting on another CONFIG_FILE stops the
# one running first. Server state (TSDB, log, pid) lives in
# ${OFFLOAD_PROMETHEUS_DIR:-${TMPDIR:-/tmp}/offload-prometheus-<uid>}; its TSDB
# is wiped on every fresh start. Only this process is run: the package's
# systemd service stays off (scripts/setup.sh disables it). Progress goes to
# stderr; only results go to stdout.
#
# Typical use:
#   addr=$(scripts/prometheus.sh start deploy/prometheus/prometheus.yml | tail -n 1)
#   curl -s "http://$addr/api/v1/query?query=up"
#   scripts/prometheus.sh stop
set -euo pipefail

PROMETHEUS=${OFFLOAD_PROMETHEUS:-/usr/bin/prometheus}

STATE=${OFFLOAD_PROMETHEUS_DIR:-${TMPDIR:-/tmp}/offload-prometheus-$(id -u)}
PID_FILE="$STATE/prometheus.pid"
ADDR_FILE="$STATE/address"
CONF_FILE="$STATE/config"  # the CONFIG_FILE the running server was started on
LOG="$STATE/prometheus.log"
DATA="$STATE/data"

START_TIMEOUT=${OFFLOAD_PROMETHEUS_START_TIMEOUT:-60}  # seconds until /-/ready must answer
STOP_TIMEOUT=${OFFLOAD_PROMETHEUS_STOP_TIMEOUT:-15}    # seconds of SIGTERM grace before SIGKILL

log() { printf 'prometheus: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found${2:+ ($2)}"; }

# ---------------------------------------------------------------- process

# Prints the pid of the server this script started in $STATE, if it still runs.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  is_our_server "$pid" || return 1
  echo "$pid"
}

# True when pid is a live $PROMETHEUS process storing its TSDB in our $DATA.
is_our_server() {
  local pid=$1 cmd
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmd" == "$PROMETHEUS "* && "$cmd" == *" --storage.tsdb.path=$DATA "* ]] || return 1
  # A zombie is not running.
  [[ "$(awk '/^State:/{print $2}' "/proc/$pid/status" 2>/dev/null)" != Z ]]
}

# A free TCP port on 127.0.0.1.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
  else
    # No python3: a random high port nobody answers on (racier, still retried).
    local p
    while :; do
      p=$((20000 + RANDOM % 12000))
      if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "$p"; return
      fi
    done
  fi
}

# True once GET /-/ready answers 200 (the TSDB is open and rules are loaded).
answers() {
  local port=${1##*:} status
  # shellcheck disable=SC2016 # expanded by the inner shell, on purpose
  status=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
    head -n 1 <&3' _ "$port" 2>/dev/null) || return 1
  [[ "$status" =~ ^HTTP/1\.[01]\ 200 ]]
}

show_log_tail() {
  if [[ -s "$LOG" ]]; then tail -n 40 "$LOG" >&2; else log "($LOG is empty)"; fi
}

stop_pid() {
  local pid=$1 waited=0
  kill -TERM "$pid" 2>/dev/null || true
  while is_our_server "$pid"; do
    if ((waited >= STOP_TIMEOUT * 10)); then
      log "server pid $pid ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

# One attempt: 0 = up, 1 = failed for good, 2 = lost a port race (retry).
start_once() {
  local conf=$1 port addr pid deadline
  port=$(free_port) || { log "cannot find a free port"; return 1; }
  addr="127.0.0.1:$port"

  rm -rf "$DATA"
  mkdir -p "$DATA"
  if [[ -f "$LOG" ]]; then mv -f "$LOG" "$LOG.prev"; fi
  log "starting $("$PROMETHEUS" --version 2>&1 | head -n 1) at $addr on $conf (log: $LOG)"
  # setsid: the server outlives this script and is not hit by the caller's
  # process-group signals. It must not inherit the lock fd (9), or it would
  # hold the state lock for its whole life and block "stop". The inner shell
  # records its own pid and then becomes prometheus, so the pid file names
  # the server.
  # shellcheck disable=SC2016 # expanded by the inner shell, on purpose
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
    "$PROMETHEUS" --config.file="$conf" \
      --storage.tsdb.path="$DATA" \
      --storage.tsdb.retention.time=1d \
      --web.listen-address="$addr" \
      --log.level=info \
    </dev/null >"$LOG" 2>&1 9>&- &
  local launcher=$!
  for _ in $(seq 50); do [[ -s "$PID_FILE" ]] && break; sleep 0.1; done
  pid=$(cat "$PID_FILE" 2>/dev/null || echo "$launcher")
  echo "$addr" >"$ADDR_FILE"
  echo "$conf" >"$CONF_FILE"

  deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      if grep -qi 'address already in use' "$LOG" 2>/dev/null; then
        log "port race lost at $addr; retrying with a new port"
        return 2
      fi
      log "server exited during start-up; last log lines:"
      show_log_tail
      return 1
    fi
    if answers "$addr"; then
      return 0
    fi
    sleep 0.2
  done
  log "server did not answer at $addr within ${START_TIMEOUT}s; last log lines:"
  show_log_tail
  stop_pid "$pid"
  rm -f "$PID_FILE"
  return 1
}

# ---------------------------------------------------------------- commands

lock_state() {
  mkdir -p "$STATE"
  exec 9>"$STATE/prometheus.lock"
  flock -w $((START_TIMEOUT + 2 * STOP_TIMEOUT + 30)) 9 \
    || die "$STATE/prometheus.lock is held by another prometheus.sh"
}

cmd_start() {
  local conf=${1:?usage: prometheus.sh start CONFIG_FILE}
  [[ -r "$conf" ]] || die "cannot read $conf"
  conf=$(realpath -- "$conf")
  [[ -x "$PROMETHEUS" ]] || die "$PROMETHEUS not found (run scripts/setup.sh, or set OFFLOAD_PROMETHEUS)"
  need flock
  need setsid
  lock_state
  local pid
  if pid=$(running_pid); then
    if [[ "$(cat "$CONF_FILE" 2>/dev/null)" == "$conf" ]]; then
      log "already running on $conf (pid $pid)"
      cat "$ADDR_FILE"
      return 0
    fi
    log "stopping pid $pid, running on $(cat "$CONF_FILE" 2>/dev/null || echo 'another config')"
    stop_pid "$pid"
    if is_our_server "$pid"; then die "server pid $pid is still alive"; fi
  fi
  rm -f "$PID_FILE"
  local t0=$SECONDS rc
  for _ in 1 2 3; do
    rc=0
    start_once "$conf" || rc=$?
    if ((rc == 0)); then
      log "up in $((SECONDS - t0))s (pid $(cat "$PID_FILE"))"
      cat "$ADDR_FILE"
      return 0
    fi
    ((rc == 2)) || break
  done
  die "could not start Prometheus"
}

cmd_stop() {
  [[ -d "$STATE" ]] || return 0
  lock_state
  local pid
  if pid=$(running_pid); then
    log "stopping server pid $pid"
    stop_pid "$pid"
    if is_our_server "$pid"; then die "server pid $pid is still alive"; fi
    log "stopped"
  else
    log "no server running in $STATE"
  fi
  rm -f "$PID_FILE"
}

cmd_status() {
  if running_pid >/dev/null; then
    cat "$ADDR_FILE"
    return 0
  fi
  return 1
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start CONFIG_FILE|stop|status" >&2
    exit 2
    ;;
esac
