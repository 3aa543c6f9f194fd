package window

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"testing"
)

// hashes returns n distinct well-mixed hashes from customer ids, starting
// at id from.
func hashes(from, n int) []uint64 {
	out := make([]uint64, n)
	buf := []byte("customer-")
	for i := range out {
		out[i] = CustomerHash(string(strconv.AppendInt(buf, int64(from+i), 10)))
	}
	return out
}

func sketchOf(hs ...[]uint64) Sketch {
	var s Sketch
	for _, h := range hs {
		for _, x := range h {
			s.Add(x)
		}
	}
	return s
}

func mustMarshal(t testing.TB, s Sketch) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSketchSparseToDense(t *testing.T) {
	var s Sketch
	if b := mustMarshal(t, s); !bytes.Equal(b, []byte{1, 12, 1, 0, 0}) {
		t.Fatalf("empty sketch marshals to % x", b)
	}
	if s.Estimate() != 0 {
		t.Fatalf("empty estimate %d", s.Estimate())
	}
	hs := hashes(0, sketchSparseMax+1)
	for i, h := range hs[:sketchSparseMax] {
		s.Add(h)
		s.Add(h) // duplicates do not count
		if !s.IsSparse() || s.Estimate() != int64(i+1) {
			t.Fatalf("after %d distinct: sparse=%v estimate=%d", i+1, s.IsSparse(), s.Estimate())
		}
	}
	if n := len(mustMarshal(t, s)); n != 5+8*sketchSparseMax {
		t.Fatalf("full sparse sketch is %d bytes", n)
	}
	// A small set costs tens of bytes.
	if n := len(mustMarshal(t, sketchOf(hashes(0, 3)))); n != 29 {
		t.Fatalf("3 customers cost %d bytes", n)
	}

	s.Add(hs[sketchSparseMax])
	if s.IsSparse() {
		t.Fatal("still sparse past the limit")
	}
	if est := s.Estimate(); math.Abs(float64(est)-257)/257 > 0.03 {
		t.Fatalf("estimate just past the switch %d, want about 257", est)
	}
	if n := len(mustMarshal(t, s)); n != sketchDenseLen {
		t.Fatalf("dense sketch is %d bytes, want %d", n, sketchDenseLen)
	}
	// The state depends only on the set: adding in reverse order (so the
	// switch happens with a different last hash) gives the same registers.
	var r Sketch
	for i := len(hs) - 1; i >= 0; i-- {
		r.Add(hs[i])
	}
	if !r.Equal(s) || !bytes.Equal(mustMarshal(t, r), mustMarshal(t, s)) {
		t.Fatal("dense state depends on the order of adds")
	}
}

// TestSketchAccuracy checks the estimate against the truth from 1 to 1M
// distinct ids; the dense standard error is 1.6%, the test allows 5%.
func TestSketchAccuracy(t *testing.T) {
	checkpoints := []int{1, 10, 100, 256, 257, 300, 500, 1000, 2000, 3000, 5000, 10_000, 20_000, 50_000, 100_000, 300_000, 1_000_000}
	if testing.Short() {
		checkpoints = checkpoints[:len(checkpoints)-1]
	}
	var s Sketch
	buf := []byte("customer-")
	n := 0
	for _, c := range checkpoints {
		for ; n < c; n++ {
			s.Add(CustomerHash(string(strconv.AppendInt(buf, int64(n), 10))))
		}
		est := s.Estimate()
		rel := (float64(est) - float64(n)) / float64(n)
		t.Logf("%8d distinct: estimate %8d, error %+.2f%%", n, est, 100*rel)
		if math.Abs(rel) > 0.05 {
			t.Errorf("%d distinct: estimate %d is off by %.2f%%", n, est, 100*rel)
		}
	}
}

// TestSketchBias checks the estimator over many independent sets: no
// bias, and a spread close to the theoretical 1.04/sqrt(4096) = 1.6%.
func TestSketchBias(t *testing.T) {
	const trials = 200
	for _, n := range []int{400, 2000, 20000} {
		var sum, sumSq float64
		for trial := range trials {
			var s Sketch
			x := uint64(trial+1) << 40 // splitmix64 stream per trial
			for range n {
				x += 0x9e3779b97f4a7c15
				z := x
				z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
				z = (z ^ z>>27) * 0x94d049bb133111eb
				s.Add(z ^ z>>31)
			}
			rel := (float64(s.Estimate()) - float64(n)) / float64(n)
			sum += rel
			sumSq += rel * rel
		}
		mean := sum / trials
		sd := math.Sqrt(sumSq/trials - mean*mean)
		t.Logf("n=%d: mean error %+.3f%%, standard deviation %.3f%% over %d sets", n, 100*mean, 100*sd, trials)
		if math.Abs(mean) > 0.005 || sd < 0.008 || sd > 0.024 {
			t.Errorf("n=%d: mean %+.3f%%, sd %.3f%%: want |mean| < 0.5%%, sd near 1.6%%", n, 100*mean, 100*sd)
		}
	}
}

