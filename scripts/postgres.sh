#!/usr/bin/env bash
# A real PostgreSQL 15 server (the Debian package postgresql-15) on
# 127.0.0.1, for the tests of offload's postgres sink and of the SQL it
# shares with the redshift sink.
#
#   scripts/postgres.sh start     start (or reuse) the server; last stdout line: its DSN
#   scripts/postgres.sh stop      stop the server this script started (exit 0 if none)
#   scripts/postgres.sh status    print the DSN and exit 0 if running, else exit 1
#
# The cluster is initdb'ed afresh on every start into
# ${OFFLOAD_POSTGRES_DIR:-${TMPDIR:-/tmp}/offload-postgres-<uid>}/data, listens on
# 127.0.0.1 only (no Unix socket outside that directory), and runs as the
# postgres user when started by root (PostgreSQL refuses to run as root).
# It has one database, offload, and one password user, offload; the DSN
# printed is postgres://offload:$PASSWORD@127.0.0.1:PORT/offload?sslmode=disable.
# Progress goes to stderr; only results go to stdout.
#
# Typical use:
#   export OFFLOAD_TEST_POSTGRES=$(scripts/postgres.sh start | tail -n 1)
#   go test ./loader/
#   scripts/postgres.sh stop
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)

PG_BIN=${OFFLOAD_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
STATE=${OFFLOAD_POSTGRES_DIR:-${TMPDIR:-/tmp}/offload-postgres-$(id -u)}
PID_FILE="$STATE/postgres.pid"
ADDR_FILE="$STATE/address"
LOG="$STATE/postgres.log"
DATA="$STATE/data"
SOCKETS="$STATE/sockets"
# The test user's password: a throwaway of this local server, distinctive
# so that tests can tell it never reaches a log.
PASSWORD=Pg-test-9c41e7

START_TIMEOUT=${OFFLOAD_POSTGRES_START_TIMEOUT:-60}  # seconds until the server must answer
STOP_TIMEOUT=${OFFLOAD_POSTGRES_STOP_TIMEOUT:-15}    # seconds of each stop signal's grace

NAME=postgres
NOUN=server
# SIGINT is PostgreSQL's fast shutdown: it rolls back open transactions.
STOP_SIGNALS="INT TERM KILL"
LOCK_WAIT=$((START_TIMEOUT + 3 * STOP_TIMEOUT + 60))
# shellcheck source-path=SCRIPTDIR source=lib/service.sh
. "$SCRIPT_DIR/lib/service.sh"

# AS_OWNER runs a command as the cluster's owner: postgres when root.
AS_OWNER=()
if ((EUID == 0)); then AS_OWNER=(setpriv --reuid=postgres --regid=postgres --init-groups --); fi

# True when pid is a live postgres server started on our data directory.
is_ours() {
  local cmd
  cmd=$(live_cmdline "$1") || return 1
  [[ "$cmd" == "$PG_BIN/postgres -D $DATA "* ]]
}

# True once the server accepts logins of the offload user at ADDR.
answers() {
  local port=${1##*:}
  PGPASSWORD="$PASSWORD" "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U offload -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1
}

# A fresh cluster with the offload user and database.
init_cluster() {
  rm -rf "$DATA" "$SOCKETS"
  mkdir -p "$DATA" "$SOCKETS"
  if ((EUID == 0)); then chown postgres:postgres "$DATA" "$SOCKETS" "$STATE"; fi
  local pwfile="$STATE/pwfile"
  printf '%s\n' "$PASSWORD" >"$pwfile"
  if ((EUID == 0)); then chown postgres "$pwfile"; fi
  "${AS_OWNER[@]}" "$PG_BIN/initdb" -D "$DATA" -U offload --pwfile="$pwfile" -A scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 --no-sync >"$STATE/initdb.log" 2>&1 \
    || { cat "$STATE/initdb.log" >&2; rm -f "$pwfile"; die "initdb failed"; }
  rm -f "$pwfile"
}

# One attempt: 0 = up, 1 = failed for good, 2 = lost a port race (retry).
start_once() {
  local port addr rc=0
  port=$(free_ports 1) || { log "cannot find a free port"; return 1; }
  addr="127.0.0.1:$port"
  log "starting PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') at $addr (log: $LOG)"
  if ((EUID == 0)); then touch "$LOG"; chown postgres "$LOG"; fi
  launch "$addr" "$START_TIMEOUT" \
    "${AS_OWNER[@]}" "$PG_BIN/postgres" -D "$DATA" -c listen_addresses=127.0.0.1 -p "$port" \
    -c unix_socket_directories="$SOCKETS" -c fsync=off -c full_page_writes=off \
    -c max_connections=200 -c shared_buffers=32MB -c log_min_messages=warning || rc=$?
  ((rc == 0)) || return "$rc"
  PGPASSWORD="$PASSWORD" "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U offload -d postgres -Atqc 'CREATE DATABASE offload' >&2 \
    || die "cannot create the offload database"
}

# The DSN of the server at the address in $ADDR_FILE.
dsn() { echo "postgres://offload:$PASSWORD@$(cat "$ADDR_FILE")/offload?sslmode=disable"; }

cmd_start() {
  need flock
  need setsid
  [[ -x "$PG_BIN/postgres" ]] || die "$PG_BIN/postgres not found (install postgresql-15: scripts/setup.sh)"
  lock_state
  reuse_running >/dev/null && { dsn; return 0; }
  rm -f "$PID_FILE"
  init_cluster
  start_with_retries PostgreSQL >/dev/null
  dsn
}

cmd_stop() {
  [[ -d "$STATE" ]] || return 0
  lock_state
  stop_running
  rm -rf "$DATA" "$SOCKETS"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status >/dev/null && dsn ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
