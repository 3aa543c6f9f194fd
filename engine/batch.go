package engine

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/engine/window"
	"github.com/offload/offload/wal"
)

// Dead-letter stages: where in the pipeline a record failed.
const (
	StageRoute    = "route"    // no configuration for the record's topic
	StageDecode   = "decode"   // the record is not a well-formed record of its format
	StageValidate = "validate" // a field is missing or fails its rule
	StageEnrich   = "enrich"   // enrichment failed (base amount overflow)
)

// CodeUnknownTopic dead-letters a WAL record whose topic has no entry in
// Options.Topics.
const CodeUnknownTopic = "unknown_topic"

// stageOf returns the stage a reject code belongs to.
func stageOf(code string) string {
	switch code {
	case event.CodeEmptyRecord, event.CodeOversized, event.CodeInvalidUTF8, event.CodeInvalidJSON,
		event.CodeNotAnObject, event.CodeDuplicateField, event.CodeCSVSyntax, event.CodeCSVColumnCount:
		return StageDecode
	case event.CodeBaseAmountOverflow:
		return StageEnrich
	case CodeUnknownTopic:
		return StageRoute
	}
	return StageValidate
}

// windowRowBytes is the estimated size of an emitted window row, for the
// seal-by-bytes rule.
const windowRowBytes = 128

// batch is one micro-batch (or one DLQ replay) on its way to DuckDB.
type batch struct {
	now     time.Time
	entries []wal.Entry
	records int
	// cursor is the cursor after the batch; nil for a DLQ replay, which
	// leaves the cursor alone.
	cursor  wal.Cursor
	offsets map[wal.TopicPartition]offsetRange // consumed this batch

	// decodedAhead: the engine's decodings hold the records' already
	// (readahead.go).
	decodedAhead bool

	rows  []outRow
	items []byte // arena holding every row's items JSON
	dlq   []dlqRow
	keys  []keyTime // dedupe keys to record
	// seen holds the ids of the micro-batch's accepted events, those older
	// than the horizon too: the key store holds them only once the
	// micro-batch has committed, and a copy within it is a duplicate.
	seen  map[dedupeKey]struct{}
	delta map[string]int64
	// unmappedNames counts the unmapped field names this batch counts
	// first (Engine.unmappedCounter).
	unmappedNames int

	emitted []window.Emitted
	changed []*window.Window
	purged  []window.WindowID
	// windowHolds are the engine's window holds after this batch; nil
	// without KeepUntilLoaded (holds.go).
	windowHolds map[holdKey]int64

	dedupeMax int64 // Unix ns
	// horizon is the dedupe horizon (µs) this batch runs at: keys older
	// are neither matched nor recorded.
	horizon int64
	// looked is set when the decodings' lookups answer for the key store
	// as it is, or as it was before the micro-batch before committed the
	// ids in since; lookedAt is the horizon they were made at (lookup.go).
	looked   bool
	lookedAt int64
	since    map[dedupeKey]struct{}

	nextDLQID int64
	// replay is set for a DLQ replay: rejects update their dead-letter
	// row (replays) instead of adding one.
	replay  bool
	replays []replayOutcome

	open openBatch // the open outbox batch after this one
	seal *sealInfo // set when this micro-batch seals the open batch
	// part is the clean rows' part file, written before the transaction
	// that records it; nil when the batch accepted no row.
	part *partRecord
	// err is why the batch cannot commit (the dedupe key store could not
	// be read); the micro-batch is redone.
	err error
}

type keyTime struct {
	k  dedupeKey
	us int64
}

// source is where a record came from: its lineage.
type source struct {
	topic      string
	partition  int32
	offset     int64
	kafkaTime  time.Time
	ingestTime time.Time
}

type outRow struct {
	ev        event.Event // Items nil: see itemsFrom, itemsTo
	itemsFrom int
	itemsTo   int
	hasItems  bool
	source    source
}

type dlqRow struct {
	id     int64
	source source
	raw    []byte
	stage  string
	code   string
	field  string
	reason string
}

