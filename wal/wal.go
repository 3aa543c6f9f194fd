package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/offload/offload/internal/memflush"
)

// ErrClosed is returned by operations on a closed WAL.
var ErrClosed = errors.New("wal: closed")

// ErrRepairInterrupted is returned by Open when a Repair stopped between
// moving the damaged WAL away and moving the rebuilt one in; running
// Repair again finishes it.
var ErrRepairInterrupted = errors.New("wal: a repair was interrupted; run the repair again to finish it")

// ErrNotFound is returned by a read-only Open of a directory holding no WAL.
var ErrNotFound = errors.New("wal: no WAL in this directory")

// Options configures a WAL. The zero value is usable.
type Options struct {
	// FS is the file system; nil means the operating system's. Tests pass
	// vfs.NewCrashableMem() or an errorfs wrapper.
	FS vfs.FS
	// Logger receives Pebble's messages; nil means slog.Default().
	Logger *slog.Logger
	// Fatal is called when a write cannot be made durable (a failed fsync
	// or write). It must not return; the default logs and exits the process
	// with status 1. Pebble cannot tell what reached the disk after such a
	// failure, so retrying would risk acknowledging lost data.
	Fatal func(error)
	// MemTableSize is Pebble's largest memtable; 0 means 32 MiB. Written
	// slowly, the WAL flushes its memtable every memflush.Interval and
	// holds far less (doc.go, "Memory").
	MemTableSize uint64
	// Now returns the append time stamped on each entry and is the clock
	// of those flushes; nil means time.Now.
	Now func() time.Time
	// ReadOnly opens the WAL for inspection: appends and truncations fail
	// and nothing on disk changes.
	ReadOnly bool
}

