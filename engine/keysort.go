package engine

import (
	"cmp"
	"math/bits"
	"slices"
)

// minDistributeKeys is the fewest keys sortKeys distributes; fewer are
// sorted by comparisons.
const minDistributeKeys = 256

// compareKeys orders keys as the key store's Pebble keys (keysBucketKey)
// for buckets of n: by bucket, then by key.
func (n keyBuckets) compareKeys(a, b keyTime) int {
	return cmp.Or(cmp.Compare(n.start(a.us), n.start(b.us)), cmp.Compare(a.k.hi(), b.k.hi()), cmp.Compare(a.k.lo(), b.k.lo()))
}

// keySorter sorts a micro-batch's keys into the key store's order without
// comparing most of them. The keys are SHA-256 hashes, uniform within
// each bucket: a counting pass on their top bits puts each within a few
// places of its own, and an insertion pass ends the job, linear in the
// keys where a comparison sort spent ~16 comparisons and swaps on each (a
// third of the key store's commit: docs/PERFORMANCE.md, "Drain"). Its
// buffers are reused from one micro-batch to the next.
type keySorter struct {
	buckets keyBuckets // the store's
	tmp     []keyTime
	counts  []int
}

// sort sorts keys by the store's compareKeys.
func (ks *keySorter) sort(keys []keyTime) {
	if len(keys) < minDistributeKeys {
		slices.SortFunc(keys, ks.buckets.compareKeys)
		return
	}
	ks.tmp = slices.Grow(ks.tmp[:0], len(keys))[:len(keys)]
	ks.byBucket(keys)
	for lo := 0; lo < len(keys); {
		b := ks.buckets.start(keys[lo].us)
		hi := lo + 1
		for hi < len(keys) && ks.buckets.start(keys[hi].us) == b {
			hi++
		}
		ks.byKey(keys[lo:hi], ks.tmp[lo:hi])
		lo = hi
	}
}

// byBucket groups keys by bucket, in bucket order (a micro-batch's keys
// fall in one bucket or a few).
func (ks *keySorter) byBucket(keys []keyTime) {
	var buckets []int64
	for _, kt := range keys {
		if b := ks.buckets.start(kt.us); !slices.Contains(buckets, b) {
			buckets = append(buckets, b)
			if len(buckets) > 64 { // late events from many buckets
				slices.SortStableFunc(keys, func(a, b keyTime) int { return cmp.Compare(ks.buckets.start(a.us), ks.buckets.start(b.us)) })
				return
			}
		}
	}
	if len(buckets) == 1 {
		return
	}
	slices.Sort(buckets)
	next := make([]int, len(buckets)) // where each bucket's next key goes
	for _, kt := range keys {
		i, _ := slices.BinarySearch(buckets, ks.buckets.start(kt.us))
		if i+1 < len(next) {
			next[i+1]++
		}
	}
	for i := 1; i < len(next); i++ {
		next[i] += next[i-1]
	}
	for _, kt := range keys {
		i, _ := slices.BinarySearch(buckets, ks.buckets.start(kt.us))
		ks.tmp[next[i]] = kt
		next[i]++
	}
	copy(keys, ks.tmp)
}

// byKey sorts run, keys of one bucket, by key; tmp is as long as run.
func (ks *keySorter) byKey(run, tmp []keyTime) {
	width := bits.Len(uint(len(run))) // ~one key a bin
	shift := 64 - width
	ks.counts = slices.Grow(ks.counts[:0], 1<<width+1)[:1<<width+1]
	clear(ks.counts)
	for _, kt := range run {
		ks.counts[kt.k.hi()>>shift+1]++
	}
	for i := 1; i < len(ks.counts); i++ {
		ks.counts[i] += ks.counts[i-1]
	}
	for _, kt := range run {
		bin := kt.k.hi() >> shift
		tmp[ks.counts[bin]] = kt
		ks.counts[bin]++
	}
	copy(run, tmp)
	for i := 1; i < len(run); i++ {
		kt := run[i]
		j := i
		for ; j > 0 && keyLess(kt.k, run[j-1].k); j-- {
			run[j] = run[j-1]
		}
		run[j] = kt
	}
}

// keyLess orders keys as bytes.Compare does.
func keyLess(a, b dedupeKey) bool {
	ah, bh := a.hi(), b.hi()
	return ah < bh || (ah == bh && a.lo() < b.lo())
}
