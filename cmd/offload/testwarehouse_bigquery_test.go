package main

import (
	"context"
	"testing"

	"github.com/offload/offload/internal/appliance"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/loader"
)

// TestBigQueryTestWarehouse: the emulator as a test warehouse takes the
// configuration it hands out (valid, every preflight check passing),
// refuses and accepts the appliance's connections while its checks read
// through the outage, and its checks count rows, events, and the events
// missing, duplicated and unexpected, and measure latencies.
func TestBigQueryTestWarehouse(t *testing.T) {
	w, err := newTestWarehouse("bigquery", t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	}()
	c := config.Default()
	c.ApplianceID, c.DataDir = "embedded", t.TempDir()
	w.configure(&c.Warehouse)
	c.Kafka.Topics = []string{"orders"}
	c.EnsureDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := appliance.NewSink(&c, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sink, ok := s.(*loader.BigQuery)
	if !ok {
		t.Fatalf("warehouse.type bigquery built a %T", s)
	}
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
		t.Fatal("a preflight check failed on the emulator")
	}
	if err := sink.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	bq := w.(*bigQueryTest)
	// Kafka → durable 10, 20, 30, 40 ms; → loaded 100, 200, 300, 400 ms.
	for _, q := range []string{"INSERT INTO " + bq.table("OFFLOAD_TRANSACTIONS") + " (`EVENT_ID`, `BATCH_ID`, `KAFKA_TIME`, `INGEST_TIME`) VALUES " +
		"('e-1', 'b', TIMESTAMP '2026-01-01 00:00:00.300', TIMESTAMP '2026-01-01 00:00:00.310'), " +
		"('e-2', 'b', TIMESTAMP '2026-01-01 00:00:00.200', TIMESTAMP '2026-01-01 00:00:00.220'), " +
		"('e-2', 'b', TIMESTAMP '2026-01-01 00:00:00.100', TIMESTAMP '2026-01-01 00:00:00.130'), " +
		"('x-9', 'b', TIMESTAMP '2026-01-01 00:00:00.000', TIMESTAMP '2026-01-01 00:00:00.040')",
		"INSERT INTO " + bq.table("OFFLOAD_LOAD_LEDGER") + " (`BATCH_ID`, `APPLIANCE_ID`, `LOADED_AT`) VALUES ('b', 'embedded', TIMESTAMP '2026-01-01 00:00:00.400')"} {
		j, err := bq.client.Query(q).Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := j.Wait(ctx); err != nil || st.Err() != nil {
			t.Fatalf("insert: %v %v", err, st)
		}
	}
	w.RefuseConnections()
	if checks() {
		t.Fatal("the preflight passed while the warehouse refused connections")
	}
	if rows, events := w.loaded(); rows != 4 || events != 3 {
		t.Fatalf("loaded %d rows, %d events during the outage; want 4, 3", rows, events)
	}
	if n := w.windows(); n != 0 {
		t.Fatalf("%d windows, want 0", n)
	}
	missing, duplicated, unexpected, err := w.tally(map[string]struct{}{"e-1": {}, "e-2": {}, "e-3": {}})
	if err != nil || missing != 1 || duplicated != 1 || unexpected != 1 {
		t.Fatalf("tally: missing %d, duplicated %d, unexpected %d, %v; want 1, 1, 1", missing, duplicated, unexpected, err)
	}
	l, err := w.latencies()
	if err != nil {
		t.Fatal(err)
	}
	// PERCENTILE_CONT interpolates: the median of 10..40 is 25.
	if l.P50DurableMs != 25 || l.P50WarehouseMs != 250 || l.P999DurableMs < 39.9 || l.P999WarehouseMs < 399 {
		t.Fatalf("latencies %+v", l)
	}
	if err := w.AcceptConnections(); err != nil || !checks() {
		t.Fatalf("accepting again: %v", err)
	}
}
