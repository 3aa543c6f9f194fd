package loader

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/internal/deliverytest"
	"github.com/offload/offload/wal"
)

// promoted is the extra column of the schema-evolution tests: the source
// key coupon, which every test record carries, promoted to COUPON_CODE.
var promoted = []ExtraColumn{{Name: "coupon_code", Type: event.ExtraString}}

// checkExtraColumnAdded runs the schema evolution of a topic against a
// sink: batch A is loaded before the configuration promotes coupon to an
// extra column; batch B is sealed before the change and loaded after it;
// batch C is decoded and loaded after it, by a sink whose Prepare adds the
// column to the table A created. rows answers q (the sink's dialect) with
// one "EVENT_ID|COUPON_CODE|coupon in ATTRIBUTES" line a row, in offset
// order. Every event is in the warehouse once; A's and B's keep coupon in
// ATTRIBUTES and have no COUPON_CODE, C's the other way round. Without
// alter (a server that cannot add a column to a table), A's sink has the
// extra column already and creates the table with it.
func checkExtraColumnAdded(t *testing.T, alter bool, sink func(extras []ExtraColumn) Sink, q string, rows func(q string) []string) {
	dir := t.TempDir()
	w, err := wal.Open(filepath.Join(dir, "wal"), wal.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	var extras map[string]event.ExtraColumn
	open := func() *engine.Engine {
		e, err := engine.Open(engine.Options{
			Dir: dir, ApplianceID: "lt", WAL: w, Logger: quietLogger(),
			Topics: map[string]event.Config{"orders": {HashKey: []byte("loader-test-key-0123"),
				Mapping: event.Mapping{ExtraColumns: extras}}},
			Seal:         engine.SealPolicy{Rows: 4, Bytes: 1 << 40, Age: time.Hour},
			BatchRecords: 4,
		})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	// Events 10 s apart an hour ago: no window closes, so the batches
	// hold clean rows only (fakesnow's gap: docs/LOADER.md).
	first := time.Now().UTC().Add(-time.Hour)
	next := 0
	add := func(e *engine.Engine, n int) {
		for range n {
			v := fmt.Sprintf(`{"event_id":"e-%d","event_type":"order_placed","store_id":"s1","amount":"1.50","currency":"EUR","event_time":%q,"coupon":"C%d","gift_wrap":true}`,
				next, first.Add(time.Duration(next)*10*time.Second).Format(time.RFC3339Nano), next)
			if _, err := w.Append(wal.TopicPartition{Topic: "orders"}, []wal.Record{{Offset: int64(next), Timestamp: first.UnixMilli(), Value: []byte(v)}}); err != nil {
				t.Fatal(err)
			}
			next++
		}
		stepAll(t, e)
	}

	e := open()
	add(e, 4) // batch A
	before := []ExtraColumn(nil)
	if !alter {
		before = promoted
	}
	shipAll(t, e, fastOptions(e, sink(before), t.TempDir()))
	add(e, 4) // batch B, sealed before the change
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	extras = map[string]event.ExtraColumn{"coupon_code": {Source: "coupon", Type: event.ExtraString}}
	e = open()
	defer e.Close()
	add(e, 4) // batch C
	if bs, _ := e.SealedBatches(); len(bs) != 2 {
		t.Fatalf("sealed batches %v; want B and C", ids(bs))
	}
	l := shipAll(t, e, fastOptions(e, sink(promoted), t.TempDir()))
	if st := l.Status(); st.Loaded != 2 || st.Parked != 0 {
		t.Fatalf("status after the change %+v", st)
	}
	var want []string
	for i := range 12 {
		if i < 8 {
			want = append(want, fmt.Sprintf("e-%d|NULL|C%d", i, i))
		} else {
			want = append(want, fmt.Sprintf("e-%d|C%d|NULL", i, i))
		}
	}
	if got := rows(q); !slices.Equal(got, want) {
		t.Fatalf("rows\n%v\nwant\n%v", got, want)
	}
}

// TestPostgresExtraColumnAdded: checkExtraColumnAdded on PostgreSQL 15.
func TestPostgresExtraColumnAdded(t *testing.T) {
	s := newPgServer(t)
	checkExtraColumnAdded(t, true, func(extras []ExtraColumn) Sink {
		return s.sink(t, func(o *PostgresOptions) { o.ExtraColumns = extras })
	}, `SELECT EVENT_ID, COUPON_CODE, ATTRIBUTES->>'coupon' FROM PUBLIC.OFFLOAD_TRANSACTIONS ORDER BY SOURCE_OFFSET`,
		func(q string) []string { return s.query(t, q) })
	if got := s.query(t, `SELECT count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS WHERE ATTRIBUTES->'gift_wrap' = 'true'::jsonb`); got[0] != "12" {
		t.Fatalf("rows with gift_wrap true in ATTRIBUTES: %v; want 12", got)
	}
}

// TestRedshiftExtraColumnAdded: checkExtraColumnAdded on the Redshift
// test server, whose ALTER TABLE has no IF NOT EXISTS.
func TestRedshiftExtraColumnAdded(t *testing.T) {
	srv := newRsServer(t)
	checkExtraColumnAdded(t, true, func(extras []ExtraColumn) Sink {
		return rsSink(t, srv, func(o *RedshiftOptions) { o.ExtraColumns = extras })
	}, `SELECT EVENT_ID, COUPON_CODE, JSON_EXTRACT_PATH_TEXT(ATTRIBUTES, 'coupon') FROM PUBLIC.OFFLOAD_TRANSACTIONS ORDER BY SOURCE_OFFSET`,
		func(q string) []string { return rsQuery(t, srv, q) })
}

// TestFakesnowExtraColumnAdded: checkExtraColumnAdded on fakesnow, one
// database for the sinks before and after the change.
func TestFakesnowExtraColumnAdded(t *testing.T) {
	db := fmt.Sprintf("OFFLOAD_T%d", time.Now().UnixNano())
	var last *Snowflake
	checkExtraColumnAdded(t, true, func(extras []ExtraColumn) Sink {
		last = fakesnowSinkWith(t, func(o *SnowflakeOptions) { o.Database, o.ExtraColumns = db, extras })
		return last
	}, `SELECT EVENT_ID, COUPON_CODE, ATTRIBUTES:coupon::VARCHAR FROM OFFLOAD_TRANSACTIONS ORDER BY SOURCE_OFFSET`,
		func(q string) []string { return deliverytest.QueryStrings(t, last.db, q) })
}

// TestBigQueryExtraColumnAdded: checkExtraColumnAdded on the BigQuery
// emulator, whose ALTER TABLE ... ADD COLUMN changes nothing
// (TestBigQueryEmulatorGaps): the table is created with the column, and
// batches A and B, decoded before it, load with it NULL.
func TestBigQueryExtraColumnAdded(t *testing.T) {
	srv := newEmulator(t)
	var last *BigQuery
	checkExtraColumnAdded(t, false, func(extras []ExtraColumn) Sink {
		last = bqSink(t, srv, func(o *BigQueryOptions) { o.ExtraColumns = extras })
		return last
	}, "SELECT `EVENT_ID`, `COUPON_CODE`, JSON_VALUE(`ATTRIBUTES`, '$.coupon') FROM %s ORDER BY `SOURCE_OFFSET`",
		func(q string) []string {
			rows, err := last.query(context.Background(), fmt.Sprintf(q, last.table(last.opts.TransactionsTable)))
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range rows {
				line := make([]string, len(r))
				for i, v := range r {
					line[i] = fmt.Sprint(v)
					if v == nil {
						line[i] = "NULL"
					}
				}
				out = append(out, strings.Join(line, "|"))
			}
			return out
		})
}

// TestSnowflakeExtraColumnAdded: checkExtraColumnAdded on the project's
// Snowflake test server (DuckDB reads the table: its JSON functions).
func TestSnowflakeExtraColumnAdded(t *testing.T) {
	w := newWarehouse(t)
	checkExtraColumnAdded(t, true, func(extras []ExtraColumn) Sink {
		return w.sinkWith(t, AuthPassword, func(o *SnowflakeOptions) { o.ExtraColumns = extras })
	}, `SELECT EVENT_ID, COUPON_CODE, json_extract_string(ATTRIBUTES, 'coupon') FROM PUBLIC.OFFLOAD_TRANSACTIONS ORDER BY SOURCE_OFFSET`,
		func(q string) []string { return w.query(t, q) })
}