// setSeal makes the batch seal the open outbox batch; a new one opens.
func (b *batch) setSeal(s *sealInfo) {
	b.seal = s
	b.open = openBatch{ranges: map[wal.TopicPartition]offsetRange{}}
	b.delta[cBatchesSealed]++
}

func (e *Engine) newBatch() *batch {
	b := &batch{
		offsets:   map[wal.TopicPartition]offsetRange{},
		delta:     map[string]int64{},
		dedupeMax: e.dedupeMax,
		horizon:   e.keys.horizon,
		nextDLQID: e.nextDLQID,
	}
	if e.opts.KeepUntilLoaded {
		b.windowHolds = make(map[holdKey]int64, len(e.windowHolds))
		maps.Copy(b.windowHolds, e.windowHolds)
	}
	return b
}

// process decodes the batch's records and decides each one's fate, then
// closes the micro-batch (windows, dedupe bounds, sealing). It changes the
// window set, which commit reloads if the transaction fails; the dedupe
// key store changes only after the commit.
func (e *Engine) process(b *batch) {
	b.now = e.opts.Now()
	// Sized up front: a row is a few hundred bytes, and growing the slice
	// as rows arrive cost a tenth of a micro-batch in copying. The last
	// micro-batch's are reused (recycle).
	b.rows = slices.Grow(e.spare.rows, b.records)
	b.keys = slices.Grow(e.spare.keys, b.records)
	b.items = e.spare.items
	if b.seen = e.spare.seen; b.seen == nil {
		b.seen = make(map[dedupeKey]struct{}, b.records)
	}
	e.spare = scratch{}
	e.expireDedupe(b)
	if !b.decodedAhead {
		e.decoded = e.decodeBatch(b, e.decoded, b.horizon)
		b.looked, b.lookedAt = true, b.horizon
	}
	i := 0
	for _, en := range b.entries {
		tp := en.TopicPartition
		known := e.decoders[0][tp.Topic] != nil
		for r := range en.Records {
			rec := &en.Records[r]
			d := &e.decoded[i]
			i++
			b.delta[cRecordsIn]++
			o, ok := b.offsets[tp]
			if !ok {
				o.first = rec.Offset
			}
			o.last = rec.Offset
			b.offsets[tp] = o
			src := source{topic: tp.Topic, partition: tp.Partition, offset: rec.Offset,
				kafkaTime: time.UnixMilli(rec.Timestamp).UTC(), ingestTime: en.AppendTime.UTC()}
			if !known {
				e.reject(b, src, rec.Value, event.Reject{Code: CodeUnknownTopic,
					Reason: fmt.Sprintf("topic %q has no mapping configured (add it under topics)", tp.Topic)})
				continue
			}
			if out, _ := e.handle(b, &d.ev, d.res, d.look, src, rec.Value); out == outAccepted && b.windowHolds != nil {
				b.holdWindow(e.windows.StartOf(d.ev.EventTime), tp, rec.Offset)
			}
		}
	}
	e.finish(b, false)
}

// scratch is what a micro-batch that has ended leaves to the next one to
// reuse: allocating them anew for each cost the collector a third of the
// micro-batches' allocations (docs/PERFORMANCE.md, "Drain").
type scratch struct {
	rows  []outRow
	keys  []keyTime
	items []byte
	seen  map[dedupeKey]struct{}
}

// recycle keeps b's buffers for the next micro-batch, emptied, once
// nothing reads them any more: b has committed or failed, and its part's
// writer has returned.
func (e *Engine) recycle(b *batch) {
	clear(b.rows) // the rows' strings: the collector may free them
	// b.seen is nil when the read-ahead took it (readAhead.committed).
	seen := b.seen
	for _, m := range []map[dedupeKey]struct{}{b.since, b.seen} {
		if m != nil {
			clear(m)
			seen = m
		}
	}
	e.spare = scratch{rows: b.rows[:0], keys: b.keys[:0], items: b.items[:0], seen: seen}
}

// outcome is what became of one record.
type outcome uint8

const (
	outAccepted outcome = iota + 1
	outDuplicate
	outFiltered
	outRejected
)