// EnsureDefaults fills unset options with their defaults.
func (o *Options) EnsureDefaults() {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Fatal == nil {
		logger := o.Logger
		o.Fatal = func(err error) {
			logger.Error("wal: cannot make data durable; stopping so no record is acknowledged that is not on disk: check the disk and the data directory, then restart", "err", err)
			os.Exit(1)
		}
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 32 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// WAL is the durable log of fetched Kafka record batches. Its methods are
// safe for concurrent use.
type WAL struct {
	db   *pebble.DB
	dir  string
	opts Options
	// unreadable holds the blob files that cannot be opened, by blob file
	// ID, found at open (blobfile.go): only a read-only WAL opens with
	// them, and no read of it asks Pebble for their values.
	unreadable map[uint64]*CorruptionError
	// blobRewrites lets Pebble rewrite blob files to drop their garbage:
	// set once Verify found no damage, cleared when a read meets damage
	// in a blob file (blobfile.go, valueSeparationPolicy).
	blobRewrites atomic.Bool

	mu    sync.Mutex // guards parts (the map, not each partition's state)
	parts map[TopicPartition]*partition
	// latest is the highest incarnation of each topic in parts (guarded by
	// mu): what tells a superseded incarnation.
	latest map[string]uint32
	// recreateMu serializes Recreate.
	recreateMu sync.Mutex
	bytes      atomic.Int64 // live key+value bytes over all partitions

	// closeMu is held shared by every operation that uses db and exclusively
	// by Close, so Close waits for operations in flight and no operation
	// reaches a closed Pebble DB (which panics).
	closeMu sync.RWMutex
	closed  bool // guarded by closeMu

	// fatal holds the first error passed to Pebble's Fatalf. Once set, no
	// append is acknowledged, even if Options.Fatal returned.
	fatal atomic.Pointer[error]

	// flusher keeps the memtables small while the WAL is written slowly.
	flusher *memflush.Flusher
}

// use takes closeMu shared; it returns false, without the lock, when the
// WAL is closed.
func (w *WAL) use() bool {
	w.closeMu.RLock()
	if w.closed {
		w.closeMu.RUnlock()
		return false
	}
	return true
}

func (w *WAL) done() { w.closeMu.RUnlock() }

// failure returns the fatal error Pebble reported, if any.
func (w *WAL) failure() error {
	if p := w.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// partition is one partition's in-memory state. Its mutex serializes
// appends and truncations of that partition, so the high-water check and
// the write it guards are atomic; appends of different partitions proceed
// concurrently and share fsyncs.
type partition struct {
	mu    sync.Mutex
	tp    TopicPartition
	meta  partitionMeta
	first int64 // first offset still held, -1 if none
}

// Open opens or creates the WAL in dir.
func Open(dir string, opts Options) (*WAL, error) {
	opts.EnsureDefaults()
	if !opts.ReadOnly {
		if _, err := opts.FS.Stat(repairDir(dir)); err == nil {
			return nil, fmt.Errorf("wal: cannot open %s (%s is left): %w", dir, repairDir(dir), ErrRepairInterrupted)
		}
	}
	w := &WAL{opts: opts, parts: map[TopicPartition]*partition{}, latest: map[string]uint32{}}
	if err := w.openDB(dir, nil); err != nil {
		return nil, err
	}
	if err := w.load(); err != nil {
		_ = w.db.Close()
		return nil, err
	}
	return w, nil
}

// valueSeparationMinimum is the smallest value Pebble moves to a blob
// file. Partition metas (53 bytes) stay in the sstables, so opening the
// WAL and reading its state never touches a blob file; entries of more
// than a few records go to blob files.
const valueSeparationMinimum = 1024

// openDB opens the Pebble database in dir as w.db, without reading the
// partition state. lock, if not nil, is the directory lock already held.
func (w *WAL) openDB(dir string, lock *pebble.Lock) error {
	popts := &pebble.Options{
		FS:                 w.opts.FS,
		MemTableSize:       w.opts.MemTableSize,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{w},
		ReadOnly:           w.opts.ReadOnly,
		Lock:               lock,
		EventListener: &pebble.EventListener{
			// Pebble's default DataCorruption handler calls Logger.Fatalf,
			// which would stop the appliance on the first damaged block
			// (and make `wal verify` exit instead of reporting). The read
			// that found it returns the error, which callers get as a
			// *CorruptionError, so log it and let them decide.
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				// The first line says it all; the rest is a stack trace.
				msg, _, _ := strings.Cut(info.Details.Error(), "\n")
				w.opts.Logger.Error("wal: damaged data found", "file", info.Path, "err", msg, "component", "pebble")
			},
		},
	}
	// Value separation: an entry's value (a fetched batch, well above
	// valueSeparationMinimum) goes to a blob file at the memtable's flush
	// and stays there; compactions rewrite only the keys and a small
	// reference, not the values, so the entries that live seconds are not
	// copied from level to level (docs/PERFORMANCE.md, "Pebble's
	// compactions in the WAL"). Damage in a blob file is reported and
	// repaired per entry, like damage in an sstable (doc.go, "Blob files").
	popts.Experimental.ValueSeparationPolicy = w.valueSeparationPolicy
	// No block compression: the WAL's entries live seconds to minutes,
	// and compressing them at every flush and compaction and
	// decompressing them for the engine's read cost ~1.3 µs of CPU an
	// event in the drain benchmark (docs/PERFORMANCE.md). The byte budget
	// counts the entries' own bytes either way. Blob files take the
	// compression of their level's sstables, so they are not compressed
	// either.
	popts.EnsureDefaults()
	for i := range popts.Levels {
		popts.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return fmt.Errorf("wal: cannot open %s: %w", dir, asCorruption(err))
	}
	w.db, w.dir = db, dir
	w.flusher = memflush.New(db, w.opts.MemTableSize, w.opts.Now, w.opts.Logger, "wal")
	w.unreadable = w.checkBlobFiles()
	if len(w.unreadable) > 0 && !w.opts.ReadOnly {
		// Pebble panics when it meets a blob file it cannot open, in a
		// read or in a compaction: only a read-only WAL, which compacts
		// nothing, may open with one, for verify and repair.
		var first *CorruptionError
		for _, ce := range w.unreadable {
			if first == nil || ce.File < first.File {
				first = ce
			}
		}
		_ = db.Close()
		more := ""
		if n := len(w.unreadable) - 1; n > 0 {
			more = fmt.Sprintf(" (and %d more blob files)", n)
		}
		return fmt.Errorf("wal: cannot open %s: %w%s", dir, first, more)
	}
	return nil
}

// pebbleLogger routes Pebble's messages to slog and its fatal errors (a
// failed commit, which includes a failed fsync) to Options.Fatal.
type pebbleLogger struct{ w *WAL }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.w.opts.Logger.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.w.opts.Logger.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	err := fmt.Errorf(format, args...)
	// Record before calling Fatal: Pebble calls Fatalf from DB.Apply in the
	// appending goroutine and then returns success from Apply, so an
	// Options.Fatal that returns must not let the append be acknowledged.
	l.w.fatal.CompareAndSwap(nil, &err)
	l.w.opts.Fatal(err)
}

// load reads every partition's meta key.
func (w *WAL) load() error {
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixMeta}, UpperBound: []byte{prefixMeta + 1}})
	if err != nil {
		return fmt.Errorf("wal: cannot read partition state: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		prefix, tp, _, ok := decodeKey(it.Key())
		if !ok || prefix != prefixMeta {
			return &CorruptionError{Partition: -1, Reason: fmt.Sprintf("malformed meta key %q", it.Key())}
		}
		m, err := decodeMeta(tp, it.Value())
		if err != nil {
			return err
		}
		p := &partition{tp: tp, meta: m, first: -1}
		if m.entries > 0 {
			if p.first, err = w.firstOffset(tp); err != nil {
				return err
			}
		}
		w.add(p)
		w.bytes.Add(int64(m.bytes))
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("wal: cannot read partition state: %w", asCorruption(err))
	}
	return nil
}

