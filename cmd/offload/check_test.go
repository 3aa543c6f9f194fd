package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/offload/offload/internal/snowtest"
	"github.com/offload/offload/internal/testenv"
)

// checkOutput is `offload check --json`'s document.
type checkOutput struct {
	OK     bool
	Checks []checkJSON
}

// runCheckJSON runs `offload check --json` in-process with env set and
// returns its exit code and document.
func runCheckJSON(t *testing.T, cfg string, env ...string) (int, checkOutput) {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	code, stdout, stderr := runCLI("check", "--config", cfg, "--json", "--timeout", "60s")
	var out checkOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("exit %d, not JSON: %v\n%s\n%s", code, err, stdout, stderr)
	}
	return code, out
}

// failedChecks returns the names of the failed checks.
func failedChecks(out checkOutput) []string {
	var names []string
	for _, c := range out.Checks {
		if !c.OK {
			names = append(names, c.Name)
		}
	}
	return names
}

// TestCheckPasses: with Kafka, the warehouse and data_dir all fine,
// `offload check` prints one OK line per check, touches neither the
// loader's tables nor the group's offsets, and exits 0.
func TestCheckPasses(t *testing.T) {
	srv := newWarehouse(t)
	brokers, _ := kfakeTopic(t, "shop", 3)
	cfg := testConfig(t, t.TempDir(), brokers, "shop", warehouseYAML(srv))
	t.Setenv("OFFLOAD_WAREHOUSE_PASSWORD", warehousePassword)
	code, stdout, stderr := runCLI("check", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"OK   config: ", "OK   local: data_dir ", "OK   local: fsync", "OK   local: free space for disk_budget 256.0 MiB",
		"OK   local: e-mail hash key (none yet", "OK   local: admin.listen 127.0.0.1:0 can be bound", "OK   kafka: brokers ",
		"OK   kafka: topic shop (3 partitions)", "OK   kafka: describe group offload-test", "OK   kafka: fetch the offsets of group offload-test",
		"OK   snowflake: login (password, user OFFLOAD", "OK   snowflake: PUT to @OFFLOAD_STAGE/", "OK   snowflake: read back ",
		"OK   snowflake: merge (scratch table)", "OK   snowflake: drop table OFFLOAD_CHECK_", "passed, 0 failed"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("no %q in:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "FAIL") {
		t.Fatalf("a failed check:\n%s", stdout)
	}
	var n int
	if err := srv.DB().QueryRow(`SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'OFFLOAD_CHECK_%' OR table_name LIKE 'OFFLOAD_TRANS%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("tables left in the warehouse: %d (%v)", n, err)
	}
}

// TestCheckFailures: a wrong warehouse password, a missing topic and an
// unwritable data_dir each fail with their fix, the password is never
// printed, and the exit code is 1; then, with the password right, a role
// without MERGE fails with Snowflake's 003001 and the statement.
func TestCheckFailures(t *testing.T) {
	srv := newWarehouse(t)
	brokers, _ := kfakeTopic(t, "shop", 1)
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, filepath.Join(file, "data"), brokers, "shop, returns", warehouseYAML(srv))
	const wrong = "Wrong-pass-1e9c"
	code, out := runCheckJSON(t, cfg, "OFFLOAD_WAREHOUSE_PASSWORD="+wrong)
	failed := strings.Join(failedChecks(out), "\n")
	if code != exitFailure || out.OK {
		t.Fatalf("exit %d, ok %v", code, out.OK)
	}
	for _, want := range []string{"local: data_dir " + filepath.Join(file, "data"), "kafka: topic returns", "snowflake: login (password, user OFFLOAD"} {
		if !strings.Contains(failed, want) {
			t.Errorf("no failed check %q in:\n%s", want, failed)
		}
	}
	raw, _ := json.Marshal(out)
	if strings.Contains(string(raw), wrong) {
		t.Fatal("the password is in the output")
	}
	for _, c := range out.Checks {
		if !c.OK && (c.Detail == "" || c.Fix == "") {
			t.Errorf("failed check without a detail or a fix: %+v", c)
		}
		if strings.HasPrefix(c.Name, "snowflake: login") && (!strings.Contains(c.Detail, "390100") || !strings.Contains(c.Fix, "warehouse.password_file")) {
			t.Errorf("login failure: %+v", c)
		}
	}

	cfg = testConfig(t, t.TempDir(), brokers, "shop", warehouseYAML(srv))
	deny := srv.Inject(snowtest.Fault{Kind: snowtest.FaultInsufficientPrivileges, SQL: regexp.MustCompile(`^MERGE`)})
	code, out = runCheckJSON(t, cfg, warehouseEnv)
	if code != exitFailure || deny.Hits() != 1 {
		t.Fatalf("exit %d, the fault hit %d statements", code, deny.Hits())
	}
	if f := failedChecks(out); len(f) != 1 || f[0] != "snowflake: merge (scratch table)" {
		t.Fatalf("failed checks: %v", f)
	}
	for _, c := range out.Checks {
		if !c.OK && (!strings.Contains(c.Detail, "statement: MERGE INTO OFFLOAD_CHECK_") || !strings.Contains(c.Detail, "003001") ||
			!strings.Contains(c.Fix, "GRANT INSERT, UPDATE")) {
			t.Fatalf("denied MERGE: %+v", c)
		}
	}
}

// TestCheckRealBroker runs `offload check` against the real broker
// (scripts/kafka-broker.sh) and the test warehouse: a topic created for the
// test passes, a missing one fails.
func TestCheckRealBroker(t *testing.T) {
	brokers := testenv.Brokers(t)
	topic := "offload-check-" + strings.ReplaceAll(t.Name(), "/", "-")
	adm := newAdmin(t, brokers)
	_, _ = adm.DeleteTopics(t.Context(), topic)
	if _, err := adm.CreateTopic(t.Context(), 2, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = adm.DeleteTopics(context.Background(), topic) })
	srv := newWarehouse(t)
	code, out := runCheckJSON(t, testConfig(t, t.TempDir(), brokers, topic+", "+topic+"-missing", warehouseYAML(srv)), warehouseEnv)
	if f := failedChecks(out); code != exitFailure || len(f) != 1 || f[0] != "kafka: topic "+topic+"-missing" {
		t.Fatalf("exit %d, failed checks %v", code, f)
	}
	names := ""
	for _, c := range out.Checks {
		names += c.Name + "\n"
	}
	if !strings.Contains(names, "kafka: topic "+topic+" (2 partitions)") || !strings.Contains(names, "kafka: fetch the offsets of group offload-test") {
		t.Fatalf("checks:\n%s", names)
	}
}
