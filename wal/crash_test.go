package wal

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// The crash tests run a fixed workload on a crashable in-memory FS wrapped
// by errorfs, and take a CrashClone just before the k-th write operation
// (so after k-1 of them have run), for every k until the workload runs out
// of write operations. Each clone is what the disk could hold after a
// power failure at that moment; it must reopen cleanly and hold every
// append that was acknowledged before the clone, exactly once.

// crashBatch is one Append of the workload: records from..to.
type crashBatch struct{ from, to int64 }

// crashPlan is what one partition is sent, in order. Batches overlap to
// play Kafka re-deliveries cut at other boundaries.
type crashPlan struct {
	tp      TopicPartition
	batches []crashBatch
}

// crashRecord is the record the crash workload stores: values of varying
// size so memtables flush and entries span blocks.
func crashRecord(tp TopicPartition, off int64) Record {
	v := bytes.Repeat([]byte{byte('a' + off%26)}, 80+int(off%7)*60)
	v = append(v, fmt.Sprintf("|%s|%d", tp, off)...)
	r := Record{Offset: off, Timestamp: 5000 + off, Value: v}
	if off%3 != 0 {
		r.Key = []byte(fmt.Sprintf("key-%d", off))
	}
	return r
}

func (b crashBatch) records(tp TopicPartition) []Record {
	out := make([]Record, 0, b.to-b.from+1)
	for off := b.from; off <= b.to; off++ {
		out = append(out, crashRecord(tp, off))
	}
	return out
}

// crashWorkload: two partitions appended in turn by one goroutine, with a
// truncation in between, then four partitions appended concurrently.
var (
	crashSequential = []crashPlan{
		{TopicPartition{Topic: "orders", Partition: 0}, []crashBatch{{0, 4}, {5, 9}, {3, 14}, {15, 15}, {10, 20}, {21, 29}, {30, 31}, {25, 40}}},
		{TopicPartition{Topic: "payments", Partition: 0}, []crashBatch{{100, 102}, {100, 102}, {103, 110}, {104, 111}, {112, 130}, {131, 132}, {133, 140}, {141, 141}}},
	}
	// After this many rounds of crashSequential, crashTruncate is applied.
	crashTruncateAfter = 5
	crashTruncate      = Cursor{{Topic: "orders", Partition: 0}: 12}
	crashConcurrent    = []crashPlan{
		{TopicPartition{Topic: "orders", Partition: 1}, []crashBatch{{0, 5}, {6, 9}, {2, 12}, {13, 20}, {21, 22}, {23, 30}}},
		{TopicPartition{Topic: "orders", Partition: 2}, []crashBatch{{7, 7}, {8, 15}, {16, 16}, {10, 25}, {26, 40}, {41, 41}}},
		{TopicPartition{Topic: "orders", Partition: 3}, []crashBatch{{0, 0}, {1, 1}, {2, 2}, {0, 3}, {4, 9}, {10, 12}}},
		{TopicPartition{Topic: "refunds", Partition: 0}, []crashBatch{{50, 60}, {61, 70}, {55, 75}, {76, 80}, {81, 90}, {91, 99}}},
	}
)

// crashEvent is an operation that returned successfully.
type crashEvent struct {
	tp       TopicPartition
	batch    int  // index in the partition's plan
	truncate bool // the truncation of crashTruncate
}

// crashRun is one run of the workload with a clone taken at write op k.
type crashRun struct {
	mem *vfs.MemFS
	cfg vfs.CrashCloneCfg
	k   int64
	ops atomic.Int64

	mu       sync.Mutex
	acked    []crashEvent
	started  map[TopicPartition]int // batches whose Append began
	clone    *vfs.MemFS
	ackedAt  []crashEvent // acked when the clone was taken
	startAt  map[TopicPartition]int
	cloneSet atomic.Bool
	flushes  int64 // memtable flushes of a run that took no clone
	reuses   atomic.Int64
}

func (r *crashRun) inject(op errorfs.Op) error {
	if op.Kind == errorfs.OpReuseForWrite {
		r.reuses.Add(1)
	}
	if op.Kind.ReadOrWrite() != errorfs.OpIsWrite {
		return nil
	}
	if r.ops.Add(1) == r.k {
		// Holding mu orders the clone against acknowledgements: an append
		// recorded in acked before this returned before the clone.
		r.mu.Lock()
		r.clone = r.mem.CrashClone(r.cfg)
		r.ackedAt = append([]crashEvent(nil), r.acked...)
		r.startAt = make(map[TopicPartition]int, len(r.started))
		for tp, n := range r.started {
			r.startAt[tp] = n
		}
		r.mu.Unlock()
		r.cloneSet.Store(true)
	}
	return nil
}

func (r *crashRun) start(tp TopicPartition) {
	r.mu.Lock()
	r.started[tp]++
	r.mu.Unlock()
}

func (r *crashRun) ack(e crashEvent) {
	r.mu.Lock()
	r.acked = append(r.acked, e)
	r.mu.Unlock()
}

