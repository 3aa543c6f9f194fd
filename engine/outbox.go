package engine

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/offload/offload/wal"
)

// Outbox batch states.
const (
	BatchSealed  = "sealed"  // waiting for the loader
	BatchShipped = "shipped" // loaded into the warehouse; deleted after the grace period
	BatchParked  = "parked"  // rejected permanently by the warehouse; waits for an operator
)

// dlqReplayTopic names, in a batch's ranges, the dead-letter ids whose
// replays the batch holds. '#' cannot occur in a Kafka topic name.
const dlqReplayTopic = "#dlq"

// Range is the part of one partition's WAL a batch covers: the first and
// last offsets consumed (kept, rejected, filtered or duplicate alike).
// For replayed dead letters, Topic is "#dlq", Partition -1 and First..Last
// the dead-letter ids.
type Range struct {
	Topic string
	// Incarnation tells apart topics deleted and created again under the
	// same name (wal.TopicPartition.Incarnation): 0 for the first.
	Incarnation uint32
	Partition   int32
	First       int64
	Last        int64
}

// BatchInfo describes a sealed outbox batch.
type BatchInfo struct {
	// ID is the appliance id, '-', and 16 hex digits of SHA-256 over the
	// batch's ranges (doc.go, "Batch ids").
	ID string
	// FirstSealedAt is when the batch was sealed; CreatedAt when its first
	// rows were committed.
	FirstSealedAt time.Time
	CreatedAt     time.Time
	Rows          int64 // clean rows (in its parts)
	WindowRows    int64 // window emissions (outbox_windows)
	Bytes         int64 // estimated raw bytes
	Ranges        []Range
	State         string // BatchSealed, BatchShipped or BatchParked
	ShippedAt     time.Time
	Error         string
}

type sealInfo struct {
	id         string
	ranges     string
	rangeMap   map[wal.TopicPartition]offsetRange // ranges, parsed
	holds      map[wal.TopicPartition]int64       // openBatch.holds
	rows       int64
	windowRows int64
	bytes      int64
	createdAt  time.Time
	sealedAt   time.Time
	why        string
}

// sealDue tells whether the open batch must be sealed now by age (or at
// all, when force is set), with no new records. Callers hold mu.
func (e *Engine) sealDue(now time.Time, force bool) bool {
	return e.sealDueFor(&e.open, now, force)
}

func (e *Engine) sealDueFor(o *openBatch, now time.Time, force bool) bool {
	if o.rows+o.windowRows == 0 {
		return false
	}
	return force || o.rows >= e.opts.Seal.Rows || o.bytes >= e.opts.Seal.Bytes ||
		(!o.since.IsZero() && now.Sub(o.since) >= e.opts.Seal.Age)
}

func (e *Engine) newSeal(o *openBatch, now time.Time) *sealInfo {
	ranges := formatRanges(o.ranges)
	sum := sha256.Sum256([]byte(ranges))
	why := "age"
	switch {
	case o.rows >= e.opts.Seal.Rows:
		why = "rows"
	case o.bytes >= e.opts.Seal.Bytes:
		why = "bytes"
	case now.Sub(o.since) < e.opts.Seal.Age:
		why = "requested"
	}
	created := o.since
	if created.IsZero() {
		created = now
	}
	return &sealInfo{
		id:     e.opts.ApplianceID + "-" + hex.EncodeToString(sum[:8]),
		ranges: ranges, rangeMap: o.ranges, holds: o.holds, rows: o.rows, windowRows: o.windowRows, bytes: o.bytes,
		createdAt: created, sealedAt: now, why: why,
	}
}

