package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload/offload/bench/harness"
	"github.com/offload/offload/bench/testwarehouse"
	"github.com/offload/offload/internal/testenv"
)

// TestChaos runs the fault harness as CI's reliability check: `offload
// bench --chaos` with at least 50 SIGKILLs of the real daemon, against a
// broker of its own (the harness restarts it mid-run) and the
// Snowflake-protocol test server, through warehouse outages, every kind
// of injected warehouse fault, an exhausted disk budget, a full disk and
// a slow one. It must end with nothing lost, nothing duplicated and no
// unexpected dead letter, and print those counts.
func TestChaos(t *testing.T) {
	dir := t.TempDir()
	brokers, kafkaEnv, script := chaosBroker(t, dir)
	r, b, stdout := runChaosBench(t, nil, filepath.Join(dir, "run"), "--kills", "50", "--partitions", "4", "--brokers", brokers,
		"--broker-restart", kafkaEnv+" "+script+" restart")
	// go test shows a passing test's log only with -v: scripts/test.sh
	// prints the report from this file after the tests.
	if path := os.Getenv("OFFLOAD_CHAOS_REPORT"); path != "" {
		if werr := os.WriteFile(path, []byte(stdout), 0o644); werr != nil {
			t.Error(werr)
		}
	}
	if !r.OK || r.Kills < 50 || r.Lost != 0 || r.Duplicated != 0 || r.UnexpectedDLQ != 0 || r.UnexpectedRows != 0 ||
		!r.ReconcileOK || len(r.Errors) != 0 {
		t.Fatalf("chaos run failed: %s", b)
	}
	if r.Valid == 0 || r.Duplicates == 0 || r.Malformed == 0 || r.Loaded != r.Valid || r.DLQ != r.Malformed {
		t.Fatalf("the run did not produce and deliver every kind of record: %s", b)
	}
	if r.KillMoments["loading"] == 0 {
		t.Errorf("no kill landed while a batch was loading: %v", r.KillMoments)
	}
	ran := map[string]harness.Scenario{}
	for _, s := range r.Scenarios {
		ran[s.Name] = s
	}
	for _, name := range []string{"kills", "warehouse-outage", "warehouse-faults", "broker-restart", "disk-budget", "disk-full", "slow-disk", "disk-loss"} {
		s, ok := ran[name]
		switch {
		case !ok:
			t.Errorf("scenario %s did not run", name)
		case s.Skipped != "" && (name != "disk-full" || os.Geteuid() == 0):
			t.Errorf("scenario %s was skipped: %s", name, s.Skipped)
		}
	}
	if s := ran["warehouse-faults"]; s.Faults != 7 {
		t.Errorf("%d of the 7 warehouse fault kinds hit: %s", s.Faults, s.Detail)
	}
	if s := ran["disk-full"]; s.Skipped == "" && !strings.Contains(strings.ToLower(s.Detail), "no space left on device") {
		t.Errorf("the full disk was not met: %s", s.Detail)
	}
	if !strings.Contains(stdout, "lost 0  duplicated 0  unexpected_dlq 0") {
		t.Errorf("the report does not print the counts")
	}
}

// TestChaosDiskLoss runs the harness's disk-loss scenario alone, a short
// run on the shared broker: the daemon switched to kafka.delivery:
// end-to-end with dedupe.warehouse: merge, SIGKILLed three times with its
// whole data directory deleted and started empty. Every valid event is in
// the warehouse once, every malformed record's dead letter in one of the
// data directories, and reconcile finds nothing but the ledger's batches
// shipped from the deleted ones.
func TestChaosDiskLoss(t *testing.T) {
	brokers := testenv.Brokers(t)
	r, b, stdout := runChaosBench(t, nil, filepath.Join(t.TempDir(), "run"), "--scenarios", "disk-loss", "--kills", "4",
		"--partitions", "3", "--rate", "500", "--brokers", brokers, "--tmpfs-mib", "0")
	if !r.OK || r.Kills < 4 || r.Lost != 0 || r.Duplicated != 0 || r.UnexpectedDLQ != 0 || r.UnexpectedRows != 0 ||
		!r.ReconcileOK || len(r.Errors) != 0 || len(r.Scenarios) != 1 || r.Scenarios[0].Name != "disk-loss" {
		t.Fatalf("chaos run failed: %s", b)
	}
	if r.Valid == 0 || r.Malformed == 0 || r.Loaded != r.Valid || r.DLQ != r.Malformed || r.DataDirsDeleted != 3 {
		t.Fatalf("the run did not deliver every kind of record through 3 deleted data directories: %s", b)
	}
	if !strings.Contains(stdout, "data directory deleted 3 times") {
		t.Errorf("the report does not count the deletions:\n%s", stdout)
	}
}

