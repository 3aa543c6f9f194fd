package engine

import (
	"context"
	"crypto/sha256"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/engine/window"
	"github.com/offload/offload/wal"
)

func TestOutboxRowsFromWAL(t *testing.T) {
	h := newHarness(t, nil)
	h.add("orders", 0,
		`{"event_id":"e-1","order_id":"o-1","event_type":"placed","store_id":"s-1","customer_id":"c-1","customer_email":"Ann@Example.com","amount":"12.50","currency":"eur","payment_method":"card","card_number":"4111 1111 1111 1111","channel":"online","country":"fr","items":[{"sku":"A-1","qty":2,"unit_price":"5.00"},{"sku":"B\"2","qty":1,"unit_price":2.5}],"event_time":"2024-05-01T12:00:30.123456Z"}`,
		ev("e-2", "s-2", "7", at(time.Minute)))
	h.add("orders_csv", 3, `e-3,refund,s-3,1.5,usd,1714564800`)
	if n := h.drain(); n != 3 {
		t.Fatalf("consumed %d records, want 3", n)
	}
	got := h.rows(`SELECT event_id, order_id, event_type, store_id, customer_id, customer_email_hash IS NOT NULL, amount, currency,
		payment_method, card_last4, channel, country, items, event_time, base_amount, source_topic, source_partition, source_offset,
		kafka_time, ingest_time, batch_id FROM outbox_rows ORDER BY event_id`)
	want := []string{
		`e-1 o-1 order_placed s-1 c-1 true 12.5 EUR card 1111 web FR "[{\"sku\":\"A-1\",\"qty\":2,\"unit_price\":\"5\"},{\"sku\":\"B\\\"2\",\"qty\":1,\"unit_price\":\"2.5\"}]" 2024-05-01T12:00:30.123456Z NULL orders 0 0 2024-05-01T12:00:00Z 2024-05-01T12:00:01Z NULL`,
		`e-2 ord-e-2 order_placed s-2 cust-s-2 false 7 EUR NULL NULL web NULL NULL 2024-05-01T12:01:00Z NULL orders 0 1 2024-05-01T12:00:00Z 2024-05-01T12:00:01Z NULL`,
		`e-3 NULL refund s-3 NULL false 1.5 USD NULL NULL NULL NULL NULL 2024-05-01T12:00:00Z NULL orders_csv 3 0 2024-05-01T12:00:00Z 2024-05-01T12:00:01Z NULL`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("outbox rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The items JSON casts to the typed list the loader exports to Parquet.
	if got := h.rows(`SELECT (items::JSON::STRUCT(sku VARCHAR, qty INTEGER, unit_price DECIMAL(38,4))[])[2].unit_price::VARCHAR FROM outbox_rows WHERE event_id = 'e-1'`); !reflect.DeepEqual(got, []string{"2.5000"}) {
		t.Fatalf("items cast: %v", got)
	}
	// The cursor is committed and the WAL truncated below it.
	if got := h.rows(`SELECT topic, "partition", next_offset FROM engine_cursor ORDER BY ALL`); !reflect.DeepEqual(got, []string{"orders 0 2", "orders_csv 3 1"}) {
		t.Fatalf("cursor: %v", got)
	}
	for _, s := range h.w.Stats() {
		if s.Records != 0 {
			t.Fatalf("WAL still holds %d records of %s after the commit", s.Records, s.TopicPartition)
		}
	}
	if h.e.DiskBytes() <= 0 {
		t.Fatal("DiskBytes is not positive")
	}
	st := h.e.Stats()
	if st.RecordsIn != 3 || st.Accepted != 3 || st.OutboxRowsPending != 3 || st.LastBatchRecords == 0 {
		t.Fatalf("stats: %+v", st)
	}
	if got := h.e.OutboxBytesPending(); got <= 0 || got != st.OutboxBytesPending {
		t.Fatalf("OutboxBytesPending() = %d, Stats says %d", got, st.OutboxBytesPending)
	}
	if lag := st.CursorLag[wal.TopicPartition{Topic: "orders", Partition: 0}]; lag != 0 {
		t.Fatalf("cursor lag %d", lag)
	}
	// Nothing new: a step consumes nothing and changes nothing.
	if n := h.step(); n != 0 {
		t.Fatalf("step with nothing new consumed %d", n)
	}
	// Survives a restart.
	h.reopen()
	if h.count(`SELECT count(*) FROM outbox_rows`) != 3 || h.e.Stats().Accepted != 3 {
		t.Fatal("rows or counters lost across a restart")
	}
}

// TestAppenderInTransaction pins down what the engine's atomicity rests
// on: rows appended with the DuckDB Appender on a connection inside BEGIN
// are part of that transaction; ROLLBACK discards them.
func TestAppenderInTransaction(t *testing.T) {
	h := newHarness(t, nil)
	e := h.e
	ctx := context.Background()
	if _, err := e.conn.ExecContext(ctx, `BEGIN TRANSACTION`); err != nil {
		t.Fatal(err)
	}
	if err := e.appendRows("", "engine_counters", 2, 5000, func(i int, a []driver.Value) {
		a[0], a[1] = fmt.Sprint("c", i), int64(i)
	}); err != nil {
		t.Fatal(err)
	}
	var inTx int
	if err := e.conn.QueryRowContext(ctx, `SELECT count(*) FROM engine_counters`).Scan(&inTx); err != nil {
		t.Fatal(err)
	}
	if inTx != 5000 {
		t.Fatalf("inside the transaction %d rows, want 5000", inTx)
	}
	if h.count(`SELECT count(*) FROM engine_counters`) != 0 {
		t.Fatal("appended rows visible to another connection before COMMIT")
	}
	if _, err := e.conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if h.count(`SELECT count(*) FROM engine_counters`) != 0 {
		t.Fatal("appended rows survived ROLLBACK")
	}
}

func TestDuplicatesAcrossBatchesAndRestart(t *testing.T) {
	h := newHarness(t, nil)
	h.add("orders", 0, ev("a", "s1", "1", at(0)), ev("b", "s1", "2", at(0)), ev("a", "s1", "1", at(0)))
	h.drain()
	h.add("orders", 0, ev("b", "s1", "2", at(time.Second)), ev("c", "s1", "3", at(time.Second)))
	h.drain()
	h.reopen()
	h.add("orders", 1, ev("c", "s1", "3", at(2*time.Second)), ev("a", "s1", "1", at(2*time.Second)), ev("d", "s1", "4", at(2*time.Second)))
	h.drain()
	if got := h.rows(`SELECT event_id FROM outbox_rows ORDER BY event_id`); !reflect.DeepEqual(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("outbox rows %v", got)
	}
	st := h.e.Stats()
	if st.Deduplicated != 4 || st.Accepted != 4 || st.RecordsIn != 8 || st.DedupeKeys != 4 {
		t.Fatalf("stats: dedup %d accepted %d in %d keys %d", st.Deduplicated, st.Accepted, st.RecordsIn, st.DedupeKeys)
	}
	h.checkDedupeKeysHaveRows()
}

func TestKeyMatchesSQL(t *testing.T) {
	h := newHarness(t, nil)
	k := keyOf("evt-1")
	sum := sha256.Sum256([]byte("evt-1"))
	if hex.EncodeToString(k[:]) != hex.EncodeToString(sum[:16]) {
		t.Fatal("key is not the first 16 bytes of SHA-256")
	}
	got := h.rows(`SELECT ('0x' || substr(sha256('evt-1'), 1, 16))::UBIGINT, ('0x' || substr(sha256('evt-1'), 17, 16))::UBIGINT`)
	if want := fmt.Sprintf("%d %d", k.hi(), k.lo()); got[0] != want {
		t.Fatalf("SQL key %s, Go key %s", got[0], want)
	}
}

func TestDedupeExpiryByEventTime(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.DedupeWindow = 10 * time.Minute })
	h.add("orders", 0, ev("a", "s1", "1", at(0)), ev("b", "s1", "1", at(5*time.Minute)))
	h.drain()
	// Max event time 12:05: horizon 11:55, nothing forgotten; a repeat of
	// "a" is a duplicate.
	h.add("orders", 0, ev("a", "s1", "1", at(0)), ev("c", "s1", "1", at(11*time.Minute+30*time.Second)))
	h.drain()
	if st := h.e.Stats(); st.Deduplicated != 1 || st.DedupeExpired != 0 {
		t.Fatalf("dedup %d expired %d", st.Deduplicated, st.DedupeExpired)
	}
	// Max 12:11:30: the next batch forgets keys before 12:01 ("a").
	h.add("orders", 0, ev("a", "s1", "1", at(0)), ev("b", "s1", "1", at(5*time.Minute)))
	h.drain()
	st := h.e.Stats()
	if st.DedupeExpired != 1 || st.Deduplicated != 2 || st.DedupeTooOld != 1 {
		t.Fatalf("expired %d dedup %d too old %d", st.DedupeExpired, st.Deduplicated, st.DedupeTooOld)
	}
	if got := h.rows(`SELECT event_id, count(*) FROM outbox_rows GROUP BY ALL ORDER BY ALL`); !reflect.DeepEqual(got, []string{"a 2", "b 1", "c 1"}) {
		t.Fatalf("rows: %v", got)
	}
	// "a" came back below the horizon: kept but not remembered.
	if got := len(h.keys()); got != 2 {
		t.Fatalf("%d dedupe keys, want 2 (b, c)", got)
	}
	h.checkDedupeKeysHaveRows()
}

