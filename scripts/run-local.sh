#!/usr/bin/env bash
# Sets up this machine, starts the project's local Kafka broker, produces a
# few sample transactions with kcat, builds offload and runs it against the
# broker in the foreground. Ctrl-C (SIGINT) stops offload cleanly; the broker
# keeps running until `scripts/kafka-broker.sh stop`.
#
#   scripts/run-local.sh            # data in ${OFFLOAD_LOCAL_DIR:-/tmp/offload-local}
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "run-local: $*" >&2; }
dir="${OFFLOAD_LOCAL_DIR:-${TMPDIR:-/tmp}/offload-local}"
topic=orders

bash scripts/setup.sh
make -s build
brokers="$(bash scripts/kafka-broker.sh start | tail -n 1)"
log "broker at $brokers"
bash scripts/kafka-broker.sh create-topic "$topic" 3 >&2 || true

log "producing 1000 sample transactions to $topic with kcat (keyed by order id)"
now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
for i in $(seq 1 1000); do
	printf 'ord-%d\t{"event_id":"evt-%d","order_id":"ord-%d","event_type":"order_placed","store_id":"store-%d","amount":"%d.99","currency":"EUR","channel":"web","event_time":"%s"}\n' \
		"$i" "$i" "$i" "$((i % 7))" "$((i % 100))" "$now"
done | kcat -P -b "$brokers" -t "$topic" -K $'\t'

mkdir -p "$dir"
cat >"$dir/offload.yaml" <<YAML
appliance_id: local
data_dir: $dir/data
disk_budget: 1GiB
kafka:
  brokers: [$brokers]
  topics: [$topic]
  group: offload-local
admin:
  listen: 127.0.0.1:7070
YAML
log "config in $dir/offload.yaml; inspect the WAL afterwards with: bin/offload wal stats --data-dir $dir/data"
exec bin/offload run --config "$dir/offload.yaml"
