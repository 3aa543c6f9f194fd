package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/engine/window"
	"github.com/offload/offload/wal"
	"github.com/parquet-go/parquet-go"
)

// partTestRows returns rows covering every column's edge: NULLs in each
// nullable column, items present and absent, non-ASCII text, negative and
// large amounts, a missing base amount, timestamps with microseconds.
func partTestRows() ([]outRow, []byte) {
	var items []byte
	withItems := func(r outRow, js string) outRow {
		r.hasItems, r.itemsFrom = true, len(items)
		items = append(items, js...)
		r.itemsTo = len(items)
		return r
	}
	src := func(off int64) source {
		return source{topic: "orders", partition: int32(off % 3), offset: off,
			kafkaTime:  time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC).Add(time.Duration(off) * time.Millisecond),
			ingestTime: time.Date(2024, 5, 1, 12, 0, 1, 999999000, time.UTC)}
	}
	full := event.Event{
		EventID: "evt-1", OrderID: "ORD-1", EventType: event.EventOrderPlaced, StoreID: "store-1",
		CustomerID: "cust-1", CustomerEmailHash: strings.Repeat("ab", 32), Amount: 12345, Currency: "EUR",
		PaymentMethod: "card", CardLast4: "4242", Channel: event.ChannelWeb, Country: "DE",
		EventTime: time.Date(2024, 5, 1, 11, 59, 59, 654321000, time.UTC), BaseAmount: 13579, HasBaseAmount: true,
		Region: "eu-central", Timezone: "Europe/Berlin",
		Attributes: `{"coupon":"SPRING","gift":true}`, Extras: `{"tier":"gold"}`,
	}
	rows := []outRow{
		withItems(outRow{ev: full, source: src(0)}, `[{"sku":"SKU-1","qty":2,"unit_price":"1.50"}]`),
		// Only the NOT NULL columns: every nullable one is NULL.
		{ev: event.Event{EventID: "evt-2", EventType: event.EventRefund,
			EventTime: time.Date(1999, 12, 31, 23, 59, 59, 1000, time.UTC)}, source: src(1)},
	}
	r := outRow{ev: full, source: src(2)}
	r.ev.EventID, r.ev.StoreID, r.ev.CustomerID, r.ev.Region = "évt-3 ✓", "магазин-7", "客户-9", "Zürich"
	r.ev.Amount, r.ev.BaseAmount = -98765432100001, -maxPartDecimal
	rows = append(rows, withItems(r, `[{"sku":"ß-ü","qty":1,"unit_price":"0.01","note":"日本"}]`))
	r = outRow{ev: full, source: src(3)}
	r.ev.EventID, r.ev.Amount, r.ev.HasBaseAmount, r.ev.BaseAmount = "evt-4", maxPartDecimal, false, 777
	r.ev.OrderID, r.ev.PaymentMethod, r.ev.CardLast4, r.ev.Channel, r.ev.Country, r.ev.Timezone = "", "", "", "", "", ""
	r.ev.Attributes, r.ev.Extras = "", ""
	rows = append(rows, r)
	r = outRow{ev: full, source: src(4)}
	r.ev.EventID, r.ev.Amount, r.ev.BaseAmount, r.ev.Currency, r.ev.CustomerEmailHash = "evt-5", 0, 0, "", ""
	r.source.topic, r.source.partition, r.source.offset = "payments", 2147483647, 1<<62
	rows = append(rows, withItems(r, `[]`))
	return rows, items
}

