package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/offload/offload/engine/window"
	"github.com/offload/offload/wal"
)

func BenchmarkScratchDuck(b *testing.B) {
	dir := b.TempDir()
	n := 50000
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
	ctx := context.Background()
	out := filepath.Join(dir, "p.parquet")
	for _, mode := range []string{"appender+copy", "copy-only"} {
		b.Run(mode, func(b *testing.B) {
			if _, err := e.conn.ExecContext(ctx, `DELETE FROM outbox_rows`); err != nil {
				b.Fatal(err)
			}
			if err := e.writeRows(bt); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for range b.N {
				if mode == "appender+copy" {
					b.StopTimer()
					if _, err := e.conn.ExecContext(ctx, `DELETE FROM outbox_rows`); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if err := e.writeRows(bt); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := e.conn.ExecContext(ctx, fmt.Sprintf(`COPY (SELECT * EXCLUDE (batch_id) FROM outbox_rows) TO '%s' (FORMAT parquet, COMPRESSION zstd)`, out)); err != nil {
					b.Fatal(err)
				}
			}
			cpu := cpuTime() - cpu0
			b.StopTimer()
			st, _ := os.Stat(out)
			nn := float64(b.N) * float64(len(bt.rows))
			b.ReportMetric(float64(cpu.Nanoseconds())/nn, "cpu-ns/row")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/nn, "ns/row")
			b.ReportMetric(float64(st.Size())/float64(len(bt.rows)), "B/row")
			b.ReportMetric(float64(st.Size())/float64(raw), "ratio-raw")
		})
	}
}
