// Package testenv is what offload's tests share: the addresses of the real
// servers the test scripts start (a Kafka broker, fakesnow, PostgreSQL), a
// log buffer for loggers written from several goroutines, the runner of
// datadriven test files, and a build of the BigQuery emulator's program
// for tests that run it. It starts nothing itself, and only tests (and
// test servers) import it.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/offload/offload/internal/bqtest"
)

// Addr returns the value of the environment variable name. When it is
// unset the test is skipped, or fails when the CI environment variable is
// set: CI must run the integration tests. start says how to set it.
func Addr(t testing.TB, name, start string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is unset in CI: %s", name, start)
		}
		t.Skipf("%s is unset: %s", name, start)
	}
	return v
}

// Brokers returns the Kafka broker list (host:port, comma-separated)
// from OFFLOAD_TEST_BROKERS.
func Brokers(t testing.TB) string {
	t.Helper()
	return Addr(t, "OFFLOAD_TEST_BROKERS", "export OFFLOAD_TEST_BROKERS=$(scripts/kafka-broker.sh start | tail -n 1)")
}

// Fakesnow returns the host:port of a fakesnow server from
// OFFLOAD_TEST_FAKESNOW.
func Fakesnow(t testing.TB) string {
	t.Helper()
	return Addr(t, "OFFLOAD_TEST_FAKESNOW", "export OFFLOAD_TEST_FAKESNOW=$(scripts/fakesnow.sh start | tail -n 1)")
}

// Postgres returns the DSN of a PostgreSQL 15 server from
// OFFLOAD_TEST_POSTGRES.
func Postgres(t testing.TB) string {
	t.Helper()
	return Addr(t, "OFFLOAD_TEST_POSTGRES", "export OFFLOAD_TEST_POSTGRES=$(scripts/postgres.sh start | tail -n 1)")
}

// BigQueryEmulator builds cmd/offload-bigquery-emulator into dir and
// names it in $OFFLOAD_BIGQUERY_EMULATOR, unless that is set already (as
// scripts/test.sh sets it): for a TestMain whose tests start the BigQuery
// test warehouse from a test binary, which has no emulator beside it.
func BigQueryEmulator(dir string) error {
	if os.Getenv(bqtest.ProgramEnv) != "" {
		return nil
	}
	p := filepath.Join(dir, bqtest.ProgramName)
	out, err := exec.Command("go", "build", "-o", p, "github.com/offload/offload/cmd/offload-bigquery-emulator").CombinedOutput()
	if err != nil {
		return fmt.Errorf("cannot build %s (or name one in %s): %v\n%s", bqtest.ProgramName, bqtest.ProgramEnv, err, out)
	}
	return os.Setenv(bqtest.ProgramEnv, p)
}
