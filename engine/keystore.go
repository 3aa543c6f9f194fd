package engine

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"

	"github.com/offload/offload/internal/memflush"
)

// KeysDir is the folder under Options.Dir that holds the remembered dedupe
// keys: a Pebble database (doc.go, "Dedupe").
const KeysDir = "dedupe"

// Key store layout (doc.go, "Dedupe"). These bytes, and a store's bucket
// length (keysMetaBuckets), may never change.
const (
	keysPrefixKey  = 't' // 't' | bucket start (8) | key (16) → event time µs (8)
	keysPrefixMeta = 'm' // 'm' "seq" → last part seq whose keys are held (8)
	keysKeyLen     = 1 + 8 + 16
	// keysPrefixSliceKey is the layout before the keys were ordered by
	// time: 'k' | slice start (8) | key (16) → event time µs (8). Open
	// converts such keys (convertSliceKeys).
	keysPrefixSliceKey = 'k'
)

// keyBuckets is the event time (µs) a key's prefix spans in a store: its
// bucket length. Keys arrive roughly in event-time order, so a flush of
// the store's memtable overlaps only the newest bucket of what is on
// disk, and compactions leave older buckets alone. A filter hit that is
// not in the bucket of its own event's time costs a read in each other
// bucket of the slice. Longer buckets mean fewer such reads and more
// compaction of the newest bucket as it fills: 15-minute buckets (24 reads
// for a 6-hour slice) cost more than the compactions they saved, and half
// a slice (2 reads) gains about what a bucket a slice does for half its
// extra compaction (docs/PERFORMANCE.md, "Dedupe").
type keyBuckets int64

// start is the start of the bucket of event time us.
func (n keyBuckets) start(us int64) int64 { return floorDiv(us, int64(n)) * int64(n) }

// keysLegacyBuckets is the bucket length of a store written before the
// store recorded it (keysMetaBuckets): one hour.
const keysLegacyBuckets = keyBuckets(60 * dedupeBucket)

// keysBucketsFor is the bucket length a new store takes for a dedupe
// window: half a slice in whole minutes (3h for 24h), at least one. A
// store keeps its length whatever window it is opened with later.
func keysBucketsFor(window int64) keyBuckets {
	return keyBuckets(max(floorDiv(keysSliceLen(window)/2, dedupeBucket)*dedupeBucket, dedupeBucket))
}

// The key store's Pebble sizes: a key is written once, near the newest
// keys, and deleted by range once its bucket is below the horizon.
// Bigger memtables mean fewer flushes; small tables keep what a flush
// overlaps, the newest table of the level below, small
// (docs/PERFORMANCE.md, "Dedupe").
const (
	keysMemTableSize  = 32 << 20
	keysLBaseMaxBytes = 256 << 20
)

var keysMetaSeq = []byte{keysPrefixMeta, 's', 'e', 'q'}

// keysMetaBuckets holds the store's bucket length (8 bytes, µs).
var keysMetaBuckets = []byte{keysPrefixMeta, 'b', 'k', 't'}

// keySlice is the keys of one event-time slice: its Bloom filter, its key
// count and the newest event time among them.
type keySlice struct {
	start  int64 // µs
	maxUS  int64
	keys   int64
	filter *blockedBloom
	saved  uint64 // generation of its filter file, 0 if none
	// stuck is set when its filter could not grow: it keeps its size.
	stuck bool
}

