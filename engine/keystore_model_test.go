package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestKeyStoreAgainstAModel drives a key store as the engine does, with
// random commits of fresh ids and of copies at other event times, late
// ids (some below the horizon), ids ahead of the newest, ids on the
// horizon and on slice and bucket boundaries, a horizon that follows the
// newest event time, clean restarts (some with another memory budget) and
// crashes (no filter file saved, older ones left), and checks every
// answer against a model of what was committed: an id is found exactly
// when it was committed at or after the horizon asked about. Windows that
// are not a whole number of hours put buckets across slice ends.
func TestKeyStoreAgainstAModel(t *testing.T) {
	for _, window := range []time.Duration{24 * time.Hour, 25 * time.Hour, 90 * time.Minute, 7 * time.Minute} {
		t.Run(window.String(), func(t *testing.T) {
			runKeyStoreModel(t, keyStoreModel{seed: 1, window: window, steps: 120, perStep: 120, advance: 10})
		})
	}
	// Event time moving slowly: slices take thousands of keys, and their
	// filters, from the smallest size, grow by reading the store.
	t.Run("growth", func(t *testing.T) {
		runKeyStoreModel(t, keyStoreModel{seed: 5, window: 24 * time.Hour, steps: 100, perStep: 600, advance: 2000})
	})
	// The window changes at some restarts, and with it the slice length:
	// Open rescans and restamps the store.
	t.Run("window-changes", func(t *testing.T) {
		runKeyStoreModel(t, keyStoreModel{seed: 11, window: 24 * time.Hour, steps: 80, perStep: 120, advance: 10,
			windows: []time.Duration{24 * time.Hour, 25 * time.Hour, 7 * time.Hour, 50 * time.Minute}})
	})
}

// keyStoreModelSample is how many ids a step of the model checks again.
const keyStoreModelSample = 2000

// keyStoreModel is one run of TestKeyStoreAgainstAModel.
type keyStoreModel struct {
	seed           uint64
	window         time.Duration
	steps, perStep int
	// advance: each step moves the newest event time on by up to
	// window/advance.
	advance int64
	// windows, if set, are the windows a restart may switch to.
	windows []time.Duration
}

func runKeyStoreModel(t *testing.T, m keyStoreModel) {
	rng := rand.New(rand.NewPCG(m.seed, 99))
	dir := filepath.Join(t.TempDir(), KeysDir)
	window := int64(m.window / time.Microsecond)
	memory := int64(minDedupeMemory)
	open := func() *keyStore { return openTestKeyStore(t, dir, window, memory) }
	s := open()
	defer func() { _ = s.close() }()

	committed := map[dedupeKey][]int64{} // the event times each id was committed at
	var ids []dedupeKey
	held := func(k dedupeKey, h int64) bool {
		return slices.ContainsFunc(committed[k], func(us int64) bool { return us >= h })
	}
	horizon, newest, seq, fresh := int64(math.MinInt64), testNow.UnixMicro(), int64(0), 0
	ask := func(step int, k dedupeKey, us, h int64) bool {
		t.Helper()
		got, err := s.contains(k, us, h)
		if err != nil {
			t.Fatal(err)
		}
		if want := held(k, h); got != want {
			t.Fatalf("step %d: contains(%x, %s, horizon %s) = %v, want %v (committed at %v)", step, k[:4],
				time.UnixMicro(us).UTC(), time.UnixMicro(h).UTC(), got, want, committed[k])
		}
		return got
	}
	for step := range m.steps {
		newest += rng.Int64N(window/m.advance + 1)
		horizon = max(horizon, bucketOf(newest-window))
		var batch []keyTime
		inBatch := map[dedupeKey]bool{}
		for range rng.IntN(m.perStep) + 1 {
			k, us := keyStoreModelID(rng, s, &fresh, m.seed, ids, newest, horizon, window)
			if inBatch[k] {
				continue // the engine's map of the micro-batch answers it
			}
			inBatch[k] = true
			if ask(step, k, us, horizon) || us < horizon {
				continue // a duplicate, or too old to remember
			}
			batch = append(batch, keyTime{k, us})
		}
		seq++
		if err := s.commit(slices.Clone(batch), horizon, seq); err != nil {
			t.Fatal(err)
		}
		for _, kt := range batch {
			if len(committed[kt.k]) == 0 {
				ids = append(ids, kt.k)
			}
			committed[kt.k] = append(committed[kt.k], kt.us)
		}
		switch rng.IntN(12) {
		case 0: // a clean stop and start
			if err := s.close(); err != nil {
				t.Fatal(err)
			}
			if rng.IntN(3) == 0 {
				memory = int64(minDedupeMemory) << rng.IntN(4)
			}
			if len(m.windows) > 0 && rng.IntN(2) == 0 {
				window = int64(m.windows[rng.IntN(len(m.windows))] / time.Microsecond)
			}
			s = open()
			s.forgetBelow(horizon)
		case 1: // a crash: no filter file written
			s.freeFilters()
			if err := s.db.Close(); err != nil {
				t.Fatal(err)
			}
			s = open()
			s.forgetBelow(horizon)
		}
		// Every id after the last step; a sample of them after the others.
		n := len(ids)
		if step < m.steps-1 {
			n = min(n, keyStoreModelSample)
		}
		for i := range n {
			k := ids[i]
			if n < len(ids) {
				k = ids[rng.IntN(len(ids))]
			}
			us := newest - rng.Int64N(window)
			ask(step, k, us, horizon)
			ask(step, k, us, horizon+dedupeBucket*rng.Int64N(60))
		}
	}
}

// keyStoreModelID returns the next id the model's engine looks up and
// its event time: a copy of an earlier id at any time of the window, or a
// fresh id late, ahead, on a boundary or near the newest.
func keyStoreModelID(rng *rand.Rand, s *keyStore, fresh *int, seed uint64, ids []dedupeKey, newest, horizon, window int64) (dedupeKey, int64) {
	if len(ids) > 0 && rng.IntN(5) == 0 {
		return ids[rng.IntN(len(ids))], newest - rng.Int64N(window+window/4)
	}
	*fresh++
	k := keyOf(fmt.Sprint(seed, "/", *fresh))
	switch rng.IntN(6) {
	case 0:
		return k, newest - rng.Int64N(window+window/4)
	case 1:
		return k, newest + rng.Int64N(window/2+1)
	case 2:
		edges := []int64{horizon, horizon - 1, s.sliceOf(newest), s.sliceOf(newest) - 1, s.buckets.start(newest), s.buckets.start(newest) - 1}
		return k, edges[rng.IntN(len(edges))]
	default:
		return k, newest - rng.Int64N(window/20+1)
	}
}
