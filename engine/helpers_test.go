package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/engine/window"
	"github.com/offload/offload/wal"
)

// testKey is the e-mail hash key of every test topic.
var testKey = []byte("test-hash-key-0123456789")

// testNow is the engine clock in tests (DLQ, emission and seal times; the
// decoders' future-time check).
var testNow = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)

// kafkaTime is the Kafka timestamp of every test record.
var kafkaTime = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func quietLogger() *slog.Logger { return textLogger(io.Discard) }

// textLogger logs in text to w, for tests that read what was logged.
func textLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// testTopics: "orders" is JSON in the canonical mapping with one filter
// rule; "orders_csv" is CSV with a column list.
func testTopics() map[string]event.Config {
	now := func() time.Time { return testNow }
	return map[string]event.Config{
		"orders": {
			HashKey: testKey, Now: now,
			Filters: []event.Rule{
				{Name: "test_orders", Field: "order_id", Prefix: []string{"TEST-"}},
				{Name: "heartbeats", Field: "event_type", Equals: []string{"heartbeat"}},
			},
		},
		"orders_csv": {
			Mapping: event.Mapping{Format: event.FormatCSV,
				Columns: []string{"event_id", "event_type", "store_id", "amount", "currency", "event_time"}},
			HashKey: testKey, Now: now,
		},
	}
}

// baseOptions are the options of a test engine over dir and w.
func baseOptions(dir string, w *wal.WAL) Options {
	return Options{
		Dir: dir, ApplianceID: "test-1", WAL: w, Topics: testTopics(),
		BatchRecords: 1000, MemoryLimit: 128 << 20, Threads: 1,
		Window: window.Options{Size: time.Minute, Lateness: 5 * time.Minute},
		Seal:   SealPolicy{Rows: 1 << 40, Bytes: 1 << 50, Age: 1000 * time.Hour},
		Logger: quietLogger(),
		Now:    func() time.Time { return testNow },
	}
}

// harness is an engine over a real WAL and DuckDB file in a temp dir.
type harness struct {
	t      testing.TB
	dir    string
	w      *wal.WAL
	e      *Engine
	mutate func(*Options)
	next   map[wal.TopicPartition]int64 // next offset to append
}

func newHarness(t testing.TB, mutate func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), mutate: mutate, next: map[wal.TopicPartition]int64{}}
	h.open()
	t.Cleanup(h.close)
	return h
}

func (h *harness) options() Options {
	opts := baseOptions(h.dir, h.w)
	if h.mutate != nil {
		h.mutate(&opts)
	}
	return opts
}

func (h *harness) open() {
	h.t.Helper()
	var err error
	if h.w == nil {
		h.w, err = wal.Open(filepath.Join(h.dir, "wal"), wal.Options{Logger: quietLogger(),
			Now: func() time.Time { return kafkaTime.Add(time.Second) }})
		if err != nil {
			h.t.Fatal(err)
		}
	}
	if h.e, err = Open(h.options()); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) close() {
	if h.e != nil {
		if err := h.e.Close(); err != nil {
			h.t.Error(err)
		}
		h.e = nil
	}
	if h.w != nil {
		if err := h.w.Close(); err != nil {
			h.t.Error(err)
		}
		h.w = nil
	}
}

// reopen closes the engine and the WAL and opens both again.
func (h *harness) reopen() {
	h.t.Helper()
	h.close()
	h.open()
}

// add appends records to topic/partition with consecutive offsets and
// returns the first offset.
func (h *harness) add(topic string, partition int32, values ...string) int64 {
	h.t.Helper()
	tp := wal.TopicPartition{Topic: topic, Partition: partition}
	first := h.next[tp]
	recs := make([]wal.Record, len(values))
	for i, v := range values {
		recs[i] = wal.Record{Offset: first + int64(i), Timestamp: kafkaTime.UnixMilli(), Value: []byte(v)}
	}
	if _, err := h.w.Append(tp, recs); err != nil {
		h.t.Fatal(err)
	}
	h.next[tp] = first + int64(len(values))
	return first
}

func (h *harness) step() int {
	h.t.Helper()
	n, err := h.e.Step(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// drain steps until the WAL holds nothing new.
func (h *harness) drain() int {
	h.t.Helper()
	total := 0
	for {
		n := h.step()
		if n == 0 {
			return total
		}
		total += n
	}
}

// sealOne seals the open outbox batch and returns it, the one sealed
// batch the outbox must then hold.
func (h *harness) sealOne() BatchInfo {
	h.t.Helper()
	if err := h.e.SealNow(); err != nil {
		h.t.Fatal(err)
	}
	bs, err := h.e.SealedBatches()
	if err != nil || len(bs) != 1 {
		h.t.Fatalf("sealed batches %+v, %v; want one", bs, err)
	}
	return bs[0]
}

// rows runs q on the engine's database and renders each row as one line
// of space-separated values.
func (h *harness) rows(q string, args ...any) []string {
	h.t.Helper()
	return queryLines(h.t, h.e.db, withRows(h.t, h.e.db, h.dir, q), args...)
}

func (h *harness) count(q string, args ...any) int64 {
	h.t.Helper()
	var n int64
	if err := h.e.db.QueryRowContext(context.Background(), withRows(h.t, h.e.db, h.dir, q), args...).Scan(&n); err != nil {
		h.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// withRows prefixes q with RowsSQL's WITH clause when q reads outbox_rows,
// the clean rows of the parts in data directory dir.
func withRows(t testing.TB, db *sql.DB, dir, q string) string {
	t.Helper()
	if !strings.Contains(q, "outbox_rows") {
		return q
	}
	with, err := RowsSQL(context.Background(), db, dir)
	if err != nil {
		t.Fatal(err)
	}
	return with + q
}

func queryLines(t testing.TB, db *sql.DB, q string, args ...any) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = formatValue(v)
		}
		out = append(out, strings.Join(parts, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func formatValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case time.Time:
		return v.UTC().Format("2006-01-02T15:04:05.999999Z")
	case []byte:
		return fmt.Sprintf("%q", v)
	case string:
		if v == "" || strings.ContainsAny(v, " \t\n\"") {
			return fmt.Sprintf("%q", v)
		}
		return v
	case duckdb.Decimal:
		return event.Decimal(v.Value.Int64() * pow10(4-int(v.Scale))).String()
	default:
		return fmt.Sprint(v)
	}
}

func pow10(n int) int64 {
	p := int64(1)
	for ; n > 0; n-- {
		p *= 10
	}
	return p
}

// ev returns a canonical JSON event: id, store, amount and event time as
// given, the rest fixed; extra overrides or adds fields (a nil value
// removes one).
func ev(id, store, amount string, at time.Time, extra ...any) string {
	m := map[string]any{
		"event_id": id, "order_id": "ord-" + id, "event_type": "order_placed", "store_id": store,
		"customer_id": "cust-" + store, "amount": amount, "currency": "EUR", "channel": "web",
		"event_time": at.UTC().Format(time.RFC3339Nano),
	}
	for i := 0; i+1 < len(extra); i += 2 {
		k := extra[i].(string)
		if extra[i+1] == nil {
			delete(m, k)
		} else {
			m[k] = extra[i+1]
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// t0 is the base event time of test events.
var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func wpart(topic string, p int32) wal.TopicPartition {
	return wal.TopicPartition{Topic: topic, Partition: p}
}