// TestSketchEstimateExtremes: register states no real stream reaches (a
// decoded sketch can hold any) still give a sane estimate.
func TestSketchEstimateExtremes(t *testing.T) {
	dense := func(r func(i int) uint8) Sketch {
		d := new(registers)
		for i := range d {
			d[i] = r(i)
		}
		return Sketch{dense: d}
	}
	for _, c := range []struct {
		name     string
		s        Sketch
		min, max int64
	}{
		{"all zero", dense(func(int) uint8 { return 0 }), 0, 0},
		{"all at the maximum", dense(func(int) uint8 { return sketchMaxRank }), math.MaxInt64, math.MaxInt64},
		{"one register at 1", dense(func(i int) uint8 {
			if i == 0 {
				return 1
			}
			return 0
		}), 1, 1},
		{"all one", dense(func(int) uint8 { return 1 }), 1, 1 << 20},
		{"half at the maximum, half zero", dense(func(i int) uint8 { return uint8(i%2) * sketchMaxRank }), 2000, 5000},
	} {
		if e := c.s.Estimate(); e < c.min || e > c.max {
			t.Errorf("%s: estimate %d, want %d..%d", c.name, e, c.min, c.max)
		}
	}
}

func TestSketchMerge(t *testing.T) {
	cases := []struct {
		name       string
		a, b       [2]int // [from, n) ranges of ids
		denseAfter bool
	}{
		{"sparse+sparse", [2]int{0, 50}, [2]int{25, 50}, false},
		{"sparse+empty", [2]int{0, 50}, [2]int{0, 0}, false},
		{"empty+sparse", [2]int{0, 0}, [2]int{0, 50}, false},
		{"sparse+sparse to exactly the limit", [2]int{0, 200}, [2]int{100, 156}, false},
		{"sparse+sparse past the limit", [2]int{0, 200}, [2]int{150, 200}, true},
		{"sparse+dense", [2]int{0, 100}, [2]int{50, 5000}, true},
		{"dense+sparse", [2]int{0, 5000}, [2]int{4950, 100}, true},
		{"dense+dense", [2]int{0, 5000}, [2]int{2500, 5000}, true},
		{"dense+same", [2]int{0, 5000}, [2]int{0, 5000}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ha, hb := hashes(c.a[0], c.a[1]), hashes(c.b[0], c.b[1])
			a, b := sketchOf(ha), sketchOf(hb)
			bBefore := mustMarshal(t, b)
			a.Merge(b)
			if got := mustMarshal(t, b); !bytes.Equal(got, bBefore) {
				t.Fatal("Merge changed its argument")
			}
			union := sketchOf(ha, hb)
			if !a.Equal(union) || !bytes.Equal(mustMarshal(t, a), mustMarshal(t, union)) {
				t.Fatal("merge differs from the sketch of the union")
			}
			if a.IsSparse() == c.denseAfter {
				t.Fatalf("sparse=%v after merge", a.IsSparse())
			}
			// Merging the other way round gives the same state too.
			b.Merge(sketchOf(ha))
			if !b.Equal(union) {
				t.Fatal("merge is not commutative")
			}
		})
	}
}

// TestSketchFormat checks the bytes against doc.go's description, written
// out independently of the encoder.
func TestSketchFormat(t *testing.T) {
	var sp Sketch
	sp.Add(0x0102030405060708)
	sp.Add(1)
	want := []byte{1, 12, 1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1}
	if got := mustMarshal(t, sp); !bytes.Equal(got, want) {
		t.Fatalf("sparse:\n got % x\nwant % x", got, want)
	}

	d := new(registers)
	for i := range d {
		d[i] = uint8((i*7 + i/64) % (sketchMaxRank + 1))
	}
	got := mustMarshal(t, Sketch{dense: d})
	if len(got) != 3075 || !bytes.Equal(got[:3], []byte{1, 12, 2}) {
		t.Fatalf("dense header % x, length %d", got[:3], len(got))
	}
	for k := 0; k < sketchRegisters/4; k++ {
		v := uint32(d[4*k]) | uint32(d[4*k+1])<<6 | uint32(d[4*k+2])<<12 | uint32(d[4*k+3])<<18
		if w := []byte{byte(v), byte(v >> 8), byte(v >> 16)}; !bytes.Equal(got[3+3*k:6+3*k], w) {
			t.Fatalf("registers %d..%d: got % x, want % x", 4*k, 4*k+3, got[3+3*k:6+3*k], w)
		}
	}
	var r Sketch
	if err := r.UnmarshalBinary(got); err != nil || *r.dense != *d {
		t.Fatalf("dense decode: %v", err)
	}
}

func TestSketchMarshalRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 2, 100, 256, 257, 1000, 100_000} {
		s := sketchOf(hashes(0, n))
		b := mustMarshal(t, s)
		var r Sketch
		r.Add(42) // UnmarshalBinary replaces what was there
		if err := r.UnmarshalBinary(b); err != nil {
			t.Fatalf("%d: %v", n, err)
		}
		if !r.Equal(s) || r.Estimate() != s.Estimate() || !bytes.Equal(mustMarshal(t, r), b) {
			t.Fatalf("%d: round trip changed the sketch", n)
		}
		// The decoded sketch is independent of the input bytes.
		for i := range b {
			b[i] = 0xff
		}
		if !r.Equal(s) {
			t.Fatalf("%d: decoded sketch aliases its input", n)
		}
		// AppendBinary appends.
		ab, _ := s.AppendBinary([]byte("x"))
		if !bytes.Equal(ab[1:], mustMarshal(t, s)) || ab[0] != 'x' {
			t.Fatalf("%d: AppendBinary", n)
		}
	}
}