// handle takes one decoded record to its fate: the DLQ, a filter counter,
// a duplicate counter, or the outbox and the windows.
func (e *Engine) handle(b *batch, ev *event.Event, res event.Result, look lookup, src source, raw []byte) (outcome, string) {
	switch res.Verdict {
	case event.Filtered:
		name := e.opts.Topics[src.topic].Filters[res.Rule].Name
		b.delta[cFiltered]++
		b.delta[cFilteredPrefix+name]++
		return outFiltered, name
	case event.Rejected:
		if !b.replay {
			e.reject(b, src, raw, res.Reject)
		}
		return outRejected, ""
	case event.Accepted:
	default:
		panic(fmt.Sprintf("BUG: engine: decoder verdict %d", res.Verdict))
	}
	if ev.EventID != "" && e.duplicate(b, ev.EventID, ev.EventTime, look) {
		b.delta[cDeduplicated]++
		return outDuplicate, ""
	}
	switch e.windows.Add(ev) {
	case window.Late:
		b.delta[cLate]++
	case window.TooLate:
		b.delta[cTooLate]++
	}
	if !ev.HasBaseAmount {
		b.delta[cNoBaseAmount]++
	}
	b.delta[cAccepted]++
	for _, name := range ev.UnmappedFields {
		b.delta[e.unmappedCounter(b, name)]++
	}
	row := outRow{ev: *ev, source: src}
	row.ev.UnmappedFields = nil
	row.ev.Items = nil
	if len(ev.Items) > 0 {
		row.hasItems = true
		row.itemsFrom = len(b.items)
		b.items = appendItemsJSON(b.items, ev.Items)
		row.itemsTo = len(b.items)
	}
	b.rows = append(b.rows, row)
	return outAccepted, ""
}

// unmappedCounter returns the counter of unmapped field name: its own
// while fewer than MaxUnmappedNames names are counted, UnmappedOther
// after, so that a stream of ever new keys cannot grow the counters, the
// metrics or the status without bound.
func (e *Engine) unmappedCounter(b *batch, name string) string {
	c := cUnmappedPrefix + name
	if _, ok := e.counters[c]; ok {
		return c
	}
	if _, ok := b.delta[c]; ok {
		return c
	}
	if e.unmappedNames+b.unmappedNames >= MaxUnmappedNames {
		return cUnmappedPrefix + UnmappedOther
	}
	b.unmappedNames++
	return c
}

// duplicate reports whether the event id was seen before: in this
// micro-batch, or in the key store at or after the batch's horizon (look
// is the lookup made while decoding, if any). If not, the id is noted for
// the micro-batch, and its key recorded at commit unless it is older than
// the horizon.
func (e *Engine) duplicate(b *batch, id string, t time.Time, look lookup) bool {
	k, us := look.key, t.UnixMicro()
	if look.state == lookNone {
		k = keyOf(id)
	}
	if _, dup := b.seen[k]; dup {
		return true
	}
	dup, err := e.held(b, k, us, look)
	if err != nil && b.err == nil {
		b.err = err // commit refuses the batch
	}
	if dup {
		return true
	}
	if b.seen == nil {
		b.seen = map[dedupeKey]struct{}{}
	}
	b.seen[k] = struct{}{}
	if us >= b.horizon {
		b.keys = append(b.keys, keyTime{k, us})
	} else {
		b.delta[cDedupeTooOld]++
	}
	if ns := t.UnixNano(); ns > b.dedupeMax {
		b.dedupeMax = ns
	}
	return false
}

// reject dead-letters a record. The raw bytes are kept with anything that
// looks like a card number masked.
func (e *Engine) reject(b *batch, src source, raw []byte, rej event.Reject) {
	b.delta[cRejected]++
	b.delta[cRejectedPrefix+rej.Code]++
	b.delta[cDLQRows]++
	masked := event.MaskRaw(raw)
	b.delta[cDLQBytes] += int64(len(masked))
	b.dlq = append(b.dlq, dlqRow{id: b.nextDLQID, source: src, raw: masked,
		stage: stageOf(rej.Code), code: rej.Code, field: rej.Field, reason: rej.Reason})
	b.nextDLQID++
}

