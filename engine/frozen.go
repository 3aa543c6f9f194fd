package engine

import (
	"fmt"
	"math/bits"
	"syscall"
)

// Frozen slices (doc.go, "Dedupe"). Once the newest key is ten minutes
// past a slice's end, few keys still come to it, and its Bloom filter, sized
// for a full slice at DedupeRate, is replaced by binary fuse filters
// (fuse.go) built from the keys the store holds for it: about 12.7 bits
// a key held, and a false positive that reads one bucket instead of all
// of them. The keys are split by their high half into ranges of about
// freezeRangeKeys; each commit of the key store builds one range's
// filter and gives back the Bloom filter's pages that only that range's
// keys used, so a freeze never holds both filters whole. Keys added to a
// slice once its freeze began go to small Bloom filters of their own
// (late), as a fuse filter takes no keys once built.

// freezeRangeKeys is about the keys of one range: its build works in
// ~75 bytes a key of heap (~19 MB), freed once the slice is frozen.
const freezeRangeKeys = 1 << 18

// freezeDelay is how far the newest key held is past a slice's end
// before the slice is frozen: keys that come later still come, to its
// late filters.
const freezeDelay = 10 * dedupeBucket

// freezeFingerprint is the bits of a key's fingerprint in a frozen
// filter: a fresh id matches a range's filter with probability 2^-8.
const freezeFingerprint = 8

// maxFreezeCode is the widest bucket code a frozen filter carries (a
// slice of up to 65,535 hours); slices of longer windows are never
// frozen.
const maxFreezeCode = 16

// madvDontNeed is MADV_DONTNEED: the pages are dropped and read back
// as zeros.
const madvDontNeed = 4

// frozenFilter is a slice's filter once its freeze began.
type frozenFilter struct {
	ranges int          // key ranges, by the key's high half
	built  []fuseFilter // the filters of ranges 0 … len(built)-1
	arenas [][]byte     // the mappings built's cells are in
	spare  []byte       // the unused rest of the last arena
	used   int64        // bytes of built's cells
	// late holds the keys added since the freeze began; lateKeys counts
	// those in its last filter.
	late     []*blockedBloom
	lateKeys int64
	dropped  int // bytes of the slice's Bloom filter given back
	scratch  *fuseScratch
	keys     []fuseKey
	spill    []dedupeKey
}

// rangeOf returns the range of key k.
func (fz *frozenFilter) rangeOf(k dedupeKey) int {
	hi, _ := bits.Mul64(k.hi(), uint64(fz.ranges))
	return int(hi)
}

// rangeStart is the smallest high half of range r's keys (r < ranges).
func (fz *frozenFilter) rangeStart(r int) uint64 {
	q, rem := bits.Div64(uint64(r), 0, uint64(fz.ranges))
	if rem != 0 {
		q++
	}
	return q
}

// lateContain reports whether the late keys' filters may hold k.
func (fz *frozenFilter) lateContain(k dedupeKey) bool {
	for _, f := range fz.late {
		if f.mayContain(k) {
			return true
		}
	}
	return false
}

// addLate adds k to the late keys' filters, with a new one twice as large
// as the last when the last holds its share (16 bits a key); first is the
// first one's size.
func (fz *frozenFilter) addLate(k dedupeKey, first int64) error {
	if n := len(fz.late); n == 0 || fz.lateKeys >= fz.late[n-1].bytes()*8/dedupeBitsPerKey {
		size := first
		if n > 0 {
			size = 2 * fz.late[n-1].bytes()
		}
		f, err := newBlockedBloom(size)
		if err != nil {
			return err
		}
		fz.late = append(fz.late, f)
		fz.lateKeys = 0
	}
	fz.late[len(fz.late)-1].add(k)
	fz.lateKeys++
	return nil
}

// cells returns n zeroed bytes for a range's cells, from the spare rest
// of the last arena or from a new one of at least want bytes.
func (fz *frozenFilter) cells(n, want int) ([]byte, error) {
	if len(fz.spare) < n {
		size := max(n, want)
		mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			return nil, fmt.Errorf("cannot map %d bytes for a dedupe filter: %w (lower engine.dedupe_memory)", size, err)
		}
		// Dense from the first key: a lookup lands anywhere in it.
		_ = syscall.Madvise(mem, madvHugePage)
		fz.arenas = append(fz.arenas, mem)
		fz.spare = mem
	}
	c := fz.spare[:n:n]
	fz.spare = fz.spare[n:]
	fz.used += int64(n)
	return c, nil
}

func (fz *frozenFilter) free() {
	for _, a := range fz.arenas {
		_ = syscall.Munmap(a)
	}
	for _, f := range fz.late {
		f.free()
	}
	fz.arenas, fz.spare, fz.built, fz.late = nil, nil, nil, nil
}

func (fz *frozenFilter) bytes() int64 {
	n := fz.used
	for _, f := range fz.late {
		n += f.bytes()
	}
	return n
}

// many is the bucket code of a key whose bucket a frozen filter does not
// tell: every bucket of the slice is read.
func (s *keyStore) many() uint32 { return 1<<s.code - 1 }

