package engine

import (
	"context"
	"fmt"
	"os"
)

// catchUpKeys stores the dedupe keys of the committed micro-batches the
// key store does not hold yet: those whose part is numbered above the
// store's seq (a crash, or a failed key store write, between a
// micro-batch's DuckDB commit and its keys' write). The keys are read back
// from the parts, which hold every accepted row with its event id and
// time; as in the micro-batch, only those at or after the horizon are
// remembered. A store ahead of the database holds keys whose rows are not
// committed (contract 2), which only a database moved or restored under it
// can cause: Open refuses it.
func (e *Engine) catchUpKeys(ctx context.Context) error {
	last := e.nextPartSeq - 1
	if e.keys.seq > last {
		return fmt.Errorf("the key store holds the keys of part %d and the database's last part is %d: "+
			"move %s aside (its ids are forgotten) or put back the database it belongs to", e.keys.seq, last, e.keys.dir)
	}
	if e.keys.seq == last {
		return nil
	}
	rows, err := e.conn.QueryContext(ctx, `SELECT seq FROM outbox_parts WHERE seq > ? ORDER BY seq`, e.keys.seq)
	if err != nil {
		return err
	}
	var seqs []int64
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			rows.Close()
			return err
		}
		seqs = append(seqs, seq)
	}
	if err := closeRows(rows); err != nil {
		return err
	}
	h := e.keys.horizon
	for _, seq := range seqs {
		keys, err := e.partKeys(ctx, seq, h)
		if err != nil {
			return err
		}
		if err := e.keys.commit(keys, h, seq); err != nil {
			return err
		}
		e.log.Info("engine: stored the dedupe keys of a committed micro-batch", "part", seq, "keys", len(keys))
	}
	// Micro-batches without a part have no keys; the seq still moves up.
	return e.keys.commit(nil, h, last)
}

// partKeys returns the dedupe keys of part seq's rows at or after h.
func (e *Engine) partKeys(ctx context.Context, seq, h int64) ([]keyTime, error) {
	path := partPath(e.partsDir(), seq)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("cannot read the dedupe keys of part %d: %w", seq, err)
	}
	rows, err := e.conn.QueryContext(ctx, `SELECT event_id, epoch_us(event_time) FROM read_parquet(`+sqlQuote(path)+`)
		WHERE event_id IS NOT NULL AND event_id <> '' AND epoch_us(event_time) >= ?`, h)
	if err != nil {
		return nil, fmt.Errorf("cannot read the dedupe keys of part %s: %w", path, err)
	}
	var keys []keyTime
	for rows.Next() {
		var id string
		var us int64
		if err := rows.Scan(&id, &us); err != nil {
			rows.Close()
			return nil, err
		}
		keys = append(keys, keyTime{keyOf(id), us})
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("cannot read the dedupe keys of part %s: %w", path, err)
	}
	return keys, nil
}