// nextHorizon is the dedupe horizon of a micro-batch after one that ran
// at horizon h and left maxNS as the highest event time (Unix ns): the
// dedupe window behind maxNS, rounded down to the minute, if higher.
func (e *Engine) nextHorizon(maxNS, h int64) int64 {
	if maxNS == 0 {
		return h
	}
	return max(h, bucketOf(floorDiv(maxNS-int64(e.opts.DedupeWindow), 1000)))
}

// expireDedupe raises the dedupe horizon to the dedupe window behind the
// highest event time of earlier micro-batches, rounded down to the minute.
func (e *Engine) expireDedupe(b *batch) {
	if h := e.nextHorizon(e.dedupeMax, b.horizon); h > b.horizon {
		b.delta[cDedupeExpired] += e.keys.expired(h)
		b.horizon = h
	}
}

// finish closes the micro-batch: advances the windows and decides whether
// the open outbox batch is sealed.
func (e *Engine) finish(b *batch, forceSeal bool) {
	before := e.windows.Overflows()
	b.emitted, _ = e.windows.Advance()
	b.changed = e.windows.Changed()
	b.purged = e.windows.Purged()
	b.delta[cWindowsEmitted] += int64(len(b.emitted))
	if n := e.windows.Overflows() - before; n > 0 {
		b.delta[cWindowOverflows] += n
	}

	o := openBatch{ranges: make(map[wal.TopicPartition]offsetRange, len(e.open.ranges)+len(b.offsets)),
		since: e.open.since, rows: e.open.rows, windowRows: e.open.windowRows, bytes: e.open.bytes}
	for tp, r := range e.open.ranges {
		o.ranges[tp] = r
	}
	for tp, r := range b.offsets {
		if old, ok := o.ranges[tp]; ok {
			r.first = min(r.first, old.first)
			r.last = max(r.last, old.last)
		}
		o.ranges[tp] = r
	}
	o.rows += int64(len(b.rows))
	o.windowRows += int64(len(b.emitted))
	for i := range b.rows {
		o.bytes += int64(b.rows[i].ev.RawSize)
	}
	o.bytes += int64(len(b.emitted)) * windowRowBytes
	if o.since.IsZero() && len(b.rows)+len(b.emitted) > 0 {
		o.since = b.now
	}
	e.holdEmitted(b, &o)
	b.open = o
	if e.sealDueFor(&o, b.now, forceSeal) {
		b.setSeal(e.newSeal(&o, b.now))
	}
}

// commit writes the batch in one DuckDB transaction and, once it has
// committed, moves the in-memory state forward. If the transaction fails
// nothing of the batch is kept in DuckDB, and the window set and dedupe
// index are reloaded from it.
//
// ctx bounds the transaction's writes; BEGIN, COMMIT and ROLLBACK run
// without its cancellation, so that a cancelled micro-batch always ends
// rolled back, never half-way. A micro-batch cancelled so leaves the
// reload of the state to the next one (stale), which has a live context.
func (e *Engine) commit(ctx context.Context, b *batch) error {
	if err := ctx.Err(); err != nil {
		e.stale = true // process changed the window set
		return fmt.Errorf("engine: micro-batch of %d records abandoned before its transaction (nothing of it was kept): %w", b.records, err)
	}
	if b.err != nil {
		if lerr := e.load(ctx); lerr != nil {
			e.broken = fmt.Errorf("engine: %w; reloading the state then failed: %v: restart offload, which rebuilds it from DuckDB", b.err, lerr)
			return e.broken
		}
		return fmt.Errorf("engine: micro-batch of %d records not committed (nothing of it was kept): %w", b.records, b.err)
	}
	// The part is written on a goroutine of its own while the transaction
	// begins; the transaction's writes wait for it (docs/PERFORMANCE.md,
	// "The key store in a backlog": beside it they cost more than they
	// saved).
	part := e.startPart(ctx, b, e.nextPartSeq)
	var writeErr error // set: the transaction never reached its COMMIT
	err := e.inTx(context.WithoutCancel(ctx), func() error { writeErr = e.write(ctx, b, part); return writeErr })
	if perr := part.wait(); err == nil {
		err = perr
	}
	if err != nil && ctx.Err() != nil {
		// Abandoned. Before the COMMIT, nothing names the part written
		// meanwhile; after a COMMIT that failed, only the next Open knows
		// (sweepParts), as below.
		e.stale = true
		if writeErr != nil && b.part != nil {
			_ = os.Remove(partPath(e.partsDir(), b.part.seq))
		}
		return fmt.Errorf("engine: micro-batch of %d records abandoned (nothing of it was kept): %w", b.records, errors.Join(err, ctx.Err()))
	}
	if err != nil {
		err = fmt.Errorf("engine: micro-batch of %d records not committed (nothing of it was kept): %w", b.records, err)
		if lerr := e.load(ctx); lerr != nil && ctx.Err() != nil {
			e.stale = true // the reload was abandoned: the next micro-batch does it
			return err
		} else if lerr != nil {
			// The part stays: a COMMIT can fail after DuckDB logged it
			// (a checkpoint inside it failing), and only the next Open
			// knows whether a committed transaction names the part
			// (sweepParts).
			e.broken = fmt.Errorf("%w; reloading the state then failed: %v: restart offload, which rebuilds it from DuckDB", err, lerr)
			return e.broken
		}
		if b.part != nil && b.part.seq >= e.nextPartSeq {
			// The reloaded state does not name it: not committed.
			_ = os.Remove(partPath(e.partsDir(), b.part.seq))
		}
		return err
	}
	e.advance(b)
	return e.commitKeys(b)
}

