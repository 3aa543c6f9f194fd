package engine

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/offload/offload/engine/window"
	"github.com/offload/offload/wal"
)

// benchRows returns the accepted rows and items arena of one micro-batch
// of n benchEvents, decoded and cleaned by the engine, and the raw size of
// the accepted records.
func benchRows(b *testing.B, n int) ([]outRow, []byte, int64) {
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
//
//	go test ./engine -run '^$' -bench BenchmarkWritePart -benchmem -count 3
func BenchmarkWritePart(b *testing.B) {
	rows, items, raw := benchRows(b, 50000)
	for _, enc := range []struct {
		name string
		fn   func()
	}{
		{"parquet-go/zstd-default", func() { partEncoder = encodePQGo; partZstdLevel = 2 }},
		{"parquet-go/zstd-fastest", func() { partEncoder = encodePQGo; partZstdLevel = 1 }},
		{"arrow-go/zstd-3", func() { partEncoder = encodeArrow; arrowZstdLevel = 3 }},
		{"arrow-go/zstd-1", func() { partEncoder = encodeArrow; arrowZstdLevel = 1 }},
		{"arrow-go/zstd-3-nostats", func() { partEncoder = encodeArrow; arrowZstdLevel = 3; arrowStats = false }},
	} {
		b.Run(enc.name, func(b *testing.B) {
			enc.fn()
			path := filepath.Join(b.TempDir(), "part.parquet")
			var pf partFile
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for range b.N {
				var err error
				if pf, err = writePart(path, rows, items); err != nil {
					b.Fatal(err)
				}
			}
			cpu := cpuTime() - cpu0
			b.StopTimer()
			n := float64(b.N) * float64(len(rows))
			b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/row")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/row")
			b.ReportMetric(float64(pf.Bytes)/float64(len(rows)), "B/row")
			b.ReportMetric(float64(pf.Bytes)/float64(raw), "ratio-raw")
		})
	}
}
