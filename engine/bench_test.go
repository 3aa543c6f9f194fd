package engine

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload/offload/bench/gen"
	"github.com/offload/offload/engine/window"
	"github.com/offload/offload/wal"
)

// benchEvents returns n ~300-byte JSON events: 500 stores, 100k customers,
// one event in a hundred a duplicate, event times 1 ms apart (so windows
// close and are emitted as the benchmark runs).
func benchEvents(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		id := i
		if i%100 == 99 {
			id = i - 50 // a duplicate
		}
		at := t0.Add(time.Duration(i) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
		out[i] = fmt.Appendf(nil, `{"event_id":"evt_%08d","order_id":"ORD-%07d","event_type":"order_placed","store_id":"store-%03d","customer_id":"cust-%06d","customer_email":"user%d@example.com","amount":"%d.%02d","currency":"EUR","channel":"web","items":[{"sku":"SKU-%04d","qty":%d,"unit_price":"%d.50"}],"event_time":"%s"}`,
			id, id/2, id%500, id%100000, id%100000, 10+id%90, id%100, id%5000, 1+id%3, 5+id%20, at)
	}
	return out
}

// benchEventsEnv chooses the events of the benchmarks that fill a WAL
// (benchValues).
const benchEventsEnv = "OFFLOAD_BENCH_EVENTS"

// benchValues returns n record values: benchEvents, or with
// OFFLOAD_BENCH_EVENTS=generated the events `offload bench` produces
// (bench/gen: 1 to 3 random items, 200 stores, 50,000 customers, random
// amounts and codes, its shares of malformed, late and duplicate
// records), which cost the engine more than benchEvents' regular ones
// (docs/PERFORMANCE.md, "The benchmarks' events and the drain's").
func benchValues(b testing.TB, n int) [][]byte {
	switch v := os.Getenv(benchEventsEnv); v {
	case "":
		return benchEvents(n)
	case "generated":
		g := gen.New(gen.Options{Seed: 1})
		out := make([][]byte, 0, n)
		// 2,000 events every 8 ms of event time, 250,000 a second, as a
		// backlog fetched at the drain's rate.
		for at := t0; len(out) < n; at = at.Add(8 * time.Millisecond) {
			recs, _ := g.Batch(2000, at)
			for _, r := range recs[:min(len(recs), n-len(out))] {
				out = append(out, r.Value)
			}
		}
		return out
	default:
		b.Fatalf("%s=%q: want generated, or unset for benchEvents", benchEventsEnv, v)
		return nil
	}
}

