#!/usr/bin/env bash
# The main benchmark: `offload bench --profile drain` against a Kafka broker
# of its own (docs/PERFORMANCE.md). `make bench` runs it.
#
#   scripts/bench.sh [EVENTS] [more offload bench flags...]
#
# EVENTS defaults to 1000000. The table goes to stdout, the figures to
# bench.json. The broker's state lives in
# ${OFFLOAD_BENCH_DIR:-${TMPDIR:-/tmp}/offload-bench}/kafka, apart from the
# test suite's broker, and the broker is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-1000000}
[[ $# -gt 0 ]] && shift
[[ "$events" =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: EVENTS must be a positive integer" >&2; exit 2; }

dir=${OFFLOAD_BENCH_DIR:-${TMPDIR:-/tmp}/offload-bench}
mkdir -p "$dir"
export OFFLOAD_KAFKA_DIR="$dir/kafka"
broker="$PWD/scripts/kafka-broker.sh"

make -s build
export OFFLOAD_BIN="$PWD/bin/offload"
brokers=$(bash "$broker" start | tail -n 1)
trap 'bash "$broker" stop >&2 || true' EXIT

bin/offload bench --profile drain --brokers "$brokers" --events "$events" --partitions 8 --json bench.json "$@"
