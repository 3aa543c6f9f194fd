package loader

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/wal"
)

// BenchmarkLoad ships b.N ~300-byte JSON events, sealed into batches of
// 50000 rows, from a real engine into the Snowflake-protocol test server
// through the real driver: export to zstd Parquet, PUT, COPY, and the
// load transaction. It reports rows and Parquet bytes per second, and the
// bytes shipped as a share of the raw JSON.
//
//	go test ./loader -run '^$' -bench BenchmarkLoad -benchtime 500000x -count 3
func BenchmarkLoad(b *testing.B) {
	const perBatch = 50000
	dir := b.TempDir()
	w, err := wal.Open(filepath.Join(dir, "wal"), wal.Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	e, err := engine.Open(engine.Options{
		Dir: dir, ApplianceID: "bench", WAL: w, Logger: quietLogger(), BatchRecords: perBatch,
		Topics: map[string]event.Config{"orders": {HashKey: []byte("loader-bench-key-0123")}},
		Seal:   engine.SealPolicy{Rows: perBatch, Bytes: 1 << 40, Age: time.Hour},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	var raw int64
	start := time.Now().UTC().Add(-48 * time.Hour)
	tp := wal.TopicPartition{Topic: "orders", Partition: 0}
	for i := 0; i < b.N; i += 1000 {
		var recs []wal.Record
		for j := i; j < min(i+1000, b.N); j++ {
			v := fmt.Appendf(nil, `{"event_id":"evt_%09d","order_id":"ORD-%08d","event_type":"order_placed","store_id":"store-%03d","customer_id":"cust-%06d","customer_email":"user%d@example.com","amount":"%d.%02d","currency":"%s","channel":"web","items":[{"sku":"SKU-%04d","qty":%d,"unit_price":"%d.50"}],"event_time":"%s"}`,
				j, j/2, j%500, j%100000, j%100000, 10+j%90, j%100, []string{"EUR", "USD", "GBP"}[j%3], j%5000, 1+j%3, 5+j%20,
				start.Add(time.Duration(j)*10*time.Millisecond).Format(time.RFC3339Nano))
			raw += int64(len(v))
			recs = append(recs, wal.Record{Offset: int64(j), Timestamp: start.UnixMilli(), Value: v})
		}
		if _, err := w.Append(tp, recs); err != nil {
			b.Fatal(err)
		}
	}
	stepAll(b, e)
	if err := e.SealNow(); err != nil {
		b.Fatal(err)
	}
	wh := newWarehouse(b)
	opts := fastOptions(e, wh.sink(b, AuthPassword), b.TempDir())
	opts.LoadTimeout = 10 * time.Minute
	b.ResetTimer()
	began := time.Now()
	l := shipAll(b, e, opts)
	elapsed := time.Since(began)
	b.StopTimer()
	st := l.Status()
	if st.Rows != int64(b.N) || st.Retries != 0 {
		b.Fatalf("status %+v", st)
	}
	b.ReportMetric(float64(st.Rows)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(st.BytesShipped)/elapsed.Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(st.BytesShipped)/float64(raw)*100, "%shipped/raw")
	b.ReportMetric(float64(st.Loaded), "loads")
}