// partTestWant is partTestRows as DuckDB reads them back: what the
// engine's row store (schema version 1, the Appender into outbox_rows)
// held for the same rows, so a part keeps every value the outbox kept,
// plus the attributes and extras columns that store did not have.
var partTestWant = []string{
	"evt-1 ORD-1 order_placed store-1 cust-1 abababababababababababababababababababababababababababababababab 1.2345 EUR card 4242 web DE \"[{\\\"sku\\\":\\\"SKU-1\\\",\\\"qty\\\":2,\\\"unit_price\\\":\\\"1.50\\\"}]\" 2024-05-01T11:59:59.654321Z 1.3579 eu-central Europe/Berlin orders 0 0 2024-05-01T12:00:00.123456Z 2024-05-01T12:00:01.999999Z \"{\\\"coupon\\\":\\\"SPRING\\\",\\\"gift\\\":true}\" \"{\\\"tier\\\":\\\"gold\\\"}\"",
	"evt-2 NULL refund NULL NULL NULL 0 NULL NULL NULL NULL NULL NULL 1999-12-31T23:59:59.000001Z NULL NULL NULL orders 1 1 2024-05-01T12:00:00.124456Z 2024-05-01T12:00:01.999999Z NULL NULL",
	"\"évt-3 ✓\" ORD-1 order_placed магазин-7 客户-9 abababababababababababababababababababababababababababababababab -9876543210.0001 EUR card 4242 web DE \"[{\\\"sku\\\":\\\"ß-ü\\\",\\\"qty\\\":1,\\\"unit_price\\\":\\\"0.01\\\",\\\"note\\\":\\\"日本\\\"}]\" 2024-05-01T11:59:59.654321Z -99999999999999.9999 Zürich Europe/Berlin orders 2 2 2024-05-01T12:00:00.125456Z 2024-05-01T12:00:01.999999Z \"{\\\"coupon\\\":\\\"SPRING\\\",\\\"gift\\\":true}\" \"{\\\"tier\\\":\\\"gold\\\"}\"",
	"evt-4 NULL order_placed store-1 cust-1 abababababababababababababababababababababababababababababababab 99999999999999.9999 EUR NULL NULL NULL NULL NULL 2024-05-01T11:59:59.654321Z NULL eu-central NULL orders 0 3 2024-05-01T12:00:00.126456Z 2024-05-01T12:00:01.999999Z NULL NULL",
	"evt-5 ORD-1 order_placed store-1 cust-1 NULL 0 NULL card 4242 web DE [] 2024-05-01T11:59:59.654321Z 0 eu-central Europe/Berlin payments 2147483647 4611686018427387904 2024-05-01T12:00:00.127456Z 2024-05-01T12:00:01.999999Z \"{\\\"coupon\\\":\\\"SPRING\\\",\\\"gift\\\":true}\" \"{\\\"tier\\\":\\\"gold\\\"}\"",
}

// TestPartEncoderReused writes parts of different rows in turn with one
// encoder, a failed one among them: each file is byte for byte the file a
// new encoder writes of the same rows.
func TestPartEncoderReused(t *testing.T) {
	small, smallItems := partTestRows()
	many, manyItems, _ := benchRows(t, 3000)
	bad := slices.Clone(small)
	bad[1].ev.Amount = maxPartDecimal + 1
	dir := t.TempDir()
	var pe partEncoder
	for i, c := range []struct {
		rows  []outRow
		items []byte
	}{{many, manyItems}, {small, smallItems}, {bad, smallItems}, {many, manyItems}, {small, smallItems}} {
		got, err := pe.write(context.Background(), filepath.Join(dir, fmt.Sprintf("reused-%d", i)), c.rows, c.items)
		want, werr := writePart(context.Background(), filepath.Join(dir, fmt.Sprintf("new-%d", i)), c.rows, c.items)
		if (err == nil) != (werr == nil) {
			t.Fatalf("part %d: reused encoder's error %v, a new one's %v", i, err, werr)
		}
		if err == nil && (got != want || got.Rows != int64(len(c.rows))) {
			t.Fatalf("part %d: reused encoder wrote %+v, a new one %+v", i, got, want)
		}
	}
}

// TestPartColumnsAsRows checks that encode, writing each column straight
// from the rows, writes byte for byte the file parquet-go's row writer
// makes of the same rows as partRow values: the declared schema's values,
// NULLs, dictionaries and pages. 50 000 rows take several pages of items.
func TestPartColumnsAsRows(t *testing.T) {
	small, smallItems := partTestRows()
	many, manyItems, _ := benchRows(t, 50000)
	orNull := func(s *string) *string {
		if *s == "" {
			return nil
		}
		return s
	}
	for i, c := range []struct {
		rows  []outRow
		items []byte
	}{{small, smallItems}, {many, manyItems}, {nil, nil}} {
		var got bytes.Buffer
		if err := new(partEncoder).encode(&got, c.rows, c.items); err != nil {
			t.Fatal(err)
		}
		prs := make([]partRow, len(c.rows))
		for j := range c.rows {
			r := &c.rows[j]
			ev := &r.ev
			prs[j] = partRow{
				EventID: ev.EventID, OrderID: orNull(&ev.OrderID), EventType: ev.EventType,
				StoreID: orNull(&ev.StoreID), CustomerID: orNull(&ev.CustomerID),
				CustomerEmailHash: orNull(&ev.CustomerEmailHash), Amount: int64(ev.Amount),
				Currency: orNull(&ev.Currency), PaymentMethod: orNull(&ev.PaymentMethod),
				CardLast4: orNull(&ev.CardLast4), Channel: orNull(&ev.Channel), Country: orNull(&ev.Country),
				EventTime: ev.EventTime, Region: orNull(&ev.Region), Timezone: orNull(&ev.Timezone),
				SourceTopic: r.source.topic, SourcePartition: r.source.partition, SourceOffset: r.source.offset,
				KafkaTime: r.source.kafkaTime, IngestTime: r.source.ingestTime,
				Attributes: orNull(&ev.Attributes), Extras: orNull(&ev.Extras),
			}
			if r.hasItems {
				js := string(c.items[r.itemsFrom:r.itemsTo])
				prs[j].Items = &js
			}
			if ev.HasBaseAmount {
				prs[j].BaseAmount = (*int64)(&ev.BaseAmount)
			}
		}
		var want bytes.Buffer
		pw := parquet.NewGenericWriter[partRow](&want, partSchema, parquet.Compression(partCodec),
			parquet.PageBufferSize(partPageBuffer))
		if _, err := pw.Write(prs); err != nil {
			t.Fatal(err)
		}
		if err := pw.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("part %d (%d rows): encode wrote %d bytes, the row writer %d, not the same", i, len(c.rows), got.Len(), want.Len())
		}
	}
}