// TestDedupeExactWhenFiltersSaturate shrinks the key store's filters to
// one block a slice, so nearly every id is a filter hit: each must then
// be answered by the disk, and exactly; after a restart the filters are
// rebuilt from the disk.
func TestDedupeExactWhenFiltersSaturate(t *testing.T) {
	h := newHarness(t, nil)
	// One block a slice for the slices to come (there are none yet).
	h.e.keys.filterBytes = 64
	var recs []string
	for m := 0; m < 4; m++ {
		for i := 0; i < 50; i++ {
			recs = append(recs, ev(fmt.Sprintf("m%d-%d", m, i), "s1", "1", at(time.Duration(m)*time.Minute)))
		}
	}
	h.add("orders", 0, recs...)
	h.drain()
	again := []string{ev("m0-0", "s1", "1", at(0)), ev("m3-49", "s1", "1", at(3*time.Minute))}
	for i := 0; i < 20; i++ {
		again = append(again, ev(fmt.Sprint("fresh-", i), "s1", "1", at(0)))
	}
	h.add("orders", 0, again...)
	h.drain()
	st := h.e.Stats()
	if st.Accepted != 220 || st.Deduplicated != 2 || st.DedupeKeys != 220 {
		t.Fatalf("accepted %d dedup %d keys %d, want 220 2 220", st.Accepted, st.Deduplicated, st.DedupeKeys)
	}
	if st.DedupeFalsePositives == 0 || st.DedupeDiskLookups < st.DedupeFalsePositives+2 {
		t.Fatalf("saturated filters: %d lookups, %d false positives", st.DedupeDiskLookups, st.DedupeFalsePositives)
	}
	h.reopen() // the filters are rebuilt from the disk at their configured size
	h.add("orders", 1, ev("m1-7", "s1", "1", at(time.Minute)), ev("fresh2", "s1", "1", at(0)))
	h.drain()
	h.checkDedupe(221, 3)
}

