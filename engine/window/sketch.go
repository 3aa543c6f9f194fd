package window

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// Sketch constants. They are part of the stored format (doc.go, "Sketch
// format"): changing any of them needs a new format version.
const (
	// sketchVersion is the first byte of every marshaled Sketch.
	sketchVersion = 1
	// sketchPrecision is p: the dense form has 2^p registers, indexed by
	// the top p bits of the hash. The relative standard error of the dense
	// estimate is about 1.04/sqrt(2^p) = 1.6%.
	sketchPrecision = 12
	sketchRegisters = 1 << sketchPrecision
	// sketchMaxRank is the largest register value: 1 + the number of
	// leading zeros in the remaining 64-p bits, which is 64-p+1 when they
	// are all zero.
	sketchMaxRank = 64 - sketchPrecision + 1
	// sketchSparseMax is the most hashes the sparse form holds; one more
	// converts the sketch to the dense form. 256 hashes are 2 KiB in memory
	// and 2053 bytes marshaled, against 4 KiB and 3075 bytes dense.
	sketchSparseMax = 256

	sketchKindSparse = 1
	sketchKindDense  = 2

	sketchHeaderLen = 3 // version, precision, kind
	// sketchDenseLen is the length of a marshaled dense Sketch: registers
	// packed 6 bits each, four in three bytes.
	sketchDenseLen = sketchHeaderLen + sketchRegisters*6/8
)

// ErrBadSketch is returned (wrapped) by Sketch.UnmarshalBinary for bytes that
// are not a Sketch this version of the package wrote.
var ErrBadSketch = errors.New("window: bad sketch encoding")

// Sketch estimates the number of distinct 64-bit hashes added to it: a
// HyperLogLog with 2^12 registers and Ertl's improved estimator, which
// starts as an exact sorted set of up to 256 hashes (so a window with a few
// customers costs tens of bytes and counts them exactly) and turns into
// registers past that.
//
// The zero Sketch is empty and ready to use. A Sketch is a value holding
// references: a copy shares state with the original, so mutate only one of
// them or take a Clone. The state depends only on the set of hashes added,
// not on their order or on how they were merged, so equal sets give equal
// MarshalBinary output.
type Sketch struct {
	sparse []uint64   // sorted, distinct; used while dense == nil
	dense  *registers // registers, once past sketchSparseMax
}

// Add adds one hash. Hashes must be well mixed in all 64 bits (use
// CustomerHash for customer ids).
func (s *Sketch) Add(hash uint64) {
	if s.dense != nil {
		s.dense.add(hash)
		return
	}
	i, found := sparseSearch(s.sparse, hash)
	if found {
		return
	}
	if len(s.sparse) == sketchSparseMax {
		s.toDense()
		s.dense.add(hash)
		return
	}
	s.sparse = slices.Insert(s.sparse, i, hash)
}

// sparseSearch returns where h is or would be in the sorted slice a. Since
// hashes are uniform, h's index is close to h/2^64 * len(a): start there
// and step. That touches one or two cache lines where a binary search of
// 256 hashes touches five; the Set's windows rarely sit in the cache.
func sparseSearch(a []uint64, h uint64) (int, bool) {
	n := len(a)
	if n == 0 {
		return 0, false
	}
	guess, _ := bits.Mul64(h, uint64(n))
	i := int(guess)
	if a[i] < h {
		for i++; i < n && a[i] < h; i++ {
		}
	} else {
		for i > 0 && a[i-1] >= h {
			i--
		}
	}
	return i, i < n && a[i] == h
}

// registers is the dense form.
type registers [sketchRegisters]uint8

func (r *registers) add(hash uint64) {
	idx := hash >> (64 - sketchPrecision)
	// The sentinel bit caps the rank at sketchMaxRank when the low bits are
	// all zero.
	rank := uint8(bits.LeadingZeros64(hash<<sketchPrecision|1<<(sketchPrecision-1))) + 1
	if rank > r[idx] {
		r[idx] = rank
	}
}

func (s *Sketch) toDense() {
	d := new(registers)
	for _, h := range s.sparse {
		d.add(h)
	}
	s.dense, s.sparse = d, nil
}

