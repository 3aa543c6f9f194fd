package ingest

import (
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/offload/offload/wal"
)

// loadedCursor stands for the engine's Engine.Loaded: what the warehouse
// holds, set by the test.
type loadedCursor struct {
	mu  sync.Mutex
	cur wal.Cursor
}

func (l *loadedCursor) set(c wal.Cursor) {
	l.mu.Lock()
	l.cur = c.Clone()
	l.mu.Unlock()
}

func (l *loadedCursor) get() wal.Cursor {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur.Clone()
}

// committedOffsets returns the group's committed offset of topic's
// partitions; a partition without a commit is absent.
func committedOffsets(t testing.TB, brokers []string, group, topic string) map[int32]int64 {
	t.Helper()
	offs := fetchCommitted(t, brokers, group)
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out
}

// TestIngestEndToEndCommit checks the commit rule of kafka.delivery:
// end-to-end: records durable in the WAL are not committed before Loaded
// accounts for them, are committed up to exactly what it accounts for
// (on the fetch loop and on stop), and a new appliance with an empty WAL
// re-reads from there.
func TestIngestEndToEndCommit(t *testing.T) {
	brokers := newCluster(t, kfake.SeedTopics(2, "orders"))
	l := newLedger()
	p := newProducer(t, brokers)
	l.produce(t, p, "orders", 0, 2000)
	if len(l.parts) != 2 {
		t.Fatalf("produced to %d partitions, want 2", len(l.parts))
	}
	end := map[int32]int64{}
	for tp, recs := range l.parts {
		end[tp.Partition] = recs[len(recs)-1].Offset + 1
	}
	tp0 := wal.TopicPartition{Topic: "orders", Partition: 0}
	tp1 := wal.TopicPartition{Topic: "orders", Partition: 1}

	w := openWAL(t, t.TempDir())
	loaded := &loadedCursor{cur: wal.Cursor{}}
	opts := baseOptions(t, brokers, w, "g-e2e", "orders")
	opts.Loaded = loaded.get
	r := start(t, opts)
	waitUntil(t, 20*time.Second, "the WAL to hold all records", func() bool { return walRecords(w) == l.total() })
	// Several passes of the fetch loop (one a second at most) with
	// nothing loaded: nothing may be committed, and the records' wait
	// shows.
	waitUntil(t, 10*time.Second, "an uncommitted age of 1.5s on both partitions", func() bool {
		s := r.in.Stats()
		n := 0
		for _, ps := range s.Partitions {
			if ps.UncommittedAge >= 1500*time.Millisecond {
				n++
			}
		}
		return n == 2
	})
	if got := committedOffsets(t, brokers, "g-e2e", "orders"); len(got) != 0 {
		t.Fatalf("committed %v before any load, want nothing", got)
	}
	if s := r.in.Stats(); s.Commits != 0 {
		t.Fatalf("stats count %d commits before any load, want 0", s.Commits)
	}

	// Part of partition 0 and of partition 1 loaded: exactly that is
	// committed, not what the WAL holds beyond it.
	half := wal.Cursor{tp0: end[0] / 2, tp1: end[1] / 3}
	loaded.set(half)
	waitUntil(t, 10*time.Second, "the loaded offsets to be committed", func() bool {
		got := committedOffsets(t, brokers, "g-e2e", "orders")
		return got[0] == half[tp0] && got[1] == half[tp1]
	})
	time.Sleep(1500 * time.Millisecond) // more passes: nothing beyond
	if got := committedOffsets(t, brokers, "g-e2e", "orders"); got[0] != half[tp0] || got[1] != half[tp1] {
		t.Fatalf("committed %v, want exactly the loaded %v", got, half)
	}
	for _, ps := range r.in.Stats().Partitions {
		if ps.UncommittedAge == 0 {
			t.Errorf("%s: uncommitted age 0 with records past the committed offset %d", wal.TopicPartition{Topic: ps.Topic, Partition: ps.Partition}, ps.Committed)
		}
		// Fetched and durable to the end, committed to half.
		if want := end[ps.Partition]; ps.Durable != want {
			t.Errorf("%s: durable %d, want %d (committed %d)", wal.TopicPartition{Topic: ps.Topic, Partition: ps.Partition}, ps.Durable, want, ps.Committed)
		}
	}

	// Partition 0 loaded whole, then the stop: its commit on stop takes
	// what is loaded and nothing more.
	loaded.set(wal.Cursor{tp0: end[0], tp1: half[tp1] + 10})
	r.stop(t)
	if got := committedOffsets(t, brokers, "g-e2e", "orders"); got[0] != end[0] || got[1] != half[tp1]+10 {
		t.Fatalf("committed %v after stop, want %d and %d", got, end[0], half[tp1]+10)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// The data directory is lost: a new WAL re-reads partition 1 from its
	// committed offset, and takes nothing of partition 0 again.
	w2 := openWAL(t, t.TempDir())
	defer w2.Close()
	opts = baseOptions(t, brokers, w2, "g-e2e", "orders")
	loaded2 := &loadedCursor{cur: wal.Cursor{}}
	opts.Loaded = loaded2.get
	r2 := start(t, opts)
	want := int(end[1] - (half[tp1] + 10))
	waitUntil(t, 20*time.Second, "the WAL to re-read partition 1's unloaded records", func() bool { return walRecords(w2) == want })
	got := readAll(t, w2)
	if len(got[tp0]) != 0 {
		t.Errorf("re-read %d records of partition 0, all loaded: want none", len(got[tp0]))
	}
	if recs := got[tp1]; len(recs) != want || recs[0].Offset != half[tp1]+10 || recs[len(recs)-1].Offset != end[1]-1 {
		t.Errorf("re-read %d records of partition 1, want %d from offset %d", len(recs), want, half[tp1]+10)
	}
	// Now all loaded: everything is committed, nothing waits.
	loaded2.set(wal.Cursor{tp1: end[1]})
	waitUntil(t, 10*time.Second, "the rest to be committed", func() bool {
		return committedOffsets(t, brokers, "g-e2e", "orders")[1] == end[1]
	})
	waitUntil(t, 5*time.Second, "no uncommitted age", func() bool {
		for _, ps := range r2.in.Stats().Partitions {
			if ps.UncommittedAge != 0 {
				return false
			}
		}
		return true
	})
	r2.stop(t)
}
