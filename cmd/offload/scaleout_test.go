package main

import (
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/offload/offload/internal/deliverytest"
)

// TestScaleOutTwoAppliances: two appliances (separate data directories) in
// one consumer group split the partitions and ship to one warehouse. One
// is SIGKILLed mid-run: the other takes over its partitions; restarted,
// the killed one ships what its WAL held. With dedupe.warehouse: merge,
// every valid event ends up in the warehouse exactly once.
func TestScaleOutTwoAppliances(t *testing.T) {
	srv := newWarehouse(t)
	brokers, cl := kfakeTopic(t, "shop", 4)
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
	cfgA, cfgB := config("box-a"), config("box-b")
	a := startDaemon(t, cfgA, warehouseEnv)
	b := startDaemon(t, cfgB, warehouseEnv)
	a.waitLog(t, "partitions assigned", 30*time.Second)
	b.waitLog(t, "partitions assigned", 30*time.Second)
	rng := rand.New(rand.NewPCG(13, 14))
	want, _ := shopEvents(t, cl, 0, 1500, rng)

	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 10*time.Second)
	// B gets A's partitions once the group notices (session timeout 6s).
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(b.logs.String(), "partitions assigned") < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Count(b.logs.String(), "partitions assigned") < 2 {
		t.Fatal("the surviving appliance never took over the partitions")
	}
	more, _ := shopEvents(t, cl, 1500, 1500, rng)
	for id := range more {
		want[id] = true
	}
	// The killed appliance comes back and ships what its WAL held.
	a = startDaemon(t, cfgA, warehouseEnv)
	waitRows(t, srv, b, len(want), 90*time.Second)
	stopDaemon(t, a)
	stopDaemon(t, b)
	// Each appliance's windows are its own (its partitions, its
	// watermark): they are kept apart by APPLIANCE_ID, not merged.
	deliverytest.CheckTables(t, srv.DB(), "PUBLIC.", want, -1, false)
	if n := deliverytest.QueryStrings(t, srv.DB(), `SELECT count(DISTINCT APPLIANCE_ID) FROM PUBLIC.OFFLOAD_WINDOWS`); n[0] != "2" {
		t.Fatalf("windows of %s appliances, want 2", n[0])
	}
	t.Logf("%d events; ledger rows by appliance: %v", len(want),
		deliverytest.QueryStrings(t, srv.DB(), `SELECT APPLIANCE_ID, count(*) FROM PUBLIC.OFFLOAD_LOAD_LEDGER GROUP BY 1 ORDER BY 1`))
}