// TestWritePartRoundTrip reads a part back with DuckDB and compares every
// value with what the row store kept of the same rows (partTestWant).
func TestWritePartRoundTrip(t *testing.T) {
	h := newHarness(t, nil)
	rows, items := partTestRows()
	path := filepath.Join(t.TempDir(), "part-1.parquet")
	pf, err := writePart(context.Background(), path, rows, items)
	if err != nil {
		t.Fatal(err)
	}

	read := fmt.Sprintf("read_parquet('%s')", path)
	var cols, types []string
	for _, l := range h.rows(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM ` + read + `)`) {
		name, typ, _ := strings.Cut(l, " ")
		cols, types = append(cols, name), append(types, strings.Trim(typ, `"`))
	}
	want := h.rows(`SELECT column_name FROM (DESCRIBE SELECT * EXCLUDE (batch_id) FROM outbox_rows)`)
	if !slices.Equal(cols, want) {
		t.Errorf("part columns\n%v\nwant outbox_rows' without batch_id\n%v", cols, want)
	}
	wantTypes := map[string]string{"amount": "DECIMAL(18,4)", "base_amount": "DECIMAL(18,4)",
		"event_time": "TIMESTAMP WITH TIME ZONE", "kafka_time": "TIMESTAMP WITH TIME ZONE",
		"ingest_time": "TIMESTAMP WITH TIME ZONE", "source_partition": "INTEGER", "source_offset": "BIGINT"}
	for i, c := range cols {
		w, ok := wantTypes[c]
		if !ok {
			w = "VARCHAR"
		}
		if types[i] != w {
			t.Errorf("column %s: DuckDB reads %s, want %s", c, types[i], w)
		}
	}

	got := h.rows(`SELECT * FROM ` + read + ` ORDER BY source_offset`)
	exp := partTestWant
	if len(got) != len(rows) || !slices.Equal(got, exp) {
		t.Errorf("part rows\n%s\nwant the outbox_rows\n%s", strings.Join(got, "\n"), strings.Join(exp, "\n"))
	}
	// The rendering would hide a string "NULL" or microseconds it
	// dropped: check both on the values themselves.
	if n := h.count(`SELECT count(*) FROM ` + read + ` WHERE order_id IS NULL AND store_id IS NULL AND items IS NULL
		AND base_amount IS NULL AND customer_email_hash IS NULL AND region IS NULL`); n != 1 {
		t.Errorf("rows with NULLs in the nullable columns = %d, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM ` + read + ` WHERE event_time = '2024-05-01 11:59:59.654321+00'::TIMESTAMPTZ`); n != 4 {
		t.Errorf("rows with event_time ...59.654321 = %d, want 4", n)
	}

	// customer_email_hash alone is Huffman-coded (hashCodec), and partRow
	// still matches the schema, so parquet-go writes it column by column.
	for _, l := range h.rows(`SELECT DISTINCT path_in_schema, compression FROM parquet_metadata('` + path + `')`) {
		name, codec, _ := strings.Cut(l, " ")
		if want := map[bool]string{true: "GZIP", false: "ZSTD"}[name == "customer_email_hash"]; codec != want {
			t.Errorf("column %s compressed with %s, want %s", name, codec, want)
		}
	}
	if !parquet.EqualNodes(partSchema, parquet.SchemaOf(partRow{})) {
		t.Errorf("partSchema differs from partRow's schema: only the hash column's codec may")
	}

	if pf.Rows != int64(len(rows)) {
		t.Errorf("Rows = %d, want %d", pf.Rows, len(rows))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); pf.SHA256 != hex.EncodeToString(sum[:]) || pf.Bytes != int64(len(data)) {
		t.Errorf("part %+v, want %d bytes, SHA-256 %x", pf, len(data), sum)
	}
	if tmp, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*.tmp")); len(tmp) > 0 {
		t.Errorf("left behind: %v", tmp)
	}
}

