package engine

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
)

// KeysDir is the folder under Options.Dir that holds the remembered dedupe
// keys: a Pebble database (doc.go, "Dedupe").
const KeysDir = "dedupe"

// Key store layout (doc.go, "Dedupe"). These bytes may never change.
const (
	keysPrefixKey  = 'k' // 'k' | slice start (8) | key (16) → event time µs (8)
	keysPrefixMeta = 'm' // 'm' "seq" → last part seq whose keys are held (8)
	keysKeyLen     = 1 + 8 + 16
)

// The key store's Pebble sizes: a key is written once and compacted
// within its slice until the slice leaves the window. Bigger memtables
// and a bigger base level mean fewer, larger compactions
// (docs/PERFORMANCE.md, "Dedupe").
const (
	keysMemTableSize   = 32 << 20
	keysLBaseMaxBytes  = 256 << 20
	keysTargetFileSize = 64 << 20
)

var keysMetaSeq = []byte{keysPrefixMeta, 's', 'e', 'q'}

// keySlice is the keys of one event-time slice: its Bloom filter, its key
// count and the newest event time among them.
type keySlice struct {
	start  int64 // µs, the Pebble key prefix
	maxUS  int64
	keys   int64
	filter *blockedBloom
}

// keyStore is the durable set of remembered dedupe keys: Pebble, keyed by
// event-time slice then key, and a blocked Bloom filter per slice in
// memory, so a fresh key is almost always answered without reading the
// disk and a filter hit is confirmed by one Pebble read per slice that
// may hold it. It changes only after the DuckDB transaction of the
// micro-batch whose rows carry the keys has committed (contract 2): seq
// is the last such micro-batch's part, and Engine.catchUpKeys replays
// the keys of later parts after a crash between the two.
type keyStore struct {
	db  *pebble.DB
	dir string

	sliceLen    int64 // µs, for new slices
	filterBytes int64 // per slice

	slices  []*keySlice     // by start, newest last
	minutes map[int64]int64 // minute start (µs) → keys held in it
	held    int64           // keys at or after horizon
	horizon int64           // µs; math.MinInt64 when nothing was forgotten yet
	seq     int64

	fatal atomic.Pointer[error] // Pebble's fatal error (a failed fsync)
	// diskBytes is the store's size on disk after the last commit, for
	// Engine.DiskBytes, which may run concurrently.
	diskBytes atomic.Int64

	lookups        atomic.Int64 // Pebble reads of a filter hit
	falsePositives atomic.Int64 // reads that found no live key
	filterHits     atomic.Int64 // keys some filter may hold
}

// keysSliceLen is the event-time span of one slice for a dedupe window:
// a quarter of it in whole minutes, at least one. A lookup probes one
// filter per live slice (at most window/slice + 2), and a slice's keys
// stay on disk until its newest key leaves the window: four slices keep
// lookups at six probes and the disk at most a quarter above the window.
func keysSliceLen(window int64) int64 {
	return max(floorDiv(window/4, dedupeBucket)*dedupeBucket, dedupeBucket)
}

// openKeyStore opens the key store in dir and rebuilds its filters from
// what it holds; forgetBelow then sets the horizon the database records.
// window is the dedupe window in µs, memory the filters' budget in bytes.
func openKeyStore(dir string, window, memory int64, log *slog.Logger) (*keyStore, error) {
	s := &keyStore{dir: dir, sliceLen: keysSliceLen(window), minutes: map[int64]int64{}, horizon: math.MinInt64}
	s.filterBytes = memory / (window/s.sliceLen + 2)
	opts := &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             keysLogger{s, log},
		MemTableSize:       keysMemTableSize,
		LBaseMaxBytes:      keysLBaseMaxBytes,
		// Fewer, larger L0 compactions: each one merges the flushes into
		// the current slice, whatever their count.
		L0CompactionThreshold: 16,
		L0StopWritesThreshold: 64,
	}
	// The keys are uniform hashes: compressing them gains nothing and
	// costs CPU at every flush and compaction (docs/PERFORMANCE.md,
	// "Dedupe").
	for i := range opts.TargetFileSizes {
		opts.TargetFileSizes[i] = keysTargetFileSize
	}
	opts.EnsureDefaults()
	for i := range opts.Levels {
		opts.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("engine: cannot open the dedupe key store %s: %w", dir, err)
	}
	s.db = db
	s.diskBytes.Store(int64(db.Metrics().DiskSpaceUsage()))
	if err := s.rebuild(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("engine: cannot read the dedupe key store %s: %w (move it aside to start with no remembered ids)", dir, err)
	}
	return s, nil
}