// commitKeys writes the committed batch's dedupe keys and horizon to the
// key store. The rows that carry the keys are committed already, so a
// failure here leaves keys missing, never a key without its row: the
// engine stops, and the next Open replays the missing keys from the parts
// (catchUpKeys).
func (e *Engine) commitKeys(b *batch) error {
	if len(b.keys) == 0 && b.horizon <= e.keys.horizon && e.nextPartSeq-1 == e.keys.seq {
		return nil
	}
	err := e.at(context.Background(), "keys") // past the COMMIT: never abandoned
	if err == nil {
		err = e.keys.commit(b.keys, b.horizon, e.nextPartSeq-1)
	}
	if err != nil {
		e.broken = fmt.Errorf("engine: micro-batch committed, but its dedupe keys were not stored: %w: restart offload, which stores them from the batch's part", err)
		return e.broken
	}
	return nil
}

// advance moves the in-memory state past a committed batch.
func (e *Engine) advance(b *batch) {
	if b.cursor != nil {
		e.cursor = b.cursor
	}
	for name, d := range b.delta {
		if d != 0 {
			e.counters[name] += d
		}
	}
	e.unmappedNames += b.unmappedNames
	e.dedupeMax = b.dedupeMax
	e.open = b.open
	e.nextDLQID = b.nextDLQID
	if b.windowHolds != nil {
		e.windowHolds = b.windowHolds
	}
	if b.part != nil {
		e.nextPartSeq = b.part.seq + 1
		e.partsBytes.Add(b.part.file.Bytes)
	}
	if s := b.seal; s != nil {
		e.sealed.batches++
		e.sealed.rows += s.rows
		e.sealed.windowRows += s.windowRows
		e.sealed.bytes += s.bytes
		e.unshipped[s.id] = heldRanges(s.rangeMap, s.holds)
		e.log.Info("engine: outbox batch sealed", "batch", s.id, "rows", s.rows, "window_rows", s.windowRows, "bytes", s.bytes, "why", s.why)
	}
}

// at is a point between the micro-batch's writes: it stops there when
// ctx is done, and calls the test hook.
func (e *Engine) at(ctx context.Context, point string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", point, err)
	}
	if e.hook == nil {
		return nil
	}
	if err := e.hook(ctx, point); err != nil {
		return fmt.Errorf("%s: %w", point, err)
	}
	return nil
}

