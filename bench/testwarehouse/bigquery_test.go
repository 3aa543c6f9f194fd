package testwarehouse

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"

	"github.com/offload/offload/internal/appliance"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/loader"
)

// TestBigQuery: the emulator as a test warehouse takes the
// configuration it hands out (valid, every preflight check of the
// BigQuery sink built from it passing),
// refuses and accepts the appliance's connections while its checks read
// through the outage, and its checks count rows, events, and the events
// missing, duplicated and unexpected, and measure latencies.
func TestBigQuery(t *testing.T) {
	w, err := New("bigquery", t.TempDir(), false)
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
	w.Configure(&c.Warehouse)
	c.Kafka.Topics = []string{"orders"}
	c.EnsureDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bq := w.(*bigQuery)
	s, err := appliance.NewSink(&c, slog.New(slog.DiscardHandler))
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
	if rows, events := w.Loaded(); rows != 4 || events != 3 {
		t.Fatalf("loaded %d rows, %d events during the outage; want 4, 3", rows, events)
	}
	if n := w.Windows(); n != 0 {
		t.Fatalf("%d windows, want 0", n)
	}
	missing, duplicated, unexpected, err := w.Tally(map[string]struct{}{"e-1": {}, "e-2": {}, "e-3": {}})
	if err != nil || missing != 1 || duplicated != 1 || unexpected != 1 {
		t.Fatalf("tally: missing %d, duplicated %d, unexpected %d, %v; want 1, 1, 1", missing, duplicated, unexpected, err)
	}
	l, err := w.Latencies()
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

// jobCounter counts the query jobs inserted through it.
type jobCounter struct{ jobs atomic.Int64 }

func (c *jobCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && (strings.HasSuffix(r.URL.Path, "/jobs") || strings.HasSuffix(r.URL.Path, "/queries")) {
		c.jobs.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestBigQueryLoadedPolled: the fault harness polls Loaded many times a
// second, and every query job costs the emulator memory for good, so
// Loaded runs a query job only when the transactions table's row count
// moved, and still counts rows and events right.
func TestBigQueryLoadedPolled(t *testing.T) {
	w, err := New("bigquery", t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	bq := w.(*bigQuery)
	ctx := context.Background()
	counter := &jobCounter{}
	checks, err := bigquery.NewClient(ctx, bq.srv.Project(), option.WithEndpoint(bq.srv.DirectEndpoint()),
		option.WithHTTPClient(&http.Client{Transport: counter}))
	if err != nil {
		t.Fatal(err)
	}
	defer checks.Close()
	writer := bq.client
	bq.client = checks
	defer func() { bq.client = writer }()
	poll := func(wantRows, wantEvents, wantJobs int64) {
		t.Helper()
		before := counter.jobs.Load()
		for range 20 {
			if rows, events := w.Loaded(); rows != wantRows || events != wantEvents {
				t.Fatalf("loaded %d rows, %d events; want %d, %d", rows, events, wantRows, wantEvents)
			}
		}
		if n := counter.jobs.Load() - before; n != wantJobs {
			t.Fatalf("20 polls ran %d query jobs, want %d", n, wantJobs)
		}
	}
	poll(0, 0, 0) // no table yet
	ds := writer.Dataset(bigQueryDataset)
	if err := ds.Create(ctx, nil); err != nil {
		t.Fatal(err)
	}
	schema := bigquery.Schema{{Name: "EVENT_ID", Type: bigquery.StringFieldType}}
	if err := ds.Table("OFFLOAD_TRANSACTIONS").Create(ctx, &bigquery.TableMetadata{Schema: schema}); err != nil {
		t.Fatal(err)
	}
	poll(0, 0, 0)
	for i, values := range []string{"('e-1'), ('e-2'), ('e-2')", "('e-3')"} {
		j, err := writer.Query("INSERT INTO " + bq.table("OFFLOAD_TRANSACTIONS") + " (`EVENT_ID`) VALUES " + values).Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := j.Wait(ctx); err != nil || st.Err() != nil {
			t.Fatalf("insert: %v %v", err, st)
		}
		poll(int64(3+i), int64(2+i), 1)
	}
}