// rebuild reads the seq and every key into the filters and minute counts.
func (s *keyStore) rebuild() error {
	v, closer, err := s.db.Get(keysMetaSeq)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return err
	default:
		if len(v) != 8 {
			closer.Close()
			return fmt.Errorf("seq of %d bytes, want 8", len(v))
		}
		s.seq = int64(binary.BigEndian.Uint64(v))
		closer.Close()
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{keysPrefixKey}, UpperBound: []byte{keysPrefixKey + 1}})
	if err != nil {
		return err
	}
	var cur *keySlice
	for it.First(); it.Valid(); it.Next() {
		kb, v := it.Key(), it.Value()
		if len(kb) != keysKeyLen || len(v) != 8 {
			_ = it.Close()
			return fmt.Errorf("key %x of %d bytes with a value of %d, want %d and 8", kb, len(kb), len(v), keysKeyLen)
		}
		start := decodeUS(kb[1:9])
		if cur == nil || cur.start != start {
			if cur, err = s.slice(start); err != nil {
				_ = it.Close()
				return err
			}
		}
		var k dedupeKey
		copy(k[:], kb[9:])
		s.remember(cur, k, decodeUS(v))
	}
	return it.Close()
}

// encodeUS and decodeUS store a time so that byte order is time order.
func encodeUS(b []byte, us int64) { binary.BigEndian.PutUint64(b, uint64(us)^(1<<63)) }
func decodeUS(b []byte) int64     { return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)) }

func keysKey(start int64, k dedupeKey) []byte {
	b := make([]byte, keysKeyLen)
	b[0] = keysPrefixKey
	encodeUS(b[1:9], start)
	copy(b[9:], k[:])
	return b
}

// slice returns the slice starting at start, created if missing.
func (s *keyStore) slice(start int64) (*keySlice, error) {
	i, ok := slices.BinarySearchFunc(s.slices, start, func(sl *keySlice, t int64) int { return cmpInt(sl.start, t) })
	if ok {
		return s.slices[i], nil
	}
	f, err := newBlockedBloom(s.filterBytes)
	if err != nil {
		return nil, err
	}
	sl := &keySlice{start: start, maxUS: math.MinInt64, filter: f}
	s.slices = slices.Insert(s.slices, i, sl)
	return sl, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *keyStore) remember(sl *keySlice, k dedupeKey, us int64) {
	sl.filter.add(k)
	sl.keys++
	sl.maxUS = max(sl.maxUS, us)
	s.minutes[bucketOf(us)]++
	s.held++
}

// contains reports whether k is remembered at or after the horizon h.
// It probes the newest slices first: a duplicate is most often recent.
func (s *keyStore) contains(k dedupeKey, h int64) (bool, error) {
	hit := false
	for i := len(s.slices) - 1; i >= 0; i-- {
		sl := s.slices[i]
		if sl.maxUS < h || !sl.filter.mayContain(k) {
			continue
		}
		if !hit {
			hit = true
			s.filterHits.Add(1)
		}
		s.lookups.Add(1)
		v, closer, err := s.db.Get(keysKey(sl.start, k))
		if errors.Is(err, pebble.ErrNotFound) {
			s.falsePositives.Add(1)
			continue
		}
		if err != nil {
			return false, fmt.Errorf("cannot read the dedupe key store %s: %w", s.dir, err)
		}
		us := decodeUS(v)
		closer.Close()
		if us >= h {
			return true, nil
		}
		s.falsePositives.Add(1)
	}
	return false, nil
}

// expired returns how many held keys are older than h.
func (s *keyStore) expired(h int64) int64 {
	if h <= s.horizon {
		return 0
	}
	var n int64
	for m, c := range s.minutes {
		if m < h {
			n += c
		}
	}
	return n
}

