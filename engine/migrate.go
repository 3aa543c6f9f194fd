package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/offload/offload/internal/durable"
)

// migrate upgrades a database of an earlier schema version in place, before
// createSchema checks the version. A fresh database, or one of this
// version, is left to createSchema.
func (e *Engine) migrate(ctx context.Context) error {
	var v int
	if err := e.conn.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil {
		return nil
	}
	if v == 1 {
		if err := e.migrateV1(ctx); err != nil {
			return fmt.Errorf("engine: cannot upgrade %s from schema version 1 (nothing of it changed; the offload that wrote it still runs on it): %w", e.path, err)
		}
		v = 2
	}
	if v == 2 {
		if err := e.migrateV2(ctx); err != nil {
			return fmt.Errorf("engine: cannot upgrade %s from schema version 2 (nothing of it changed; the offload that wrote it still runs on it): %w", e.path, err)
		}
		v = 3
	}
	if v == 3 {
		if err := e.migrateV3(ctx); err != nil {
			return fmt.Errorf("engine: cannot upgrade %s from schema version 3 (nothing of it changed; the offload that wrote it still runs on it): %w", e.path, err)
		}
	}
	return nil
}

// migrateV3 adds the window holds of `kafka.delivery: end-to-end`
// (holds.go) in one transaction. The windows open at the upgrade hold
// nothing: their records were read before holds were kept.
func (e *Engine) migrateV3(ctx context.Context) error {
	return e.inTx(ctx, func() error {
		for _, q := range []string{
			`ALTER TABLE engine_state ADD COLUMN window_holds VARCHAR`,
			`ALTER TABLE engine_state ADD COLUMN open_holds VARCHAR`,
			`ALTER TABLE outbox_batches ADD COLUMN holds VARCHAR`,
			`UPDATE schema_version SET version = 4`,
		} {
			if _, err := e.conn.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	})
}

// migrateV2 moves a version 2 database's dedupe table into the key store:
// the keys are written and synced first, with the seq of the database's
// last part, then one transaction drops the table and sets version 3. A
// crash before the commit leaves version 2 as it was, and the next start
// writes the same keys again.
func (e *Engine) migrateV2(ctx context.Context) error {
	var nextPart int64
	if err := e.conn.QueryRowContext(ctx, `SELECT coalesce(max(next_part_seq), 1) FROM engine_state`).Scan(&nextPart); err != nil {
		return err
	}
	rows, err := e.conn.QueryContext(ctx, `SELECT hash_hi, hash_lo, epoch_us(event_time) FROM dedupe`)
	if err != nil {
		return err
	}
	var keys []keyTime
	var n int
	for rows.Next() {
		var hi, lo uint64
		var us int64
		if err := rows.Scan(&hi, &lo, &us); err != nil {
			rows.Close()
			return err
		}
		keys = append(keys, keyTime{keyFromParts(hi, lo), us})
		if len(keys) == migrateKeysChunk {
			// The seq moves only with the last chunk: a crash in
			// between leaves the store behind the database, never ahead.
			if err := e.keys.commit(keys, e.keys.horizon, e.keys.seq); err != nil {
				rows.Close()
				return err
			}
			n += len(keys)
			keys = keys[:0]
		}
	}
	if err := closeRows(rows); err != nil {
		return err
	}
	if err := e.keys.commit(keys, e.keys.horizon, nextPart-1); err != nil {
		return err
	}
	n += len(keys)
	err = e.inTx(ctx, func() error {
		for _, q := range []string{`DROP TABLE dedupe`, `UPDATE schema_version SET version = 3`} {
			if _, err := e.conn.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", strings.Fields(q)[0], err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.log.Info("engine: upgraded the database from schema version 2: the dedupe keys are in the key store now",
		"path", e.path, "keys", n, "store", e.keys.dir)
	return nil
}

// migrateKeysChunk is how many keys migrateV2 writes to the key store at a
// time.
const migrateKeysChunk = 1 << 20

// v1Group is the clean rows of one outbox batch in a version 1 database
// (batch NULL: the open batch).
type v1Group struct {
	batch sql.NullString
	rows  int64
}

// migrateV1 moves a version 1 database's clean rows out of the outbox_rows
// table into parts: one part per batch not shipped yet and one for the open
// batch, written and made durable first, then recorded in the one
// transaction that drops outbox_rows and sets version 2. The rows of
// shipped batches, kept only for the grace period, are not carried over.
// A crash before the commit leaves version 1 as it was, and the next start
// migrates again over the same part names.
func (e *Engine) migrateV1(ctx context.Context) error {
	rows, err := e.conn.QueryContext(ctx, `SELECT r.batch_id, count(*) FROM outbox_rows r LEFT JOIN outbox_batches b ON b.batch_id = r.batch_id
		WHERE r.batch_id IS NULL OR b.state <> ? GROUP BY r.batch_id ORDER BY min(b.sealed_at) NULLS LAST, r.batch_id`, BatchShipped)
	if err != nil {
		return err
	}
	var groups []v1Group
	for rows.Next() {
		var g v1Group
		if err := rows.Scan(&g.batch, &g.rows); err != nil {
			rows.Close()
			return err
		}
		groups = append(groups, g)
	}
	if err := closeRows(rows); err != nil {
		return err
	}
	if err := os.MkdirAll(e.partsDir(), 0o750); err != nil {
		return err
	}
	parts := make([]partRecord, len(groups))
	for i, g := range groups {
		if parts[i], err = e.migratePart(ctx, int64(i+1), g); err != nil {
			return err
		}
	}
	err = e.inTx(ctx, func() error {
		for _, ddl := range schemaDDL {
			if _, err := e.conn.ExecContext(ctx, ddl); err != nil {
				return err
			}
		}
		for i, p := range parts {
			totals, err := json.Marshal(p.totals)
			if err != nil {
				return err
			}
			if _, err := e.conn.ExecContext(ctx, `INSERT INTO outbox_parts VALUES (?, ?, ?, ?, ?, ?, now(), ?)`,
				p.seq, p.file.Rows, p.file.Bytes, p.file.SHA256, string(totals), sql.NullTime{Time: p.oldest, Valid: !p.oldest.IsZero()},
				groups[i].batch); err != nil {
				return err
			}
		}
		for _, q := range []string{
			fmt.Sprintf(`ALTER TABLE engine_state ADD COLUMN next_part_seq BIGINT DEFAULT %d`, len(parts)+1),
			`DROP TABLE outbox_rows`,
			`UPDATE schema_version SET version = 2`,
		} {
			if _, err := e.conn.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", strings.Fields(q)[0], err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.log.Info("engine: upgraded the database from schema version 1: the outbox's clean rows are in parts now",
		"path", e.path, "parts", len(parts))
	return nil
}

// migratePart writes the version 1 rows of g as part seq, durable, and
// returns its record.
func (e *Engine) migratePart(ctx context.Context, seq int64, g v1Group) (partRecord, error) {
	cols := make([]string, len(partColumns))
	for i, c := range partColumns {
		cols[i] = c.name
		switch {
		case c.added: // version 1 had no such column
			cols[i] = "NULL::" + c.duckType + " AS " + c.name
		case strings.HasPrefix(c.duckType, "DECIMAL"):
			cols[i] = "CAST(" + c.name + " AS " + c.duckType + ") AS " + c.name
		}
	}
	const where = ` FROM outbox_rows WHERE batch_id IS NOT DISTINCT FROM $1`
	path := partPath(e.partsDir(), seq)
	tmp := path + ".tmp"
	if _, err := e.conn.ExecContext(ctx, `COPY (SELECT `+strings.Join(cols, ", ")+where+`) TO `+sqlQuote(tmp)+
		` (FORMAT parquet, COMPRESSION zstd)`, g.batch); err != nil {
		return partRecord{}, fmt.Errorf("cannot write part %s: %w", path, err)
	}
	if err := durable.Sync(tmp); err != nil {
		return partRecord{}, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return partRecord{}, err
	}
	if err := durable.Sync(e.partsDir()); err != nil {
		return partRecord{}, err
	}
	p := partRecord{seq: seq, file: partFile{Rows: g.rows}}
	st, err := os.Stat(path)
	if err != nil {
		return partRecord{}, err
	}
	p.file.Bytes = st.Size()
	if p.file.SHA256, err = FileChecksum(path); err != nil {
		return partRecord{}, err
	}
	rows, err := e.conn.QueryContext(ctx, `SELECT coalesce(currency, ''), count(*), CAST(coalesce(sum(amount), 0) AS VARCHAR)`+
		where+` GROUP BY ALL ORDER BY 1`, g.batch)
	if err != nil {
		return partRecord{}, err
	}
	for rows.Next() {
		var t CurrencyTotal
		if err := rows.Scan(&t.Currency, &t.Rows, &t.Amount); err != nil {
			rows.Close()
			return partRecord{}, err
		}
		p.totals = append(p.totals, t)
	}
	if err := closeRows(rows); err != nil {
		return partRecord{}, err
	}
	var oldest sql.NullTime
	if err := e.conn.QueryRowContext(ctx, `SELECT min(ingest_time)`+where, g.batch).Scan(&oldest); err != nil {
		return partRecord{}, err
	}
	if oldest.Valid {
		p.oldest = oldest.Time.UTC()
	}
	return p, nil
}
