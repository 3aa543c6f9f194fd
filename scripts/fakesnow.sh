#!/usr/bin/env bash
# fakesnow (https://pypi.org/project/fakesnow/), an independent Snowflake
# emulator backed by DuckDB, run in its HTTP server mode on 127.0.0.1 so that
# the real gosnowflake driver can talk to it in offload's integration tests.
#
#   scripts/fakesnow.sh start     start (or reuse) the server; last stdout line: 127.0.0.1:PORT
#   scripts/fakesnow.sh stop      stop the server this script started (exit 0 if none)
#   scripts/fakesnow.sh status    print the address and exit 0 if running, else exit 1
#   scripts/fakesnow.sh install   only install fakesnow into the virtual environment
#
# fakesnow[server] == $FAKESNOW_VERSION (and its dependencies, pinned in
# REQUIREMENTS below) is installed from PyPI into a virtual environment at
# ${OFFLOAD_FAKESNOW_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/offload/fakesnow-venv},
# rebuilt when the pins change. It needs Python >= 3.11
# (${OFFLOAD_PYTHON:-python3.11, python3.12, ... or python3}).
# Server state (log, pid, the stage "bucket" that PUT uploads into) lives in
# ${OFFLOAD_FAKESNOW_DIR:-${TMPDIR:-/tmp}/offload-fakesnow-<uid>} and is wiped on
# every fresh start; the databases themselves are in memory and die with the server.
# Progress goes to stderr; only results go to stdout.
#
# The server speaks Snowflake's REST protocol over plain HTTP and accepts any
# account/user/password. gosnowflake must use
#   Protocol: "http", Host: "127.0.0.1", Port: PORT, Account: "fakesnow" (any),
#   User/Password: anything.
#
# Typical use:
#   export OFFLOAD_TEST_FAKESNOW=$(scripts/fakesnow.sh start | tail -n 1)
#   go test ./...
#   scripts/fakesnow.sh stop
set -euo pipefail

FAKESNOW_VERSION=0.12.1
# What the venv holds, all pinned. fakesnow 0.12.1 asks for an unbounded
# snowflake-connector-python, but imports snowflake.connector.converter, which
# the connector's 5.x line no longer has (5.2.0 fails on import): pin the
# newest 4.x, 4.8.1.
# The rest are the versions the probe of gosnowflake against this server ran on.
REQUIREMENTS=(
  "fakesnow[server]==$FAKESNOW_VERSION"
  "snowflake-connector-python==4.8.1"
  "duckdb==2.0.1"
  "sqlglot==30.22.0"
  "pyarrow==26.0.1"
  "starlette==1.10.0"
  "uvicorn==0.54.0"
)

CACHE_ROOT=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/offload
VENV=${OFFLOAD_FAKESNOW_VENV:-$CACHE_ROOT/fakesnow-venv}
# The venv is complete only when this stamp holds the pinned requirements.
VENV_STAMP="$VENV/.offload-fakesnow-version"
PY="$VENV/bin/python"

STATE=${OFFLOAD_FAKESNOW_DIR:-${TMPDIR:-/tmp}/offload-fakesnow-$(id -u)}
PID_FILE="$STATE/fakesnow.pid"
ADDR_FILE="$STATE/address"
LOG="$STATE/fakesnow.log"
SERVER_TMP="$STATE/tmp"

START_TIMEOUT=${OFFLOAD_FAKESNOW_START_TIMEOUT:-60}  # seconds until the server must answer
STOP_TIMEOUT=${OFFLOAD_FAKESNOW_STOP_TIMEOUT:-15}    # seconds of SIGINT/SIGTERM grace before SIGKILL
PIP_TIMEOUT=${OFFLOAD_FAKESNOW_PIP_TIMEOUT:-600}     # seconds the whole pip install may take

