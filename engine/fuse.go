package engine

import (
	"cmp"
	"errors"
	"math"
	"math/bits"
	"slices"
)

// fuseFilter is a binary fuse filter (Graf, Lemire, "Binary Fuse Filters:
// Fast and Smaller Than Xor Filters", 2022) over the dedupe keys of one
// range of a closed slice, that also tells where a key is: the three
// cells of a key XOR to its value, a fingerprint of the key above the
// code of its hour bucket in the slice. A key added answers with its
// value; any other key matches a fingerprint with probability 2^-fp, and
// then names one random bucket to read, where a Bloom filter's false
// positive reads every bucket of the slice.
//
// Its cells are packed, width bits each, in a []byte it does not own (a
// frozen slice's arena, frozen.go), followed by 4 bytes of slack so a cell
// is read with one 32-bit load.
type fuseFilter struct {
	seed        uint64
	segLen      uint32 // a power of two
	segCount    uint32 // segments a key's first cell may fall in
	cells       []byte
	width, code uint // bits of a cell, of its bucket code
}

// fuseSlack is the bytes after the last cell that a 32-bit read of it
// may touch.
const fuseSlack = 4

// fuseShape returns the segment length, the segment count and the cells
// of a binary fuse filter of 3-wise hashing for n keys, as the paper's
// reference code sizes it.
func fuseShape(n int) (segLen, segCount uint32, cells int) {
	segLen = 4
	size := float64(max(n, 2))
	if n > 1 {
		segLen = uint32(1) << int(math.Floor(math.Log(size)/math.Log(3.33)+2.25))
	}
	segLen = min(segLen, 1<<18)
	factor := max(1.125, 0.875+0.25*math.Log(1e6)/math.Log(size))
	capacity := uint32(math.Round(size * factor))
	segCount = max((capacity+segLen-1)/segLen, 3) - 2
	return segLen, segCount, int((segCount + 2) * segLen)
}

// fuseBytes is the memory of a filter of cells cells of width bits.
func fuseBytes(cells int, width uint) int { return (cells*int(width)+7)/8 + fuseSlack }

// fuseEntry is a key's hash and the value its cells must XOR to.
type fuseEntry struct {
	hash uint64
	val  uint32
}

// fuseKey is a key to build a filter of, and its bucket code.
type fuseKey struct {
	k    dedupeKey
	code uint32
}

