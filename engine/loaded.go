package engine

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/offload/offload/wal"
)

// This file tracks which consumed WAL records are accounted for by shipped
// batches: what `kafka.delivery: end-to-end` may commit to Kafka and
// truncate from the WAL (docs/ARCHITECTURE.md, "Delivery contract").

// loadUnshipped reads the ranges of the batches not shipped yet (sealed or
// parked), lowered to their window holds (holds.go), by batch id.
func (e *Engine) loadUnshipped(ctx context.Context) (map[string]map[wal.TopicPartition]offsetRange, error) {
	out := map[string]map[wal.TopicPartition]offsetRange{}
	err := e.queryEach(ctx, `SELECT batch_id, ranges, coalesce(holds, '') FROM outbox_batches WHERE state <> 'shipped'`, func(rows *sql.Rows) error {
		var id, ranges, holds string
		if err := rows.Scan(&id, &ranges, &holds); err != nil {
			return err
		}
		rs, err := parseRanges(ranges)
		if err != nil {
			return fmt.Errorf("outbox_batches.ranges of batch %s: %w", id, err)
		}
		hs, err := parseHolds(holds)
		if err != nil {
			return fmt.Errorf("outbox_batches.holds of batch %s: %w", id, err)
		}
		out[id] = heldRanges(rs, hs)
		return nil
	})
	return out, err
}

// Loaded returns, for each partition the engine has consumed from, the
// next offset whose record is not yet accounted for by a shipped batch:
// every record below it was loaded into the warehouse, or dead-lettered,
// filtered or deduplicated in a micro-batch whose outbox batch is shipped
// (or that added no row to the outbox). Records of the open batch and of
// sealed or parked batches hold it back, and so, with KeepUntilLoaded,
// do the records that fed a window the window set still holds or whose
// last emission is not shipped yet (holds.go). It is the offset
// `kafka.delivery: end-to-end` commits to Kafka; it never moves back
// while the engine is open. Safe for concurrent use: it does not wait for
// a micro-batch.
func (e *Engine) Loaded() wal.Cursor {
	if p := e.loaded.Load(); p != nil {
		return p.Clone()
	}
	return wal.Cursor{}
}

// publishLoaded recomputes Loaded from the committed state. Callers hold
// mu.
func (e *Engine) publishLoaded() {
	prev := e.Loaded()
	out := make(wal.Cursor, len(e.cursor))
	for tp, next := range e.cursor {
		out[tp] = next
	}
	holdAt := func(tp wal.TopicPartition, first int64) {
		if next, ok := out[tp]; ok && first < next {
			out[tp] = first
		}
	}
	hold := func(ranges map[wal.TopicPartition]offsetRange) {
		for tp, r := range ranges {
			holdAt(tp, r.first)
		}
	}
	// An open batch without rows holds only records that were
	// dead-lettered, filtered or deduplicated: nothing of them is waiting
	// for the warehouse.
	if e.open.rows+e.open.windowRows > 0 {
		hold(e.open.ranges)
	}
	for _, ranges := range e.unshipped {
		hold(ranges)
	}
	for tp, first := range e.open.holds {
		holdAt(tp, first)
	}
	for k, first := range e.windowHolds {
		holdAt(k.tp, first)
	}
	for tp, next := range out {
		if p, ok := prev[tp]; ok && p > next {
			// A batch opened on records accounted for already (the
			// rowless open batch above) cannot take them back.
			out[tp] = p
		}
	}
	e.loaded.Store(&out)
}

// truncateBelow is what the WAL may drop: the cursor, or with
// KeepUntilLoaded what Loaded accounts for. Callers hold mu.
func (e *Engine) truncateBelow() wal.Cursor {
	if e.opts.KeepUntilLoaded {
		return e.Loaded()
	}
	return e.cursor
}

// truncateWAL drops what truncateBelow allows. A failure is not fatal: the
// records are accounted for, and the next truncation (or the next Open)
// deletes them. Callers hold mu.
func (e *Engine) truncateWAL() {
	if _, err := e.opts.WAL.Truncate(e.truncateBelow()); err != nil {
		e.log.Warn("engine: cannot truncate the WAL; retried after the next micro-batch", "err", err)
	}
}