func (w *WAL) firstOffset(tp TopicPartition) (int64, error) {
	lo := partitionPrefix(prefixEntry, tp)
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.First() {
		if err := it.Error(); err != nil {
			return 0, asCorruption(err)
		}
		return -1, nil
	}
	_, _, off, _ := decodeKey(it.Key())
	return off, nil
}

func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// asCorruption wraps Pebble's corruption errors in a *CorruptionError so
// callers can find them with errors.As whatever layer detected them.
//
// Pebble marks corruption with cockroachdb/errors markers, which the
// standard library's errors.Is does not see; pebble.IsCorruptionError does.
func asCorruption(err error) error {
	if err == nil || !pebble.IsCorruptionError(err) {
		return err
	}
	var ce *CorruptionError
	if errors.As(err, &ce) {
		return err
	}
	ce = &CorruptionError{Partition: -1, FirstOffset: -1, Record: -1, Reason: "pebble reports damaged data", Err: err}
	if info := pebble.ExtractDataCorruptionInfo(err); info != nil {
		ce.File = info.Path
		ce.Reason = "pebble reports damaged data in " + info.Path
	}
	return ce
}

func (w *WAL) partition(tp TopicPartition) *partition {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.parts[tp]
	if !ok {
		p = &partition{tp: tp, meta: partitionMeta{highWater: -1}, first: -1}
		w.add(p)
	}
	return p
}

// add puts p in parts; its caller holds mu (or is Open).
func (w *WAL) add(p *partition) {
	w.parts[p.tp] = p
	w.latest[p.tp.Topic] = max(w.latest[p.tp.Topic], p.tp.Incarnation)
}

// AppendResult tells what an append kept.
type AppendResult struct {
	// Appended is the number of records made durable by this call.
	Appended int
	// Duplicates is the number of records dropped because their offsets were
	// at or below the partition's high water (a re-fetch).
	Duplicates int
	// Bytes is the number of key+value bytes written.
	Bytes int
}

