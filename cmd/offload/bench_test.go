package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/snowflakedb/gosnowflake"

	"github.com/offload/offload/bench/gen"
	"github.com/offload/offload/bench/rig"
	"github.com/offload/offload/internal/testenv"
)

// benchOut runs `offload bench` with args and env added, checks that
// the table's first line names profile, and returns the table and the
// JSON result.
func benchOut(t *testing.T, profile string, env []string, args ...string) (string, map[string]any) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bench.json")
	cmd := boundedCommand(t, 5*time.Minute, offloadBin, append([]string{"bench", "--json", out}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	table, err := cmd.Output()
	if err != nil {
		t.Fatalf("offload bench %v: %v\n%s", args, err, table)
	}
	if first, _, _ := strings.Cut(string(table), "\n"); strings.Join(strings.Fields(first), " ") != "profile "+profile {
		t.Fatalf("the table's first line is %q, want the profile %s:\n%s", first, profile, table)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res["profile"] != profile || res["exactly_once"] != true {
		t.Fatalf("not the profile %s exactly once: %s", profile, b)
	}
	return string(table), res
}

// runBenchJSON runs the in-process profile of `offload bench` with args
// and returns its JSON result.
func runBenchJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	table, res := benchOut(t, "inprocess", nil, args...)
	for _, row := range []string{"end to end, events/s", "bare consumer, events/s", "produce → warehouse p50/p99/p99.9 ms", "exactly once"} {
		if !strings.Contains(table, row) {
			t.Fatalf("the table lacks %q:\n%s", row, table)
		}
	}
	for _, k := range []string{"events_per_sec", "bare_consumer_events_per_sec", "ratio", "p99_durable_ms", "p99_warehouse_ms",
		"peak_rss_bytes", "bytes_shipped_ratio"} {
		if v, ok := res[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v in %v", k, res[k], res)
		}
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

// TestBenchInProcessRedshift: the benchmark shipping to the Redshift-dialect
// test server.
func TestBenchInProcessRedshift(t *testing.T) {
	res := runBenchJSON(t, "--events", "20000", "--partitions", "2", "--warehouse", "redshift")
	if res["warehouse"] != "redshift" || res["events"].(float64) < 20000 {
		t.Fatalf("result %v", res)
	}
}

// TestBenchInProcessBigQuery: the benchmark shipping to the BigQuery
// emulator, latencies measured with BigQuery's SQL.
func TestBenchInProcessBigQuery(t *testing.T) {
	res := runBenchJSON(t, "--events", "5000", "--partitions", "2", "--warehouse", "bigquery")
	if res["warehouse"] != "bigquery" || res["events"].(float64) < 5000 {
		t.Fatalf("result %v", res)
	}
}

// TestBenchRealBroker: against the real Kafka broker, in CSV, and the
// generator alone (`offload bench gen`).
func TestBenchRealBroker(t *testing.T) {
	brokers := testenv.Brokers(t)
	runBenchJSON(t, "--profile", "inprocess", "--events", "20000", "--partitions", "3", "--schema", "csv", "--brokers", brokers)
	out, err := boundedCommand(t, 2*time.Minute, offloadBin, "bench", "gen", "--brokers", brokers, "--topic", "gen-"+strings.ReplaceAll(t.Name(), "/", "-"),
		"--count", "3000", "--rate", "0", "--malformed", "0.1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "produced ") || !strings.Contains(string(out), "malformed") {
		t.Fatalf("offload bench gen: %v\n%s", err, out)
	}
}

// TestBenchDrainDefault: with --brokers, `offload bench` runs the drain
// profile (bench/drain tests its figures), starting this very binary as
// the appliance, and says so on its first line.
func TestBenchDrainDefault(t *testing.T) {
	brokers := testenv.Brokers(t)
	table, res := benchOut(t, "drain", []string{"OFFLOAD_BIN="}, // the bench runs itself
		"--brokers", brokers, "--events", "5000", "--partitions", "2", "--rate", "1000", "--steady", "2s")
	if res["events"].(float64) < 5000 || res["drain_loaded_events_per_sec"].(float64) <= 0 {
		t.Fatalf("result %v", res)
	}
	if !regexp.MustCompile(`dedupe index: keys, event time held +[1-9][0-9]+, [0-9hms]+ of 24h0m0s`).MatchString(table) {
		t.Errorf("the table lacks the dedupe index's keys and the event time they span:\n%s", table)
	}
}

// TestBenchProfileUsage: a profile that cannot run is refused before
// anything starts, naming the option.
func TestBenchProfileUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--profile", "drain"}, "--profile drain needs --brokers"},
		{[]string{"--profile", "fast"}, `--profile "fast": want drain or inprocess`},
		{[]string{"--profile", "drain", "--brokers", "127.0.0.1:1", "--schema", "csv"}, "--schema csv"},
		{[]string{"--profile", "drain", "--brokers", "127.0.0.1:1", "--steady", "-1s"}, "--steady must not be negative"},
		{[]string{"--profile", "inprocess", "--chaos"}, "--profile does not go with"},
		{[]string{"--profile", "drain", "--brokers", "127.0.0.1:1", "--warehouse", "bigquery"}, "--warehouse bigquery: --profile drain ships to the Snowflake-protocol test server only"},
		{[]string{"--warehouse", "teradata"}, `--warehouse "teradata": use snowflake, redshift or bigquery`},
	} {
		code, _, stderr := runCLI(append([]string{"bench"}, c.args...)...)
		if code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("offload bench %v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, exitUsage, c.want)
		}
	}
}

// TestBenchRunningAppliance: `offload bench --appliance` against a daemon
// running on its own, consuming the real broker and shipping to the test
// warehouse, which the benchmark reads through a gosnowflake DSN.
func TestBenchRunningAppliance(t *testing.T) {
	brokers := testenv.Brokers(t)
	topic := fmt.Sprintf("bench-appliance-%d", time.Now().UnixNano())
	if err := gen.CreateTopicOn(strings.Split(brokers, ","), topic, 3); err != nil {
		t.Fatal(err)
	}
	srv := newWarehouse(t)
	d := startDaemon(t, testConfig(t, t.TempDir(), brokers, topic, warehouseYAML(srv)), warehouseEnv)
	base := "http://" + adminAddr(t, d)
	d.waitLog(t, "partitions assigned", 30*time.Second)
	dsn, err := gosnowflake.DSN(srv.Config("OFFLOAD"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "bench.json")
	cmd := boundedCommand(t, 5*time.Minute, offloadBin, "bench", "--appliance", base, "--brokers", brokers, "--topic", topic, "--events", "20000", "--json", out)
	cmd.Env = append(os.Environ(), "OFFLOAD_BENCH_WAREHOUSE_DSN="+dsn)
	table, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("offload bench --appliance: %v\n%s", err, table)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res rig.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if !res.ExactlyOnce || res.EventsPerSec <= 0 || res.BareConsumerEventsPerSec <= 0 || res.P99WarehouseMs <= 0 ||
		res.PeakRSSBytes <= 0 || res.Loads == 0 || res.DeadLettered == 0 {
		t.Fatalf("result:\n%s\n%s", b, table)
	}
	stopDaemon(t, d)
}