// commit durably adds keys (each at or after h), raises the horizon to h,
// deletes the slices wholly below it and records seq, in one synced
// Pebble batch; only then does it change the filters. It sorts keys. An
// error leaves the store's memory behind its disk: the engine must stop,
// and the next Open rebuilds it.
func (s *keyStore) commit(keys []keyTime, h, seq int64) error {
	// In key order: the memtable's skiplist inserts a sorted run next to
	// the previous key instead of searching from its head for each
	// (docs/PERFORMANCE.md, "Dedupe").
	slices.SortFunc(keys, func(a, b keyTime) int {
		return cmp.Or(cmpInt(floorDiv(a.us, s.sliceLen), floorDiv(b.us, s.sliceLen)), bytes.Compare(a.k[:], b.k[:]))
	})
	wb := s.db.NewBatch()
	defer wb.Close()
	val := make([]byte, 8)
	kb := make([]byte, keysKeyLen)
	kb[0] = keysPrefixKey
	for _, kt := range keys {
		encodeUS(kb[1:9], floorDiv(kt.us, s.sliceLen)*s.sliceLen)
		copy(kb[9:], kt.k[:])
		encodeUS(val, kt.us)
		if err := wb.Set(kb, val, nil); err != nil {
			return err
		}
	}
	h = max(h, s.horizon)
	var gone []*keySlice
	for _, sl := range s.slices {
		if sl.maxUS < h && !s.gainsKeys(sl, keys) {
			gone = append(gone, sl)
			lo := keysKey(sl.start, dedupeKey{})
			hi := keysKey(sl.start+1, dedupeKey{})
			if err := wb.DeleteRange(lo, hi, nil); err != nil {
				return err
			}
		}
	}
	binary.BigEndian.PutUint64(val, uint64(seq))
	if err := wb.Set(keysMetaSeq, val, nil); err != nil {
		return err
	}
	if err := wb.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("cannot write %d dedupe keys to %s: %w", len(keys), s.dir, err)
	}
	if p := s.fatal.Load(); p != nil {
		return fmt.Errorf("cannot write %d dedupe keys to %s: %w", len(keys), s.dir, *p)
	}
	s.seq = seq
	s.diskBytes.Store(int64(s.db.Metrics().DiskSpaceUsage()))
	if len(gone) > 0 {
		s.slices = slices.DeleteFunc(s.slices, func(sl *keySlice) bool { return slices.Contains(gone, sl) })
		for _, sl := range gone {
			sl.filter.free()
		}
	}
	s.forgetBelow(h)
	for _, kt := range keys {
		sl, err := s.slice(floorDiv(kt.us, s.sliceLen) * s.sliceLen)
		if err != nil {
			return err
		}
		s.remember(sl, kt.k, kt.us)
	}
	return nil
}

// gainsKeys reports whether any of keys goes to sl.
func (s *keyStore) gainsKeys(sl *keySlice, keys []keyTime) bool {
	for _, kt := range keys {
		if floorDiv(kt.us, s.sliceLen)*s.sliceLen == sl.start {
			return true
		}
	}
	return false
}

// forgetBelow raises the horizon to h in the minute counts.
func (s *keyStore) forgetBelow(h int64) {
	if h <= s.horizon {
		return
	}
	s.horizon = h
	for m, c := range s.minutes {
		if m < h {
			s.held -= c
			delete(s.minutes, m)
		}
	}
}

// oldest returns the start of the oldest minute held, or false if none.
func (s *keyStore) oldest() (int64, bool) {
	o, ok := int64(math.MaxInt64), false
	for m := range s.minutes {
		o, ok = min(o, m), true
	}
	return o, ok
}

// memory is the filters' bytes.
func (s *keyStore) memory() int64 {
	var n int64
	for _, sl := range s.slices {
		n += sl.filter.bytes()
	}
	return n
}

func (s *keyStore) close() error {
	for _, sl := range s.slices {
		sl.filter.free()
	}
	s.slices = nil
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("cannot close the dedupe key store %s: %w", s.dir, err)
	}
	return nil
}

// keysLogger routes Pebble's messages to slog and records its fatal
// errors (a failed fsync) for commit to return: a failed fsync is never
// retried.
type keysLogger struct {
	s   *keyStore
	log *slog.Logger
}

func (l keysLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble", "store", "dedupe")
}

func (l keysLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble", "store", "dedupe")
}

func (l keysLogger) Fatalf(format string, args ...any) {
	err := fmt.Errorf(format, args...)
	l.s.fatal.CompareAndSwap(nil, &err)
	l.log.Error("engine: the dedupe key store failed", "err", err)
}