// keyStore is the durable set of remembered dedupe keys: Pebble, keyed by
// event-time bucket then key, and a blocked Bloom filter per event-time
// slice in memory, so a fresh key is almost always answered without
// reading the disk and a filter hit is confirmed by Pebble reads in the
// slice that may hold it. It changes only after the DuckDB transaction of
// the micro-batch whose rows carry the keys has committed (contract 2):
// seq is the last such micro-batch's part, and Engine.catchUpKeys replays
// the keys of later parts after a crash between the two.
type keyStore struct {
	db  *pebble.DB
	dir string

	sliceLen    int64 // µs
	buckets     keyBuckets
	filterBytes int64 // a slice's share of the memory (filterTopBytes)

	slices  []*keySlice     // by start, newest last
	minutes map[int64]int64 // minute start (µs) → keys held in it
	held    int64           // keys at or after horizon
	horizon int64           // µs; math.MinInt64 when nothing was forgotten yet
	// deletedBelow is the bucket start below which the store's keys are
	// deleted by range.
	deletedBelow int64
	seq          int64
	// gen counts the commits that added keys; stamps holds, per slice,
	// the last one that added keys to it (keyfilters.go).
	gen    uint64
	stamps map[int64]uint64
	log    *slog.Logger
	sorter keySorter

	// mu lets lookups run beside the engine's goroutine (a read-ahead's
	// decoders, lookUp): they hold it for reading, and whatever changes
	// the slices, the filters or the horizon holds it for writing. A
	// lookup then sees the store before a commit or after it, never
	// half-way.
	mu sync.RWMutex
	// changes counts the commits and horizon raises, so that lookups made
	// ahead can tell what changed since (readAhead).
	changes uint64

	fatal atomic.Pointer[error] // Pebble's fatal error (a failed fsync)
	// flusher keeps the memtables small while keys come slowly.
	flusher *memflush.Flusher
	// diskBytes is the store's size on disk after the last commit, for
	// Engine.DiskBytes, which may run concurrently.
	diskBytes atomic.Int64

	lookups        atomic.Int64 // Pebble reads of a filter hit
	falsePositives atomic.Int64 // filter hits that found no live key
	filterHits     atomic.Int64 // keys some filter may hold
}

// keysSliceLen is the event-time span of one slice for a dedupe window:
// a quarter of it in whole minutes, at least one. A lookup probes one
// filter per live slice (at most window/slice + 2), and a slice's filter
// stays in memory until its newest key leaves the window: four slices
// keep lookups at six probes and the filters at most a half above the
// window's keys.
func keysSliceLen(window int64) int64 {
	return max(floorDiv(window/4, dedupeBucket)*dedupeBucket, dedupeBucket)
}

// keysFilterBytes is each slice's share of the filters' memory for a
// dedupe window: the memory shared by the most slices live at once.
func keysFilterBytes(window, memory int64) int64 {
	return memory / (window/keysSliceLen(window) + 2)
}

// keysFilterHalvings is how many times a slice's filter may be halved
// below its share: down to 1/64 of it (0.67 MiB of the default 256 MiB
// over 24h), which holds a slice of ~8 unique events a second.
const keysFilterHalvings = 6

// filterTopBytes is the most a slice's filter takes: its share in
// blocks, rounded down to a multiple of 2^keysFilterHalvings so that each
// size below it is exactly half the one above (at least one block).
func (s *keyStore) filterTopBytes() int64 {
	blocks := bloomBlocks(s.filterBytes)
	if r := blocks &^ (1<<keysFilterHalvings - 1); r > 0 {
		blocks = r
	}
	return blocks * bloomBlockBytes
}

// shareBytes is the whole share in blocks: the size of every slice's
// filter before filters were sized by their keys.
func (s *keyStore) shareBytes() int64 { return bloomBlocks(s.filterBytes) * bloomBlockBytes }

// fitBytes is the filter size for a slice of keys that leaves room for as
// many again: the smallest of filterTopBytes and its halves that gives
// twice keys dedupeBitsPerKey bits each.
func (s *keyStore) fitBytes(keys int64) int64 {
	b := s.filterTopBytes()
	for range keysFilterHalvings {
		half := b / 2
		if half%bloomBlockBytes != 0 || half*8 < 2*keys*dedupeBitsPerKey {
			break
		}
		b = half
	}
	return b
}

// newFilterBytes is the size of a new slice's filter: fitBytes of the
// fullest live slice, whose rate the new slice most likely sees (the
// smallest size while no slice is live: it grows with the keys).
func (s *keyStore) newFilterBytes() int64 {
	var most int64
	for _, sl := range s.slices {
		most = max(most, sl.keys)
	}
	return s.fitBytes(most)
}

