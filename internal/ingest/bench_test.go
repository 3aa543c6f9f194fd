package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/wal"
)

// BenchmarkIngestKfake measures kfake -> Ingest -> WAL (a real directory,
// every append fsync'd) with ~300-byte JSON records over 8 partitions. One
// op is one record; the records are produced before the timer starts, so
// the figure is ingest's drain rate of a backlog (kfake serves the fetches
// in the same process and shares the CPU).
//
//	go test ./internal/ingest -run '^$' -bench BenchmarkIngestKfake -benchtime 400000x
//
// OFFLOAD_BENCH_CPUPROFILE=file profiles the timed part only;
// OFFLOAD_BENCH_FETCH_MAX_BYTES=n sets Options.FetchMaxBytes.
func BenchmarkIngestKfake(b *testing.B) {
	const partitions = 8
	brokers := newCluster(b, kfake.SeedTopics(partitions, "orders"))
	p := newProducer(b, brokers, kgo.ProducerLinger(5*time.Millisecond), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	var size int64
	const chunk = 5000
	for base := 0; base < b.N; base += chunk {
		m := min(chunk, b.N-base)
		recs := make([]*kgo.Record, m)
		for i := range recs {
			seq := base + i
			recs[i] = &kgo.Record{Topic: "orders", Key: fmt.Appendf(nil, "ord-%08d", seq/3), Value: eventJSON(seq)}
			size += int64(len(recs[i].Key) + len(recs[i].Value))
		}
		if err := p.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	w, err := wal.Open(b.TempDir(), wal.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	var fetchMax int32
	if v := os.Getenv("OFFLOAD_BENCH_FETCH_MAX_BYTES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		fetchMax = int32(n)
	}
	in, err := New(Options{Brokers: brokers, Topics: []string{"orders"}, Group: "bench", WAL: w, FetchMaxBytes: fetchMax, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close(context.Background())
	b.SetBytes(size / int64(b.N))
	b.ReportAllocs()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	if path := os.Getenv("OFFLOAD_BENCH_CPUPROFILE"); path != "" {
		// Profiles the timed part only, not the produce before it.
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	b.ResetTimer()
	t0 := time.Now()
	go func() { done <- in.Run(ctx) }()
	for walRecords(w) < b.N {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(t0)
	b.StopTimer()
	pprof.StopCPUProfile()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if got := walRecords(w); got != b.N {
		b.Fatalf("WAL holds %d records, want %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	s := in.Stats()
	b.ReportMetric(float64(s.Commits), "commits")
	b.ReportMetric(float64(s.Records)/float64(max(s.Appends, 1)), "records/append")
}
