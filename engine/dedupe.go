package engine

import (
	"crypto/sha256"
	"encoding/binary"
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

// dedupeBucket is the granularity of dedupe expiry: keys are forgotten a
// whole event-time minute at a time.
const dedupeBucket = int64(time.Minute / time.Microsecond)

func bucketOf(us int64) int64 { return floorDiv(us, dedupeBucket) * dedupeBucket }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
