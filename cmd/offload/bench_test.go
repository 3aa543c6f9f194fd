package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offload/offload/internal/testenv"
)

// runBenchJSON runs `offload bench` with args and returns its JSON result.
func runBenchJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bench.json")
	cmd := exec.Command(offloadBin, append([]string{"bench", "--json", out}, args...)...)
	table, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("offload bench %v: %v\n%s", args, err, table)
	}
	for _, row := range []string{"end to end, events/s", "bare consumer, events/s", "produce → warehouse p50/p99/p99.9 ms", "exactly once"} {
		if !strings.Contains(string(table), row) {
			t.Fatalf("the table lacks %q:\n%s", row, table)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"events_per_sec", "bare_consumer_events_per_sec", "ratio", "p99_durable_ms", "p99_warehouse_ms",
		"peak_rss_bytes", "bytes_shipped_ratio"} {
		if v, ok := res[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v in %s", k, res[k], b)
		}
	}
	if res["exactly_once"] != true {
		t.Fatalf("not exactly once: %s", b)
	}
	return res
}

// TestBenchInProcess: the whole benchmark in-process, with the renamed
// source schema the appliance maps.
func TestBenchInProcess(t *testing.T) {
	res := runBenchJSON(t, "--events", "30000", "--partitions", "4", "--schema", "shop")
	if res["schema"] != "shop" || res["events"].(float64) < 30000 {
		t.Fatalf("result %v", res)
	}
}

// TestBenchRealBroker: against the real Kafka broker, in CSV, and the
// generator alone (`offload bench gen`).
func TestBenchRealBroker(t *testing.T) {
	brokers := testenv.Brokers(t)
	runBenchJSON(t, "--events", "20000", "--partitions", "3", "--schema", "csv", "--brokers", brokers)
	out, err := exec.Command(offloadBin, "bench", "gen", "--brokers", brokers, "--topic", "gen-"+strings.ReplaceAll(t.Name(), "/", "-"),
		"--count", "3000", "--rate", "0", "--malformed", "0.1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "produced ") || !strings.Contains(string(out), "malformed") {
		t.Fatalf("offload bench gen: %v\n%s", err, out)
	}
}