// run performs the workload, stopping early once the clone is taken.
func (r *crashRun) run(t *testing.T) {
	opts := testOptions(t, wrapFS(r.mem, errorfs.InjectorFunc(r.inject)))
	opts.MemTableSize = 16 << 10 // flush often, so crashes hit flushes too
	w, err := Open("wal", opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	appendBatch := func(p crashPlan, i int) bool {
		if r.cloneSet.Load() {
			return false
		}
		r.start(p.tp)
		if _, err := w.Append(p.tp, p.batches[i].records(p.tp)); err != nil {
			t.Errorf("append %s batch %d: %v", p.tp, i, err)
			return false
		}
		r.ack(crashEvent{tp: p.tp, batch: i})
		return true
	}
	func() {
		for i := range crashSequential[0].batches {
			for _, p := range crashSequential {
				if !appendBatch(p, i) {
					return
				}
			}
			if i+1 == crashTruncateAfter {
				if _, err := w.Truncate(crashTruncate); err != nil {
					t.Errorf("truncate: %v", err)
					return
				}
				r.ack(crashEvent{truncate: true})
			}
		}
		var wg sync.WaitGroup
		for _, p := range crashConcurrent {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range p.batches {
					if !appendBatch(p, i) {
						return
					}
				}
			}()
		}
		wg.Wait()
	}()
	if m := w.db.Metrics(); !r.cloneSet.Load() {
		r.flushes = m.Flush.Count
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// expectedEntry is an entry the workload can leave: the records of one
// batch above the high water of the batches before it.
type expectedEntry struct {
	batch int
	recs  []Record
}

// expectedEntries returns, for each batch that writes something, its
// entry, in order.
func expectedEntries(p crashPlan) []expectedEntry {
	var out []expectedEntry
	high := int64(-1)
	for i, b := range p.batches {
		var keep []Record
		for _, rec := range b.records(p.tp) {
			if rec.Offset > high {
				keep = append(keep, rec)
			}
		}
		if len(keep) > 0 {
			out = append(out, expectedEntry{i, keep})
			high = keep[len(keep)-1].Offset
		}
	}
	return out
}

// entriesBefore counts the entries written by the first n batches.
func entriesBefore(exp []expectedEntry, n int) int {
	c := 0
	for _, e := range exp {
		if e.batch < n {
			c++
		}
	}
	return c
}

// checkRecovered opens fs (a crash clone) and checks it against the
// events acknowledged before the clone, then re-delivers the whole
// workload, as Kafka would after the crash, and checks each record is
// held exactly once.
func checkRecovered(t *testing.T, fs vfs.FS, acked []crashEvent, started map[TopicPartition]int) {
	t.Helper()
	w, err := Open("wal", testOptions(t, fs))
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer func() {
		if err := w.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	ackedBatches := map[TopicPartition]int{}
	truncDurable := false // the truncation was acknowledged and a synced append followed
	truncAcked := false
	for _, e := range acked {
		if e.truncate {
			truncAcked = true
			continue
		}
		ackedBatches[e.tp]++
		if truncAcked {
			truncDurable = true
		}
	}
	stats := map[TopicPartition]PartitionStats{}
	var statBytes uint64
	for _, s := range w.Stats() {
		stats[s.TopicPartition] = s
		statBytes += s.Bytes
	}
	if int64(statBytes) != w.Bytes() {
		t.Errorf("Bytes() = %d, stats sum to %d", w.Bytes(), statBytes)
	}
	entries, _ := readAll(t, w, nil)
	got := map[TopicPartition][]Entry{}
	for _, e := range entries {
		got[e.TopicPartition] = append(got[e.TopicPartition], e)
	}
	plans := append(append([]crashPlan(nil), crashSequential...), crashConcurrent...)
	heldBefore := map[TopicPartition][]expectedEntry{} // what the re-delivery must end with
	for _, p := range plans {
		exp := expectedEntries(p)
		st, ok := stats[p.tp]
		if !ok {
			st = PartitionStats{TopicPartition: p.tp, FirstOffset: -1, HighWater: -1}
		}
		// The high water names how many entries were made durable.
		e := 0
		for e < len(exp) && exp[e].recs[len(exp[e].recs)-1].Offset <= st.HighWater {
			e++
		}
		endOf := int64(-1) // last offset of the first e entries
		if e > 0 {
			endOf = exp[e-1].recs[len(exp[e-1].recs)-1].Offset
		}
		if endOf != st.HighWater {
			t.Errorf("%s: high water %d is not the end of any append", p.tp, st.HighWater)
			continue
		}
		if least := entriesBefore(exp, ackedBatches[p.tp]); e < least {
			t.Errorf("%s: %d entries durable, but %d were acknowledged (lost acknowledged data)", p.tp, e, least)
		}
		if most := entriesBefore(exp, started[p.tp]); e > most {
			t.Errorf("%s: %d entries durable, but only %d were attempted", p.tp, e, most)
		}
		// Entries wholly below the truncation are gone if it reached the
		// disk, which it must have if a synced append followed it. It
		// can only have if the appends before it did.
		s := 0
		if below, ok := crashTruncate[p.tp]; ok {
			atTrunc := entriesBefore(exp, crashTruncateAfter)
			n := 0
			for n < atTrunc && exp[n].recs[len(exp[n].recs)-1].Offset < below {
				n++
			}
			if held := got[p.tp]; e >= atTrunc && len(held) > 0 && held[0].Records[0].Offset == exp[n].recs[0].Offset {
				s = n
			}
			if truncDurable && s != n {
				t.Errorf("%s: truncation below %d was acknowledged and followed by a synced append, but is not on disk", p.tp, below)
			}
		}
		want := exp[s:e]
		held := got[p.tp]
		if len(held) != len(want) {
			t.Errorf("%s: %d entries held, want %d (entries %d..%d of the plan)", p.tp, len(held), len(want), s, e)
			continue
		}
		var bytes, records uint64
		for i := range want {
			if len(held[i].Records) != len(want[i].recs) {
				t.Errorf("%s entry %d: %d records, want %d: half-present append", p.tp, i, len(held[i].Records), len(want[i].recs))
				continue
			}
			for j := range want[i].recs {
				if !sameRecord(held[i].Records[j], want[i].recs[j]) {
					t.Errorf("%s entry %d record %d: got %s, want %s", p.tp, i, j, fmtRecord(held[i].Records[j]), fmtRecord(want[i].recs[j]))
				}
			}
			bytes += uint64(len(entryKey(p.tp, want[i].recs[0].Offset)) + encodedLen(want[i].recs))
			records += uint64(len(want[i].recs))
		}
		first := int64(-1)
		if len(want) > 0 {
			first = want[0].recs[0].Offset
		}
		if st.Entries != uint64(len(want)) || st.Records != records || st.Bytes != bytes || st.FirstOffset != first {
			t.Errorf("%s: stats %+v disagree with the entries (entries %d records %d bytes %d first %d)",
				p.tp, st, len(want), records, bytes, first)
		}
		heldBefore[p.tp] = exp[s:]
	}
	rep, err := w.Verify()
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	for _, c := range rep.Corruptions {
		t.Errorf("verify after crash: %v", c)
	}
	if rep.Bytes != w.Bytes() {
		t.Errorf("verify counts %d bytes, Bytes() = %d", rep.Bytes, w.Bytes())
	}
	if t.Failed() {
		return
	}

	// Kafka re-delivers everything not committed; re-sending all of it is
	// the worst case. Nothing may be duplicated or lost.
	for _, p := range plans {
		for i, b := range p.batches {
			if _, err := w.Append(p.tp, b.records(p.tp)); err != nil {
				t.Fatalf("re-deliver %s batch %d: %v", p.tp, i, err)
			}
		}
	}
	entries, _ = readAll(t, w, nil)
	for _, p := range plans {
		var want []int64
		for _, e := range heldBefore[p.tp] {
			for _, r := range e.recs {
				want = append(want, r.Offset)
			}
		}
		if got := offsetsOf(entries, p.tp); !equalOffsets(got, want) {
			t.Errorf("%s after re-delivery: %v, want %v", p.tp, got, want)
		}
	}
}

func TestCrashAtEveryWrite(t *testing.T) {
	for _, c := range []struct {
		name     string
		unsynced int
	}{
		{"synced data only", 0},
		{"torn tail", 50},
	} {
		t.Run(c.name, func(t *testing.T) {
			var k int64
			for k = 1; ; k++ {
				r := &crashRun{mem: vfs.NewCrashableMem(), k: k, started: map[TopicPartition]int{}}
				if c.unsynced > 0 {
					r.cfg = vfs.CrashCloneCfg{UnsyncedDataPercent: c.unsynced, RNG: rand.New(rand.NewPCG(uint64(k), 7))}
				}
				r.run(t)
				if t.Failed() {
					t.Fatalf("workload failed at k=%d", k)
				}
				// Close has stopped Pebble's goroutines: nothing calls
				// inject any more.
				if !r.cloneSet.Load() {
					// The workload ran out of write operations before k:
					// check the final state, everything acknowledged.
					t.Logf("%d write operations, %d memtable flushes", k-1, r.flushes)
					if r.flushes < 2 || r.reuses.Load() == 0 {
						t.Errorf("the workload flushed %d memtables and recycled %d logs: crashes do not hit flushes and recycled logs",
							r.flushes, r.reuses.Load())
					}
					checkRecovered(t, r.mem, r.acked, r.started)
					break
				}
				checkRecovered(t, r.clone, r.ackedAt, r.startAt)
				if t.Failed() {
					t.Fatalf("after a crash before write operation %d (%d acknowledged operations)", k, len(r.ackedAt))
				}
			}
			if k < 100 {
				t.Errorf("only %d write operations: the workload does not exercise what it should", k)
			}
		})
	}
}