func TestSketchUnmarshalGarbage(t *testing.T) {
	sparse := mustMarshal(t, sketchOf(hashes(0, 3)))
	dense := mustMarshal(t, sketchOf(hashes(0, 1000)))
	with := func(b []byte, f func([]byte)) []byte {
		c := bytes.Clone(b)
		f(c)
		return c
	}
	// Two hashes in decreasing order.
	hi, lo := make([]byte, 8), make([]byte, 8)
	binary.LittleEndian.PutUint64(hi, 9)
	binary.LittleEndian.PutUint64(lo, 8)
	cases := []struct {
		name string
		b    []byte
	}{
		{"nil", nil},
		{"one byte", []byte{1}},
		{"header only", []byte{1, 12}},
		{"version 0", with(sparse, func(b []byte) { b[0] = 0 })},
		{"version 2", with(sparse, func(b []byte) { b[0] = 2 })},
		{"precision 14", with(sparse, func(b []byte) { b[1] = 14 })},
		{"kind 0", with(sparse, func(b []byte) { b[2] = 0 })},
		{"kind 3", with(sparse, func(b []byte) { b[2] = 3 })},
		{"sparse without count", []byte{1, 12, 1, 0}},
		{"sparse count past the limit", append([]byte{1, 12, 1, 1, 1}, make([]byte, 8*257)...)},
		{"sparse count larger than the data", with(sparse, func(b []byte) { b[3] = 4 })},
		{"sparse count smaller than the data", with(sparse, func(b []byte) { b[3] = 2 })},
		{"sparse truncated hash", sparse[:len(sparse)-1]},
		{"sparse trailing byte", append(bytes.Clone(sparse), 0)},
		{"sparse unsorted", append(append([]byte{1, 12, 1, 2, 0}, hi...), lo...)},
		{"sparse duplicate", append(append([]byte{1, 12, 1, 2, 0}, hi...), hi...)},
		{"dense truncated", dense[:len(dense)-1]},
		{"dense trailing byte", append(bytes.Clone(dense), 0)},
		{"dense header only", dense[:3]},
		{"dense register 54", with(dense, func(b []byte) { b[3] = 54 })},
		{"dense register 63", with(dense, func(b []byte) { b[len(b)-1] |= 0xfc })},
		{"dense kind with sparse body", with(sparse, func(b []byte) { b[2] = 2 })},
		{"sparse kind with dense body", with(dense, func(b []byte) { b[2] = 1 })},
		{"all ones", bytes.Repeat([]byte{0xff}, 100)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := sketchOf(hashes(0, 2))
			before := mustMarshal(t, s)
			err := s.UnmarshalBinary(c.b)
			if !errors.Is(err, ErrBadSketch) {
				t.Fatalf("err = %v, want ErrBadSketch", err)
			}
			t.Log(err)
			if !bytes.Equal(mustMarshal(t, s), before) {
				t.Fatal("a failed UnmarshalBinary changed the sketch")
			}
		})
	}
}

// FuzzSketchUnmarshal: UnmarshalBinary never panics, and whatever it
// accepts is canonical (marshals back to the same bytes) and usable.
func FuzzSketchUnmarshal(f *testing.F) {
	for _, n := range []int{0, 1, 5, 256, 257, 5000} {
		b, _ := sketchOf(hashes(0, n)).MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 12, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Sketch
		if err := s.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrBadSketch) {
				t.Fatalf("error %v does not wrap ErrBadSketch", err)
			}
			return
		}
		if got := mustMarshal(t, s); !bytes.Equal(got, b) {
			t.Fatalf("accepted non-canonical bytes:\n in % x\nout % x", b, got)
		}
		if s.Estimate() < 0 {
			t.Fatalf("negative estimate %d", s.Estimate())
		}
		before := s.Estimate()
		s.Add(CustomerHash("x"))
		s.Merge(sketchOf(hashes(0, 10)))
		if s.Estimate() < before-before/10 {
			t.Fatalf("estimate fell from %d to %d after adds", before, s.Estimate())
		}
	})
}

// TestCustomerHashStable pins CustomerHash to values computed from the
// description in doc.go by an independent implementation (Python): they are
// stored inside sketches and may never change.
func TestCustomerHashStable(t *testing.T) {
	for id, want := range map[string]uint64{
		"":                  0xefd01f60ba992926,
		"c1":                0x4ad219d4c2397083,
		"customer":          0x7518c0ba5840b7bb,
		"alice@example.com": 0x53e4b3bc79050458,
	} {
		if got := CustomerHash(id); got != want {
			t.Fatalf("CustomerHash(%q) = %#x, want %#x", id, got, want)
		}
	}
}
