package main

import (
	"context"
	"testing"

	"github.com/offload/offload/internal/config"
)

// TestEmbeddedBigQueryWarehouse: the embedded emulator takes the
// configuration it hands out (valid, every preflight check passing),
// its switch refuses and accepts connections, and verify counts events
// missing, duplicated and unexpected.
func TestEmbeddedBigQueryWarehouse(t *testing.T) {
	w, err := startBigQueryWarehouse(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := w.close(); err != nil {
			t.Error(err)
		}
	}()
	c := config.Default()
	c.ApplianceID, c.DataDir, c.Warehouse = "embedded", t.TempDir(), w.warehouse()
	c.Kafka.Topics = []string{"orders"}
	c.EnsureDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sink, err := bigquerySink(&c, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	checks := func() bool {
		for _, r := range sink.Check(ctx) {
			if !r.OK {
				t.Logf("%s: %s", r.Name, r.Detail)
				return false
			}
		}
		return true
	}
	if !checks() {
		t.Fatal("a preflight check failed on the embedded emulator")
	}
	if err := w.setUp(false); err != nil || w.isUp() {
		t.Fatalf("switch off: %v", err)
	}
	if checks() {
		t.Fatal("the preflight passed with the warehouse switched off")
	}
	if err := w.setUp(true); err != nil || !w.isUp() || !checks() {
		t.Fatalf("switch on: %v", err)
	}
	if err := sink.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	valid := map[string]struct{}{"e-1": {}, "e-2": {}, "e-3": {}}
	q := w.client.Query("INSERT INTO " + w.table("OFFLOAD_TRANSACTIONS") + " (`EVENT_ID`) VALUES ('e-1'), ('e-2'), ('e-2'), ('x-9')")
	j, err := q.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := j.Wait(ctx); err != nil || st.Err() != nil {
		t.Fatalf("insert: %v %v", err, st)
	}
	v, err := w.verify(ctx, valid)
	if err != nil {
		t.Fatal(err)
	}
	if v.Loaded != 4 || v.Missing != 1 || v.Extra != 2 || v.ExactlyOnce || w.distinctEvents(ctx) != 3 {
		t.Fatalf("verified %+v, distinct %d", v, w.distinctEvents(ctx))
	}
}