// chaosBroker starts a broker of the test's own in dir (the harness
// restarts it) and returns its address, and the environment and script
// that restart it.
func chaosBroker(t *testing.T, dir string) (brokers, kafkaEnv, script string) {
	t.Helper()
	testenv.Brokers(t) // the jars and Java the shared broker runs on
	script = filepath.Join(repoRoot(t), "scripts", "kafka-broker.sh")
	kafkaEnv = "OFFLOAD_KAFKA_DIR=" + filepath.Join(dir, "kafka")
	broker := func(cmd string) string {
		c := exec.Command(script, cmd)
		c.Env = append(os.Environ(), kafkaEnv)
		var stderr bytes.Buffer
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			t.Fatalf("kafka-broker.sh %s: %v\n%s", cmd, err, stderr.String())
		}
		lines := strings.Fields(string(out))
		if len(lines) == 0 {
			return ""
		}
		return lines[len(lines)-1]
	}
	brokers = broker("start")
	t.Cleanup(func() { broker("stop") })
	return brokers, kafkaEnv, script
}

// TestChaosWarehouses runs the harness's kill and outage scenarios, a
// short run, against the other sinks: the redshift sink on the
// Redshift-dialect test server, the bigquery sink on the BigQuery
// emulator, and the postgres sink on the real PostgreSQL server (through
// a proxy that makes the outage).
//
// On the emulator the run is at 100 events/s with windows of an hour:
// its loads are slow (docs/LOADER.md), and its MERGE compares every
// staged window with every window of the table, so with one-minute
// windows a run that the machine's load stretches past their first
// emission (lateness, 5 minutes) spends most of an hour in one load's
// MERGE. No window is emitted within the run; the sink's windows, their
// MERGE and its faults are tested in loader/bigquery_test.go.
func TestChaosWarehouses(t *testing.T) {
	dir := t.TempDir()
	brokers, _, _ := chaosBroker(t, dir)
	for typ, rate := range map[string]string{"redshift": "500", "bigquery": "100", "postgres": "500"} {
		t.Run(typ, func(t *testing.T) {
			var env []string
			switch typ {
			case "postgres":
				env = []string{testwarehouse.PostgresDSNEnv + "=" + testenv.Postgres(t)}
			case "bigquery":
				env = []string{"OFFLOAD_ENGINE_WINDOW=1h"}
			}
			r, b, _ := runChaosBench(t, env, filepath.Join(t.TempDir(), "run"), "--warehouse", typ, "--scenarios", "kills,warehouse-outage",
				"--kills", "3", "--partitions", "2", "--rate", rate, "--brokers", brokers, "--tmpfs-mib", "0")
			if !r.OK || r.Kills < 3 || r.Lost != 0 || r.Duplicated != 0 || r.UnexpectedRows != 0 || !r.ReconcileOK ||
				r.Valid == 0 || r.Loaded != r.Valid || len(r.Scenarios) != 2 {
				t.Fatalf("chaos run failed: %s", b)
			}
		})
	}
}

// runChaosBench runs offload bench --chaos in the run directory dir with
// args (and env added to the environment), fails the test if it fails,
// and returns its result, that result's JSON and its report. If the test
// fails, its output gets a digest of the daemon's log: dir is gone by
// the time anyone looks (docs/RELIABILITY.md, "When a chaos run fails").
func runChaosBench(t *testing.T, env []string, dir string, args ...string) (harness.Result, []byte, string) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			var digest strings.Builder
			harness.WriteLogDigest(&digest, dir)
			t.Logf("the chaos run failed; %s", digest.String())
		}
	})
	out := filepath.Join(t.TempDir(), "chaos.json")
	cmd := boundedCommand(t, 10*time.Minute, offloadBin, append([]string{"bench", "--chaos", "--json", out, "--dir", dir}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	// Its progress and scenario failures are on stderr.
	t.Logf("offload bench --chaos %s:\n%s\n%s", strings.Join(args, " "), stderr.String(), stdout.String())
	if err != nil {
		t.Fatalf("offload bench --chaos %s: %v", strings.Join(args, " "), err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r harness.Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r, b, stdout.String()
}