// fuseMix is a key's hash under a seed (the finalizer of MurmurHash3).
func fuseMix(lo, seed uint64) uint64 {
	h := lo + seed
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func (f *fuseFilter) positions(h uint64) (uint32, uint32, uint32) {
	hi, _ := bits.Mul64(h, uint64(f.segCount*f.segLen))
	h0 := uint32(hi)
	h1 := h0 + f.segLen
	h2 := h1 + f.segLen
	h1 ^= uint32(h>>18) & (f.segLen - 1)
	h2 ^= uint32(h) & (f.segLen - 1)
	return h0, h1, h2
}

// fingerprint is the part of a value a key's hash fixes.
func (f *fuseFilter) fingerprint(h uint64) uint32 {
	return uint32(h^h>>32) & (1<<(f.width-f.code) - 1)
}

func (f *fuseFilter) cell(i uint32) uint32 {
	p := uint(i) * f.width
	b := f.cells[p>>3 : p>>3+4]
	v := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	return v >> (p & 7) & (1<<f.width - 1)
}

func (f *fuseFilter) setCell(i, v uint32) {
	p := uint(i) * f.width
	b := f.cells[p>>3 : p>>3+4]
	w := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	mask := uint32(1<<f.width-1) << (p & 7)
	w = w&^mask | v<<(p&7)&mask
	b[0], b[1], b[2], b[3] = byte(w), byte(w>>8), byte(w>>16), byte(w>>24)
}

// lookup returns the bucket code of lo's key, and false if the key is
// certainly not in the filter.
func (f *fuseFilter) lookup(lo uint64) (uint32, bool) {
	r := f.at(lo)
	r.read()
	return r.match()
}

// fuseRead is a lookup in three steps, so that a caller probing several
// filters for one key has all their cells' reads in flight at once: a
// key's three cells are three cache misses, which the processor overlaps
// only if no other work waits between them (docs/PERFORMANCE.md,
// "Frozen slices").
type fuseRead struct {
	f     *fuseFilter
	h     uint64
	cells [3]uint32
	pos   [3]uint32
}

// at starts the lookup of lo's key.
func (f *fuseFilter) at(lo uint64) fuseRead {
	h := fuseMix(lo, f.seed)
	h0, h1, h2 := f.positions(h)
	return fuseRead{f: f, h: h, pos: [3]uint32{h0, h1, h2}}
}

// read reads the key's cells.
func (r *fuseRead) read() {
	for i, p := range r.pos {
		r.cells[i] = r.f.cell(p)
	}
}

// match returns the bucket code of the key, and false if it is certainly
// not in the filter.
func (r *fuseRead) match() (uint32, bool) {
	f := r.f
	v := r.cells[0] ^ r.cells[1] ^ r.cells[2]
	if v>>f.code != f.fingerprint(r.h) {
		return 0, false
	}
	return v & (1<<f.code - 1), true
}

// fuseScratch is the memory a build works in, kept between builds.
type fuseScratch struct {
	entries []fuseEntry
	count   []uint8  // per cell: keys ×4 | XOR of the indexes (0-2) they use it by
	xors    []uint64 // per cell: XOR of its keys' hashes
	vals    []uint32 // per cell: XOR of its keys' values
	alone   []uint32
	order   []fuseEntry
	which   []uint8
}

// errFuseBuild is a build that found no seed to peel its keys with.
var errFuseBuild = errors.New("BUG: engine: no seed builds a fuse filter of these keys")

// uniqueFuseKeys sorts keys by their low half, drops repeats of a key
// with one code, and moves out the keys a filter cannot tell apart by
// their low half: one key with two codes (stored in two buckets), or two
// keys of one low half. It returns the keys left and those moved out,
// which spill (reused) holds.
func uniqueFuseKeys(keys []fuseKey, spill []dedupeKey) ([]fuseKey, []dedupeKey) {
	slices.SortFunc(keys, func(a, b fuseKey) int { return cmp.Compare(a.k.lo(), b.k.lo()) })
	out, spill := keys[:0], spill[:0]
	for i := 0; i < len(keys); {
		j := i + 1
		clash := false
		for ; j < len(keys) && keys[j].k.lo() == keys[i].k.lo(); j++ {
			clash = clash || keys[j] != keys[i]
		}
		if clash {
			for _, fk := range keys[i:j] {
				spill = append(spill, fk.k)
			}
		} else {
			out = append(out, keys[i])
		}
		i = j
	}
	return out, spill
}

// buildFuse fills f's cells (zeroed, fuseBytes of fuseShape(len(keys))
// long, segLen and segCount set by it) so that each key finds its code.
// The keys' low halves must differ (uniqueFuseKeys). It tries seeds from
// seed on until one peels the keys, which the first almost always does.
func buildFuse(f *fuseFilter, keys []fuseKey, seed uint64, sc *fuseScratch) error {
	for range 64 {
		f.seed = seed
		ents := sc.entries[:0]
		for _, fk := range keys {
			ents = append(ents, fuseEntry{fuseMix(fk.k.lo(), seed), fk.code})
		}
		sc.entries = ents
		if f.peel(ents, sc) {
			f.assign(sc)
			return nil
		}
		seed = seed*0x9e3779b97f4a7c15 + 1
	}
	return errFuseBuild
}

// peel finds an order in which each key has a cell no later key uses:
// sc.order and sc.which hold it, last key first.
func (f *fuseFilter) peel(ents []fuseEntry, sc *fuseScratch) bool {
	cells := int((f.segCount + 2) * f.segLen)
	sc.count = slices.Grow(sc.count[:0], cells)[:cells]
	sc.xors = slices.Grow(sc.xors[:0], cells)[:cells]
	sc.vals = slices.Grow(sc.vals[:0], cells)[:cells]
	clear(sc.count)
	clear(sc.xors)
	clear(sc.vals)
	for _, e := range ents {
		h0, h1, h2 := f.positions(e.hash)
		for d, j := range [3]uint32{h0, h1, h2} {
			sc.count[j] += 4
			sc.count[j] ^= uint8(d)
			sc.xors[j] ^= e.hash
			sc.vals[j] ^= e.val
		}
	}
	sc.alone = sc.alone[:0]
	for i := range cells {
		if sc.count[i]>>2 == 1 {
			sc.alone = append(sc.alone, uint32(i))
		}
	}
	sc.order, sc.which = sc.order[:0], sc.which[:0]
	for len(sc.alone) > 0 {
		i := sc.alone[len(sc.alone)-1]
		sc.alone = sc.alone[:len(sc.alone)-1]
		if sc.count[i]>>2 != 1 {
			continue
		}
		h, v := sc.xors[i], sc.vals[i]
		found := sc.count[i] & 3
		sc.order = append(sc.order, fuseEntry{h, v})
		sc.which = append(sc.which, found)
		h0, h1, h2 := f.positions(h)
		pos := [5]uint32{h0, h1, h2, h0, h1}
		for d := uint8(1); d <= 2; d++ {
			j := pos[found+d]
			if sc.count[j]>>2 == 2 {
				sc.alone = append(sc.alone, j)
			}
			sc.count[j] -= 4
			sc.count[j] ^= (found + d) % 3
			sc.xors[j] ^= h
			sc.vals[j] ^= v
		}
	}
	return len(sc.order) == len(ents)
}

// assign sets the cells in the reverse of the peeling order: each key's
// own cell is set last of its three, to the value they must XOR to.
func (f *fuseFilter) assign(sc *fuseScratch) {
	for i := len(sc.order) - 1; i >= 0; i-- {
		h := sc.order[i].hash
		v := f.fingerprint(h)<<f.code | sc.order[i].val
		h0, h1, h2 := f.positions(h)
		pos := [5]uint32{h0, h1, h2, h0, h1}
		found := sc.which[i]
		f.setCell(pos[found], v^f.cell(pos[found+1])^f.cell(pos[found+2]))
	}
}
