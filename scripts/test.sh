#!/usr/bin/env bash
# The full test suite, as CI runs it: installs what is missing, builds the
# binary once, starts a real Kafka broker, fakesnow and PostgreSQL 15 on
# 127.0.0.1, runs the unit and integration tests and short fuzz runs, and
# stops them.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "test.sh: $*" >&2; }

bash scripts/setup.sh

log "building bin/offload and bin/offload-bigquery-emulator"
make -s build
export OFFLOAD_BIN="$PWD/bin/offload"
export OFFLOAD_BIGQUERY_EMULATOR="$PWD/bin/offload-bigquery-emulator"

broker_started=""
fakesnow_started=""
postgres_started=""
cleanup() {
	if [ -n "$postgres_started" ]; then
		bash scripts/postgres.sh stop >&2 || true
	fi
	if [ -n "$broker_started" ]; then
		bash scripts/kafka-broker.sh stop >&2 || true
	fi
	if [ -n "$fakesnow_started" ]; then
		bash scripts/fakesnow.sh stop >&2 || true
	fi
}
trap cleanup EXIT

log "starting the Kafka broker"
OFFLOAD_TEST_BROKERS="$(bash scripts/kafka-broker.sh start | tail -n 1)"
broker_started=1
export OFFLOAD_TEST_BROKERS
log "broker at $OFFLOAD_TEST_BROKERS"

log "starting fakesnow"
OFFLOAD_TEST_FAKESNOW="$(bash scripts/fakesnow.sh start | tail -n 1)"
fakesnow_started=1
export OFFLOAD_TEST_FAKESNOW
log "fakesnow at $OFFLOAD_TEST_FAKESNOW"

log "starting PostgreSQL"
OFFLOAD_TEST_POSTGRES="$(bash scripts/postgres.sh start | tail -n 1)"
postgres_started=1
export OFFLOAD_TEST_POSTGRES
log "PostgreSQL at ${OFFLOAD_TEST_POSTGRES#*@}"

log "lint"
make -s lint

log "unit and integration tests"
chaos_report=$(mktemp)
export OFFLOAD_CHAOS_REPORT="$chaos_report"
go test -count=1 -timeout 25m ./...
if [ -s "$chaos_report" ]; then
	log "the fault harness (TestChaos, docs/RELIABILITY.md):"
	cat "$chaos_report" >&2
fi
rm -f "$chaos_report"

log "short fuzz runs"
# One grep finds every fuzz target with the file that holds it.
mapfile -t fuzzers < <(grep -roE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' . | sort)
for found in "${fuzzers[@]}"; do
	pkg=$(dirname "${found%%:*}") target=${found##*:func }
	log "fuzz $target in $pkg"
	go test -run '^$' -fuzz "^${target}\$" -fuzztime 20000x "$pkg"
done
