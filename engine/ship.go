package engine

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrNoBatch is returned for a batch id the outbox does not hold.
var ErrNoBatch = errors.New("engine: no such outbox batch")

// CurrencyTotal is a control total of one batch: its clean rows in one
// currency and the exact sum of their amounts.
type CurrencyTotal struct {
	Currency string // "" for rows without a currency
	Rows     int64
	Amount   string // DECIMAL(38,4) as text, e.g. "1234.5000"
}

// Export is a sealed batch written out for the loader.
type Export struct {
	BatchInfo
	// RowsFile and WindowsFile are zstd Parquet files of the batch's clean
	// rows and window rows, columns named as in outbox_rows and
	// outbox_windows.
	RowsFile    string
	WindowsFile string
	// FileBytes is the size of both files: what the loader ships.
	FileBytes int64
	// Checksums holds the SHA-256 of each file (FileChecksum), keyed by
	// its full path as in RowsFile and WindowsFile, taken when COPY had
	// written it and before it got its final name. The loader checks the files against them just before it
	// ships them: a file changed on disk since is never loaded.
	Checksums map[string]string
	// Totals are the control totals per currency, by currency.
	Totals []CurrencyTotal
	// OldestIngest is when the batch's oldest row became durable in the
	// WAL (zero for a batch of window rows only).
	OldestIngest time.Time
}

// ExportBatch writes sealed batch id to dir as two zstd Parquet files with
// DuckDB's COPY ... TO, checks that they hold the batch's row counts, and
// returns them with their checksums and the batch's control totals. It
// reads through its own connection, so micro-batches go on meanwhile.
// Files are written under a temporary name and renamed, so a file with
// the final name is complete. Exporting a batch again replaces its files.
func (e *Engine) ExportBatch(ctx context.Context, id, dir string) (Export, error) {
	bi, err := e.batchInfo(ctx, id)
	if err != nil {
		return Export{}, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Export{}, fmt.Errorf("engine: cannot create %s: %w", dir, err)
	}
	x := Export{BatchInfo: bi,
		RowsFile:    filepath.Join(dir, id+".rows.parquet"),
		WindowsFile: filepath.Join(dir, id+".windows.parquet"),
		Checksums:   map[string]string{},
	}
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return Export{}, fmt.Errorf("engine: cannot export batch %s: %w", id, err)
	}
	defer conn.Close()
	for _, f := range []struct {
		table, file string
		want        int64
	}{{"outbox_rows", x.RowsFile, bi.Rows}, {"outbox_windows", x.WindowsFile, bi.WindowRows}} {
		n, sum, err := exportTable(ctx, conn, f.table, id, f.file)
		if err != nil {
			return Export{}, fmt.Errorf("engine: cannot export batch %s to %s: %w", id, f.file, err)
		}
		if n != f.want {
			return Export{}, fmt.Errorf("engine: BUG: batch %s: %s holds %d rows, the batch record says %d", id, f.file, n, f.want)
		}
		st, err := os.Stat(f.file)
		if err != nil {
			return Export{}, err
		}
		x.FileBytes += st.Size()
		x.Checksums[f.file] = sum
	}
	rows, err := conn.QueryContext(ctx, `SELECT coalesce(currency, ''), count(*), CAST(sum(amount) AS VARCHAR)
		FROM outbox_rows WHERE batch_id = ? GROUP BY ALL ORDER BY 1`, id)
	if err != nil {
		return Export{}, fmt.Errorf("engine: cannot total batch %s: %w", id, err)
	}
	for rows.Next() {
		var t CurrencyTotal
		var amount sql.NullString
		if err := rows.Scan(&t.Currency, &t.Rows, &amount); err != nil {
			rows.Close()
			return Export{}, err
		}
		t.Amount = amount.String
		if !amount.Valid {
			t.Amount = "0"
		}
		x.Totals = append(x.Totals, t)
	}
	if err := closeRows(rows); err != nil {
		return Export{}, fmt.Errorf("engine: cannot total batch %s: %w", id, err)
	}
	var oldest sql.NullTime
	if err := conn.QueryRowContext(ctx, `SELECT min(ingest_time) FROM outbox_rows WHERE batch_id = ?`, id).Scan(&oldest); err != nil {
		return Export{}, fmt.Errorf("engine: cannot total batch %s: %w", id, err)
	}
	if oldest.Valid {
		x.OldestIngest = oldest.Time.UTC()
	}
	return x, nil
}

