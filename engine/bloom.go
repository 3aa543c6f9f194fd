package engine

import "math/bits"

// bloomBlockWords is a block of a blockedBloom: 512 bits, one cache line,
// so a lookup touches one line of memory.
const bloomBlockWords = 8

// bloomProbes is the number of bits a key sets in its block. With a key
// every 16 to 32 bits of filter, 8 probes keep the false positive rate
// between about 0.1 % and 0.01 % (docs/PERFORMANCE.md, "Dedupe").
const bloomProbes = 8

// blockedBloom is a blocked Bloom filter (Putze, Sanders, Singler, "Cache-,
// Hash- and Space-Efficient Bloom Filters", 2007) over dedupe keys. The
// keys are already uniform 128-bit hashes: the high half picks the block,
// the low half the bits in it, so nothing is hashed again. It never
// answers "absent" for a key added to it.
type blockedBloom struct {
	words []uint64
}

// newBlockedBloom returns a filter of about bytes bytes (at least one block).
func newBlockedBloom(bytes int64) *blockedBloom {
	blocks := max(bytes/(8*bloomBlockWords), 1)
	return &blockedBloom{words: make([]uint64, blocks*bloomBlockWords)}
}

// block returns the first word of k's block.
func (f *blockedBloom) block(k dedupeKey) int {
	hi, _ := bits.Mul64(k.hi(), uint64(len(f.words)/bloomBlockWords))
	return int(hi) * bloomBlockWords
}

func (f *blockedBloom) add(k dedupeKey) {
	b := f.words[f.block(k) : f.block(k)+bloomBlockWords : f.block(k)+bloomBlockWords]
	x := k.lo()
	for range bloomProbes {
		x = x*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019
		p := x >> 55 // 9 bits: one of the block's 512
		b[p>>6] |= 1 << (p & 63)
	}
}

func (f *blockedBloom) mayContain(k dedupeKey) bool {
	b := f.words[f.block(k) : f.block(k)+bloomBlockWords : f.block(k)+bloomBlockWords]
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