// freezeStep builds the next range's filter of the oldest slice due to
// freeze: one whose end is freezeDelay behind the newest key held.
func (s *keyStore) freezeStep() error {
	if s.code > maxFreezeCode {
		return nil
	}
	for _, sl := range s.slices {
		if sl.filter == nil {
			continue
		}
		if sl.start+s.sliceLen+freezeDelay > s.newest {
			return nil
		}
		if sl.frozen == nil && !s.freezable(sl.keys) {
			continue
		}
		if sl.frozen == nil {
			sl.frozen = &frozenFilter{ranges: int(max(1, (sl.keys+freezeRangeKeys-1)/freezeRangeKeys)), scratch: &fuseScratch{}}
		}
		return s.buildRange(sl)
	}
	return nil
}

// freezable reports whether a slice of keys keys takes less memory
// frozen than in its Bloom filter: a slice of more than the filter is
// sized for (DedupeRate) keeps its Bloom filter, so the filters stay
// within DedupeMemory.
func (s *keyStore) freezable(keys int64) bool {
	return float64(keys)*float64(freezeFingerprint+s.code)*1.2/8 < float64(s.filterBytes)
}

// thaw gives sl back a Bloom filter of its size, filled by a scan of its
// keys, once its late keys' filters make its frozen filter larger than
// that; the next freeze builds them into fuse filters.
func (s *keyStore) thaw(sl *keySlice) error {
	bf, err := newBlockedBloom(s.filterBytes)
	if err != nil {
		return err
	}
	bf.holding(sl.keys)
	lo := keysBucketKey(make([]byte, keysKeyLen), max(bucketStart(sl.start), s.deletedBelow), dedupeKey{})
	hi := keysBucketKey(make([]byte, keysKeyLen), bucketStart(sl.start+s.sliceLen-1)+keysBucketLen, dedupeKey{})
	err = s.keysIn(lo, hi, func(_ int64, k dedupeKey, us int64) error {
		if s.sliceOf(us) == sl.start {
			bf.add(k)
		}
		return nil
	})
	if err != nil {
		bf.free()
		return err
	}
	sl.frozen.free()
	sl.frozen, sl.filter, sl.saved = nil, bf, 0
	return nil
}

// buildRange builds the filter of sl's next range from the keys the
// store holds, then gives back the pages of sl's Bloom filter that only
// the ranges built use, and the whole Bloom filter after the last range.
func (s *keyStore) buildRange(sl *keySlice) error {
	fz := sl.frozen
	r := len(fz.built)
	keys, err := s.rangeKeys(sl, r)
	if err != nil {
		return err
	}
	keys, fz.spill = uniqueFuseKeys(keys, fz.spill)
	for _, k := range fz.spill {
		if err := fz.addLate(k, s.filterBytes/64); err != nil {
			return err
		}
	}
	segLen, segCount, n := fuseShape(len(keys))
	width := freezeFingerprint + s.code
	// The arena: room for the ranges left at this range's size.
	cells, err := fz.cells(fuseBytes(n, width), fuseBytes(n, width)*(fz.ranges-r)*9/8)
	if err != nil {
		return err
	}
	f := fuseFilter{segLen: segLen, segCount: segCount, cells: cells, width: width, code: s.code}
	if err := buildFuse(&f, keys, uint64(sl.start)^uint64(r)<<32, fz.scratch); err != nil {
		return err
	}
	fz.built = append(fz.built, f)
	if len(fz.built) < fz.ranges {
		s.dropBloomPages(sl)
		return nil
	}
	before := sl.filter.bytes()
	sl.filter.free()
	sl.filter = nil
	fz.scratch, fz.keys, fz.spill = nil, nil, nil
	sl.saved = 0 // written again at Close, frozen
	s.log.Debug("engine: froze a dedupe slice's filter", "slice_start_us", sl.start, "keys", sl.keys,
		"ranges", fz.ranges, "bytes_before", before, "bytes_after", fz.bytes())
	return nil
}

// rangeKeys returns the keys of sl's range r that the store holds, with
// their bucket codes, read bucket by bucket.
func (s *keyStore) rangeKeys(sl *keySlice, r int) ([]fuseKey, error) {
	fz := sl.frozen
	keys := fz.keys[:0]
	first := bucketStart(sl.start)
	lo, hi := make([]byte, keysKeyLen), make([]byte, keysKeyLen)
	for b := max(first, s.deletedBelow); b <= bucketStart(sl.start+s.sliceLen-1); b += keysBucketLen {
		keysBucketKey(lo, b, keyFromParts(fz.rangeStart(r), 0))
		if r+1 < fz.ranges {
			keysBucketKey(hi, b, keyFromParts(fz.rangeStart(r+1), 0))
		} else {
			keysBucketKey(hi, b+keysBucketLen, dedupeKey{})
		}
		err := s.keysIn(lo, hi, func(b int64, k dedupeKey, us int64) error {
			if s.sliceOf(us) == sl.start {
				keys = append(keys, fuseKey{k, uint32((b - first) / keysBucketLen)})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	fz.keys = keys
	return keys, nil
}

// dropBloomPages gives back the whole pages of sl's Bloom filter below
// the first block a key of an unbuilt range uses.
func (s *keyStore) dropBloomPages(sl *keySlice) {
	fz, bf := sl.frozen, sl.filter
	blocks := uint64(len(bf.words) / bloomBlockWords)
	first, _ := bits.Mul64(fz.rangeStart(len(fz.built)), blocks)
	cut := int(first) * 8 * bloomBlockWords / smallPage * smallPage
	if cut > fz.dropped {
		_ = syscall.Madvise(bf.mem[fz.dropped:cut], madvDontNeed)
		fz.dropped = cut
	}
}
