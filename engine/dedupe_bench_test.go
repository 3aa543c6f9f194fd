package engine

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/offload/offload/engine/window"
	"github.com/offload/offload/wal"
)

// dedupeDayEnv sets the unique events of BenchmarkDedupeDay; unset, the
// benchmark is skipped (a full day takes minutes: docs/PERFORMANCE.md).
const dedupeDayEnv = "OFFLOAD_DEDUPE_DAY_EVENTS"

// BenchmarkDedupeDay feeds the engine's dedupe (Engine.duplicate per
// event, the key store's commit per micro-batch of 50,000 records, as
// Step does after each DuckDB commit) a day of event time compressed in
// wall time: N unique events spread evenly over 24h (86.4M is 1,000 a
// second), plus a duplicate after every 100th, of an id drawn uniformly
// from the 23 hours before it. It checks that every duplicate is caught
// and no fresh id is taken for one, and reports the dedupe's CPU per
// event, the peak RSS of the process, the filters' memory and the key
// store's disk, and the time an Engine takes to open over the full
// 24-hour store (filters rebuilt from disk). Engine.DiskBytes counts the
// store.
//
//	OFFLOAD_DEDUPE_DAY_EVENTS=86400000 go test ./engine -run '^$' -bench BenchmarkDedupeDay -benchtime 1x -timeout 2h
func BenchmarkDedupeDay(b *testing.B) {
	n, _ := strconv.ParseInt(os.Getenv(dedupeDayEnv), 10, 64)
	if n <= 0 {
		b.Skipf("set %s (86400000 for 24h at 1,000 unique events a second)", dedupeDayEnv)
	}
	dir := b.TempDir()
	w, err := wal.Open(dir+"/wal", wal.Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	opts := Options{
		Dir: dir, ApplianceID: "bench", WAL: w, Topics: testTopics(),
		Window: window.Options{Size: time.Minute, Lateness: 5 * time.Minute},
		Logger: quietLogger(), Now: func() time.Time { return testNow },
	}
	e, err := Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	var peakRSS uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			peakRSS = max(peakRSS, rss())
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()

	step := 24 * time.Hour / time.Duration(n) // event time between unique events
	back := int64(23 * time.Hour / step)      // duplicates within the last 23h
	rng := rand.New(rand.NewPCG(1, 2))
	id := func(i int64) string { return fmt.Sprintf("evt_%011d", i) }
	const batchRecords = 50000
	var fresh, dups, missed, falseDups int64
	b.ResetTimer()
	start := time.Now()
	cpu0 := cpuTime()
	for i := int64(0); i < n; {
		bt := e.newBatch()
		bt.seen = make(map[dedupeKey]struct{}, batchRecords)
		e.expireDedupe(bt)
		for r := 0; r < batchRecords && i < n; r++ {
			t := t0.Add(time.Duration(i) * step)
			if i%100 == 99 && r+1 < batchRecords {
				// A duplicate of an earlier id, at its original time.
				j := i - 1 - rng.Int64N(min(i, back))
				if !e.duplicate(bt, id(j), t0.Add(time.Duration(j)*step)) {
					missed++
				}
				dups++
				r++
			}
			if e.duplicate(bt, id(i), t) {
				falseDups++
			}
			fresh++
			i++
		}
		if bt.err != nil {
			b.Fatal(bt.err)
		}
		e.dedupeMax = bt.dedupeMax
		if err := e.commitKeys(bt); err != nil {
			b.Fatal(err)
		}
	}
	cpu := cpuTime() - cpu0
	elapsed := time.Since(start)
	b.StopTimer()
	e.snapshotStats(0, 0)
	st := e.Stats()
	// The reopened engine finds no horizon in DuckDB (no micro-batch
	// committed there): it rebuilds the filters of every key on disk.
	if err := e.Close(); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	openStart := time.Now()
	e2, err := Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	openTook := time.Since(openStart)
	held := e2.keys.held
	if err := e2.Close(); err != nil {
		b.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if missed != 0 || falseDups != 0 {
		b.Fatalf("%d of %d duplicates missed, %d fresh ids taken for duplicates", missed, dups, falseDups)
	}
	b.ReportMetric(float64(fresh+dups)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(fresh+dups), "cpu-us/event")
	b.ReportMetric(float64(dups), "duplicates-caught")
	b.ReportMetric(float64(st.DedupeKeys), "keys-held")
	b.ReportMetric(st.DedupeHeld.Hours(), "hours-held")
	b.ReportMetric(float64(st.DedupeFilterBytes)/(1<<20), "filter-MiB")
	b.ReportMetric(float64(st.DedupeDiskLookups)/float64(fresh+dups)*100, "disk-lookups-%")
	b.ReportMetric(float64(st.DedupeFalsePositives)/float64(fresh)*100, "false-positive-%")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(e.keys.diskBytes.Load())/(1<<20), "store-MiB")
	b.ReportMetric(openTook.Seconds(), "open-s")
	b.ReportMetric(float64(held), "keys-after-open")
}

// BenchmarkDedupeLookupDuckDB measures the alternative the key store was
// chosen over: the keys in a DuckDB table (as schema 2 kept them) and a
// micro-batch's filter hits confirmed there, by one join of the batch's
// probes against the table. With OFFLOAD_DEDUPE_DAY_EVENTS keys (hashes
// generated by DuckDB) it reports the time of one such join of 1,000
// probes, half of them present, per probe.
//
//	OFFLOAD_DEDUPE_DAY_EVENTS=86400000 go test ./engine -run '^$' -bench BenchmarkDedupeLookupDuckDB -benchtime 5x
func BenchmarkDedupeLookupDuckDB(b *testing.B) {
	n, _ := strconv.ParseInt(os.Getenv(dedupeDayEnv), 10, 64)
	if n <= 0 {
		b.Skipf("set %s to the keys the table holds", dedupeDayEnv)
	}
	db, err := sql.Open("duckdb", filepath.Join(b.TempDir(), "keys.duckdb"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	for _, q := range []string{
		`CREATE TABLE dedupe AS SELECT hash(i) AS hash_hi, hash(i, 7) AS hash_lo,
			make_timestamp(1714564800000000 + i * 1000) AS event_time FROM range(` + strconv.FormatInt(n, 10) + `) t(i)`,
		`CHECKPOINT`,
		`CREATE TABLE probes (hash_hi UBIGINT, hash_lo UBIGINT)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	const probes = 1000
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		off := rand.Int64N(n - probes)
		if _, err := db.ExecContext(ctx, `DELETE FROM probes`); err != nil {
			b.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO probes SELECT hash(i), xor(hash(i, 7), (i % 2)::UBIGINT) FROM range(?, ?) t(i)`, off, off+probes); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		var found int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM probes p JOIN dedupe d USING (hash_hi, hash_lo)`).Scan(&found); err != nil {
			b.Fatal(err)
		}
		if found != probes/2 {
			b.Fatalf("%d of %d probes found, want %d", found, probes, probes/2)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*probes), "us/probe")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/micro-batch")
}