// openKeyStore opens the key store in dir, converts keys of the slice
// layout and rebuilds the filters from what it holds; forgetBelow then
// sets the horizon the database records. window is the dedupe window in
// µs, memory the filters' budget in bytes, now the clock of the early
// flushes of its memtable (memflush).
func openKeyStore(dir string, window, memory int64, now func() time.Time, log *slog.Logger) (*keyStore, error) {
	s := &keyStore{dir: dir, sliceLen: keysSliceLen(window), minutes: map[int64]int64{},
		horizon: math.MinInt64, deletedBelow: math.MinInt64,
		stamps: map[int64]uint64{}, log: log}
	s.filterBytes = keysFilterBytes(window, memory)
	opts := &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             keysLogger{s, log},
		MemTableSize:       keysMemTableSize,
		LBaseMaxBytes:      keysLBaseMaxBytes,
	}
	opts.EnsureDefaults()
	// The keys are uniform hashes: compressing them gains nothing and
	// costs CPU at every flush and compaction (docs/PERFORMANCE.md,
	// "Dedupe").
	for i := range opts.Levels {
		opts.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("engine: cannot open the dedupe key store %s: %w", dir, err)
	}
	s.db = db
	s.flusher = memflush.New(db, keysMemTableSize, now, log, "dedupe key store")
	if s.buckets, err = openBuckets(db, window); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("engine: cannot read the dedupe key store %s: %w (move it aside to start with no remembered ids)", dir, err)
	}
	s.sorter.buckets = s.buckets
	if err := s.convertSliceKeys(log); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("engine: cannot convert the dedupe key store %s to keys ordered by time: %w (move it aside to start with no remembered ids)", dir, err)
	}
	s.diskBytes.Store(int64(db.Metrics().DiskSpaceUsage()))
	if err := s.rebuild(); err != nil {
		s.freeFilters()
		_ = db.Close()
		return nil, fmt.Errorf("engine: cannot read the dedupe key store %s: %w (move it aside to start with no remembered ids)", dir, err)
	}
	return s, nil
}

// openBuckets returns the bucket length db records. A store that records
// none holds keys in one-hour buckets if it holds anything; an empty one
// is new, and records keysBucketsFor(window).
func openBuckets(db *pebble.DB, window int64) (keyBuckets, error) {
	v, recorded, err := readMeta(db, keysMetaBuckets, "bucket length")
	if err != nil {
		return 0, err
	}
	if recorded {
		if n := int64(v); n < dedupeBucket || n%dedupeBucket != 0 {
			return 0, fmt.Errorf("bucket length of %d µs, want whole minutes", n)
		}
		return keyBuckets(v), nil
	}
	it, err := db.NewIter(nil)
	if err != nil {
		return 0, err
	}
	held := it.First()
	if err := it.Close(); err != nil {
		return 0, err
	}
	if held {
		return keysLegacyBuckets, nil
	}
	n := keysBucketsFor(window)
	if err := db.Set(keysMetaBuckets, binary.BigEndian.AppendUint64(nil, uint64(n)), pebble.Sync); err != nil {
		return 0, err
	}
	return n, nil
}

// readMeta reads the 8-byte big-endian value of the store's meta key
// key, named name in its error; ok is false if the store has none.
func readMeta(db *pebble.DB, key []byte, name string) (v uint64, ok bool, err error) {
	b, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer closer.Close()
	if len(b) != 8 {
		return 0, false, fmt.Errorf("%s of %d bytes, want 8", name, len(b))
	}
	return binary.BigEndian.Uint64(b), true, nil
}

// rebuild reads the seq and every key into the filters and minute counts.
func (s *keyStore) rebuild() error {
	seq, _, err := readMeta(s.db, keysMetaSeq, "seq")
	if err != nil {
		return err
	}
	s.seq = int64(seq)
	ok, err := s.readStamps()
	if err != nil {
		return err
	}
	if !ok {
		// Written before the stamps, or with another slice length:
		// scan it all and stamp every slice.
		if err := s.scan([]byte{keysPrefixKey}, []byte{keysPrefixKey + 1}, func(int64) bool { return true }); err != nil {
			return err
		}
		if err := s.fit(s.slices); err != nil {
			return err
		}
		return s.restamp()
	}
	var scan []int64
	for start := range s.stamps {
		done, err := s.loadFilter(start)
		if err != nil {
			return err
		}
		if !done {
			scan = append(scan, start)
		}
	}
	for _, start := range scan {
		lo, hi := s.sliceBounds(start)
		if err := s.scan(lo, hi, func(st int64) bool { return st == start }); err != nil {
			return err
		}
	}
	var scanned []*keySlice
	for _, sl := range s.slices {
		if slices.Contains(scan, sl.start) {
			scanned = append(scanned, sl)
		}
	}
	if err := s.fit(scanned); err != nil {
		return err
	}
	s.log.Info("engine: rebuilt the dedupe filters", "store", s.dir, "slices_loaded", len(s.stamps)-len(scan), "slices_scanned", len(scan))
	return nil
}

