# offload: common developer tasks. `make help` lists them.

GO        ?= go
BIN       ?= bin/offload
EMULATOR  := $(dir $(BIN))offload-bigquery-emulator
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
PKGS      := ./...
BENCHTIME ?= 2s

.PHONY: help setup build test test-race bench bench-go chaos lint fmt run-local clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: ## install what the project needs (Debian packages, Kafka broker jars)
	bash scripts/setup.sh

build: ## build bin/offload, and beside it the BigQuery emulator that demo and bench run for --warehouse bigquery
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/offload
	$(GO) build -o $(EMULATOR) ./cmd/offload-bigquery-emulator

test: ## the full suite as CI runs it: set-up, real Kafka broker, unit + integration tests, short fuzzing
	bash scripts/test.sh

test-race: build ## unit tests under the race detector (integration tests run when a broker is up)
	OFFLOAD_BIN=$(abspath $(BIN)) OFFLOAD_BIGQUERY_EMULATOR=$(abspath $(EMULATOR)) $(GO) test -race -count=1 -timeout 20m $(PKGS)

BENCH_EVENTS ?= 1000000

bench: ## the drain benchmark (offload bench --profile drain) on a broker of its own: table on stdout, JSON in bench.json
	bash scripts/bench.sh $(BENCH_EVENTS)

bench-go: ## Go benchmarks of the hot paths (figures go to docs/PERFORMANCE.md)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./wal ./internal/ingest ./engine/... ./loader

CHAOS_KILLS ?= 200

chaos: ## a long fault-harness run: offload bench --chaos with $(CHAOS_KILLS) kills, report in chaos.json (docs/RELIABILITY.md)
	bash scripts/chaos.sh $(CHAOS_KILLS)

lint: ## go vet, staticcheck (pinned in go.mod as a tool) and gofmt
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

run-local: ## start the local Kafka broker and run the appliance against it
	bash scripts/run-local.sh

clean: ## remove build output
	rm -rf bin
