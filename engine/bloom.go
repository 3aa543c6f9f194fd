package engine

import (
	"fmt"
	"math/bits"
	"syscall"
	"unsafe"
)

// bloomBlockWords is a block of a blockedBloom: 512 bits, one cache line,
// so a lookup touches one line of memory.
const bloomBlockWords = 8

// bloomBlockBytes is a block's size in bytes.
const bloomBlockBytes = 8 * bloomBlockWords

// bloomBlocks is the number of blocks of a filter of about bytes bytes:
// at least one.
func bloomBlocks(bytes int64) int64 { return max(bytes/bloomBlockBytes, 1) }

// bloomProbes is the number of bits a key sets in its block. With a key
// every 16 to 32 bits of filter, 8 probes keep the false positive rate
// between about 0.1 % and 0.01 % (docs/PERFORMANCE.md, "Dedupe").
const bloomProbes = 8

// madvHugePage is MADV_HUGEPAGE, which package syscall does not name.
const madvHugePage = 14

// blockedBloom is a blocked Bloom filter (Putze, Sanders, Singler, "Cache-,
// Hash- and Space-Efficient Bloom Filters", 2007) over dedupe keys. The
// keys are already uniform 128-bit hashes: the high half picks the block,
// the low half the bits in it, so nothing is hashed again. It never
// answers "absent" for a key added to it.
//
// Its memory is mapped outside the Go heap and returned by free: the
// filters are most of the engine's memory, and on the heap they would
// raise the garbage collector's target by as much again.
type blockedBloom struct {
	mem   []byte
	words []uint64
	huge  bool // asked for huge pages (holding)
}

// newBlockedBloom returns a filter of about bytes bytes (at least one
// block), zeroed; the kernel backs its pages as they are first written.
func newBlockedBloom(bytes int64) (*blockedBloom, error) {
	size := bloomBlocks(bytes) * bloomBlockBytes
	mem, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("cannot map %d bytes for a dedupe filter: %w (lower engine.dedupe_memory)", size, err)
	}
	return &blockedBloom{mem: mem, words: unsafe.Slice((*uint64)(unsafe.Pointer(&mem[0])), size/8)}, nil
}

// smallPage is the size of the kernel's base page.
const smallPage = 4096

// holding tells the filter it holds n keys. Once they make it dense, one
// a 4 KiB page (each key touches a random block, so about 63 % of the
// pages are touched by then, and all soon after), it asks the kernel to
// back it with transparent huge pages: a lookup lands on a random block
// of a filter tens of MiB large, and with 4 KiB pages it misses the TLB
// as well as the cache, so a fresh id's lookup in a full day's filters
// costs about twice as much (docs/PERFORMANCE.md, "Dedupe"). Before
// that, huge pages would make the whole filter resident for a few keys.
// Only a hint: a kernel without transparent huge pages, or with them
// off, refuses or ignores it, and the filter works the same.
func (f *blockedBloom) holding(n int64) {
	if f.huge || n < max(int64(len(f.mem))/smallPage, 1) {
		return
	}
	f.huge = true
	_ = syscall.Madvise(f.mem, madvHugePage)
}

// halved returns a filter of half f's blocks (f's are even), holding
// f's keys, that answers exactly as one filled with those keys would,
// and frees f: a key's block among n blocks is half its block among 2n,
// rounded down (block's multiply-shift), so block j is the union of f's
// blocks 2j and 2j+1. Only the words that have a bit set are written,
// so a sparse filter stays a few pages.
func (f *blockedBloom) halved(keys int64) (*blockedBloom, error) {
	g, err := newBlockedBloom(f.bytes() / 2)
	if err != nil {
		return nil, err
	}
	g.holding(keys) // before its pages are first written
	for j := 0; j < len(g.words); j += bloomBlockWords {
		for w := range bloomBlockWords {
			if v := f.words[2*j+w] | f.words[2*j+bloomBlockWords+w]; v != 0 {
				g.words[j+w] = v
			}
		}
	}
	f.free()
	return g, nil
}

// free returns the filter's memory; the filter is unusable after.
func (f *blockedBloom) free() {
	if f.mem != nil {
		_ = syscall.Munmap(f.mem)
		f.mem, f.words = nil, nil
	}
}

// block returns k's block.
func (f *blockedBloom) block(k dedupeKey) []uint64 {
	hi, _ := bits.Mul64(k.hi(), uint64(len(f.words)/bloomBlockWords))
	i := int(hi) * bloomBlockWords
	return f.words[i : i+bloomBlockWords : i+bloomBlockWords]
}

func (f *blockedBloom) add(k dedupeKey) {
	b := f.block(k)
	x := k.lo()
	for range bloomProbes {
		x = x*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019
		p := x >> 55 // 9 bits: one of the block's 512
		b[p>>6] |= 1 << (p & 63)
	}
}

func (f *blockedBloom) mayContain(k dedupeKey) bool {
	b := f.block(k)
	x := k.lo()
	for range bloomProbes {
		x = x*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019
		p := x >> 55
		if b[p>>6]&(1<<(p&63)) == 0 {
			return false
		}
	}
	return true
}

// bytes is the filter's memory.
func (f *blockedBloom) bytes() int64 { return int64(len(f.words)) * 8 }