// write runs inside the micro-batch transaction. The order does not
// matter to DuckDB (nothing is visible before COMMIT); the hook points let
// tests fail it anywhere.
func (e *Engine) write(ctx context.Context, b *batch, part *partWrite) error {
	if err := e.at(ctx, "begin"); err != nil {
		return err
	}
	// The dedupe keys are not written here: the key store takes them
	// after COMMIT (commitKeys).
	if err := part.wait(); err != nil {
		return err
	}
	if err := e.at(ctx, "part"); err != nil {
		return err
	}
	if err := e.recordPart(ctx, b); err != nil {
		return err
	}
	if err := e.at(ctx, "rows"); err != nil {
		return err
	}
	if err := e.writeDLQ(b); err != nil {
		return err
	}
	if err := e.at(ctx, "dlq"); err != nil {
		return err
	}
	if err := e.writeWindows(ctx, b); err != nil {
		return err
	}
	if err := e.at(ctx, "windows"); err != nil {
		return err
	}
	if err := e.writeReplays(ctx, b); err != nil {
		return err
	}
	if err := e.writeCounters(ctx, b); err != nil {
		return err
	}
	if err := e.writeCursor(ctx, b); err != nil {
		return err
	}
	if err := e.writeState(ctx, b); err != nil {
		return err
	}
	if err := e.at(ctx, "state"); err != nil {
		return err
	}
	if b.seal != nil {
		if err := e.writeSeal(ctx, b.seal); err != nil {
			return err
		}
	}
	return e.at(ctx, "commit")
}

func nullString(s string) driver.Value {
	if s == "" {
		return nil
	}
	return s
}

func (e *Engine) writeDLQ(b *batch) error {
	return e.appendRows("", "dlq", 15, len(b.dlq), func(i int, a []driver.Value) {
		d := &b.dlq[i]
		a[0], a[1], a[2], a[3] = d.id, d.source.topic, d.source.partition, d.source.offset
		a[4], a[5], a[6] = d.source.kafkaTime, d.source.ingestTime, d.raw
		a[7], a[8], a[9], a[10] = d.stage, d.code, nullString(d.field), validText(d.reason)
		a[11], a[12], a[13], a[14] = b.now, nil, nil, nil
	})
}

// validText makes s valid UTF-8 for a VARCHAR column (DuckDB rejects
// anything else). Reasons quote parts of records, which may not be.
func validText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func (e *Engine) writeWindows(ctx context.Context, b *batch) error {
	if len(b.changed)+len(b.purged) > 0 {
		n := len(b.changed)
		if err := e.appendRows("temp", "stage_window_ids", 5, n+len(b.purged), func(i int, a []driver.Value) {
			var id window.WindowID
			if i < n {
				id = b.changed[i].ID()
			} else {
				id = b.purged[i-n]
			}
			a[0], a[1], a[2], a[3], a[4] = id.StoreID, id.Currency, id.EventType, id.Channel, id.Start
		}); err != nil {
			return err
		}
		if _, err := e.conn.ExecContext(ctx, `DELETE FROM windows w USING temp.stage_window_ids s
			WHERE w.window_start = s.window_start AND w.store_id = s.store_id AND w.currency = s.currency
			AND w.event_type = s.event_type AND w.channel = s.channel`); err != nil {
			return fmt.Errorf("cannot update windows: %w", err)
		}
		if _, err := e.conn.ExecContext(ctx, `DELETE FROM temp.stage_window_ids`); err != nil {
			return fmt.Errorf("cannot update windows: %w", err)
		}
		var err error
		if err2 := e.appendRows("", "windows", 14, n, func(i int, a []driver.Value) {
			w := b.changed[i]
			sketch, merr := w.Customers.MarshalBinary()
			if merr != nil && err == nil {
				err = merr
			}
			a[0], a[1], a[2], a[3], a[4] = w.StoreID, w.Currency, w.EventType, w.Channel, w.Start
			a[5], a[6], a[7], a[8] = w.Count, int64(w.SumAmount), int64(w.SumBase), w.BaseCount
			a[9], a[10], a[11], a[12], a[13] = int64(w.Min), int64(w.Max), sketch, w.Version, w.Dirty
		}); err2 != nil {
			return err2
		}
		if err != nil {
			return fmt.Errorf("cannot encode a window's customer sketch: %w", err)
		}
	}
	return e.appendRows("", "outbox_windows", 16, len(b.emitted), func(i int, a []driver.Value) {
		w := &b.emitted[i]
		a[0], a[1], a[2], a[3], a[4], a[5] = w.StoreID, w.Currency, w.EventType, w.Channel, w.Start, w.End
		a[6], a[7], a[8], a[9] = w.Count, int64(w.SumAmount), int64(w.SumBase), w.BaseCount
		a[10], a[11], a[12], a[13] = int64(w.Min), int64(w.Max), w.DistinctCustomers, w.Version
		a[14], a[15] = b.now, nil
	})
}

