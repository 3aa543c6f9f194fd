// Package memflush keeps the memtables of a Pebble database that is
// written slowly as small as its writes need.
//
// Pebble starts a database's memtable at 256 KiB and doubles it at each
// flush up to Options.MemTableSize, and it keeps the last flushed memtable
// to reuse. A database written at any steady rate therefore ends up with
// two memtables of the full size, each filled before it flushes, however
// long that takes: 64 MiB for 32 MiB memtables, whether the writes come at
// 100 MB/s or 100 KB/s. A Flusher flushes the memtable at the first write
// after an interval in which fewer bytes were written than half the
// largest memtable holds; a forced flush of a memtable less than half
// full does not double the next one, so written slowly the memtables stay
// at what an interval's writes fill, and written fast they grow and flush
// as Pebble sizes them.
package memflush

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Interval is how often a slowly written database's memtable is flushed.
const Interval = 10 * time.Second

// Flusher flushes a database's memtable early while it is written slowly.
// Its methods are safe for concurrent use.
type Flusher struct {
	flush func() error // starts a flush of the memtable without waiting for it
	below int64
	now   func() time.Time
	log   *slog.Logger
	what  string

	start   atomic.Int64 // Unix ns: the current interval's start
	written atomic.Int64 // bytes written since then
}

// New returns a Flusher of db, opened with Options.MemTableSize
// memTableSize, that starts a flush of its memtable at the first write
// after an Interval in which fewer than memTableSize/2 bytes were
// written. now is the clock; a failed flush is logged on log, naming the
// database as what.
func New(db *pebble.DB, memTableSize uint64, now func() time.Time, log *slog.Logger, what string) *Flusher {
	return newFlusher(func() error { _, err := db.AsyncFlush(); return err }, memTableSize, now, log, what)
}

// newFlusher is New with flush in place of the database's AsyncFlush.
func newFlusher(flush func() error, memTableSize uint64, now func() time.Time, log *slog.Logger, what string) *Flusher {
	f := &Flusher{flush: flush, below: int64(memTableSize / 2), now: now, log: log, what: what}
	f.start.Store(now().UnixNano())
	return f
}

// Wrote counts n bytes just written to the database and, if an Interval
// has passed since the current one started, starts the next and flushes
// the memtable when the one that ended was written slowly. The caller
// must hold the database open.
func (f *Flusher) Wrote(n int) {
	f.written.Add(int64(n))
	now := f.now().UnixNano()
	start := f.start.Load()
	if now-start < int64(Interval) || !f.start.CompareAndSwap(start, now) {
		return
	}
	if f.written.Swap(0) >= f.below {
		return
	}
	if err := f.flush(); err != nil {
		// Only memory is at stake: the next write's flush, or Pebble's
		// own when the memtable fills, is the retry.
		f.log.Warn("cannot flush a slowly written memtable", "db", f.what, "err", err)
	}
}
