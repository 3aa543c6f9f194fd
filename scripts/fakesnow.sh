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

NAME=fakesnow
NOUN=server
# SIGINT is fakesnow's own shutdown signal (uvicorn finishes its requests).
STOP_SIGNALS="INT TERM KILL"
LOCK_WAIT=$((PIP_TIMEOUT + START_TIMEOUT + 2 * STOP_TIMEOUT + 60))
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=lib/service.sh
. "$SCRIPT_DIR/lib/service.sh"

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

# Imports the server's modules. Importing fakesnow makes its stage "bucket",
# a directory under $TMPDIR it never removes, so the import runs with a
# TMPDIR of its own that goes with it.
import_server() {
  local tmp rc=0
  tmp=$(mktemp -d) || return 1
  TMPDIR="$tmp" "$PY" -c 'import fakesnow.server, uvicorn' || rc=$?
  rm -rf "$tmp"
  return "$rc"
}

venv_ready() {
  [[ -x "$PY" && -f "$VENV_STAMP" ]] && [[ "$(cat "$VENV_STAMP")" == "${REQUIREMENTS[*]}" ]] \
    && import_server 2>/dev/null
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
  import_server >&2 || { rm -rf "$VENV"; die "fakesnow.server does not import"; }
  echo "${REQUIREMENTS[*]}" >"$VENV_STAMP"
  exec 8>&-
  log "installed fakesnow $FAKESNOW_VERSION ($(du -sh "$VENV" | cut -f1))"
}

# ---------------------------------------------------------------- process

# True when pid is a live "$PY -m fakesnow -s" process started on our $STATE.
is_ours() {
  local cmd
  cmd=$(live_cmdline "$1") || return 1
  [[ "$cmd" == "$PY -m fakesnow -s "* ]] || return 1
  tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | grep -qxF "OFFLOAD_FAKESNOW_STATE=$STATE"
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

# One attempt: 0 = up, 1 = failed for good, 2 = lost a port race (retry).
start_once() {
  local port addr
  port=$(free_ports 1) || { log "cannot find a free port"; return 1; }
  addr="127.0.0.1:$port"

  # PUT uploads land in a bucket fakesnow makes with tempfile.mkdtemp: keep it here.
  rm -rf "$SERVER_TMP"
  mkdir -p "$SERVER_TMP"
  log "starting fakesnow $FAKESNOW_VERSION at $addr (log: $LOG)"
  launch "$addr" "$START_TIMEOUT" \
    env TMPDIR="$SERVER_TMP" OFFLOAD_FAKESNOW_STATE="$STATE" PYTHONUNBUFFERED=1 \
    "$PY" -m fakesnow -s --host 127.0.0.1 -p "$port"
}

# ---------------------------------------------------------------- commands

cmd_start() {
  need flock
  need setsid
  lock_state
  reuse_running && return 0
  rm -f "$PID_FILE"
  install
  start_with_retries fakesnow
}

cmd_stop() {
  [[ -d "$STATE" ]] || return 0
  lock_state
  stop_running
  rm -rf "$SERVER_TMP"
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
