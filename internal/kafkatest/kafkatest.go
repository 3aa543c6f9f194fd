// Package kafkatest gives integration tests the address of a real Kafka
// broker (see scripts/kafka-broker.sh). It starts nothing itself.
package kafkatest

import (
	"os"
	"testing"
)

// Brokers returns the broker list from OFFLOAD_TEST_BROKERS (host:port,
// comma-separated). When it is unset the test is skipped, or fails when
// the CI environment variable is set: CI must run the integration tests.
func Brokers(t testing.TB) string {
	t.Helper()
	b := os.Getenv("OFFLOAD_TEST_BROKERS")
	if b == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("OFFLOAD_TEST_BROKERS is unset in CI: start a broker with scripts/kafka-broker.sh start")
		}
		t.Skip("OFFLOAD_TEST_BROKERS is unset: start a broker with `export OFFLOAD_TEST_BROKERS=$(scripts/kafka-broker.sh start | tail -n 1)`")
	}
	return b
}