// benchWAL fills a WAL in dir/wal with n benchValues: 4 partitions,
// fetched batches of 1000 records. It returns the WAL and the events'
// bytes.
func benchWAL(b testing.TB, dir string, n int) (*wal.WAL, int64) {
	b.Helper()
	w, err := wal.Open(filepath.Join(dir, "wal"), wal.Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	evs := benchValues(b, n)
	var bytes int64
	const parts, fetch = 4, 1000
	next := make([]int64, parts)
	for i := 0; i < len(evs); i += fetch * parts {
		for p := 0; p < parts; p++ {
			var recs []wal.Record
			for j := i + p*fetch; j < min(i+(p+1)*fetch, len(evs)); j++ {
				recs = append(recs, wal.Record{Offset: next[p], Timestamp: kafkaTime.UnixMilli(), Value: evs[j]})
				next[p]++
				bytes += int64(len(evs[j]))
			}
			if len(recs) > 0 {
				if _, err := w.Append(wal.TopicPartition{Topic: "orders", Partition: int32(p)}, recs); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	evs = nil
	debug.FreeOSMemory() // the generated events are not part of the engine's footprint
	return w, bytes
}

// BenchmarkEngine measures the engine end to end from a WAL already
// holding b.N ~300-byte JSON events (4 partitions, fetched batches of 1000
// records): decode, clean, validate, mask, dedupe, windows, the outbox
// rows and one DuckDB transaction per micro-batch of 50000 records, with
// DuckDB's memory_limit at its default 512 MiB and 2 threads. peak-RSS
// covers the whole test process (the WAL's Pebble included);
// peak-duckdb is DuckDB's own account of the memory memory_limit bounds.
//
//	go test ./engine -run '^$' -bench BenchmarkEngine -benchtime 1000000x -count 3
//
// OFFLOAD_BENCH_CPUPROFILE=file writes a CPU profile of the timed part.
func BenchmarkEngine(b *testing.B) {
	dir := b.TempDir()
	w, bytes := benchWAL(b, dir, b.N)
	defer w.Close()
	e, err := Open(benchOptions(dir, w))
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	runtime.GC()

	var peakHeap, peakRSS uint64
	var peakDuck int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peakHeap = max(peakHeap, ms.HeapInuse)
			peakRSS = max(peakRSS, rss())
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	if path := os.Getenv("OFFLOAD_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}

	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	total := 0
	for {
		n, err := e.Step(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			break
		}
		total += n
		// DuckDB's own accounting of its buffer memory, which
		// memory_limit bounds.
		var duck int64
		if err := e.conn.QueryRowContext(context.Background(), `SELECT sum(memory_usage_bytes)::BIGINT FROM duckdb_memory()`).Scan(&duck); err != nil {
			b.Fatal(err)
		}
		peakDuck = max(peakDuck, duck)
	}
	// Checkpoint inside the timed part: work DuckDB would otherwise defer
	// past the end of the run is counted.
	if _, err := e.conn.ExecContext(context.Background(), `CHECKPOINT`); err != nil {
		b.Fatal(err)
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	close(stop)
	wg.Wait()
	if total != b.N {
		b.Fatalf("consumed %d records of %d", total, b.N)
	}
	st := e.Stats()
	b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
	// The process's CPU time: steadier than the wall clock on a shared
	// machine, and what the drain's appliance_cpu_us_per_event counts.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(total), "cpu-ns/event")
	b.ReportMetric(float64(bytes)/elapsed.Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(peakDuck)/(1<<20), "peak-duckdb-MiB")
	b.ReportMetric(float64(e.DiskBytes())/float64(total), "disk-B/event")
	if st.Accepted+st.Deduplicated+st.Rejected != int64(total) {
		b.Fatalf("accepted %d + duplicates %d + dead-lettered %d != %d", st.Accepted, st.Deduplicated, st.Rejected, total)
	}
}

// benchOptions are the engine options of the benchmarks: the defaults,
// one-minute windows, the test clock.
func benchOptions(dir string, w *wal.WAL) Options {
	return Options{
		Dir: dir, ApplianceID: "bench", WAL: w, Topics: testTopics(),
		Window: window.Options{Size: time.Minute, Lateness: 5 * time.Minute},
		Logger: quietLogger(), Now: func() time.Time { return testNow },
	}
}

// rss returns the resident set size of this process, from /proc.
func rss() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkProcess measures the per-record path alone: decode, clean,
// validate, mask, enrich, dedupe and windows, micro-batch by micro-batch,
// with the in-memory state moved on as after a commit and the dedupe keys
// stored, but nothing written to DuckDB. The WAL is read before the timer starts.
//
//	go test ./engine -run '^$' -bench BenchmarkProcess -benchtime 1000000x -count 3
func BenchmarkProcess(b *testing.B) {
	dir := b.TempDir()
	w, bytes := benchWAL(b, dir, b.N)
	defer w.Close()
	e, err := Open(benchOptions(dir, w))
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	var batches []*batch
	for cur := (wal.Cursor{}); ; {
		bt := e.newBatch()
		next, err := w.Read(cur, e.opts.BatchRecords, func(en wal.Entry) error {
			bt.entries = append(bt.entries, en)
			bt.records += len(en.Records)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if bt.records == 0 {
			break
		}
		bt.cursor, cur = next, next
		batches = append(batches, bt)
	}
	runtime.GC()
	b.ResetTimer()
	start := time.Now()
	for _, bt := range batches {
		bt.dedupeMax, bt.nextDLQID = e.dedupeMax, e.nextDLQID
		e.process(bt)
		e.advance(bt)
		if err := e.commitKeys(bt); err != nil {
			b.Fatal(err)
		}
		bt.entries, bt.rows, bt.items = nil, nil, nil // as a committed batch is dropped
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if got := e.counters[cAccepted] + e.counters[cDeduplicated] + e.counters[cRejected]; got != int64(b.N) {
		b.Fatalf("accepted + duplicates + dead-lettered = %d, want %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(bytes)/elapsed.Seconds()/1e6, "MB/s")
}

// BenchmarkExportBatch measures what the loader asks of the outbox per
// batch: the parts of one sealed batch of b.N events (micro-batches of
// 50000, so ~b.N/50000 parts) checked against their checksums and
// compacted into one zstd Parquet file with the batch id, and the
// windows file. cpu-us/event counts the process's CPU time (DuckDB's
// threads included) over the export.
//
//	go test ./engine -run '^$' -bench BenchmarkExportBatch -benchtime 1000000x -count 3
func BenchmarkExportBatch(b *testing.B) {
	dir := b.TempDir()
	w, _ := benchWAL(b, dir, b.N)
	defer w.Close()
	e, err := Open(Options{
		Dir: dir, ApplianceID: "bench", WAL: w, Topics: testTopics(),
		Window: window.Options{Size: time.Minute, Lateness: 5 * time.Minute},
		Seal:   SealPolicy{Rows: 1 << 40, Bytes: 1 << 50, Age: 1000 * time.Hour},
		Logger: quietLogger(), Now: func() time.Time { return testNow },
	})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for {
		n, err := e.Step(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if err := e.SealNow(); err != nil {
		b.Fatal(err)
	}
	bs, err := e.SealedBatches()
	if err != nil || len(bs) != 1 {
		b.Fatalf("%v %+v", err, bs)
	}
	out := b.TempDir()
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	x, err := e.ExportBatch(context.Background(), bs[0].ID, out)
	if err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(x.Rows)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/event")
	b.ReportMetric(float64(x.FileBytes)/float64(x.Rows), "file-B/row")
}