log() { printf 'fakesnow: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found${2:+ ($2)}"; }

# ---------------------------------------------------------------- venv

# Prints a python interpreter of version >= 3.11.
find_python() {
  local c
  for c in ${OFFLOAD_PYTHON:-} python3.11 python3.12 python3.13 python3.14 python3; do
    command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      command -v "$c"
      return 0
    fi
  done
  return 1
}

venv_ready() {
  [[ -x "$PY" && -f "$VENV_STAMP" ]] && [[ "$(cat "$VENV_STAMP")" == "${REQUIREMENTS[*]}" ]] \
    && "$PY" -c 'import fakesnow.server, uvicorn' 2>/dev/null
}

install() {
  venv_ready && return 0
  need flock
  local python
  python=$(find_python) || die "fakesnow $FAKESNOW_VERSION needs Python >= 3.11 with the venv module (set OFFLOAD_PYTHON)"
  mkdir -p "$(dirname "$VENV")"
  # One install at a time per cache, also across parallel CI jobs.
  exec 8>"$VENV.lock"
  flock -w "$PIP_TIMEOUT" 8 || die "another install holds $VENV.lock"
  if venv_ready; then exec 8>&-; return 0; fi
  local tmp="$VENV.tmp.$$"
  rm -rf "$tmp"
  log "installing ${REQUIREMENTS[*]} with $python into $VENV"
  # A venv is not relocatable (its scripts name their own path), so build it in
  # place: the stamp, written last, is what marks it complete.
  rm -rf "$VENV"
  "$python" -m venv "$VENV" >&2 || { rm -rf "$VENV"; die "$python -m venv $VENV failed"; }
  if ! timeout "$PIP_TIMEOUT" "$PY" -m pip install -q --disable-pip-version-check \
        --no-input "${REQUIREMENTS[@]}" >&2; then
    rm -rf "$VENV"
    die "pip install ${REQUIREMENTS[*]} failed"
  fi
  "$PY" -c 'import fakesnow.server, uvicorn' >&2 || { rm -rf "$VENV"; die "fakesnow.server does not import"; }
  echo "${REQUIREMENTS[*]}" >"$VENV_STAMP"
  exec 8>&-
  log "installed fakesnow $FAKESNOW_VERSION ($(du -sh "$VENV" | cut -f1))"
}

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

# True when pid is a live "$PY -m fakesnow -s" process started on our $STATE.
is_our_server() {
  local pid=$1 cmd
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmd" == "$PY -m fakesnow -s "* ]] || return 1
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "OFFLOAD_FAKESNOW_STATE=$STATE" || return 1
  # A zombie is not running.
  [[ "$(awk '/^State:/{print $2}' "/proc/$pid/status" 2>/dev/null)" != Z ]]
}

# A free TCP port on 127.0.0.1.
free_port() {
  "$PY" - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# True once the server answers a Snowflake login request with a session token.
answers() {
  local port=${1##*:}
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || return 1
  timeout 10 "$PY" - "$port" <<'PY' >/dev/null 2>&1
import json, sys, urllib.request
body = json.dumps({"data": {"LOGIN_NAME": "fake", "PASSWORD": "snow", "ACCOUNT_NAME": "fakesnow",
                            "SESSION_PARAMETERS": {}}}).encode()
req = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/session/v1/login-request",
    data=body, headers={"Content-Type": "application/json"}, method="POST")
with urllib.request.urlopen(req, timeout=5) as r:
    resp = json.load(r)
sys.exit(0 if resp.get("success") and resp["data"].get("token") else 1)
PY
}

show_log_tail() {
  if [[ -s "$LOG" ]]; then tail -n 40 "$LOG" >&2; else log "($LOG is empty)"; fi
}

stop_pid() {
  local pid=$1 waited=0
  # SIGINT is fakesnow's own shutdown signal (uvicorn finishes its requests).
  kill -INT "$pid" 2>/dev/null || true
  while is_our_server "$pid"; do
    if ((waited == STOP_TIMEOUT * 10)); then
      log "server pid $pid ignored SIGINT for ${STOP_TIMEOUT}s; sending SIGTERM"
      kill -TERM "$pid" 2>/dev/null || true
    elif ((waited >= STOP_TIMEOUT * 20)); then
      log "server pid $pid ignored SIGTERM; sending SIGKILL"
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
  local port addr pid deadline
  port=$(free_port) || { log "cannot find a free port"; return 1; }
  addr="127.0.0.1:$port"

  # PUT uploads land in a bucket fakesnow makes with tempfile.mkdtemp: keep it here.
  rm -rf "$SERVER_TMP"
  mkdir -p "$SERVER_TMP"
  if [[ -f "$LOG" ]]; then mv -f "$LOG" "$LOG.prev"; fi
  log "starting fakesnow $FAKESNOW_VERSION at $addr (log: $LOG)"
  # setsid: the server outlives this script and is not hit by the caller's
  # process-group signals. It must not inherit the lock fds (8, 9), or it would
  # hold the state lock for its whole life and block "stop". The inner shell
  # records its own pid and then becomes python, so the pid file names the server.
  # shellcheck disable=SC2016 # expanded by the inner shell, on purpose
  setsid env TMPDIR="$SERVER_TMP" OFFLOAD_FAKESNOW_STATE="$STATE" PYTHONUNBUFFERED=1 \
    bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
    "$PY" -m fakesnow -s --host 127.0.0.1 -p "$port" \
    </dev/null >"$LOG" 2>&1 8>&- 9>&- &
  local launcher=$!
  for _ in $(seq 50); do [[ -s "$PID_FILE" ]] && break; sleep 0.1; done
  pid=$(cat "$PID_FILE" 2>/dev/null || echo "$launcher")
  echo "$addr" >"$ADDR_FILE"

  deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null || ! is_our_server "$pid"; then
      # fakesnow's CLI exits 0 even when uvicorn cannot bind, so read the log.
      if grep -qi 'address already in use' "$LOG" 2>/dev/null; then
        rm -f "$PID_FILE"
        log "port race lost at $addr; retrying with a new port"
        return 2
      fi
      if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$PID_FILE"
        log "server exited during start-up; last log lines:"
        show_log_tail
        return 1
      fi
    fi
    if answers "$addr"; then
      return 0
    fi
    sleep 0.3
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
  exec 9>"$STATE/fakesnow.lock"
  flock -w $((PIP_TIMEOUT + START_TIMEOUT + 2 * STOP_TIMEOUT + 60)) 9 \
    || die "$STATE/fakesnow.lock is held by another fakesnow.sh"
}

cmd_start() {
  need flock
  need setsid
  lock_state
  local pid
  if pid=$(running_pid); then
    log "already running (pid $pid)"
    cat "$ADDR_FILE"
    return 0
  fi
  rm -f "$PID_FILE"
  install
  local t0=$SECONDS rc
  for _ in 1 2 3; do
    rc=0
    start_once || rc=$?
    if ((rc == 0)); then
      log "up in $((SECONDS - t0))s (pid $(cat "$PID_FILE"))"
      cat "$ADDR_FILE"
      return 0
    fi
    ((rc == 2)) || break
  done
  die "could not start fakesnow"
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
  rm -rf "$SERVER_TMP"
}

cmd_status() {
  if running_pid >/dev/null; then
    cat "$ADDR_FILE"
    return 0
  fi
  return 1
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  install) install; echo "$VENV" ;;
  *)
    echo "usage: $0 start|stop|status|install" >&2
    exit 2
    ;;
esac