// scan remembers the keys in [lo, hi) of the slices keep accepts. A
// slice it creates takes a whole share: fit makes it smaller once its
// keys are in.
func (s *keyStore) scan(lo, hi []byte, keep func(start int64) bool) error {
	var cur *keySlice
	return s.eachKey(lo, hi, func(k dedupeKey, us int64) error {
		start := s.sliceOf(us)
		if !keep(start) {
			return nil
		}
		if cur == nil || cur.start != start {
			var err error
			if cur, err = s.slice(start, s.filterTopBytes); err != nil {
				return err
			}
		}
		s.remember(cur, k, us)
		return nil
	})
}

// eachKey calls fn with each key in [lo, hi) and its event time, up to
// fn's first error.
func (s *keyStore) eachKey(lo, hi []byte, fn func(k dedupeKey, us int64) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		kb, v := it.Key(), it.Value()
		if len(kb) != keysKeyLen || len(v) != 8 {
			_ = it.Close()
			return fmt.Errorf("key %x of %d bytes with a value of %d, want %d and 8", kb, len(kb), len(v), keysKeyLen)
		}
		var k dedupeKey
		copy(k[:], kb[9:])
		if err := fn(k, decodeUS(v)); err != nil {
			_ = it.Close()
			return err
		}
	}
	return it.Close()
}

// sliceBounds returns the store's range of the buckets that hold the
// keys of the slice starting at start (and of its neighbours where a
// bucket straddles a slice's end).
func (s *keyStore) sliceBounds(start int64) (lo, hi []byte) {
	lo = keysBucketKey(make([]byte, keysKeyLen), s.buckets.start(start), dedupeKey{})
	hi = keysBucketKey(make([]byte, keysKeyLen), s.buckets.start(start+s.sliceLen-1)+int64(s.buckets), dedupeKey{})
	return lo, hi
}

// convertSliceKeys rewrites the keys of the slice layout ('k' | slice
// start | key) into the bucket layout, a chunk at a time, then deletes
// them by range, with the store's generation and its filter files. A
// crash in between leaves them in place, and the next Open writes the
// same keys again.
func (s *keyStore) convertSliceKeys(log *slog.Logger) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{keysPrefixSliceKey}, UpperBound: []byte{keysPrefixSliceKey + 1}})
	if err != nil {
		return err
	}
	wb := s.db.NewBatch()
	key := make([]byte, keysKeyLen)
	n := 0
	for it.First(); it.Valid(); it.Next() {
		kb, v := it.Key(), it.Value()
		if len(kb) != keysKeyLen || len(v) != 8 {
			_ = it.Close()
			_ = wb.Close()
			return fmt.Errorf("key %x of %d bytes with a value of %d, want %d and 8", kb, len(kb), len(v), keysKeyLen)
		}
		var k dedupeKey
		copy(k[:], kb[9:])
		if err := wb.Set(s.key(key, decodeUS(v), k), v, nil); err != nil {
			_ = it.Close()
			_ = wb.Close()
			return err
		}
		if n++; n%migrateKeysChunk == 0 {
			err := wb.Commit(pebble.NoSync)
			_ = wb.Close()
			if err != nil {
				_ = it.Close()
				return err
			}
			wb = s.db.NewBatch()
		}
	}
	defer wb.Close()
	if err := it.Close(); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if err := wb.DeleteRange([]byte{keysPrefixSliceKey}, []byte{keysPrefixSliceKey + 1}, nil); err != nil {
		return err
	}
	// Filter files may be there, stamped by a newer build before a build
	// of the slice layout wrote these keys, and would be taken as current:
	// they go first, and without the generation Open scans every slice
	// and stamps them anew (readStamps).
	if err := os.RemoveAll(filepath.Join(s.dir, keyFiltersDir)); err != nil {
		return err
	}
	if err := wb.Delete(keysMetaGen, nil); err != nil {
		return err
	}
	if err := wb.Commit(pebble.Sync); err != nil {
		return err
	}
	if p := s.fatal.Load(); p != nil {
		return *p
	}
	log.Info("engine: converted the dedupe key store to keys ordered by event time", "store", s.dir, "keys", n)
	return nil
}

