#!/usr/bin/env bash
# The one-command demo: builds offload and runs `offload demo`, everything
# embedded and local (an in-process Kafka, the load generator, the
# pipeline, a Snowflake-protocol test server as the warehouse, and the
# dashboard). Arguments go to `offload demo`, e.g.:
#
#   scripts/demo.sh                                  # with the dashboard; q quits
#   scripts/demo.sh --duration 30s --no-tui --json   # headless, summary as JSON
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
	echo "demo: Go 1.26 (with cgo and a C compiler) is needed to build offload" >&2
	exit 1
fi
echo "demo: building bin/offload (the first build takes a few minutes)" >&2
make -s build
exec bin/offload demo "$@"