// writeSeal assigns the batch id to every unsealed outbox part and window
// row and records the batch, inside the micro-batch transaction.
func (e *Engine) writeSeal(ctx context.Context, s *sealInfo) error {
	if _, err := e.conn.ExecContext(ctx, `UPDATE outbox_parts SET batch_id = ? WHERE batch_id IS NULL`, s.id); err != nil {
		return fmt.Errorf("cannot seal batch %s: %w", s.id, err)
	}
	var n int64
	if err := e.conn.QueryRowContext(ctx, `SELECT coalesce(sum(rows), 0) FROM outbox_parts WHERE batch_id = ?`, s.id).Scan(&n); err != nil {
		return fmt.Errorf("cannot seal batch %s: %w", s.id, err)
	}
	if n != s.rows {
		return fmt.Errorf("BUG: engine: sealing batch %s assigned parts of %d rows, the open batch counted %d", s.id, n, s.rows)
	}
	res, err := e.conn.ExecContext(ctx, `UPDATE outbox_windows SET batch_id = ? WHERE batch_id IS NULL`, s.id)
	if err != nil {
		return fmt.Errorf("cannot seal batch %s: %w", s.id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n != s.windowRows {
		return fmt.Errorf("BUG: engine: sealing batch %s assigned %d window rows, the open batch counted %d", s.id, n, s.windowRows)
	}
	if _, err := e.conn.ExecContext(ctx, `INSERT INTO outbox_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)`,
		s.id, e.opts.ApplianceID, s.ranges, s.rows, s.windowRows, s.bytes, s.createdAt, s.sealedAt, BatchSealed, formatHolds(s.holds)); err != nil {
		return fmt.Errorf("cannot record batch %s: %w", s.id, err)
	}
	return nil
}

// SealNow seals the open outbox batch, if it holds anything, in a
// transaction of its own (at shutdown, or in tests).
func (e *Engine) SealNow() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.usable(); err != nil {
		return err
	}
	now := e.opts.Now()
	if !e.sealDue(now, true) {
		return nil
	}
	b := e.newBatch()
	b.now = now
	b.setSeal(e.newSeal(&e.open, now))
	if err := e.commit(context.Background(), b); err != nil {
		return err
	}
	e.snapshotStats(0, 0)
	return nil
}

// SealedBatches lists the outbox batches that are sealed and not shipped
// (state sealed or parked), oldest first.
func (e *Engine) SealedBatches() ([]BatchInfo, error) {
	e.mu.Lock()
	err := e.usable()
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return e.queryBatches(context.Background(), e.db, `state <> ?`, BatchShipped)
}

// ShippedBatches lists the batches shipped to the warehouse, oldest first:
// the local record `offload reconcile` compares with the warehouse.
func (e *Engine) ShippedBatches() ([]BatchInfo, error) {
	e.mu.Lock()
	err := e.usable()
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return e.queryBatches(context.Background(), e.db, `state = ?`, BatchShipped)
}

// queryBatches returns the outbox batches matching where, oldest first.
func (e *Engine) queryBatches(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, where string, args ...any) ([]BatchInfo, error) {
	rows, err := q.QueryContext(ctx, `SELECT batch_id, sealed_at, created_at, rows, window_rows, bytes,
		ranges, state, shipped_at, coalesce(error, '') FROM outbox_batches WHERE `+where+` ORDER BY sealed_at, batch_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("engine: cannot list outbox batches: %w", err)
	}
	var out []BatchInfo
	for rows.Next() {
		var bi BatchInfo
		var ranges string
		var shipped sql.NullTime
		if err := rows.Scan(&bi.ID, &bi.FirstSealedAt, &bi.CreatedAt, &bi.Rows, &bi.WindowRows, &bi.Bytes,
			&ranges, &bi.State, &shipped, &bi.Error); err != nil {
			rows.Close()
			return nil, fmt.Errorf("engine: cannot list outbox batches: %w", err)
		}
		bi.FirstSealedAt, bi.CreatedAt = bi.FirstSealedAt.UTC(), bi.CreatedAt.UTC()
		if shipped.Valid {
			bi.ShippedAt = shipped.Time.UTC()
		}
		m, err := parseRanges(ranges)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("engine: outbox batch %s: bad ranges %q: %w", bi.ID, ranges, err)
		}
		for _, tp := range sortedPartitions(m) {
			r := m[tp]
			bi.Ranges = append(bi.Ranges, Range{Topic: tp.Topic, Incarnation: tp.Incarnation, Partition: tp.Partition, First: r.first, Last: r.last})
		}
		out = append(out, bi)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("engine: cannot list outbox batches: %w", err)
	}
	return out, nil
}
