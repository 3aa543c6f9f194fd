package wal

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// jsonish returns a JSON e-commerce event of about size bytes for offset
// off: realistic field names and varying values, so Pebble's block
// compression sees what it would see in production rather than zeros.
func jsonish(off int64, size int) []byte {
	x := uint64(off)*0x9e3779b97f4a7c15 + 1
	next := func() uint64 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return x
	}
	b := fmt.Appendf(make([]byte, 0, size+32),
		`{"event_id":"ev-%016x","order_id":"o-%d","event_type":"order_placed","store_id":"s-%03d","customer_id":"c-%07d","amount":"%d.%02d","currency":"EUR","channel":"web","items":[{"sku":"SKU-%05d","qty":%d}],"event_time":"2026-11-25T12:%02d:%02dZ","note":"`,
		next(), off/3, next()%500, next()%10_000_000, next()%1000, next()%100, next()%100_000, 1+next()%5, next()%60, next()%60)
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 "
	for len(b) < size-2 {
		b = append(b, alphabet[next()%uint64(len(alphabet))])
	}
	return append(b, '"', '}')
}

// benchBatch returns n records of ~300-byte JSON values starting at off.
func benchBatch(off int64, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		o := off + int64(i)
		out[i] = Record{Offset: o, Timestamp: 1_764_072_000_000 + o, Key: fmt.Appendf(nil, "o-%d", o/3), Value: jsonish(o, 300)}
	}
	return out
}

// benchOpen opens a WAL on the real disk under b.TempDir(). The returned
// counter counts fsyncs of Pebble's log files.
func benchOpen(b *testing.B) (*WAL, *atomic.Int64) {
	b.Helper()
	syncs := new(atomic.Int64)
	fs := wrapFS(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if strings.HasSuffix(op.Path, ".log") {
				syncs.Add(1)
			}
		}
		return nil
	}))
	opts := testOptions(b, fs)
	opts.Now = time.Now
	w, err := Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	return w, syncs
}

func reportRates(b *testing.B, records int, bytes int64) {
	s := b.Elapsed().Seconds()
	b.ReportMetric(float64(records)/s, "records/s")
	b.ReportMetric(float64(bytes)/s/1e6, "MB/s")
}

// BenchmarkAppend measures synced appends of one partition, one batch per
// op, on the real disk under b.TempDir(). Every op is one fsync.
func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			w, syncs := benchOpen(b)
			defer mustClose(b, w)
			// A pool of pre-built batches, re-offset on use, so building
			// records is not measured.
			const pool = 8
			batches := make([][]Record, pool)
			var rawBytes int64
			for i := range batches {
				batches[i] = benchBatch(int64(i*n), n)
			}
			for _, r := range batches[0] {
				rawBytes += int64(len(r.Key) + len(r.Value))
			}
			b.SetBytes(rawBytes)
			tp := TopicPartition{Topic: "orders", Partition: 0}
			syncsBefore := syncs.Load()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				batch := batches[i%pool]
				base := int64(i) * int64(n)
				for j := range batch {
					batch[j].Offset = base + int64(j)
				}
				res, err := w.Append(tp, batch)
				if err != nil || res.Appended != n {
					b.Fatalf("append: %+v, %v", res, err)
				}
			}
			b.StopTimer()
			reportRates(b, b.N*n, int64(b.N)*rawBytes)
			b.ReportMetric(float64(b.N)/float64(syncs.Load()-syncsBefore), "appends/fsync")
		})
	}
}

// BenchmarkAppendConcurrent runs one appender per partition: their fsyncs
// are shared through Pebble's group commit, so the rate grows with the
// number of appenders although each append still waits for its fsync.
func BenchmarkAppendConcurrent(b *testing.B) {
	for _, c := range []struct{ goroutines, batch int }{{4, 1}, {8, 1}, {4, 100}, {8, 100}, {4, 1000}} {
		b.Run(fmt.Sprintf("goroutines=%d/batch=%d", c.goroutines, c.batch), func(b *testing.B) {
			w, syncs := benchOpen(b)
			defer mustClose(b, w)
			var rawBytes int64
			for _, r := range benchBatch(0, c.batch) {
				rawBytes += int64(len(r.Key) + len(r.Value))
			}
			b.SetBytes(rawBytes)
			syncsBefore := syncs.Load()
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			next := make(chan int, c.goroutines)
			for g := 0; g < c.goroutines; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tp := TopicPartition{Topic: "orders", Partition: int32(g)}
					batch := benchBatch(0, c.batch)
					base := int64(0)
					for range next {
						for j := range batch {
							batch[j].Offset = base + int64(j)
						}
						base += int64(c.batch)
						if _, err := w.Append(tp, batch); err != nil {
							b.Errorf("append: %v", err)
							return
						}
					}
				}()
			}
			for i := 0; i < b.N; i++ {
				next <- i
			}
			close(next)
			wg.Wait()
			b.StopTimer()
			reportRates(b, b.N*c.batch, int64(b.N)*rawBytes)
			b.ReportMetric(float64(b.N)/float64(syncs.Load()-syncsBefore), "appends/fsync")
		})
	}
}

