#!/usr/bin/env bash
# A long run of the fault harness: `offload bench --chaos` against a Kafka
# broker of its own, which the harness restarts mid-run. CI runs 50 kills
# (TestChaos); this is for 200 and more.
#
#   scripts/chaos.sh [KILLS] [more offload bench flags...]
#
# KILLS defaults to 200. The report goes to stdout and chaos.json; the
# daemon's log and data stay in ${OFFLOAD_CHAOS_DIR:-${TMPDIR:-/tmp}/offload-chaos}
# for inspection. The disk-full scenario mounts a tmpfs there, which needs
# root; without it the scenario is reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

kills=${1:-200}
[[ $# -gt 0 ]] && shift
[[ "$kills" =~ ^[1-9][0-9]*$ ]] || { echo "chaos.sh: KILLS must be a positive integer" >&2; exit 2; }

dir=${OFFLOAD_CHAOS_DIR:-${TMPDIR:-/tmp}/offload-chaos}
rm -rf "$dir"
mkdir -p "$dir"
export OFFLOAD_KAFKA_DIR="$dir/kafka"
broker="$PWD/scripts/kafka-broker.sh"

make -s build
brokers=$(bash "$broker" start | tail -n 1)
trap 'bash "$broker" stop >&2 || true' EXIT

bin/offload bench --chaos --kills "$kills" --brokers "$brokers" \
  --broker-restart "OFFLOAD_KAFKA_DIR=$OFFLOAD_KAFKA_DIR $broker restart" \
  --dir "$dir/run" --json chaos.json "$@"
