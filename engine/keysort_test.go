package engine

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// randomKeys returns n distinct random keys with event times drawn from
// buckets buckets of length bl starting at base; sameHi of them share
// their first 8 bytes with another.
func randomKeys(rnd *rand.Rand, bl keyBuckets, n, buckets int, base int64, sameHi int) []keyTime {
	keys := make([]keyTime, n)
	for i := range keys {
		hi := rnd.Uint64()
		if i > 0 && i <= sameHi {
			hi = keys[i-1].k.hi()
		}
		keys[i] = keyTime{k: keyFromParts(hi, rnd.Uint64()), us: base + rnd.Int64N(int64(buckets))*int64(bl) + rnd.Int64N(int64(bl))}
	}
	return keys
}

// TestKeySorter checks that the key sorter gives the order of a
// comparison sort by compareKeys, one sorter reused across micro-batches
// of every shape, for the buckets of a store of the 24h window and of one
// written before stores recorded their bucket length.
func TestKeySorter(t *testing.T) {
	for _, bl := range []keyBuckets{keysBucketsFor(int64(24 * time.Hour / time.Microsecond)), keysLegacyBuckets} {
		t.Run(time.Duration(bl*1000).String(), func(t *testing.T) { testKeySorter(t, bl) })
	}
}

func testKeySorter(t *testing.T, bl keyBuckets) {
	rnd := rand.New(rand.NewPCG(3, 4))
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC).UnixMicro()
	ks := keySorter{buckets: bl}
	for _, c := range []struct {
		name       string
		n, buckets int
		base       int64
		sameHi     int
	}{
		{"one bucket", 50000, 1, now, 0},
		{"few keys", 100, 3, now, 0},
		{"three buckets", 20000, 3, now, 0},
		{"late events from many buckets", 30000, 200, now, 0},
		{"before 1970", 5000, 4, -10 * int64(bl), 0},
		{"shared first bytes", 10000, 2, now, 3000},
		{"one key", 1, 1, now, 0},
		{"none", 0, 1, now, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			keys := randomKeys(rnd, bl, c.n, c.buckets, c.base, c.sameHi)
			want := slices.Clone(keys)
			slices.SortFunc(want, bl.compareKeys)
			ks.sort(keys)
			if !slices.Equal(keys, want) {
				t.Fatalf("%d keys in %d buckets: the sorter's order differs from a comparison sort's", c.n, c.buckets)
			}
		})
	}
}

// BenchmarkKeySorter sorts a micro-batch's keys (50,000, one bucket) with
// the key sorter and with a comparison sort.
//
//	go test ./engine -run '^$' -bench BenchmarkKeySorter
func BenchmarkKeySorter(b *testing.B) {
	rnd := rand.New(rand.NewPCG(5, 6))
	bl := keysBucketsFor(int64(24 * time.Hour / time.Microsecond))
	keys := randomKeys(rnd, bl, 50000, 1, time.Now().UnixMicro(), 0)
	work := make([]keyTime, len(keys))
	b.Run("sorter", func(b *testing.B) {
		ks := keySorter{buckets: bl}
		for range b.N {
			copy(work, keys)
			ks.sort(work)
		}
	})
	b.Run("comparisons", func(b *testing.B) {
		for range b.N {
			copy(work, keys)
			slices.SortFunc(work, bl.compareKeys)
		}
	})
}