// Append makes the records of one fetched batch of tp durable. Records must
// be in strictly increasing offset order. Records at or below the
// partition's high water are dropped (Kafka re-delivers them after a crash
// between the WAL fsync and the offset commit). Append returns only after
// the batch is fsync'd; concurrent appends share one fsync.
func (w *WAL) Append(tp TopicPartition, recs []Record) (AppendResult, error) {
	if !ValidTopic(tp.Topic) || tp.Partition < 0 {
		return AppendResult{}, fmt.Errorf("wal: cannot append to %q partition %d: invalid topic or partition", tp.Topic, tp.Partition)
	}
	if len(recs) > 0 && recs[0].Offset < 0 {
		// Checked before deduplication: a negative offset is at or below
		// any high water and would otherwise be dropped silently.
		return AppendResult{}, fmt.Errorf("wal: cannot append to %s: negative offset %d", tp, recs[0].Offset)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Offset <= recs[i-1].Offset {
			return AppendResult{}, fmt.Errorf("wal: cannot append to %s: offset %d follows %d", tp, recs[i].Offset, recs[i-1].Offset)
		}
	}
	if !w.use() {
		return AppendResult{}, ErrClosed
	}
	defer w.done()
	if err := w.failure(); err != nil {
		return AppendResult{}, fmt.Errorf("wal: cannot append to %s: stopped after a fatal error: %w", tp, err)
	}
	if len(recs) == 0 {
		return AppendResult{}, nil
	}
	p := w.partition(tp)
	p.mu.Lock()
	defer p.mu.Unlock()

	skip := sort.Search(len(recs), func(i int) bool { return recs[i].Offset > p.meta.highWater })
	res := AppendResult{Duplicates: skip}
	keep := recs[skip:]
	if len(keep) == 0 {
		return res, nil
	}
	key := entryKey(tp, keep[0].Offset)
	vlen := encodedLen(keep)
	m := p.meta
	m.highWater = keep[len(keep)-1].Offset
	m.bytes += uint64(len(key) + vlen)
	m.entries++
	m.records += uint64(len(keep))

	b := w.db.NewBatch()
	defer b.Close()
	// Encode straight into the batch: a fetched batch is up to megabytes,
	// and encoding into a buffer of our own that Set then copies cost an
	// allocation and a copy of it on every append.
	op := b.SetDeferred(len(key), vlen)
	copy(op.Key, key)
	if val := encodeEntry(op.Value[:0], w.opts.Now().UnixNano(), keep); len(val) != vlen || &val[0] != &op.Value[0] {
		panic(fmt.Sprintf("BUG: wal: entry encoded to %d bytes, encodedLen says %d", len(val), vlen))
	}
	if err := op.Finish(); err != nil {
		return res, fmt.Errorf("wal: cannot append to %s: %w", tp, err)
	}
	_ = b.Set(metaKey(tp), encodeMeta(m), nil)
	if err := w.db.Apply(b, pebble.Sync); err != nil {
		return res, fmt.Errorf("wal: cannot append to %s: %w", tp, err)
	}
	if err := w.failure(); err != nil {
		// Pebble reported a fatal commit error (a failed WAL write or
		// fsync) and Options.Fatal returned: the batch may not be durable.
		return res, fmt.Errorf("wal: cannot append to %s: %w", tp, err)
	}
	p.meta = m
	if p.first < 0 {
		p.first = keep[0].Offset
	}
	res.Appended = len(keep)
	res.Bytes = len(key) + vlen
	w.bytes.Add(int64(res.Bytes))
	w.flusher.Wrote(b.Len())
	return res, nil
}

