package main

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/deliverytest"
)

// TestScaleOutThreeAppliances: three appliances (separate data
// directories) in one consumer group split the partitions and ship to one
// warehouse. One is SIGKILLed mid-run: the others take over its
// partitions and, restarted, it ships what its WAL held. Copies of events
// it had taken are then sent again and reach the others: duplicates that
// straddle the partition move, which no appliance's own dedupe can see.
// With dedupe.warehouse: merge every valid event is in the warehouse
// exactly once, and the copies kept out are counted.
func TestScaleOutThreeAppliances(t *testing.T) {
	srv := newWarehouse(t)
	brokers, cl := kfakeTopic(t, "shop", 6)
	config := func(id string) string {
		path := testConfig(t, t.TempDir(), brokers, "shop", warehouseYAML(srv), "dedupe:\n  warehouse: merge\n")
		body, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(body), "appliance_id: test", "appliance_id: "+id, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cfgs := []string{config("box-a"), config("box-b"), config("box-c")}
	cfgA := cfgs[0]
	a := startDaemon(t, cfgA, warehouseEnv)
	b := startDaemon(t, cfgs[1], warehouseEnv)
	c := startDaemon(t, cfgs[2], warehouseEnv)
	for _, d := range []*daemonProc{a, b, c} {
		d.waitLog(t, "partitions assigned", 30*time.Second)
	}
	rng := rand.New(rand.NewPCG(13, 14))
	want, _ := shopEvents(t, cl, 0, 2000, rng)
	// A has taken its share when it dies.
	a.waitLog(t, "outbox batch sealed", 30*time.Second)
	assigned := func() int {
		return strings.Count(b.logs.String(), "partitions assigned") + strings.Count(c.logs.String(), "partitions assigned")
	}
	before := assigned()
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 10*time.Second)
	// B and C get A's partitions once the group notices (session timeout 6s).
	deadline := time.Now().Add(30 * time.Second)
	for assigned() == before && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if assigned() == before {
		t.Fatal("the surviving appliances never took over the partitions")
	}
	more, _ := shopEvents(t, cl, 2000, 2000, rng)
	for id := range more {
		want[id] = true
	}
	// A producer retries the first 2000 events: the copies of those A had
	// taken now reach B and C.
	shopEvents(t, cl, 0, 2000, rng)
	// The killed appliance comes back and ships what its WAL held.
	a = startDaemon(t, cfgA, warehouseEnv)
	waitRows(t, srv, b, len(want), 90*time.Second)
	// Until A has shipped all its WAL held: its originals are kept out if
	// the copies were loaded first.
	statusURL := "http://" + adminAddr(t, a) + "/api/v1/status"
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var st admin.Status
		_, body := adminRequest(t, "GET", statusURL, "")
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.WAL.Records == 0 && st.Outbox.Rows == 0 && st.Outbox.SealedBatches == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted appliance did not ship its WAL within 60s: %s", body)
		}
	}
	for _, d := range []*daemonProc{a, b, c} {
		stopDaemon(t, d)
	}
	deliverytest.CheckTables(t, srv.DB(), "PUBLIC.", want, -1, false)
	skipped := 0
	for _, d := range []*daemonProc{a, b, c} {
		for _, m := range regexp.MustCompile(`rows already in the warehouse were not loaded again.* skipped=(\d+)`).FindAllStringSubmatch(d.logs.String(), -1) {
			n, _ := strconv.Atoi(m[1])
			skipped += n
		}
	}
	if skipped == 0 {
		t.Fatal("no duplicate straddled the partition move: the warehouse-side guard was not exercised")
	}
	// The ledger records the rows the MERGE kept out, so each appliance's
	// batches still reconcile with the warehouse.
	t.Setenv("OFFLOAD_WAREHOUSE_PASSWORD", warehousePassword)
	for _, cfg := range cfgs {
		if code, out, errOut := runCLI("reconcile", "--config", cfg); code != 0 || !strings.Contains(out, "all match") {
			t.Errorf("reconcile %s: exit %d\n%s%s", cfg, code, out, errOut)
		}
	}
	// Each appliance's windows are its own (its partitions, its
	// watermark): they are kept apart by APPLIANCE_ID, not merged.
	if n, _ := strconv.Atoi(deliverytest.QueryStrings(t, srv.DB(), `SELECT count(DISTINCT APPLIANCE_ID) FROM PUBLIC.OFFLOAD_WINDOWS`)[0]); n < 2 {
		t.Fatalf("windows of %d appliances, want at least 2", n)
	}
	t.Logf("%d events; %d straddling copies kept out by the MERGE; ledger rows by appliance: %v", len(want), skipped,
		deliverytest.QueryStrings(t, srv.DB(), `SELECT APPLIANCE_ID, count(*) FROM PUBLIC.OFFLOAD_LOAD_LEDGER GROUP BY 1 ORDER BY 1`))
}
