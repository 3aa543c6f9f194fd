package engine

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestFuseFilter: every key built finds its bucket code; a key given
// twice with one code is built once, and keys a filter cannot tell apart
// by their low half (one key with two codes, two keys of one low half)
// are moved out; other keys match about one in 2^fp of the time; filters
// of no key and of one key work too.
func TestFuseFilter(t *testing.T) {
	const width, code = 11, 3
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 100, 10000, 337000} {
		keys := make([]fuseKey, n)
		for i := range keys {
			keys[i] = fuseKey{keyFromParts(rng.Uint64(), rng.Uint64()), uint32(rng.IntN(6))}
		}
		var clashing []dedupeKey
		if n > 10 {
			keys[1] = fuseKey{keys[0].k, (keys[0].code + 1) % 6}             // one key in two buckets
			keys[3] = keys[2]                                                // one key given twice
			keys[5] = fuseKey{keyFromParts(rng.Uint64(), keys[4].k.lo()), 0} // two keys of one low half
			clashing = []dedupeKey{keys[0].k, keys[0].k, keys[4].k, keys[5].k}
		}
		all := slices.Clone(keys)
		built, spill := uniqueFuseKeys(keys, nil)
		if want := max(n-len(clashing)-1, 0); n > 10 && len(built) != want || n <= 10 && len(built) != n {
			t.Fatalf("%d keys: %d left to build, want %d", n, len(built), want)
		}
		slices.SortFunc(spill, func(a, b dedupeKey) int { return slices.Compare(a[:], b[:]) })
		slices.SortFunc(clashing, func(a, b dedupeKey) int { return slices.Compare(a[:], b[:]) })
		if !slices.Equal(spill, clashing) {
			t.Fatalf("%d keys: moved out %x, want %x", n, spill, clashing)
		}
		segLen, segCount, cells := fuseShape(len(built))
		f := &fuseFilter{segLen: segLen, segCount: segCount, width: width, code: code, cells: make([]byte, fuseBytes(cells, width))}
		if err := buildFuse(f, built, 42, &fuseScratch{}); err != nil {
			t.Fatalf("%d keys: %v", n, err)
		}
		for i, fk := range all {
			if slices.Contains(clashing, fk.k) {
				continue
			}
			if got, ok := f.lookup(fk.k.lo()); !ok || got != fk.code {
				t.Fatalf("%d keys: key %d found %v with code %d, want code %d", n, i, ok, got, fk.code)
			}
		}
		if n < 10000 {
			continue
		}
		hits := 0
		const probes = 1 << 20
		for range probes {
			if _, ok := f.lookup(rng.Uint64()); ok {
				hits++
			}
		}
		// 2^-8 = 0.39 %: between 0.3 % and 0.5 % of a million probes.
		if rate := float64(hits) / probes; rate < 0.003 || rate > 0.005 {
			t.Fatalf("%d keys: %.4f%% of other keys match, want about %.4f%%", n, rate*100, 100.0/256)
		}
		if bits := float64(len(f.cells)*8) / float64(n); n > 100000 && bits > 12.8 {
			t.Fatalf("%d keys: %.2f bits a key", n, bits)
		}
	}
}