// encodeUS and decodeUS store a time so that byte order is time order.
func encodeUS(b []byte, us int64) { binary.BigEndian.PutUint64(b, uint64(us)^(1<<63)) }
func decodeUS(b []byte) int64     { return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)) }

// key fills b (keysKeyLen bytes) with the key of k remembered at event
// time us, in its bucket, and returns it.
func (s *keyStore) key(b []byte, us int64, k dedupeKey) []byte {
	return keysBucketKey(b, s.buckets.start(us), k)
}

func keysBucketKey(b []byte, bucket int64, k dedupeKey) []byte {
	b[0] = keysPrefixKey
	encodeUS(b[1:9], bucket)
	copy(b[9:], k[:])
	return b
}

func (s *keyStore) sliceOf(us int64) int64 { return floorDiv(us, s.sliceLen) * s.sliceLen }

// slice returns the slice starting at start, created if missing with a
// filter of size() bytes.
func (s *keyStore) slice(start int64, size func() int64) (*keySlice, error) {
	i, ok := slices.BinarySearchFunc(s.slices, start, func(sl *keySlice, t int64) int { return cmp.Compare(sl.start, t) })
	if ok {
		return s.slices[i], nil
	}
	f, err := newBlockedBloom(size())
	if err != nil {
		return nil, err
	}
	sl := &keySlice{start: start, maxUS: math.MinInt64, filter: f}
	s.slices = slices.Insert(s.slices, i, sl)
	return sl, nil
}

// insertSlice adds a slice read from its filter file.
func (s *keyStore) insertSlice(sl *keySlice) error {
	i, ok := slices.BinarySearchFunc(s.slices, sl.start, func(o *keySlice, t int64) int { return cmp.Compare(o.start, t) })
	if ok {
		return fmt.Errorf("BUG: engine: two filters of the dedupe slice at %d", sl.start)
	}
	s.slices = slices.Insert(s.slices, i, sl)
	return nil
}

// remember adds k, of event time us, to sl. A filter that reaches
// dedupeBitsPerKey a key grows, up to filterTopBytes: the rate rose above
// what its size was chosen for. A filter that cannot grow keeps its size
// and every key it holds: it only lets more fresh ids through to the
// disk, as one past Options.DedupeRate does.
func (s *keyStore) remember(sl *keySlice, k dedupeKey, us int64) {
	if b := sl.filter.bytes(); !sl.stuck && sl.keys*dedupeBitsPerKey >= b*8 && 2*b <= s.filterTopBytes() {
		began := time.Now()
		if err := s.grow(sl); err != nil {
			sl.stuck = true
			s.log.Warn("engine: a dedupe filter could not grow; it keeps its size, and more fresh ids cost a disk read",
				"store", s.dir, "slice", time.UnixMicro(sl.start).UTC(), "bytes", b, "keys", sl.keys, "err", err)
		} else {
			// The engine waits for it: a growth late in a slice reads
			// millions of keys (docs/PERFORMANCE.md, "Filters sized to
			// the stream's rate").
			s.log.Info("engine: a dedupe filter grew with its keys", "slice", time.UnixMicro(sl.start).UTC(),
				"bytes", sl.filter.bytes(), "keys", sl.keys, "took", time.Since(began))
		}
	}
	sl.filter.add(k)
	sl.keys++
	sl.filter.holding(sl.keys)
	sl.maxUS = max(sl.maxUS, us)
	s.minutes[bucketOf(us)]++
	s.held++
}

