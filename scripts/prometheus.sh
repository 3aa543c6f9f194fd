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

NAME=prometheus
NOUN=server
STOP_SIGNALS="TERM KILL"
LOCK_WAIT=$((START_TIMEOUT + 2 * STOP_TIMEOUT + 30))
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=lib/service.sh
. "$SCRIPT_DIR/lib/service.sh"

# ---------------------------------------------------------------- process

# True when pid is a live $PROMETHEUS process storing its TSDB in our $DATA.
is_ours() {
  local cmd
  cmd=$(live_cmdline "$1") || return 1
  [[ "$cmd" == "$PROMETHEUS "* && "$cmd" == *" --storage.tsdb.path=$DATA "* ]]
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

# One attempt: 0 = up, 1 = failed for good, 2 = lost a port race (retry).
start_once() {
  local conf=$1 port addr
  port=$(free_ports 1) || { log "cannot find a free port"; return 1; }
  addr="127.0.0.1:$port"

  rm -rf "$DATA"
  mkdir -p "$DATA"
  echo "$conf" >"$CONF_FILE"
  log "starting $("$PROMETHEUS" --version 2>&1 | head -n 1) at $addr on $conf (log: $LOG)"
  launch "$addr" "$START_TIMEOUT" \
    "$PROMETHEUS" --config.file="$conf" \
      --storage.tsdb.path="$DATA" \
      --storage.tsdb.retention.time=1d \
      --web.listen-address="$addr" \
      --log.level=info
}

# ---------------------------------------------------------------- commands

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
    if is_ours "$pid"; then die "server pid $pid is still alive"; fi
  fi
  rm -f "$PID_FILE"
  start_with_retries Prometheus "$conf"
}

cmd_stop() {
  [[ -d "$STATE" ]] || return 0
  lock_state
  stop_running
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