// BenchmarkEncodeEntry measures the CPU cost of framing a 1000-record
// batch, without Pebble.
func BenchmarkEncodeEntry(b *testing.B) {
	recs := benchBatch(0, 1000)
	var raw int64
	for _, r := range recs {
		raw += int64(len(r.Key) + len(r.Value))
	}
	b.SetBytes(raw)
	b.ReportAllocs()
	buf := make([]byte, 0, encodedLen(recs))
	for i := 0; i < b.N; i++ {
		buf = encodeEntry(buf[:0], 0, recs)
	}
	runtime.KeepAlive(buf)
}

// BenchmarkDecodeEntry measures checking and decoding a 1000-record entry.
func BenchmarkDecodeEntry(b *testing.B) {
	recs := benchBatch(0, 1000)
	v := encodeEntry(nil, 0, recs)
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	out := make([]Record, 0, 1000)
	tp := TopicPartition{Topic: "orders", Partition: 0}
	for i := 0; i < b.N; i++ {
		out = out[:0]
		if _, err := decodeEntry(tp, 0, v, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConsumeCycle measures what a consumer of the WAL does once per
// micro-batch: read from its cursor, then truncate below the new cursor,
// with one 100-record entry appended per op. The cost per op must not grow
// with b.N (that is, with the number of truncations the WAL has seen):
// compare -benchtime 1000x with 20000x.
func BenchmarkConsumeCycle(b *testing.B) {
	w, _ := benchOpen(b)
	defer w.Close()
	tp := TopicPartition{Topic: "orders", Partition: 0}
	const n = 100
	cur := Cursor{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.Append(tp, benchBatch(int64(i)*n, n)); err != nil {
			b.Fatal(err)
		}
		next, err := w.Read(cur, n, func(Entry) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		if next[tp] != int64(i+1)*n {
			b.Fatalf("read to %d, want %d", next[tp], (i+1)*n)
		}
		cur = next
		if _, err := w.Truncate(cur); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify measures Verify over a WAL of about 100 MB of ~300-byte
// records in 4 partitions, reopened first as the daemon finds it at start
// (docs/PERFORMANCE.md).
func BenchmarkVerify(b *testing.B) {
	dir := b.TempDir()
	opts := testOptions(b, vfs.Default)
	w, err := Open(dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	const batch = 500
	for off := int64(0); w.Bytes() < 100<<20; off += batch {
		for p := int32(0); p < 4; p++ {
			mustAppend(b, w, TopicPartition{Topic: "orders", Partition: p}, benchBatch(off, batch))
		}
	}
	mustClose(b, w)
	if w, err = Open(dir, opts); err != nil {
		b.Fatal(err)
	}
	defer mustClose(b, w)
	b.ResetTimer()
	var rep VerifyReport
	for range b.N {
		if rep, err = w.Verify(); err != nil || len(rep.Corruptions) > 0 {
			b.Fatal(err, rep.Corruptions)
		}
	}
	reportRates(b, rep.Records*b.N, rep.Bytes*int64(b.N))
	b.ReportMetric(float64(rep.Bytes)/1e6, "MB-verified")
}

// BenchmarkDrain measures the CPU the WAL costs a backlog drain, Pebble's
// flushes and compactions included (they run on Pebble's goroutines, so
// the process's CPU time is what counts, not the wall clock): each op
// appends one 500-record entry (~165 KB) to each of 8 partitions, as
// ingest does for a fetch, and, once ~130 MB are held, reads and
// truncates as many records, as the engine does. It reports the
// process's CPU time per record and the directory's peak size. Run it
// with a fixed op count, e.g. -benchtime 1000x, and compare builds in
// alternating runs (docs/PERFORMANCE.md).
func BenchmarkDrain(b *testing.B) {
	const (
		partitions = 8
		batch      = 500
		lag        = 100 // ops appended before the first is consumed
	)
	w, _ := benchOpen(b)
	defer mustClose(b, w)
	batches := make([][]Record, partitions)
	for p := range batches {
		batches[p] = benchBatch(0, batch)
	}
	cur := Cursor{}
	consume := func() {
		next, err := w.Read(cur, partitions*batch, func(Entry) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Truncate(next); err != nil {
			b.Fatal(err)
		}
		cur = next
	}
	var peak uint64
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for i := range b.N {
		for p := range partitions {
			for j := range batches[p] {
				batches[p][j].Offset = int64(i*batch + j)
			}
			if _, err := w.Append(TopicPartition{Topic: "orders", Partition: int32(p)}, batches[p]); err != nil {
				b.Fatal(err)
			}
		}
		if i >= lag {
			consume()
		}
		if i%20 == 0 {
			peak = max(peak, w.DiskUsage())
		}
	}
	for w.Bytes() > 0 {
		consume()
	}
	// Compactions the drain started are part of its cost.
	for deadline := time.Now().Add(30 * time.Second); w.db.Metrics().Compact.NumInProgress > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	records := float64(b.N * partitions * batch)
	b.ReportMetric(float64(cpuTime(b)-cpu0)/records/1e3, "cpu-µs/record")
	b.ReportMetric(float64(peak)/1e6, "peak-disk-MB")
	b.ReportMetric(float64(w.DiskUsage())/1e6, "end-disk-MB")
	m := w.db.Metrics()
	b.ReportMetric(float64(m.BlobFiles.Local.LiveSize)/1e6, "end-blob-MB")
	b.ReportMetric(float64(m.Table.Local.LiveSize)/1e6, "end-sst-MB")
}

// cpuTime returns the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