// Estimate returns the estimated number of distinct hashes: exact in the
// sparse form, within a few percent (standard error 1.6%) in the dense one.
func (s Sketch) Estimate() int64 {
	if s.dense == nil {
		return int64(len(s.sparse))
	}
	return s.dense.estimate()
}

// estimate is Ertl's improved raw estimator ("New cardinality estimation
// algorithms for HyperLogLog sketches", 2017, algorithm 6), which needs no
// bias tables or linear-counting switch-over and is what Redis uses.
func (r *registers) estimate() int64 {
	const m = float64(sketchRegisters)
	const q = 64 - sketchPrecision
	var c [q + 2]int
	for _, v := range r {
		c[v]++
	}
	z := m * ertlTau(1-float64(c[q+1])/m)
	for k := q; k >= 1; k-- {
		z = 0.5 * (z + float64(c[k]))
	}
	z += m * ertlSigma(float64(c[0])/m)
	e := math.Round(0.5 / math.Ln2 * m * m / z)
	switch {
	case !(e >= 0): // NaN cannot happen, but never return garbage
		return 0
	case e >= math.MaxInt64: // every register at its maximum: z is 0
		return math.MaxInt64
	}
	return int64(e)
}

func ertlSigma(x float64) float64 {
	if x == 1 {
		return math.Inf(1)
	}
	y, z := 1.0, x
	for {
		x *= x
		prev := z
		z += x * y
		y += y
		if z == prev {
			return z
		}
	}
}

func ertlTau(x float64) float64 {
	if x == 0 || x == 1 {
		return 0
	}
	y, z := 1.0, 1-x
	for {
		x = math.Sqrt(x)
		prev := z
		y *= 0.5
		z -= (1 - x) * (1 - x) * y
		if z == prev {
			return z / 3
		}
	}
}

// Merge adds every hash of o to s: afterwards s estimates the union. o is
// not changed.
func (s *Sketch) Merge(o Sketch) {
	if o.dense == nil {
		if s.dense != nil {
			for _, h := range o.sparse {
				s.dense.add(h)
			}
			return
		}
		u := mergeSorted(s.sparse, o.sparse)
		if len(u) > sketchSparseMax {
			s.sparse = u
			s.toDense()
			return
		}
		s.sparse = u
		return
	}
	if s.dense == nil {
		s.toDense()
	}
	for i, v := range o.dense {
		if v > s.dense[i] {
			s.dense[i] = v
		}
	}
}

// mergeSorted returns the sorted union of two sorted distinct slices in a
// new slice.
func mergeSorted(a, b []uint64) []uint64 {
	u := make([]uint64, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			u = append(u, a[i])
			i++
		case a[i] > b[j]:
			u = append(u, b[j])
			j++
		default:
			u = append(u, a[i])
			i++
			j++
		}
	}
	u = append(u, a[i:]...)
	return append(u, b[j:]...)
}

// Clone returns a copy of s that shares nothing with it.
func (s Sketch) Clone() Sketch {
	if s.dense != nil {
		d := *s.dense
		return Sketch{dense: &d}
	}
	if len(s.sparse) == 0 {
		return Sketch{}
	}
	return Sketch{sparse: slices.Clone(s.sparse)}
}

// Equal reports whether s and o hold the same state (and so marshal to the
// same bytes).
func (s Sketch) Equal(o Sketch) bool {
	if (s.dense == nil) != (o.dense == nil) {
		return false
	}
	if s.dense != nil {
		return *s.dense == *o.dense
	}
	return slices.Equal(s.sparse, o.sparse)
}

// IsSparse reports whether s is still in the exact sparse form.
func (s Sketch) IsSparse() bool { return s.dense == nil }

// MarshalBinary encodes s in the format doc.go describes. It never fails.
func (s Sketch) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(nil)
}

