# shellcheck shell=bash
# What scripts/kafka-broker.sh, fakesnow.sh and prometheus.sh share: one
# server process each starts in its state directory on 127.0.0.1, finds
# again by its pid file, stops by signal, and starts again with a new port
# when another process took the first one.
#
# The sourcing script sets:
#   NAME          log prefix, and the lock file's name ($STATE/$NAME.lock)
#   NOUN          what the process is called in messages ("broker", "server")
#   STATE PID_FILE ADDR_FILE LOG
#   STOP_TIMEOUT  seconds each stop signal gets before the next
#   STOP_SIGNALS  the stop signals in order, ending with KILL ("TERM KILL")
#   LOCK_WAIT     seconds to wait for another run of the script to finish
# and defines:
#   is_ours PID   true when PID is the server this script started in $STATE
#                 (use live_cmdline)
#   answers ADDR  true once the server answers at ADDR

log() { printf '%s: %s\n' "$NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found${2:+ ($2)}"; }

# The command line of a live process, arguments separated by spaces; fails
# for a process that is gone or a zombie.
live_cmdline() {
  local pid=$1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  [[ "$(awk '/^State:/{print $2}' "/proc/$pid/status" 2>/dev/null)" != Z ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null
}

# Prints the pid of the server this script started in $STATE, if it still runs.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  is_ours "$pid" || return 1
  echo "$pid"
}

# N distinct free TCP ports on 127.0.0.1, one per line.
free_ports() {
  local n=$1
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$n" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
for s in socks:
    s.close()
PY
  else
    # No python3: random high ports nobody answers on (racier, still retried).
    local got=0 p
    while ((got < n)); do
      p=$((20000 + RANDOM % 12000))
      if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "$p"; got=$((got + 1))
      fi
    done
  fi
}

show_log_tail() {
  if [[ -s "$LOG" ]]; then tail -n 40 "$LOG" >&2; else log "($LOG is empty)"; fi
}

# Sends the stop signals in turn, each STOP_TIMEOUT seconds after the last,
# until the server is gone.
stop_pid() {
  local pid=$1 sig prev="" waited
  for sig in $STOP_SIGNALS; do
    is_ours "$pid" || return 0
    [[ -z "$prev" ]] || log "$NOUN pid $pid ignored SIG$prev for ${STOP_TIMEOUT}s; sending SIG$sig"
    kill -"$sig" "$pid" 2>/dev/null || true
    if [[ "$sig" == KILL ]]; then
      sleep 0.2
      return 0
    fi
    waited=0
    while is_ours "$pid" && ((waited < STOP_TIMEOUT * 10)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    prev=$sig
  done
}

# Holds $STATE's lock (fd 9) for the rest of the script.
lock_state() {
  mkdir -p "$STATE"
  exec 9>"$STATE/$NAME.lock"
  flock -w "$LOCK_WAIT" 9 || die "$STATE/$NAME.lock is held by another $NAME.sh"
}

# launch ADDR TIMEOUT CMD...: starts CMD in the background, its output in
# $LOG, and waits up to TIMEOUT seconds for it to answer at ADDR.
# Returns 0 once it answers, 2 when it lost the race for its port (retry
# with another), 1 when it failed.
launch() {
  local addr=$1 timeout=$2 pid deadline launcher
  shift 2
  if [[ -f "$LOG" ]]; then mv -f "$LOG" "$LOG.prev"; fi
  # setsid: the server outlives this script and is not hit by the caller's
  # process-group signals. It must not inherit the lock fds (8, 9), or it
  # would hold the state lock for its whole life and block "stop". The inner
  # shell records its own pid and then becomes the server, so the pid file
  # names the server.
  # shellcheck disable=SC2016 # expanded by the inner shell, on purpose
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" "$@" \
    </dev/null >"$LOG" 2>&1 8>&- 9>&- &
  launcher=$!
  for _ in $(seq 50); do [[ -s "$PID_FILE" ]] && break; sleep 0.1; done
  pid=$(cat "$PID_FILE" 2>/dev/null || echo "$launcher")
  echo "$addr" >"$ADDR_FILE"

  deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null || ! is_ours "$pid"; then
      # Some servers exit 0 when they cannot bind: read the log.
      if grep -qi 'address already in use' "$LOG" 2>/dev/null; then
        rm -f "$PID_FILE"
        log "port race lost at $addr; retrying with another port"
        return 2
      fi
      if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$PID_FILE"
        log "$NOUN exited during start-up; last log lines:"
        show_log_tail
        return 1
      fi
    fi
    if answers "$addr"; then
      return 0
    fi
    sleep 0.3
  done
  log "$NOUN did not answer at $addr within ${timeout}s; last log lines:"
  show_log_tail
  stop_pid "$pid"
  rm -f "$PID_FILE"
  return 1
}

# start_with_retries WHAT ARGS...: calls start_once ARGS... until it
# succeeds, up to three times while it loses port races, then prints the
# address.
start_with_retries() {
  local what=$1 t0=$SECONDS rc
  shift
  for _ in 1 2 3; do
    rc=0
    start_once "$@" || rc=$?
    if ((rc == 0)); then
      log "up in $((SECONDS - t0))s (pid $(cat "$PID_FILE"))"
      cat "$ADDR_FILE"
      return 0
    fi
    ((rc == 2)) || break
  done
  die "could not start $what"
}

# Prints the address of a running server (if one was already running,
# after saying so) and succeeds, or fails.
reuse_running() {
  local pid
  pid=$(running_pid) || return 1
  log "already running (pid $pid)"
  cat "$ADDR_FILE"
}

# Stops the server this script started, if any (exit 0 either way).
stop_running() {
  local pid
  if pid=$(running_pid); then
    log "stopping $NOUN pid $pid"
    stop_pid "$pid"
    if is_ours "$pid"; then die "$NOUN pid $pid is still alive"; fi
    log "stopped"
  else
    log "no $NOUN running in $STATE"
  fi
  rm -f "$PID_FILE"
}

cmd_status() {
  running_pid >/dev/null || return 1
  cat "$ADDR_FILE"
}
