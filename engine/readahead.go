package engine

import (
	"context"

	"github.com/offload/offload/wal"
)

// readAhead is the next micro-batch's records, read from the WAL and
// decoded while the micro-batch before them is written and committed: a
// drain's micro-batches then spend the part's write, the transaction and
// the key store's commit beside the next one's decoding instead of before
// it (docs/ARCHITECTURE.md, "Engine: from the WAL to the outbox").
//
// Reading and decoding change no state of the engine, so the next
// micro-batch takes them as its own when the one before has committed
// from the cursor they start at, with the decoders they were decoded by;
// otherwise they are dropped and read again.
type readAhead struct {
	entries []wal.Entry
	records int
	cursor  wal.Cursor // the cursor after them
	decoded []decoded
	gen     uint64 // the decoders' generation (Engine.decodeGen)
	// horizon is the dedupe horizon the ids were looked up at: the one
	// the next micro-batch runs at if nothing but the micro-batch before
	// changes the key store (lookup.go).
	horizon int64
	// since and changes are set once the micro-batch before has
	// committed: the ids it may have added to the key store beside the
	// lookups, and the store's count of changes after it.
	since   map[dedupeKey]struct{}
	changes uint64
	err     error
	done    chan struct{}
}

// startReadAhead reads and decodes up to BatchRecords records from the
// cursor from on a goroutine of its own, looking their ids up at horizon
// h; wait joins it. The micro-batch that starts it has decided every
// record's fate already (process), so the decodings' buffer is free.
// Callers hold mu until they have waited.
func (e *Engine) startReadAhead(ctx context.Context, from wal.Cursor, h int64) *readAhead {
	ra := &readAhead{gen: e.decodeGen, decoded: e.decoded, horizon: h, done: make(chan struct{})}
	e.decoded = nil
	go func() {
		defer close(ra.done)
		b := batch{}
		if ra.err = e.readRecords(ctx, &b, from); ra.err != nil {
			return
		}
		ra.entries, ra.records, ra.cursor = b.entries, b.records, b.cursor
		ra.decoded = e.decodeBatch(&b, ra.decoded, h)
	}()
	return ra
}

// wait joins the read-ahead's goroutine and gives the decodings' buffer
// back to the engine when the read-ahead failed or read nothing.
func (ra *readAhead) wait(e *Engine) *readAhead {
	<-ra.done
	if ra.err != nil || ra.records == 0 {
		e.decoded = ra.decoded
		return nil
	}
	return ra
}

// take moves the read-ahead's records into b, a micro-batch starting at
// the committed cursor, and reports whether it did: not when the decoders
// changed since it decoded them.
func (ra *readAhead) take(e *Engine, b *batch) bool {
	e.decoded = ra.decoded
	if ra.gen != e.decodeGen {
		return false
	}
	b.entries, b.records, b.cursor, b.decodedAhead = ra.entries, ra.records, ra.cursor, true
	b.looked, b.lookedAt, b.since = ra.changes == e.keys.changes, ra.horizon, ra.since
	return true
}

// committed records that b, the micro-batch the read-ahead ran beside,
// has committed: its ids are the only ones the key store may have taken
// since the lookups, unless the store changes again before take.
func (ra *readAhead) committed(e *Engine, b *batch) {
	ra.since, b.seen = b.seen, nil
	ra.changes = e.keys.changes
}

// readRecords reads up to BatchRecords records of the WAL from the cursor
// from into b.
func (e *Engine) readRecords(ctx context.Context, b *batch, from wal.Cursor) error {
	next, err := e.opts.WAL.Read(from, e.opts.BatchRecords, func(en wal.Entry) error {
		b.entries = append(b.entries, en)
		b.records += len(en.Records)
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	b.cursor = next
	return nil
}