// grow rebuilds sl's filter at twice its size from the slice's keys in
// the store, those of the commit in progress among them (commit writes
// keys before it remembers them). Copying each block of the filter twice
// would answer every key too, without reading, but keeps the keys'
// density: a filter copied up from 1/4 or 1/64 of its share and filled
// to 16 bits a key lets 2.8 or 31 % of fresh ids through to the disk,
// against ~0.1 % (docs/PERFORMANCE.md, "Filters sized to the stream's
// rate"). The reads are geometric: a slice's growths read about twice the
// keys its last size holds, and the keys of neighbouring slices in the
// buckets they share.
func (s *keyStore) grow(sl *keySlice) error {
	g, err := newBlockedBloom(2 * sl.filter.bytes())
	if err != nil {
		return err
	}
	g.holding(sl.keys) // before its pages are first written
	lo, hi := s.sliceBounds(sl.start)
	if err := s.eachKey(lo, hi, func(k dedupeKey, us int64) error {
		if s.sliceOf(us) == sl.start {
			g.add(k)
		}
		return nil
	}); err != nil {
		g.free()
		return fmt.Errorf("cannot read the dedupe key store %s to grow a filter: %w", s.dir, err)
	}
	sl.filter.free()
	sl.filter = g
	return nil
}

// fit halves the filters of scanned, filled by scan, down to the size
// a new slice's filter takes now, as if their keys had been added to the
// smaller filters. Not below it: a slice scanned after a crash may still
// be taking keys at the rate of the fullest slice.
func (s *keyStore) fit(scanned []*keySlice) error {
	want := s.newFilterBytes()
	for _, sl := range scanned {
		for b := sl.filter.bytes(); b > want && b%(2*bloomBlockBytes) == 0; b = sl.filter.bytes() {
			g, err := sl.filter.halved(sl.keys)
			if err != nil {
				return err
			}
			sl.filter = g
		}
	}
	return nil
}

// contains reports whether k is remembered at or after the horizon h;
// us is the event time of the id looked up. It probes the newest slices
// first: a duplicate is most often recent.
func (s *keyStore) contains(k dedupeKey, us, h int64) (bool, error) {
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
		found, err := s.sliceContains(sl, k, us, h)
		if found || err != nil {
			return found, err
		}
		s.falsePositives.Add(1)
	}
	return false, nil
}

// sliceContains confirms a filter hit of sl on disk: it reads k in the
// buckets of sl at or after the horizon, that of event time us first (a
// duplicate usually carries its original's event time), then the others,
// newest first.
func (s *keyStore) sliceContains(sl *keySlice, k dedupeKey, us, h int64) (bool, error) {
	lo := s.buckets.start(max(sl.start, h))
	hi := s.buckets.start(min(sl.start+s.sliceLen-1, sl.maxUS))
	own := s.buckets.start(us)
	if own >= lo && own <= hi {
		if found, err := s.bucketContains(own, k, h); found || err != nil {
			return found, err
		}
	}
	for b := hi; b >= lo; b -= int64(s.buckets) {
		if b == own {
			continue
		}
		if found, err := s.bucketContains(b, k, h); found || err != nil {
			return found, err
		}
	}
	return false, nil
}