// TestWritePartFailure checks that a failed write leaves nothing under
// the final name and no temporary file.
func TestWritePartFailure(t *testing.T) {
	rows, items := partTestRows()
	f := func(name string, mutate func(dir, path string, rows []outRow), wantErr string) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "part-1.parquet")
			rows := slices.Clone(rows)
			mutate(dir, path, rows)
			_, err := writePart(context.Background(), path, rows, items)
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("error %v, want one containing %q", err, wantErr)
			}
			if st, err := os.Stat(path); err == nil && !st.IsDir() {
				t.Errorf("a file exists under the final name after %v", err)
			}
			if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
				t.Errorf("the temporary file is left: %v", err)
			}
		})
	}
	f("no directory", func(dir, path string, _ []outRow) {
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
	}, "cannot write part")
	f("amount out of range", func(_, _ string, rows []outRow) {
		rows[1].ev.Amount = maxPartDecimal + 1
	}, "exceeds the part column DECIMAL(18,4)")
	f("base amount out of range", func(_, _ string, rows []outRow) {
		rows[0].ev.BaseAmount = -maxPartDecimal - 1
	}, "exceeds the part column DECIMAL(18,4)")
	f("final name taken by a directory", func(_, path string, _ []outRow) {
		if err := os.MkdirAll(filepath.Join(path, "x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}, "cannot write part")
}

// benchRows returns the accepted rows and items arena of one micro-batch
// of n benchEvents, decoded and cleaned by the engine, and the raw size of
// the accepted records.
func benchRows(b testing.TB, n int) ([]outRow, []byte, int64) {
	b.Helper()
	dir := b.TempDir()
	w, _ := benchWAL(b, dir, n)
	defer w.Close()
	e, err := Open(Options{
		Dir: dir, ApplianceID: "bench", WAL: w, Topics: testTopics(), BatchRecords: n,
		Window: window.Options{Size: time.Minute, Lateness: 5 * time.Minute},
		Logger: quietLogger(), Now: func() time.Time { return testNow },
	})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	bt := e.newBatch()
	if _, err := w.Read(wal.Cursor{}, n, func(en wal.Entry) error {
		bt.entries = append(bt.entries, en)
		bt.records += len(en.Records)
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	e.process(bt)
	var raw int64
	for i := range bt.rows {
		raw += int64(bt.rows[i].ev.RawSize)
	}
	return bt.rows, bt.items, raw
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWritePart measures writePart on one micro-batch of 50000
// benchEvents: Parquet encoding, zstd, SHA-256, file and directory fsync.
// In distinct-customers every row has a customer of its own; in
// 50k-customers the customers are drawn from 50 000 at random, as in
// `offload bench`'s generated events, so a customer's e-mail hash repeats
// in the part. cpu-ns/row is the process's CPU time, steadier than ns/row
// on a shared machine; ratio-raw is the part's size over the accepted
// records' JSON.
//
//	go test ./engine -run '^$' -bench BenchmarkWritePart -benchmem -benchtime 10x -count 3
func BenchmarkWritePart(b *testing.B) {
	rows, items, raw := benchRows(b, 50000)
	rnd := rand.New(rand.NewPCG(1, 2))
	drawn := slices.Clone(rows)
	for i := range drawn {
		c := rnd.IntN(50000)
		sum := sha256.Sum256(fmt.Appendf(nil, "customer%d@example.com", c))
		drawn[i].ev.CustomerEmailHash = hex.EncodeToString(sum[:])
		drawn[i].ev.CustomerID = fmt.Sprintf("cust-%06d", c)
	}
	for _, bc := range []struct {
		name string
		rows []outRow
	}{{"distinct-customers", rows}, {"50k-customers", drawn}} {
		b.Run(bc.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "part.parquet")
			var pf partFile
			var pe partEncoder // as the engine's, reused part after part
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for range b.N {
				var err error
				if pf, err = pe.write(context.Background(), path, bc.rows, items); err != nil {
					b.Fatal(err)
				}
			}
			cpu := cpuTime() - cpu0
			b.StopTimer()
			n := float64(b.N) * float64(len(bc.rows))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/row")
			b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/row")
			b.ReportMetric(float64(pf.Bytes)/float64(len(bc.rows)), "B/row")
			b.ReportMetric(float64(pf.Bytes)/float64(raw), "ratio-raw")
		})
	}
}
