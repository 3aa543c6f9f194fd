package engine

import (
	"crypto/sha256"
	"encoding/binary"
	"sort"
	"time"
)

// dedupeKey is the first 128 bits of SHA-256 of an event id: wide enough
// that two different ids of a 50M-key set collide with probability about
// 10^-23, so a fresh event is never taken for a duplicate.
type dedupeKey [16]byte

func keyOf(eventID string) dedupeKey {
	sum := sha256.Sum256([]byte(eventID))
	var k dedupeKey
	copy(k[:], sum[:16])
	return k
}

func (k dedupeKey) hi() uint64 { return binary.BigEndian.Uint64(k[:8]) }
func (k dedupeKey) lo() uint64 { return binary.BigEndian.Uint64(k[8:]) }

func keyFromParts(hi, lo uint64) dedupeKey {
	var k dedupeKey
	binary.BigEndian.PutUint64(k[:8], hi)
	binary.BigEndian.PutUint64(k[8:], lo)
	return k
}

// dedupeBucket is the granularity of dedupe expiry and eviction: keys are
// forgotten a whole event-time minute at a time.
const dedupeBucket = int64(time.Minute / time.Microsecond)

func bucketOf(us int64) int64 { return floorDiv(us, dedupeBucket) * dedupeBucket }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// dedupeIndex is the in-memory copy of the dedupe table: every remembered
// key with its event time in Unix microseconds (the precision DuckDB
// stores), and the number of keys per event-time minute. It holds exactly
// the keys whose time is at or after horizon.
//
// The table in DuckDB is the durable truth; this index answers "seen
// before?" in memory, so a micro-batch never queries the dedupe table, only
// appends to it (doc.go, "Dedupe").
type dedupeIndex struct {
	keys    map[dedupeKey]int64
	buckets map[int64]int64 // minute start (µs) → keys held in it
	horizon int64           // µs; math.MinInt64 when nothing was forgotten yet
}

func newDedupeIndex(horizon int64) *dedupeIndex {
	return &dedupeIndex{keys: make(map[dedupeKey]int64), buckets: make(map[int64]int64), horizon: horizon}
}

func (d *dedupeIndex) len() int64 { return int64(len(d.keys)) }

func (d *dedupeIndex) contains(k dedupeKey) bool {
	_, ok := d.keys[k]
	return ok
}

// add remembers k at time us (>= horizon). A key added twice keeps its
// newest time (only possible when reloading a table written by a bug).
func (d *dedupeIndex) add(k dedupeKey, us int64) {
	if old, ok := d.keys[k]; ok {
		if old >= us {
			return
		}
		d.dec(old)
	}
	d.keys[k] = us
	d.buckets[bucketOf(us)]++
}

func (d *dedupeIndex) dec(us int64) {
	b := bucketOf(us)
	if d.buckets[b]--; d.buckets[b] <= 0 {
		delete(d.buckets, b)
	}
}

// forgetBelow raises the horizon to h and drops the keys older than it,
// returning how many were dropped.
func (d *dedupeIndex) forgetBelow(h int64) int64 {
	if h <= d.horizon {
		return 0
	}
	d.horizon = h
	var n int64
	for b, c := range d.buckets {
		if b < h {
			n += c
		}
	}
	if n == 0 {
		return 0
	}
	// One pass over the map: at most once per event-time minute in steady
	// state, since horizons are whole minutes.
	for k, us := range d.keys {
		if us < h {
			delete(d.keys, k)
		}
	}
	for b := range d.buckets {
		if b < h {
			delete(d.buckets, b)
		}
	}
	return n
}

// evictionHorizon returns the lowest whole-minute horizon that leaves at
// most max keys, or the current horizon if there are not more than max.
func (d *dedupeIndex) evictionHorizon(max int64) int64 {
	excess := d.len() - max
	if excess <= 0 {
		return d.horizon
	}
	starts := make([]int64, 0, len(d.buckets))
	for b := range d.buckets {
		starts = append(starts, b)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	for _, b := range starts {
		excess -= d.buckets[b]
		if excess <= 0 {
			return b + dedupeBucket
		}
	}
	return starts[len(starts)-1] + dedupeBucket
}
