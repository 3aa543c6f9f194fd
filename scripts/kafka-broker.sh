#!/usr/bin/env bash
# A real, single-node Apache Kafka broker (KRaft, combined broker+controller)
# on 127.0.0.1, for offload's integration tests.
#
#   scripts/kafka-broker.sh start                  start (or reuse) the broker; last stdout line: 127.0.0.1:PORT
#   scripts/kafka-broker.sh stop                   stop the broker this script started (exit 0 if none)
#   scripts/kafka-broker.sh status                 print the address and exit 0 if running, else exit 1
#   scripts/kafka-broker.sh fetch                  only download the jars into the cache
#   scripts/kafka-broker.sh create-topic NAME [PARTITIONS]
#                                                  create a topic on the running broker
#                                                  (auto.create.topics.enable is false)
#
# The jars come from Maven Central through scripts/kafka/pom.xml and are cached
# once per Kafka version in ${OFFLOAD_CACHE:-$HOME/.cache/offload}/kafka-<version>/libs.
# Broker state (config, data, log, pid) lives in
# ${OFFLOAD_KAFKA_DIR:-${TMPDIR:-/tmp}/offload-kafka-<uid>}; its data is wiped on
# every fresh start. Progress goes to stderr; only results go to stdout.
#
# Typical use:
#   export OFFLOAD_TEST_BROKERS=$(scripts/kafka-broker.sh start | tail -n 1)
#   go test ./...
#   scripts/kafka-broker.sh stop
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
POM="$SCRIPT_DIR/kafka/pom.xml"

KAFKA_VERSION=$(sed -n 's:.*<kafka\.version>\(.*\)</kafka\.version>.*:\1:p' "$POM" | head -n 1)
[[ -n "$KAFKA_VERSION" ]] || { echo "kafka-broker: cannot read kafka.version from $POM" >&2; exit 1; }

CACHE_ROOT=${OFFLOAD_CACHE:-${HOME:-/root}/.cache/offload}
KAFKA_HOME_DIR="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIBS="$KAFKA_HOME_DIR/libs"
# The libs directory is complete only when this stamp holds the pom's checksum;
# editing the pom (exclusions, logging) therefore refreshes the cache.
LIBS_STAMP="$LIBS/.offload-pom.sha256"

STATE=${OFFLOAD_KAFKA_DIR:-${TMPDIR:-/tmp}/offload-kafka-$(id -u)}
PID_FILE="$STATE/broker.pid"
ADDR_FILE="$STATE/address"
CONF="$STATE/server.properties"
LOG="$STATE/broker.log"
DATA="$STATE/data"

START_TIMEOUT=${OFFLOAD_KAFKA_START_TIMEOUT:-90}  # seconds until the broker must answer
STOP_TIMEOUT=${OFFLOAD_KAFKA_STOP_TIMEOUT:-30}    # seconds of SIGTERM grace before SIGKILL
HEAP=${OFFLOAD_KAFKA_HEAP:-512m}

JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

log() { printf 'kafka-broker: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found${2:+ ($2)}"; }

# ---------------------------------------------------------------- jars

pom_sum() { sha256sum "$POM" | cut -d' ' -f1; }

libs_ready() {
  [[ -f "$LIBS_STAMP" ]] && [[ "$(cat "$LIBS_STAMP")" == "$(pom_sum)" ]] \
    && compgen -G "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null
}

fetch() {
  libs_ready && return 0
  need mvn "install Maven, or run scripts/setup.sh"
  mkdir -p "$KAFKA_HOME_DIR"
  # One fetch at a time per cache, also across parallel CI jobs.
  exec 8>"$KAFKA_HOME_DIR/.fetch.lock"
  flock -w 600 8 || die "another fetch holds $KAFKA_HOME_DIR/.fetch.lock"
  if libs_ready; then exec 8>&-; return 0; fi
  local tmp="$KAFKA_HOME_DIR/libs.tmp.$$"
  rm -rf "$tmp"
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
  # -q still prints errors (to stdout) and Debian's Maven 3.8 wraps them in
  # colour codes even with -B; strip those and send everything to stderr.
  if ! mvn -q -B -ntp -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
          -DoutputDirectory="$tmp" 2>&1 | sed 's/\x1b\[[0-9;]*m//g; /^[[:space:]]*$/d' >&2; then
    rm -rf "$tmp"
    die "mvn dependency:copy-dependencies failed for $POM"
  fi
  pom_sum >"$tmp/.offload-pom.sha256"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  exec 8>&-
  log "cached $(find "$LIBS" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS" | cut -f1))"
}