// writeCounters writes the new totals of the counters this batch changed.
func (e *Engine) writeCounters(ctx context.Context, b *batch) error {
	var sb strings.Builder
	var args []any
	for name, d := range b.delta {
		if d == 0 {
			continue
		}
		if len(args) > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("(?, ?)")
		args = append(args, name, e.counters[name]+d)
	}
	if len(args) == 0 {
		return nil
	}
	if _, err := e.conn.ExecContext(ctx, `INSERT OR REPLACE INTO engine_counters VALUES `+sb.String(), args...); err != nil {
		return fmt.Errorf("cannot write counters: %w", err)
	}
	return nil
}

func (e *Engine) writeCursor(ctx context.Context, b *batch) error {
	if b.cursor == nil {
		return nil
	}
	var sb strings.Builder
	var args []any
	for _, tp := range sortedPartitions(b.cursor) {
		next := b.cursor[tp]
		if old, ok := e.cursor[tp]; ok && old == next {
			continue
		}
		if len(args) > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("(?, ?, ?)")
		args = append(args, tp.TopicKey(), tp.Partition, next)
	}
	for tp := range e.cursor {
		if _, ok := b.cursor[tp]; ok {
			continue
		}
		// The WAL dropped a consumed earlier incarnation of a recreated
		// topic (docs/ARCHITECTURE.md): so does the cursor.
		if _, err := e.conn.ExecContext(ctx, `DELETE FROM engine_cursor WHERE topic = ? AND "partition" = ?`, tp.TopicKey(), tp.Partition); err != nil {
			return fmt.Errorf("cannot write the cursor: %w", err)
		}
	}
	if len(args) == 0 {
		return nil
	}
	if _, err := e.conn.ExecContext(ctx, `INSERT OR REPLACE INTO engine_cursor VALUES `+sb.String(), args...); err != nil {
		return fmt.Errorf("cannot write the cursor: %w", err)
	}
	return nil
}

func (e *Engine) writeState(ctx context.Context, b *batch) error {
	var maxNS, dedupeMax, horizon, since any
	if t := e.windows.MaxEventTime(); !t.IsZero() {
		maxNS = t.UnixNano()
	}
	if b.dedupeMax != 0 {
		dedupeMax = b.dedupeMax
	}
	if b.horizon != math.MinInt64 {
		horizon = b.horizon
	}
	if !b.open.since.IsZero() {
		since = b.open.since
	}
	nextPart := e.nextPartSeq
	if b.part != nil {
		nextPart = b.part.seq + 1
	}
	_, err := e.conn.ExecContext(ctx, `INSERT OR REPLACE INTO engine_state VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.opts.Window.Size.Milliseconds(), maxNS, dedupeMax, horizon, formatRanges(b.open.ranges), since,
		b.open.rows, b.open.windowRows, b.open.bytes, b.nextDLQID, nextPart,
		formatWindowHolds(b.windowHolds), formatHolds(b.open.holds))
	if err != nil {
		return fmt.Errorf("cannot write the engine state: %w", err)
	}
	return nil
}

// appendItemsJSON appends items as a JSON array of objects with sku, qty
// and unit_price (a string, so the exact decimal survives every JSON
// reader): [{"sku":"A-1","qty":2,"unit_price":"5"}].
func appendItemsJSON(b []byte, items []event.Item) []byte {
	b = append(b, '[')
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"sku":`...)
		b = appendJSONString(b, it.SKU)
		b = append(b, `,"qty":`...)
		b = strconv.AppendInt(b, int64(it.Qty), 10)
		b = append(b, `,"unit_price":"`...)
		b = it.UnitPrice.Append(b)
		b = append(b, `"}`...)
	}
	return append(b, ']')
}

func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