// bucketContains reads k in bucket b: found if held at or after h.
func (s *keyStore) bucketContains(b int64, k dedupeKey, h int64) (bool, error) {
	s.lookups.Add(1)
	var kb [keysKeyLen]byte
	v, closer, err := s.db.Get(keysBucketKey(kb[:], b, k))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cannot read the dedupe key store %s: %w", s.dir, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return false, fmt.Errorf("cannot read the dedupe key store %s: key %x has a value of %d bytes, want 8 (move the store aside to start with no remembered ids)", s.dir, kb, len(v))
	}
	return decodeUS(v) >= h, nil
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
// deletes the buckets wholly below it and records seq, in one synced
// Pebble batch; only then does it add the keys to the filters, which
// cannot fail. It sorts keys. An error leaves the store's memory behind
// its disk only if Pebble failed (its write may have reached the disk):
// the engine must stop, and the next Open rebuilds it.
func (s *keyStore) commit(keys []keyTime, h, seq int64) error {
	// In key order: the memtable's skiplist inserts a sorted run next to
	// the previous key instead of searching from its head for each
	// (docs/PERFORMANCE.md, "Dedupe").
	s.sorter.sort(keys)
	wb := s.db.NewBatch()
	defer wb.Close()
	val := make([]byte, 8)
	kb := make([]byte, keysKeyLen)
	var starts []int64 // the slices gaining keys
	for _, kt := range keys {
		encodeUS(val, kt.us)
		if err := wb.Set(s.key(kb, kt.us, kt.k), val, nil); err != nil {
			return err
		}
		if start := s.sliceOf(kt.us); !slices.Contains(starts, start) {
			starts = append(starts, start)
		}
	}
	gen := s.gen
	if len(starts) > 0 {
		var err error
		if gen, err = s.stamp(wb, starts); err != nil {
			return err
		}
	}
	h = max(h, s.horizon)
	below := s.deletedBelow
	if h != math.MinInt64 && s.buckets.start(h) > below {
		below = s.buckets.start(h)
		if err := wb.DeleteRange([]byte{keysPrefixKey}, keysBucketKey(make([]byte, keysKeyLen), below, dedupeKey{}), nil); err != nil {
			return err
		}
		// The stamps of the slices wholly below it, whose keys went too.
		if err := wb.DeleteRange(keysStampKey(math.MinInt64), keysStampKey(below-s.sliceLen+1), nil); err != nil {
			return err
		}
	}
	binary.BigEndian.PutUint64(val, uint64(seq))
	if err := wb.Set(keysMetaSeq, val, nil); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes++
	// The filters of the slices gaining keys exist before the keys are
	// durable: once they are, nothing may fail before every key is in a
	// filter, or the store would hold keys its filters answer absent for
	// (a slice left empty by a failed write answers absent, rightly, and
	// goes with the horizon).
	gaining := make(map[int64]*keySlice, len(starts))
	for _, start := range starts {
		sl, err := s.slice(start, s.newFilterBytes)
		if err != nil {
			return fmt.Errorf("cannot add %d dedupe keys to %s: %w", len(keys), s.dir, err)
		}
		gaining[start] = sl
	}
	if err := wb.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("cannot write %d dedupe keys to %s: %w", len(keys), s.dir, err)
	}
	if p := s.fatal.Load(); p != nil {
		return fmt.Errorf("cannot write %d dedupe keys to %s: %w", len(keys), s.dir, *p)
	}
	s.seq, s.deletedBelow, s.gen = seq, below, gen
	s.flusher.Wrote(wb.Len())
	s.diskBytes.Store(int64(s.db.Metrics().DiskSpaceUsage()))
	var sl *keySlice
	for _, kt := range keys {
		if start := s.sliceOf(kt.us); sl == nil || sl.start != start {
			sl = gaining[start]
		}
		s.remember(sl, kt.k, kt.us)
	}
	for _, start := range starts {
		s.stamps[start] = gen
	}
	for start := range s.stamps {
		if start+s.sliceLen <= below {
			delete(s.stamps, start)
		}
	}
	s.raiseHorizon(h)
	return nil
}

// forgetBelow raises the horizon to h in the minute counts and frees the
// filters of the slices wholly below it.
func (s *keyStore) forgetBelow(h int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes++
	s.raiseHorizon(h)
}

func (s *keyStore) raiseHorizon(h int64) {
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
	s.slices = slices.DeleteFunc(s.slices, func(sl *keySlice) bool {
		if sl.maxUS >= h {
			return false
		}
		sl.filter.free()
		return true
	})
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fatal.Load() == nil {
		// Without its files the next Open scans the store instead.
		if err := s.saveFilters(); err != nil {
			s.log.Error("engine: cannot save the dedupe filters; the next start scans the key store", "store", s.dir, "err", err)
		}
	}
	s.freeFilters()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("cannot close the dedupe key store %s: %w", s.dir, err)
	}
	return nil
}

// freeFilters gives back the filters' memory.
func (s *keyStore) freeFilters() {
	for _, sl := range s.slices {
		sl.filter.free()
	}
	s.slices = nil
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
