#!/usr/bin/env bash
# A real, single-node Apache Kafka broker (KRaft, combined broker+controller)
# on 127.0.0.1, for offload's integration tests.
#
#   scripts/kafka-broker.sh start                  start (or reuse) the broker; last stdout line: 127.0.0.1:PORT
#   scripts/kafka-broker.sh stop                   stop the broker this script started (exit 0 if none)
#   scripts/kafka-broker.sh restart                stop the running broker and start it again, same port and data
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

NAME=kafka-broker
NOUN=broker
STOP_SIGNALS="TERM KILL"
LOCK_WAIT=$((START_TIMEOUT + STOP_TIMEOUT + 60))
# shellcheck source-path=SCRIPTDIR source=lib/service.sh
. "$SCRIPT_DIR/lib/service.sh"

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

# True when pid is a live java kafka.Kafka process started on our $CONF.
is_ours() {
  local cmd
  cmd=$(live_cmdline "$1") || return 1
  [[ "$cmd" == *java* && "$cmd" == *" kafka.Kafka $CONF"* ]]
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

# One attempt: 0 = up, 1 = failed for good, 2 = lost a port race (retry).
start_once() {
  local bport cport ports addr
  mapfile -t ports < <(free_ports 2)
  bport=${ports[0]}; cport=${ports[1]}
  addr="127.0.0.1:$bport"

  rm -rf "$DATA"
  mkdir -p "$DATA"
  write_config "$bport" "$cport"
  log "formatting storage in $DATA"
  java_tool kafka.tools.StorageTool format --standalone --ignore-formatted \
      -t "$(cluster_id)" -c "$CONF" >/dev/null \
    || { log "StorageTool format failed"; return 1; }

  log "starting Kafka $KAFKA_VERSION at $addr (log: $LOG)"
  launch_broker "$addr"
}

# launch_broker ADDR: runs the broker on $CONF and waits for it at ADDR.
launch_broker() {
  launch "$1" "$START_TIMEOUT" \
    "$JAVA" -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$STATE/log4j2.properties" \
      -Dkafka.logs.dir="$STATE" \
      -cp "$LIBS/*" kafka.Kafka "$CONF"
}

# ---------------------------------------------------------------- commands

cmd_start() {
  need "$JAVA" "Kafka $KAFKA_VERSION needs Java 17+"
  need flock
  need setsid
  lock_state
  reuse_running && return 0
  rm -f "$PID_FILE"
  fetch
  write_log4j
  start_with_retries "the Kafka broker"
}

cmd_stop() {
  [[ -d "$STATE" ]] || return 0
  lock_state
  stop_running
}

# Stops the running broker (SIGTERM, a clean shutdown) and starts it again
# on the same ports and data: what a broker restart during an upgrade does.
cmd_restart() {
  local pid addr
  lock_state
  pid=$(running_pid) || die "no broker running in $STATE; use start"
  addr=$(cat "$ADDR_FILE")
  log "restarting the broker at $addr (data kept)"
  stop_pid "$pid"
  if is_ours "$pid"; then die "broker pid $pid is still alive"; fi
  rm -f "$PID_FILE"
  launch_broker "$addr" || die "the broker did not come back at $addr"
  log "back (pid $(cat "$PID_FILE"))"
  cat "$ADDR_FILE"
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
  restart) cmd_restart ;;
  status) cmd_status ;;
  fetch) fetch; echo "$LIBS" ;;
  create-topic) shift; cmd_create_topic "$@" ;;
  *)
    echo "usage: $0 start|stop|restart|status|fetch|create-topic NAME [PARTITIONS]" >&2
    exit 2
    ;;
esac