// TopicID returns the Kafka topic ID recorded for tp's records, and false
// when the WAL holds no state for tp. The ID is zero when none was
// recorded (a WAL written before the meta's version 2, or SetTopicID not
// called since the partition's first append).
func (w *WAL) TopicID(tp TopicPartition) ([16]byte, bool) {
	w.mu.Lock()
	p, ok := w.parts[tp]
	w.mu.Unlock()
	if !ok {
		return [16]byte{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.meta.topicID, true
}

// SetTopicID records id as the Kafka topic ID of tp's records, durably,
// so that a topic deleted and created again under the same name is told
// apart after a restart. It does nothing for a partition the WAL holds no
// state for (its first append comes first).
func (w *WAL) SetTopicID(tp TopicPartition, id [16]byte) error {
	if w.opts.ReadOnly {
		return fmt.Errorf("wal: cannot record the topic ID of %s: the WAL is open read-only", tp)
	}
	if !w.use() {
		return ErrClosed
	}
	defer w.done()
	if err := w.failure(); err != nil {
		return fmt.Errorf("wal: cannot record the topic ID of %s: stopped after a fatal error: %w", tp, err)
	}
	w.mu.Lock()
	p, ok := w.parts[tp]
	w.mu.Unlock()
	if !ok {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.meta.topicID == id {
		return nil
	}
	m := p.meta
	m.topicID = id
	if err := w.db.Set(metaKey(tp), encodeMeta(m), pebble.Sync); err != nil {
		return fmt.Errorf("wal: cannot record the topic ID of %s: %w", tp, err)
	}
	if err := w.failure(); err != nil {
		return fmt.Errorf("wal: cannot record the topic ID of %s: %w", tp, err)
	}
	p.meta = m
	return nil
}

// Incarnation returns the latest incarnation of topic the WAL holds and the
// Kafka topic ID recorded for it (zero when none was: a WAL written before
// the meta's version 2, or no ID recorded yet). A topic the WAL holds no
// state for is at incarnation 0.
func (w *WAL) Incarnation(topic string) (incarnation uint32, id [16]byte) {
	w.mu.Lock()
	var latest []*partition
	for tp, p := range w.parts {
		switch {
		case tp.Topic != topic || tp.Incarnation < incarnation:
		case tp.Incarnation > incarnation:
			incarnation, latest = tp.Incarnation, []*partition{p}
		default:
			latest = append(latest, p)
		}
	}
	w.mu.Unlock()
	for _, p := range latest {
		p.mu.Lock()
		pid := p.meta.topicID
		p.mu.Unlock()
		if pid != ([16]byte{}) {
			return incarnation, pid
		}
	}
	return incarnation, id
}

// IncarnationOf returns the latest incarnation of topic whose records
// came from the Kafka topic ID id, and false when none did.
func (w *WAL) IncarnationOf(topic string, id [16]byte) (uint32, bool) {
	w.mu.Lock()
	parts := make([]*partition, 0, len(w.parts))
	for tp, p := range w.parts {
		if tp.Topic == topic {
			parts = append(parts, p)
		}
	}
	w.mu.Unlock()
	var inc uint32
	found := false
	for _, p := range parts {
		p.mu.Lock()
		if p.meta.topicID == id && (!found || p.tp.Incarnation > inc) {
			inc, found = p.tp.Incarnation, true
		}
		p.mu.Unlock()
	}
	return inc, found
}

// Recreate starts the next incarnation of topic for the topic created
// again under the same name with the Kafka topic ID id, and records id for
// partitions of it, durably, in one synced batch: after a restart,
// Incarnation names it even before its first append. The earlier
// incarnations keep their entries, high waters and cursors until they are
// consumed (see Truncate). It returns the new incarnation.
func (w *WAL) Recreate(topic string, id [16]byte, partitions []int32) (uint32, error) {
	if w.opts.ReadOnly {
		return 0, fmt.Errorf("wal: cannot start a new incarnation of topic %s: the WAL is open read-only", topic)
	}
	if !ValidTopic(topic) || len(partitions) == 0 || id == ([16]byte{}) {
		return 0, fmt.Errorf("wal: cannot start a new incarnation of topic %q: needs a valid topic, a topic ID and partitions", topic)
	}
	if !w.use() {
		return 0, ErrClosed
	}
	defer w.done()
	if err := w.failure(); err != nil {
		return 0, fmt.Errorf("wal: cannot start a new incarnation of topic %s: stopped after a fatal error: %w", topic, err)
	}
	// recreateMu keeps two calls from taking the same number.
	w.recreateMu.Lock()
	defer w.recreateMu.Unlock()
	prev, _ := w.Incarnation(topic)
	inc := prev + 1
	b := w.db.NewBatch()
	defer b.Close()
	parts := make([]*partition, 0, len(partitions))
	for _, pn := range partitions {
		tp := TopicPartition{Topic: topic, Incarnation: inc, Partition: pn}
		p := &partition{tp: tp, meta: partitionMeta{highWater: -1, topicID: id}, first: -1}
		_ = b.Set(metaKey(tp), encodeMeta(p.meta), nil)
		parts = append(parts, p)
	}
	if err := w.db.Apply(b, pebble.Sync); err != nil {
		return 0, fmt.Errorf("wal: cannot start incarnation %d of topic %s: %w", inc, topic, err)
	}
	if err := w.failure(); err != nil {
		return 0, fmt.Errorf("wal: cannot start incarnation %d of topic %s: %w", inc, topic, err)
	}
	w.mu.Lock()
	for _, p := range parts {
		if _, ok := w.parts[p.tp]; !ok {
			w.add(p)
		}
	}
	w.mu.Unlock()
	return inc, nil
}

// HighWater returns the highest offset of tp made durable, or -1.
func (w *WAL) HighWater(tp TopicPartition) int64 {
	w.mu.Lock()
	p, ok := w.parts[tp]
	w.mu.Unlock()
	if !ok {
		return -1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.meta.highWater
}

// Bytes returns the live key+value bytes held: what the data directory's
// byte budget counts for the WAL.
func (w *WAL) Bytes() int64 { return w.bytes.Load() }

// PartitionStats describes what the WAL holds for one partition.
type PartitionStats struct {
	TopicPartition
	// FirstOffset is the first offset still held, -1 if none.
	FirstOffset int64
	// HighWater is the highest offset ever made durable, -1 if none.
	HighWater int64
	Entries   uint64
	Records   uint64
	Bytes     uint64
}

// Stats returns per-partition statistics, sorted by topic and partition.
func (w *WAL) Stats() []PartitionStats {
	w.mu.Lock()
	parts := make([]*partition, 0, len(w.parts))
	for _, p := range w.parts {
		parts = append(parts, p)
	}
	w.mu.Unlock()
	out := make([]PartitionStats, 0, len(parts))
	for _, p := range parts {
		p.mu.Lock()
		out = append(out, PartitionStats{TopicPartition: p.tp, FirstOffset: p.first, HighWater: p.meta.highWater,
			Entries: p.meta.entries, Records: p.meta.records, Bytes: p.meta.bytes})
		p.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b PartitionStats) int { return a.TopicPartition.Compare(b.TopicPartition) })
	return out
}

// DiskUsage returns the bytes Pebble occupies on disk, including space not
// yet reclaimed by compaction after truncation.
// It returns 0 once the WAL is closed.
func (w *WAL) DiskUsage() uint64 {
	if !w.use() {
		return 0
	}
	defer w.done()
	return w.db.Metrics().DiskSpaceUsage()
}

// Cursor is a read position: for each partition, the next offset to read.
// Partitions absent from a cursor are read from their first held offset.
type Cursor map[TopicPartition]int64

// Clone returns a copy of c.
func (c Cursor) Clone() Cursor {
	out := make(Cursor, len(c))
	for k, v := range c {
		out[k] = v
	}
	return out
}

// Entry is one appended batch as read back. Record keys and values are
// owned by the caller.
type Entry struct {
	TopicPartition
	// AppendTime is when the batch was made durable.
	AppendTime time.Time
	Records    []Record
}

// Read calls fn for the entries at or after cursor, in offset order within
// each partition and partition after partition, stopping once about
// maxRecords records were passed (whole entries are passed, records before a
// partition's cursor are left out). Each partition gets an equal share of
// maxRecords so that none starves. It returns the cursor just past what was
// passed. An error from fn stops the read and is returned. A negative
// cursor offset reads from the first held offset, like an absent one. The
// partitions of an earlier incarnation whose state the WAL dropped
// (Truncate) are left out of the returned cursor.
func (w *WAL) Read(cursor Cursor, maxRecords int, fn func(Entry) error) (Cursor, error) {
	if !w.use() {
		return cursor, ErrClosed
	}
	defer w.done()
	next := cursor.Clone()
	w.mu.Lock()
	for tp := range next {
		if _, held := w.parts[tp]; !held && tp.Incarnation < w.latest[tp.Topic] {
			// Consumed and dropped: nothing of it remains to read.
			delete(next, tp)
		}
	}
	w.mu.Unlock()
	stats := w.Stats()
	var pending []PartitionStats
	for _, s := range stats {
		if s.Entries > 0 && (next[s.TopicPartition] <= s.HighWater) {
			pending = append(pending, s)
		}
	}
	if len(pending) == 0 {
		return next, nil
	}
	share := maxRecords / len(pending)
	if share < 1 {
		share = 1
	}
	for _, s := range pending {
		if err := w.readPartition(s.TopicPartition, s.FirstOffset, next, share, fn); err != nil {
			return next, err
		}
	}
	return next, nil
}

func (w *WAL) readPartition(tp TopicPartition, first int64, next Cursor, limit int, fn func(Entry) error) error {
	from, ok := next[tp]
	if ok && from < 0 {
		// Negative offsets encode as huge keys: seeking to one would skip
		// every entry but the last.
		ok = false
	}
	lo, hi := w.liveBounds(tp, first)
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	// The entry holding `from` starts at or before it: seek to the last
	// entry starting at or before from, then go forward.
	var valid bool
	if ok {
		valid = it.SeekLT(entryKey(tp, from+1))
	}
	if !valid {
		valid = it.First()
	}
	n := 0
	for ; valid && n < limit; valid = it.Next() {
		_, _, first, _ := decodeKey(it.Key())
		val, err := w.value(it)
		if err != nil {
			return asCorruption(err)
		}
		v := append([]byte(nil), val...)
		var recs []Record
		h, err := decodeEntry(tp, first, v, &recs)
		if err != nil {
			return err
		}
		if ok && h.lastOffset < from {
			continue
		}
		if ok {
			i := sort.Search(len(recs), func(i int) bool { return recs[i].Offset >= from })
			recs = recs[i:]
		}
		if err := fn(Entry{TopicPartition: tp, AppendTime: time.Unix(0, h.appendTime), Records: recs}); err != nil {
			return err
		}
		n += len(recs)
		next[tp] = h.lastOffset + 1
		from, ok = h.lastOffset+1, true
	}
	return asCorruption(it.Error())
}

// Truncate deletes, for each partition in below, the entries whose records
// all lie below its offset: the engine has consumed them. Entries holding
// an offset at or above the cursor stay whole. The high water is kept.
// Truncation is not synced: if a crash loses it, it is done again.
func (w *WAL) Truncate(below Cursor) (freed int64, err error) {
	if !w.use() {
		return 0, ErrClosed
	}
	defer w.done()
	for tp, off := range below {
		n, err := w.truncatePartition(tp, off)
		freed += n
		if err != nil {
			return freed, err
		}
	}
	return freed, nil
}

// maxPointDeletes is the most entries a truncation deletes one key at a
// time; past it, it writes one range deletion. Point deletions are the
// common case (a micro-batch's worth of entries): every iterator Pebble
// builds must first fragment all the range deletions its memtable holds,
// so one range deletion per truncation made reads and truncations slower
// with every micro-batch until the memtable was flushed.
var maxPointDeletes = 10000

// liveBounds returns iterator bounds covering tp's entries from the one
// starting at first (the first held offset; -1 for the whole partition),
// so iterators start past the entries already truncated.
func (w *WAL) liveBounds(tp TopicPartition, first int64) (lo, hi []byte) {
	prefix := partitionPrefix(prefixEntry, tp)
	if first < 0 {
		return prefix, prefixEnd(prefix)
	}
	return entryKey(tp, first), prefixEnd(prefix)
}

func (w *WAL) truncatePartition(tp TopicPartition, below int64) (int64, error) {
	w.mu.Lock()
	p, ok := w.parts[tp]
	w.mu.Unlock()
	if !ok {
		return 0, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.first < 0 {
		return 0, w.retire(p)
	}
	if p.first >= below {
		return 0, nil
	}
	lo, hi := w.liveBounds(tp, p.first)
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, err
	}
	m := p.meta
	var end []byte
	var dead [][]byte // keys of the entries to delete
	newFirst := int64(-1)
	var freed int64
	for valid := it.First(); valid; valid = it.Next() {
		_, _, first, _ := decodeKey(it.Key())
		val, verr := w.value(it)
		if verr != nil {
			_ = it.Close()
			return 0, asCorruption(verr)
		}
		h, derr := decodeHeader(tp, first, val)
		if derr != nil {
			_ = it.Close()
			return 0, derr
		}
		if h.lastOffset >= below {
			newFirst = first
			end = append([]byte(nil), it.Key()...)
			break
		}
		freed += int64(len(it.Key()) + len(val))
		if len(dead) <= maxPointDeletes {
			dead = append(dead, append([]byte(nil), it.Key()...))
		}
		m.entries--
		m.records -= uint64(h.count)
	}
	if err := it.Close(); err != nil {
		return 0, asCorruption(err)
	}
	if freed == 0 {
		return 0, nil
	}
	m.bytes -= uint64(freed)
	b := w.db.NewBatch()
	defer b.Close()
	if len(dead) <= maxPointDeletes {
		for _, k := range dead {
			_ = b.Delete(k, nil)
		}
	} else {
		if end == nil {
			end = hi
		}
		_ = b.DeleteRange(lo, end, nil)
	}
	retired := newFirst < 0 && w.superseded(tp)
	if retired {
		_ = b.Delete(metaKey(tp), nil)
	} else {
		_ = b.Set(metaKey(tp), encodeMeta(m), nil)
	}
	if err := w.db.Apply(b, pebble.NoSync); err != nil {
		return 0, fmt.Errorf("wal: cannot truncate %s below %d: %w", tp, below, err)
	}
	w.flusher.Wrote(b.Len())
	p.meta = m
	p.first = newFirst
	w.bytes.Add(-freed)
	if retired {
		w.forget(tp)
	}
	return freed, nil
}

// retire drops the state of p, a partition that holds no entry, when a
// later incarnation of its topic exists: all its records were consumed and
// no fetch brings more (ingest fetches the latest incarnation only). Its
// caller holds p.mu. Not synced, like a truncation: if a crash loses it,
// the next truncation drops the state again.
func (w *WAL) retire(p *partition) error {
	if !w.superseded(p.tp) {
		return nil
	}
	if err := w.db.Delete(metaKey(p.tp), pebble.NoSync); err != nil {
		return fmt.Errorf("wal: cannot drop the state of %s, consumed and superseded by a later incarnation: %w", p.tp, err)
	}
	w.forget(p.tp)
	return nil
}

// superseded reports whether the WAL holds a later incarnation of tp's
// topic.
func (w *WAL) superseded(tp TopicPartition) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return tp.Incarnation < w.latest[tp.Topic]
}

// forget removes tp's in-memory state after its meta was deleted.
func (w *WAL) forget(tp TopicPartition) {
	w.mu.Lock()
	delete(w.parts, tp)
	w.mu.Unlock()
}

// Close flushes and closes the WAL. Appends already returned are durable.
// Close waits for operations in flight; later ones return ErrClosed.
func (w *WAL) Close() error {
	w.closeMu.Lock()
	defer w.closeMu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	return w.db.Close()
}
