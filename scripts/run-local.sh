#!/usr/bin/env bash
# Sets up this machine, starts the project's local Kafka broker, produces a
# few sample transactions with kcat (some duplicated, some malformed), builds
# offload and runs it against the broker in the foreground: the engine
# cleans, dedupes and windows them into data_dir/engine.duckdb. Ctrl-C (SIGINT) stops offload cleanly; the broker
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

log "producing 1000 sample transactions to $topic with kcat (keyed by order id), 20 of them resent, and 5 malformed"
now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
order() {
	printf 'ord-%d\t{"event_id":"evt-%d","order_id":"ord-%d","event_type":"order_placed","store_id":"store-%d","customer_email":"buyer%d@example.com","amount":"%d.99","currency":"EUR","channel":"web","event_time":"%s"}\n' \
		"$1" "$1" "$1" "$(($1 % 7))" "$1" "$(($1 % 100))" "$now"
}
{
	for i in $(seq 1 1000); do order "$i"; done
	for i in $(seq 1 20); do order "$i"; done
	printf 'bad-1\t{"event_id":"bad-1","amount":"12.00"\n'
	printf 'bad-2\t{"event_id":"bad-2","event_type":"order_placed","store_id":"store-1","amount":"abc","currency":"EUR","event_time":"%s"}\n' "$now"
	printf 'bad-3\t{"event_id":"bad-3","event_type":"order_placed","store_id":"store-1","amount":"5","currency":"XYZ","event_time":"%s"}\n' "$now"
	printf 'bad-4\t{"event_type":"order_placed","store_id":"store-1","amount":"5","currency":"EUR","event_time":"%s"}\n' "$now"
	printf 'bad-5\t{"event_id":"bad-5","event_type":"order_placed","store_id":"store-1","amount":"5","currency":"EUR","event_time":"last tuesday"}\n'
} | kcat -P -b "$brokers" -t "$topic" -K $'\t'

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
log "config in $dir/offload.yaml; after Ctrl-C, look at the dead letters with: bin/offload dlq list --config $dir/offload.yaml"
exec bin/offload run --config "$dir/offload.yaml"