// exportTable copies the rows of table in batch id to file (through a
// temporary file) and returns how many the file holds and its checksum.
func exportTable(ctx context.Context, conn *sql.Conn, table, id, file string) (int64, string, error) {
	tmp := file + ".tmp"
	fail := func(err error) (int64, string, error) {
		_ = os.Remove(tmp)
		return 0, "", err
	}
	quoted := "'" + strings.ReplaceAll(tmp, "'", "''") + "'"
	// The batch id is bound; the file name cannot be a parameter of COPY.
	if _, err := conn.ExecContext(ctx, `COPY (SELECT * FROM `+table+` WHERE batch_id = $1) TO `+quoted+
		` (FORMAT parquet, COMPRESSION zstd)`, id); err != nil {
		return fail(err)
	}
	// The checksum is taken first, so the row count below is read from
	// the bytes it covers.
	sum, err := FileChecksum(tmp)
	if err != nil {
		return fail(err)
	}
	var n int64
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM read_parquet(`+quoted+`)`).Scan(&n); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return fail(err)
	}
	return n, sum, nil
}

// FileChecksum returns the SHA-256 of the file at path in hex, as
// sha256sum prints it: the checksum of an exported file.
func FileChecksum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("cannot read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// batchInfo returns the outbox record of batch id.
func (e *Engine) batchInfo(ctx context.Context, id string) (BatchInfo, error) {
	all, err := e.queryBatches(ctx, e.db, `batch_id = ?`, id)
	if err != nil {
		return BatchInfo{}, err
	}
	if len(all) == 0 {
		return BatchInfo{}, fmt.Errorf("%w: %s", ErrNoBatch, id)
	}
	return all[0], nil
}

// MarkShipped records that batch id is in the warehouse. Its rows stay in
// the outbox until DeleteShipped removes them after the grace period.
func (e *Engine) MarkShipped(id string) error {
	return e.setBatchState(id, BatchShipped, "")
}

// Park records that the warehouse refused batch id for good: it is kept,
// counted and reported with reason until RetryParked.
func (e *Engine) Park(id, reason string) error {
	if reason == "" {
		reason = "refused by the warehouse"
	}
	return e.setBatchState(id, BatchParked, reason)
}

// RetryParked makes parked batch id sealed again, so the loader tries it
// once more.
func (e *Engine) RetryParked(id string) error {
	return e.setBatchState(id, BatchSealed, "")
}

// setBatchState moves batch id to state, in a transaction of its own.
func (e *Engine) setBatchState(id, state, reason string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.usable(); err != nil {
		return err
	}
	ctx := context.Background()
	bi, err := e.batchInfo(ctx, id)
	if err != nil {
		return err
	}
	switch {
	case state == BatchSealed && bi.State != BatchParked:
		return fmt.Errorf("engine: batch %s is %s, not parked", id, bi.State)
	case bi.State == state:
		return nil
	case bi.State == BatchShipped:
		return fmt.Errorf("engine: batch %s is shipped already; it cannot become %s", id, state)
	}
	var shipped, errText any
	if state == BatchShipped {
		shipped = e.opts.Now()
	}
	if reason != "" {
		errText = validText(reason)
	}
	if _, err := e.conn.ExecContext(ctx, `UPDATE outbox_batches SET state = ?, shipped_at = ?, error = ? WHERE batch_id = ?`,
		state, shipped, errText, id); err != nil {
		return fmt.Errorf("engine: cannot mark batch %s %s: %w", id, state, err)
	}
	if state == BatchShipped {
		e.sealed.batches--
		e.sealed.rows -= bi.Rows
		e.sealed.windowRows -= bi.WindowRows
		e.sealed.bytes -= bi.Bytes
		e.snapshotStats(0, 0)
	}
	return nil
}

// DeleteShipped deletes the clean rows and window rows of batches shipped
// before cutoff, in one transaction, and returns how many batches it
// emptied. The batch records stay (the local list of shipped batches).
func (e *Engine) DeleteShipped(cutoff time.Time) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.usable(); err != nil {
		return 0, err
	}
	ctx := context.Background()
	var ids []string
	rows, err := e.conn.QueryContext(ctx, `SELECT batch_id FROM outbox_batches WHERE state = ? AND shipped_at < ?
		AND (EXISTS (SELECT 1 FROM outbox_rows r WHERE r.batch_id = outbox_batches.batch_id)
		  OR EXISTS (SELECT 1 FROM outbox_windows w WHERE w.batch_id = outbox_batches.batch_id))`, BatchShipped, cutoff)
	if err != nil {
		return 0, fmt.Errorf("engine: cannot list shipped batches: %w", err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	if err := closeRows(rows); err != nil || len(ids) == 0 {
		return 0, err
	}
	err = e.inTx(ctx, func() error {
		for _, table := range []string{"outbox_rows", "outbox_windows"} {
			if _, err := e.conn.ExecContext(ctx, `DELETE FROM `+table+` WHERE batch_id IN (SELECT batch_id FROM outbox_batches
				WHERE state = ? AND shipped_at < ?)`, BatchShipped, cutoff); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("engine: cannot delete shipped batches: %w", err)
	}
	return len(ids), nil
}