// AppendBinary appends the MarshalBinary encoding of s to b. It never fails.
func (s Sketch) AppendBinary(b []byte) ([]byte, error) {
	if s.dense == nil {
		b = append(b, sketchVersion, sketchPrecision, sketchKindSparse)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(s.sparse)))
		for _, h := range s.sparse {
			b = binary.LittleEndian.AppendUint64(b, h)
		}
		return b, nil
	}
	b = append(b, sketchVersion, sketchPrecision, sketchKindDense)
	// Eight registers (one uint64) at a time become 48 bits: registers
	// 4k..4k+3 in the low 24, as the format says, then the next four.
	n := len(b)
	b = slices.Grow(b, sketchDenseLen-sketchHeaderLen+2)[:n+sketchDenseLen-sketchHeaderLen+2]
	out := b[n:]
	for i := 0; i < sketchRegisters; i += 8 {
		x := binary.LittleEndian.Uint64(s.dense[i:])
		x = x&0x00ff00ff00ff00ff | x&0xff00ff00ff00ff00>>2
		x = x&0x0000ffff0000ffff | x&0xffff0000ffff0000>>4
		x = x&0x00000000ffffffff | x&0xffffffff00000000>>8
		binary.LittleEndian.PutUint64(out[i/8*6:], x) // the top two bytes are overwritten next
	}
	return b[:len(b)-2], nil
}

// UnmarshalBinary decodes what MarshalBinary wrote, replacing s. It accepts
// only the one canonical encoding of a state (sorted distinct hashes, no
// trailing bytes, registers in range) and returns an error wrapping
// ErrBadSketch for anything else; it never panics. On error s is unchanged.
func (s *Sketch) UnmarshalBinary(b []byte) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadSketch, fmt.Sprintf(format, args...))
	}
	if len(b) < sketchHeaderLen {
		return bad("%d bytes, shorter than the %d-byte header", len(b), sketchHeaderLen)
	}
	if b[0] != sketchVersion {
		return bad("version %d, want %d", b[0], sketchVersion)
	}
	if b[1] != sketchPrecision {
		return bad("precision %d, want %d", b[1], sketchPrecision)
	}
	switch b[2] {
	case sketchKindSparse:
		if len(b) < sketchHeaderLen+2 {
			return bad("sparse sketch of %d bytes has no count", len(b))
		}
		n := int(binary.LittleEndian.Uint16(b[sketchHeaderLen:]))
		if n > sketchSparseMax {
			return bad("sparse sketch of %d hashes, more than %d", n, sketchSparseMax)
		}
		body := b[sketchHeaderLen+2:]
		if len(body) != 8*n {
			return bad("sparse sketch of %d hashes has %d bytes of hashes, want %d", n, len(body), 8*n)
		}
		var hs []uint64
		if n > 0 {
			hs = make([]uint64, n)
		}
		for i := range hs {
			hs[i] = binary.LittleEndian.Uint64(body[8*i:])
			if i > 0 && hs[i] <= hs[i-1] {
				return bad("sparse hashes not strictly increasing at %d", i)
			}
		}
		*s = Sketch{sparse: hs}
		return nil
	case sketchKindDense:
		if len(b) != sketchDenseLen {
			return bad("dense sketch of %d bytes, want %d", len(b), sketchDenseLen)
		}
		d := new(registers)
		body := b[sketchHeaderLen:]
		for i := 0; i < sketchRegisters; i += 8 {
			p := body[i/8*6:]
			x := uint64(binary.LittleEndian.Uint32(p)) | uint64(binary.LittleEndian.Uint16(p[4:]))<<32
			x = x&0xffffff | (x>>24&0xffffff)<<32
			x = x&0x00000fff00000fff | (x>>12&0x00000fff00000fff)<<16
			x = x&0x003f003f003f003f | (x>>6&0x003f003f003f003f)<<8
			// Every byte is below 64, so adding 74 sets its top bit
			// exactly when it exceeds 53, without carries between bytes.
			if (x+0x4a4a4a4a4a4a4a4a)&0x8080808080808080 != 0 {
				for k := range 8 {
					if r := uint8(x >> (8 * k)); r > sketchMaxRank {
						return bad("register %d is %d, more than %d", i+k, r, sketchMaxRank)
					}
				}
			}
			binary.LittleEndian.PutUint64(d[i:], x)
		}
		*s = Sketch{dense: d}
		return nil
	default:
		return bad("unknown kind %d", b[2])
	}
}

// CustomerHash is the hash of a customer id that windows add to their
// Sketch: FNV-1a 64 of the id's bytes, then the MurmurHash3 64-bit
// finalizer (fmix64) so that every output bit depends on every input bit
// (FNV-1a alone leaves the top bits, which pick the HyperLogLog register,
// poorly mixed for short ids that differ in their last byte). It has no
// seed: sketches are stored and merged across restarts, so the function
// must never change.
func CustomerHash(id string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= prime64
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