func TestWindowsEmitAndReemit(t *testing.T) {
	h := newHarness(t, nil)
	h.add("orders", 0, ev("a", "s1", "10", at(10*time.Second)), ev("b", "s1", "5", at(20*time.Second), "customer_id", "x"))
	h.drain()
	if got := h.count(`SELECT count(*) FROM outbox_windows`); got != 0 {
		t.Fatalf("%d windows emitted before the watermark passed", got)
	}
	// 12:06:30 moves the watermark to 12:01:30: window 12:00 is emitted.
	h.add("orders", 0, ev("c", "s1", "1", at(6*time.Minute+30*time.Second)))
	h.drain()
	// A late event for 12:00 (still within lateness) re-emits version 2.
	h.add("orders", 0, ev("d", "s1", "2.5", at(30*time.Second)))
	h.drain()
	// 12:12 purges 12:00; an event for it then is too late.
	h.add("orders", 0, ev("e", "s1", "1", at(12*time.Minute)))
	h.drain()
	h.add("orders", 0, ev("f", "s1", "100", at(40*time.Second)))
	h.drain()
	got := h.rows(`SELECT store_id, window_start, window_end, count, sum_amount, min_amount, max_amount, distinct_customers, version
		FROM outbox_windows ORDER BY window_start, version`)
	want := []string{
		"s1 2024-05-01T12:00:00Z 2024-05-01T12:01:00Z 2 15 5 10 2 1",
		"s1 2024-05-01T12:00:00Z 2024-05-01T12:01:00Z 3 17.5 2.5 10 2 2",
		"s1 2024-05-01T12:06:00Z 2024-05-01T12:07:00Z 1 1 1 1 1 1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("emitted windows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	st := h.e.Stats()
	if st.Late != 1 || st.TooLate != 1 || st.WindowsEmitted != 3 {
		t.Fatalf("late %d too late %d emitted %d", st.Late, st.TooLate, st.WindowsEmitted)
	}
	if got := h.count(`SELECT count(*) FROM outbox_rows WHERE event_id = 'f'`); got != 1 {
		t.Fatal("a too-late event is not in the outbox rows")
	}
	// The live window state survives a restart and matches the Set.
	before := h.rows(`SELECT * FROM windows ORDER BY ALL`)
	h.reopen()
	if got := h.e.windows.Len(); got != len(before) {
		t.Fatalf("restored %d windows, the table holds %d", got, len(before))
	}
	if w := h.e.Stats().Watermark; !w.Equal(at(7 * time.Minute)) {
		t.Fatalf("watermark after restart %s", w)
	}
}

func TestSealByRowsAndDeterministicIDs(t *testing.T) {
	mutate := func(o *Options) {
		o.Seal.Rows = 4
		o.BatchRecords = 3
	}
	var recs []string
	for i := 0; i < 10; i++ {
		recs = append(recs, ev(fmt.Sprintf("e%02d", i), "s1", "1", at(time.Duration(i)*time.Second)))
	}
	recs = append(recs, `{"broken`)
	run := func() ([]BatchInfo, []string) {
		h := newHarness(t, mutate)
		for _, r := range recs { // one WAL entry each, so micro-batches hold 3 records
			h.add("orders", 0, r)
		}
		h.drain()
		bs, err := h.e.SealedBatches()
		if err != nil {
			t.Fatal(err)
		}
		return bs, h.rows(`SELECT batch_id, min(source_offset), max(source_offset), count(*) FROM outbox_rows GROUP BY ALL ORDER BY 2`)
	}
	b1, rows1 := run()
	b2, rows2 := run()
	if !reflect.DeepEqual(b1, b2) || !reflect.DeepEqual(rows1, rows2) {
		t.Fatalf("batches differ between runs over the same WAL:\n%v\n%v", b1, b2)
	}
	// Micro-batches of 3 records: the second brings the open batch to 6
	// rows (>= 4) and seals it; the fourth (e09 and the broken record)
	// brings the next to 4.
	if len(b1) != 2 {
		t.Fatalf("%d batches sealed, want 2: %+v", len(b1), b1)
	}
	wantRanges := [][]Range{{{Topic: "orders", Partition: 0, First: 0, Last: 5}}, {{Topic: "orders", Partition: 0, First: 6, Last: 10}}}
	for i, b := range b1 {
		sum := sha256.Sum256([]byte(fmt.Sprintf(`[{"topic":"orders","partition":0,"first":%d,"last":%d}]`, wantRanges[i][0].First, wantRanges[i][0].Last)))
		if want := "test-1-" + hex.EncodeToString(sum[:8]); b.ID != want {
			t.Fatalf("batch id %q, want %q", b.ID, want)
		}
		if !reflect.DeepEqual(b.Ranges, wantRanges[i]) || b.State != BatchSealed {
			t.Fatalf("batch %+v", b)
		}
	}
	if b1[0].Rows != 6 || b1[1].Rows != 4 {
		t.Fatalf("batch rows %d, %d; want 6, 4", b1[0].Rows, b1[1].Rows)
	}
	want := []string{b1[0].ID + " 0 5 6", b1[1].ID + " 6 9 4"}
	if !reflect.DeepEqual(rows1, want) {
		t.Fatalf("rows by batch %v, want %v", rows1, want)
	}
}

func TestSealNowAndAge(t *testing.T) {
	now := testNow
	h := newHarness(t, func(o *Options) {
		o.Seal.Age = time.Minute
		o.Now = func() time.Time { return now }
	})
	h.add("orders", 0, ev("a", "s1", "1", at(0)))
	h.drain()
	if bs, _ := h.e.SealedBatches(); len(bs) != 0 {
		t.Fatal("sealed too early")
	}
	now = now.Add(time.Minute)
	h.step() // no records, but the open batch is a minute old
	bs, err := h.e.SealedBatches()
	if err != nil || len(bs) != 1 || bs[0].Rows != 1 {
		t.Fatalf("age seal: %v %+v", err, bs)
	}
	h.add("orders", 0, ev("b", "s1", "1", at(0)))
	h.drain()
	if err := h.e.SealNow(); err != nil {
		t.Fatal(err)
	}
	if err := h.e.SealNow(); err != nil { // nothing open: no empty batch
		t.Fatal(err)
	}
	bs, _ = h.e.SealedBatches()
	if len(bs) != 2 || bs[1].Rows != 1 || h.count(`SELECT count(*) FROM outbox_rows WHERE batch_id IS NULL`) != 0 {
		t.Fatalf("SealNow: %+v", bs)
	}
	if st := h.e.Stats(); st.BatchesSealed != 2 || st.SealedBatchesPending != 2 || st.OutboxRowsPending != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRollbackLeavesNoTrace fails the micro-batch transaction at every
// point inside it, by an error or by its context ending (a shutdown past
// its grace): nothing of the batch may remain (no dedupe key, row, dead
// letter, window or counter; the cursor unchanged), and the retry then
// gives exactly what a run without the failure gives. It does so with
// the failed micro-batch alone, and with one record per micro-batch, so
// that the next micro-batch is being read ahead while the failed one
// commits.
func TestRollbackLeavesNoTrace(t *testing.T) {
	t.Run("alone", func(t *testing.T) { testRollbackLeavesNoTrace(t, false) })
	t.Run("read ahead", func(t *testing.T) { testRollbackLeavesNoTrace(t, true) })
}

func testRollbackLeavesNoTrace(t *testing.T, ahead bool) {
	recs := []string{ev("a", "s1", "1", at(0)), `not json`, ev("b", "s2", "2", at(10*time.Minute)), ev("a", "s1", "1", at(0))}
	mutate := func(o *Options) { o.Seal.Rows = 2 }
	// add2 adds the last two records: one WAL entry, or one each.
	add2 := func(h *harness) { h.add("orders", 0, recs[2:]...) }
	if ahead {
		mutate = func(o *Options) { o.Seal.Rows, o.BatchRecords = 2, 1 }
		add2 = func(h *harness) {
			h.add("orders", 0, recs[2])
			h.add("orders", 0, recs[3])
		}
	}
	tables := []string{"outbox_rows", "outbox_parts", "outbox_windows", "windows", "dlq", "engine_cursor", "engine_counters", "engine_state", "outbox_batches"}
	dump := func(h *harness) map[string][]string {
		out := map[string][]string{}
		for _, tbl := range tables {
			q := `SELECT * FROM ` + tbl
			out[tbl] = sorted(h.rows(q))
		}
		ents, err := os.ReadDir(filepath.Join(h.dir, PartsDir))
		if err != nil {
			h.t.Fatal(err)
		}
		for _, ent := range ents {
			out["part files"] = append(out["part files"], ent.Name())
		}
		out["dedupe keys"] = h.keys()
		return out
	}
	ref := newHarness(t, mutate)
	ref.add("orders", 0, recs[:2]...)
	ref.drain()
	afterFirst := dump(ref)
	add2(ref)
	ref.drain()
	want := dump(ref)

	injected := errors.New("injected failure")
	for _, point := range []string{"part", "begin", "rows", "dlq", "windows", "state", "commit"} {
		for _, cancelled := range []bool{false, true} {
			name := point
			if cancelled {
				name = "cancelled at " + point
			}
			t.Run(name, func(t *testing.T) {
				h := newHarness(t, mutate)
				h.add("orders", 0, recs[:2]...)
				h.drain()
				add2(h)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				wantErr := injected
				if cancelled {
					wantErr = context.Canceled
					h.e.hook = func(hctx context.Context, p string) error {
						if p != point {
							return nil
						}
						cancel()
						<-hctx.Done() // the micro-batch's own context ends with the caller's
						return hctx.Err()
					}
				} else {
					h.failAt(point, injected)
				}
				if _, err := h.e.Step(ctx); !errors.Is(err, wantErr) {
					t.Fatalf("step returned %v, want %v", err, wantErr)
				}
				checkNoTrace(t, h, dump, afterFirst, want)
			})
		}
	}
}

// checkNoTrace checks that a failed micro-batch left the engine as it was
// (afterFirst) and that the retry gives what an undisturbed run gives.
func checkNoTrace(t *testing.T, h *harness, dump func(*harness) map[string][]string, afterFirst, want map[string][]string) {
	t.Helper()
	if got := dump(h); !reflect.DeepEqual(got, afterFirst) {
		t.Fatalf("failed batch left a trace:\n%v\nwant\n%v", got, afterFirst)
	}
	if st := h.e.Stats(); st.RecordsIn != 2 || st.DedupeKeys != 1 {
		t.Fatalf("stats changed by a failed batch: %+v", st)
	}
	h.e.hook = nil
	h.drain()
	if got := dump(h); !reflect.DeepEqual(got, want) {
		t.Fatalf("retry differs from an undisturbed run:\n%v\nwant\n%v", got, want)
	}
}

func TestUnknownTopicIsDeadLettered(t *testing.T) {
	h := newHarness(t, nil)
	h.add("payments", 2, ev("a", "s1", "1", at(0)))
	h.add("orders", 0, ev("b", "s1", "1", at(0)))
	h.drain()
	got := h.rows(`SELECT topic, "partition", "offset", stage, code FROM dlq`)
	if !reflect.DeepEqual(got, []string{"payments 2 0 route unknown_topic"}) {
		t.Fatalf("dlq: %v", got)
	}
	if h.count(`SELECT count(*) FROM outbox_rows`) != 1 {
		t.Fatal("the record of a known topic was not processed")
	}
}

func TestOpenValidates(t *testing.T) {
	_, err := Open(Options{Dir: t.TempDir(), ApplianceID: "bad id!", BatchRecords: -1, Window: windowOpts(7 * time.Second)})
	if err == nil {
		t.Fatal("Open accepted bad options")
	}
	for _, want := range []string{"appliance id", "WAL is required", "no topics", "engine.batch_records", "engine.window"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestWindowSizeChangeRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.add("orders", 0, ev("a", "s1", "1", at(0)))
	h.drain()
	h.close()
	h.mutate = func(o *Options) { o.Window.Size = 5 * time.Minute }
	h.w = nil
	var err error
	h.w, err = wal.Open(h.dir+"/wal", wal.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(h.options()); err == nil || !strings.Contains(err.Error(), "engine.window changed") {
		t.Fatalf("Open with another window size: %v", err)
	}
}

func TestSetTablesEnriches(t *testing.T) {
	h := newHarness(t, nil)
	rates, err := event.ParseRates(strings.NewReader("currency,rate\nEUR,1.1\n"), "rates", "USD")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := event.ParseReference(strings.NewReader("store_id,region,timezone\ns1,eu-west,Europe/Paris\n"), "stores")
	if err != nil {
		t.Fatal(err)
	}
	h.add("orders", 0, ev("a", "s1", "10", at(0)))
	h.drain()
	h.e.SetTables(rates, ref)
	h.add("orders", 0, ev("b", "s1", "10", at(0)), ev("c", "s2", "10", at(0), "currency", "JPY"))
	h.drain()
	got := h.rows(`SELECT event_id, base_amount, region, timezone FROM outbox_rows ORDER BY event_id`)
	want := []string{"a NULL NULL NULL", "b 11 eu-west Europe/Paris", "c NULL NULL NULL"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	if st := h.e.Stats(); st.NoBaseAmount != 2 {
		t.Fatalf("no base amount %d", st.NoBaseAmount)
	}
}

func TestClosedEngine(t *testing.T) {
	h := newHarness(t, nil)
	e := h.e
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	h.e = nil
	if _, err := e.Step(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Step after Close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestInterrupt: Run's context stops the loop, not the micro-batch in
// flight; Interrupt abandons that one (Run returns nil: the next start
// redoes it) and fails every later one at once, keeping nothing of them.
func TestInterrupt(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Interval = 20 * time.Millisecond })
	h.add("orders", 0, ev("a", "s1", "1", at(0)))
	entered := make(chan struct{})
	h.e.hook = func(ctx context.Context, p string) error {
		if p != "rows" {
			return nil
		}
		close(entered)
		<-ctx.Done() // longer than any grace
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.e.Run(ctx) }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no micro-batch reached the hook")
	}
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) with its micro-batch still in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	h.e.Interrupt()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after Interrupt: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Interrupt")
	}
	if _, err := h.e.Step(context.Background()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Step after Interrupt: %v, want context.Canceled", err)
	}
	if st := h.e.Stats(); st.RecordsIn != 0 || st.Accepted != 0 {
		t.Fatalf("an interrupted micro-batch was kept: %+v", st)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Interval = 20 * time.Millisecond })
	h.add("orders", 0, ev("a", "s1", "1", at(0)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.e.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for h.e.Stats().Accepted == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not consume the record")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestStartedAfterFirstMicroBatch: Started stays open until Run's first
// micro-batch has committed (the start-up, systemd's start timeout's to
// bound), then closes; the micro-batch's records are consumed by then.
func TestStartedAfterFirstMicroBatch(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Interval = time.Hour })
	h.add("orders", 0, ev("a", "s1", "1", at(0)), ev("b", "s1", "1", at(0)))
	select {
	case <-h.e.Started():
		t.Fatal("Started is closed before Run")
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.e.Run(ctx) }()
	select {
	case <-h.e.Started():
	case <-time.After(30 * time.Second):
		t.Fatal("Started is still open 30s after Run began")
	}
	if st := h.e.Stats(); st.Accepted != 2 {
		t.Fatalf("Started closed before the first micro-batch committed: accepted %d, want 2", st.Accepted)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestStartedWhenRunFails: a Run that returns at once (its engine closed)
// closes Started too, so no one waits for a start that cannot come.
func TestStartedWhenRunFails(t *testing.T) {
	h := newHarness(t, nil)
	e := h.e
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	h.e = nil
	if err := e.Run(context.Background()); err != nil {
		t.Fatalf("Run on a closed engine: %v", err)
	}
	select {
	case <-e.Started():
	default:
		t.Fatal("Started is open after Run returned")
	}
}

func windowOpts(size time.Duration) window.Options { return window.Options{Size: size} }

// TestRunIdlesOverMissingRecords: when the offsets between the cursor and
// the WAL's high water are gone for good (a repair moved them to the
// quarantine), the backlog counted by offsets never drains. Run must still
// wait for its interval between empty micro-batches rather than spin.
func TestRunIdlesOverMissingRecords(t *testing.T) {
	var calls atomic.Int64
	h := newHarness(t, func(o *Options) {
		o.Interval, o.BatchRecords = 100*time.Millisecond, 10
		o.Now = func() time.Time { calls.Add(1); return testNow }
	})
	h.add("orders", 0, ev("kept", "s1", "1", at(0)))
	h.drain()
	var values []string
	for i := range 50 {
		values = append(values, ev(fmt.Sprintf("gone-%d", i), "s1", "1", at(0)))
	}
	h.add("orders", 0, values...)
	// Drop the records behind the engine's back, as a repair does.
	tp := wpart("orders", 0)
	if _, err := h.w.Truncate(wal.Cursor{tp: 51}); err != nil {
		t.Fatal(err)
	}
	if lag := h.e.cursorLag()[tp]; lag != 50 {
		t.Fatalf("lag %d, want the 50 offsets gone", lag)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	before := calls.Load()
	go func() { done <- h.e.Run(ctx) }()
	time.Sleep(time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// About ten micro-batches in a second; a spinning loop makes thousands.
	if n := calls.Load() - before; n > 200 {
		t.Fatalf("Run went round %d times in a second over an empty WAL: it spins", n)
	}
}

// TestReadAheadFollowsReconfigure changes the decoders' configuration
// while the next micro-batch is held read and decoded ahead: that
// micro-batch follows the new configuration, as one read after the change
// does.
func TestReadAheadFollowsReconfigure(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.BatchRecords = 1 })
	h.add("orders", 0, ev("a", "s1", "1", at(0)))
	h.add("orders", 0, ev("b", "s2", "2", at(time.Second)))
	if n := h.step(); n != 1 {
		t.Fatalf("first micro-batch consumed %d records, want 1", n)
	}
	if h.e.ahead == nil || h.e.ahead.records != 1 {
		t.Fatalf("the second record was not read ahead: %+v", h.e.ahead)
	}
	topics := testTopics()
	cfg := topics["orders"]
	cfg.Filters = append(cfg.Filters, event.Rule{Name: "store_s2", Field: "store_id", Equals: []string{"s2"}})
	topics["orders"] = cfg
	if err := h.e.Reconfigure(topics, h.e.opts.Seal); err != nil {
		t.Fatal(err)
	}
	h.drain()
	st := h.e.Stats()
	if st.Accepted != 1 || st.FilteredByRule["store_s2"] != 1 {
		t.Fatalf("after the change: accepted %d, filtered by store_s2 %d; want 1, 1 (stats %+v)", st.Accepted, st.FilteredByRule["store_s2"], st)
	}
}

// TestDuckDBSettings: the engine's DuckDB checkpoints every 16 MB of its
// WAL and keeps no cache of the files it reads (Open says why).
func TestDuckDBSettings(t *testing.T) {
	h := newHarness(t, nil)
	// 16 MB as DuckDB prints it.
	for setting, want := range map[string]string{"checkpoint_threshold": "15.2 MiB", "enable_external_file_cache": "false"} {
		var got string
		if err := h.e.conn.QueryRowContext(context.Background(), `SELECT current_setting(?)::VARCHAR`, setting).Scan(&got); err != nil {
			t.Fatalf("%s: %v", setting, err)
		}
		if got != want {
			t.Errorf("%s = %s, want %s", setting, got, want)
		}
	}
}

// TestDuckDBMemoryReported: Stats reports the memory DuckDB's buffer
// manager holds, within its memory_limit.
func TestDuckDBMemoryReported(t *testing.T) {
	h := newHarness(t, nil)
	h.add("orders", 0, ev("e-1", "s1", "1", at(0)), ev("e-2", "s2", "2", at(time.Second)))
	h.drain()
	if got := h.e.Stats().DuckDBMemory; got <= 0 || got > h.e.opts.MemoryLimit {
		t.Fatalf("DuckDB's memory reported as %d bytes, want more than 0 and at most memory_limit %d", got, h.e.opts.MemoryLimit)
	}
}