# ---------------------------------------------------------------- process

# Prints the pid of the broker this script started in $STATE, if it still runs.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  is_our_broker "$pid" || return 1
  echo "$pid"
}

# True when pid is a live java kafka.Kafka process started on our $CONF.
is_our_broker() {
  local pid=$1 cmd
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmd" == *java* && "$cmd" == *" kafka.Kafka $CONF"* ]] || return 1
  # A zombie is not running.
  [[ "$(awk '/^State:/{print $2}' "/proc/$pid/status" 2>/dev/null)" != Z ]]
}

# Two distinct free TCP ports on 127.0.0.1, one per line.
free_ports() {
  if command -v python3 >/dev/null 2>&1; then
    python3 - <<'PY'
import socket
socks = []
for _ in range(2):
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
    local n=0 p
    while ((n < 2)); do
      p=$((20000 + RANDOM % 12000))
      if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "$p"; n=$((n + 1))
      fi
    done
  fi
}

# A random Kafka cluster id: 16 random bytes, base64url without padding.
cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ "$id" != -* ]] && { echo "$id"; return; }
  done
}

write_log4j() {
  # The broker logs INFO to stdout, which goes to $LOG.
  cat >"$STATE/log4j2.properties" <<EOF
status = warn
name = offload-kafka-broker
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.requestchannel.name = kafka.network.RequestChannel\$
logger.requestchannel.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF
  # Command-line tools (StorageTool, TopicCommand) only say something when it matters.
  cat >"$STATE/log4j2-tools.properties" <<'EOF'
status = warn
name = offload-kafka-tools
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

write_config() {
  local bport=$1 cport=$2
  cat >"$CONF" <<EOF
# Written by scripts/kafka-broker.sh; rewritten on every fresh start.
# Single-node KRaft: this process is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$bport
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA

# One node: everything has one replica.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Tests create their topics explicitly and want groups to form at once.
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0

# Small, short-lived logs (1 MiB is the smallest segment Kafka 4 accepts).
log.segment.bytes=1048576
log.retention.ms=3600000
log.retention.bytes=268435456
log.retention.check.interval.ms=60000
log.cleaner.dedupe.buffer.size=2097152
log.cleaner.threads=1

# A small machine: few threads.
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
EOF
}

java_tool() { # CLASS ARGS... : run a Kafka command-line tool from the cached jars
  "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$STATE/log4j2-tools.properties" \
    -cp "$LIBS/*" "$@"
}

# True once the broker answers a Kafka metadata request listing itself.
answers() {
  local addr=$1 port=${1##*:}
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || return 1
  if command -v kcat >/dev/null 2>&1; then
    kcat -b "$addr" -L -m 5 2>/dev/null | grep -q '^ *1 brokers:' || return 1
  else
    timeout 30 "$JAVA" -Xmx128m -XX:TieredStopAtLevel=1 \
      -Dlog4j2.configurationFile="$STATE/log4j2-tools.properties" -cp "$LIBS/*" \
      org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$addr" \
      2>/dev/null | grep -q "^$addr"
  fi
}

show_log_tail() {
  if [[ -s "$LOG" ]]; then tail -n 40 "$LOG" >&2; else log "($LOG is empty)"; fi
}

stop_pid() {
  local pid=$1 waited=0
  kill -TERM "$pid" 2>/dev/null || true
  while is_our_broker "$pid"; do
    if ((waited >= STOP_TIMEOUT * 10)); then
      log "broker pid $pid ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
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
  local bport cport ports addr pid deadline
  mapfile -t ports < <(free_ports)
  bport=${ports[0]}; cport=${ports[1]}
  addr="127.0.0.1:$bport"

  rm -rf "$DATA"
  mkdir -p "$DATA"
  write_config "$bport" "$cport"
  log "formatting storage in $DATA"
  java_tool kafka.tools.StorageTool format --standalone --ignore-formatted \
      -t "$(cluster_id)" -c "$CONF" >/dev/null \
    || { log "StorageTool format failed"; return 1; }

  if [[ -f "$LOG" ]]; then mv -f "$LOG" "$LOG.prev"; fi
  log "starting Kafka $KAFKA_VERSION at $addr (log: $LOG)"
  # setsid: the broker outlives this script and is not hit by the caller's
  # process-group signals. It must not inherit the lock fds (8, 9), or it
  # would hold the state lock for its whole life and block "stop". The inner shell records its own pid and then
  # becomes java, so the pid file names the java process.
  # shellcheck disable=SC2016 # expanded by the inner shell, on purpose
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
    "$JAVA" -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$STATE/log4j2.properties" \
      -Dkafka.logs.dir="$STATE" \
      -cp "$LIBS/*" kafka.Kafka "$CONF" \
      </dev/null >"$LOG" 2>&1 8>&- 9>&- &
  local launcher=$!
  for _ in $(seq 50); do [[ -s "$PID_FILE" ]] && break; sleep 0.1; done
  pid=$(cat "$PID_FILE" 2>/dev/null || echo "$launcher")
  echo "$addr" >"$ADDR_FILE"

  deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      if grep -q 'Address already in use' "$LOG" 2>/dev/null; then
        log "port race lost at $addr; retrying with new ports"
        return 2
      fi
      log "broker exited during start-up; last log lines:"
      show_log_tail
      return 1
    fi
    if answers "$addr"; then
      return 0
    fi
    sleep 0.5
  done
  log "broker did not answer at $addr within ${START_TIMEOUT}s; last log lines:"
  show_log_tail
  stop_pid "$pid"
  rm -f "$PID_FILE"
  return 1
}

# ---------------------------------------------------------------- commands

lock_state() {
  mkdir -p "$STATE"
  exec 9>"$STATE/kafka-broker.lock"
  flock -w $((START_TIMEOUT + STOP_TIMEOUT + 60)) 9 || die "$STATE/kafka-broker.lock is held by another kafka-broker.sh"
}

cmd_start() {
  need "$JAVA" "Kafka $KAFKA_VERSION needs Java 17+"
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
  fetch
  write_log4j
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
  die "could not start the Kafka broker"
}

cmd_stop() {
  [[ -d "$STATE" ]] || return 0
  lock_state
  local pid
  if pid=$(running_pid); then
    log "stopping broker pid $pid"
    stop_pid "$pid"
    if is_our_broker "$pid"; then die "broker pid $pid is still alive"; fi
    log "stopped"
  else
    log "no broker running in $STATE"
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

cmd_create_topic() {
  local name=${1:?usage: kafka-broker.sh create-topic NAME [PARTITIONS]}
  local partitions=${2:-1} addr
  [[ "$partitions" =~ ^[1-9][0-9]*$ ]] || die "PARTITIONS must be a positive integer"
  addr=$(cmd_status) || die "no broker running; run scripts/kafka-broker.sh start"
  java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$addr" \
    --create --topic "$name" --partitions "$partitions" --replication-factor 1 >&2
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  fetch) fetch; echo "$LIBS" ;;
  create-topic) shift; cmd_create_topic "$@" ;;
  *)
    echo "usage: $0 start|stop|status|fetch|create-topic NAME [PARTITIONS]" >&2
    exit 2
    ;;
esac
