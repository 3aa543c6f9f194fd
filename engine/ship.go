package engine

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/offload/offload/wal"
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

// Export is a sealed batch made ready for the loader.
type Export struct {
	BatchInfo
	// RowsFiles are the zstd Parquet files of the batch's clean rows: its
	// parts as they are, or, for a batch of many small parts, the parts
	// compacted into one file. Their columns are a part's (doc.go, "Parts"):
	// the warehouse's transactions columns less BATCH_ID, which the sink
	// sets to ID. A batch of window rows only has none.
	RowsFiles []string
	// WindowsFile is a zstd Parquet file of the batch's window rows,
	// columns named as in outbox_windows (batch_id included).
	WindowsFile string
	// FileBytes is the size of all the files: what the loader ships.
	FileBytes int64
	// Checksums holds the SHA-256 of each file (FileChecksum), keyed by
	// its full path as in RowsFiles and WindowsFile: a part's as taken
	// when it was written, a file DuckDB wrote as taken before it got its
	// final name. The loader checks the files against them just before it
	// ships them: a file changed on disk since is never loaded.
	Checksums map[string]string
	// Totals are the control totals per currency, by currency.
	Totals []CurrencyTotal
	// OldestIngest is when the batch's oldest row became durable in the
	// WAL (zero for a batch of window rows only).
	OldestIngest time.Time
}

// Files returns every file of the export: the rows files, then the
// windows file.
func (x Export) Files() []string {
	return append(append([]string(nil), x.RowsFiles...), x.WindowsFile)
}

// compactBelow is the average part size under which a batch's parts are
// compacted into one file before they ship: a trickle of events makes
// many small parts, and a warehouse loads one file of a few MiB more
// cheaply than hundreds of small ones. A backlog's micro-batches make
// parts of about 2 MiB, which ship as they are, with no second encoding
// (docs/PERFORMANCE.md).
const compactBelow = 1 << 20

// ExportBatch makes sealed batch id ready to ship from dir and returns
// its files with their checksums and the batch's control totals. Every
// part is first checked against the checksum taken when it was written:
// a damaged or missing part fails the export with a *PartsDamagedError
// and is never shipped. The parts are then copied into dir, or, when
// they average under compactBelow, compacted by DuckDB into one file; the
// windows file is written by DuckDB's COPY ... TO. It reads through its
// own connection, so micro-batches go on meanwhile. Files DuckDB writes
// get their final name only once complete. Exporting a batch again
// replaces its files.
func (e *Engine) ExportBatch(ctx context.Context, id, dir string) (Export, error) {
	bi, err := e.batchInfo(ctx, id)
	if err != nil {
		return Export{}, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Export{}, fmt.Errorf("engine: cannot create %s: %w", dir, err)
	}
	x := Export{BatchInfo: bi, WindowsFile: filepath.Join(dir, id+".windows.parquet"), Checksums: map[string]string{}}
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return Export{}, fmt.Errorf("engine: cannot export batch %s: %w", id, err)
	}
	defer conn.Close()
	parts, err := batchParts(ctx, conn, id)
	if err != nil {
		return Export{}, fmt.Errorf("engine: cannot list the parts of batch %s: %w", id, err)
	}
	var sums currencySums
	var rows, bytes int64
	for _, p := range parts {
		rows += p.file.Rows
		bytes += p.file.Bytes
		for _, t := range p.totals {
			if err := sums.addTotal(t); err != nil {
				return Export{}, fmt.Errorf("engine: batch %s, part %d: %w", id, p.seq, err)
			}
		}
		if !p.oldest.IsZero() && (x.OldestIngest.IsZero() || p.oldest.Before(x.OldestIngest)) {
			x.OldestIngest = p.oldest
		}
	}
	if rows != bi.Rows {
		return Export{}, fmt.Errorf("engine: BUG: batch %s: its parts hold %d rows, the batch record says %d", id, rows, bi.Rows)
	}
	x.Totals = sums.totals()
	if err := e.checkParts(bi, parts); err != nil {
		return Export{}, err
	}
	old, err := olderParts(ctx, conn, e.partFiles(parts))
	if err != nil {
		return Export{}, fmt.Errorf("engine: cannot read the parts of batch %s: %w", id, err)
	}
	// A part older than a column is rewritten with it, NULL: a sink that
	// maps a file's columns by position (Redshift) gets one layout.
	if old || len(parts) > 1 && bytes/int64(len(parts)) < compactBelow {
		file := filepath.Join(dir, id+".rows.parquet")
		sum, err := e.compactParts(ctx, conn, parts, file)
		if err != nil {
			return Export{}, fmt.Errorf("engine: cannot compact the parts of batch %s into %s: %w", id, file, err)
		}
		// DuckDB read the parts again: the compacted file is good only if
		// they still check now.
		if err := e.checkParts(bi, parts); err != nil {
			_ = os.Remove(file)
			return Export{}, err
		}
		x.RowsFiles, x.Checksums[file] = []string{file}, sum
	} else {
		for _, p := range parts {
			file := filepath.Join(dir, fmt.Sprintf("%s.rows.%016d.parquet", id, p.seq))
			if err := copyFile(partPath(e.partsDir(), p.seq), file); err != nil {
				return Export{}, fmt.Errorf("engine: cannot export batch %s: %w", id, err)
			}
			x.RowsFiles = append(x.RowsFiles, file)
			x.Checksums[file] = p.file.SHA256
		}
	}
	n, sum, err := exportTable(ctx, conn, "outbox_windows", id, x.WindowsFile)
	if err != nil {
		return Export{}, fmt.Errorf("engine: cannot export batch %s to %s: %w", id, x.WindowsFile, err)
	}
	if n != bi.WindowRows {
		return Export{}, fmt.Errorf("engine: BUG: batch %s: %s holds %d rows, the batch record says %d", id, x.WindowsFile, n, bi.WindowRows)
	}
	x.Checksums[x.WindowsFile] = sum
	for _, f := range x.Files() {
		st, err := os.Stat(f)
		if err != nil {
			return Export{}, fmt.Errorf("engine: cannot export batch %s: %w", id, err)
		}
		x.FileBytes += st.Size()
	}
	return x, nil
}

// copyFile copies src to dst, replacing dst, through a temporary name so
// that dst appears only complete. On Linux the kernel copies
// (copy_file_range), so a part costs the appliance next to no CPU. A copy,
// not a link: a file damaged after the export is set aside and exported
// again from its part, which it does not share.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// DamagedPart is an outbox part whose file no longer matches the checksum
// taken when it was written, or cannot be read.
type DamagedPart struct {
	Path      string
	Want, Got string // Got is "" when the file cannot be read
	Err       error  // why it cannot be read
}

// PartsDamagedError is ExportBatch's error for a batch with damaged or
// missing parts. Their rows exist nowhere else on the appliance once the
// WAL has let go of them: the batch cannot be shipped, and its records
// must be read again from Kafka (Ranges) to be loaded.
type PartsDamagedError struct {
	Batch  string
	Parts  []DamagedPart
	Ranges []Range
}

func (e *PartsDamagedError) Error() string {
	var parts, ranges []string
	for _, p := range e.Parts {
		if p.Err != nil {
			parts = append(parts, fmt.Sprintf("%s: %v", filepath.Base(p.Path), p.Err))
		} else {
			parts = append(parts, fmt.Sprintf("%s: sha256 %s, written as %s", filepath.Base(p.Path), p.Got, p.Want))
		}
	}
	for _, r := range e.Ranges {
		tp := wal.TopicPartition{Topic: r.Topic, Incarnation: r.Incarnation, Partition: r.Partition}
		ranges = append(ranges, fmt.Sprintf("%s offsets %d-%d", tp, r.First, r.Last))
	}
	return fmt.Sprintf("engine: batch %s has damaged outbox parts (%s): suspect the disk or memory; "+
		"its records must be read again from Kafka (%s)", e.Batch, strings.Join(parts, ", "), strings.Join(ranges, ", "))
}

// checkParts checks the batch's part files against their checksums.
func (e *Engine) checkParts(bi BatchInfo, parts []partRecord) error {
	var bad []DamagedPart
	for _, p := range parts {
		path := partPath(e.partsDir(), p.seq)
		got, err := FileChecksum(path)
		if err != nil || got != p.file.SHA256 {
			bad = append(bad, DamagedPart{Path: path, Want: p.file.SHA256, Got: got, Err: err})
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return &PartsDamagedError{Batch: bi.ID, Parts: bad, Ranges: bi.Ranges}
}

// compactParts writes the batch's checked parts into one zstd Parquet
// file and returns its checksum.
func (e *Engine) compactParts(ctx context.Context, conn *sql.Conn, parts []partRecord, file string) (string, error) {
	files := e.partFiles(parts)
	var want int64
	for _, p := range parts {
		want += p.file.Rows
	}
	tmp := file + ".tmp"
	fail := func(err error) (string, error) {
		_ = os.Remove(tmp)
		return "", err
	}
	have := map[string]bool{}
	if err := queryStrings(ctx, conn, `SELECT DISTINCT name FROM parquet_schema([`+strings.Join(files, ", ")+`])`, func(name string) {
		have[name] = true
	}); err != nil {
		return fail(err)
	}
	cols := make([]string, len(partColumns))
	for i, c := range partColumns {
		cols[i] = c.name
		if !have[c.name] {
			cols[i] = "NULL::" + c.duckType + " AS " + c.name
		}
	}
	if _, err := conn.ExecContext(ctx, `COPY (SELECT `+strings.Join(cols, ", ")+` FROM read_parquet([`+strings.Join(files, ", ")+`], union_by_name = true)) TO `+sqlQuote(tmp)+
		` (FORMAT parquet, COMPRESSION zstd)`); err != nil {
		return fail(err)
	}
	sum, err := FileChecksum(tmp)
	if err != nil {
		return fail(err)
	}
	var n int64
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM read_parquet(`+sqlQuote(tmp)+`)`).Scan(&n); err != nil {
		return fail(err)
	}
	if n != want {
		return fail(fmt.Errorf("BUG: the compacted file holds %d rows, the parts %d", n, want))
	}
	if err := os.Rename(tmp, file); err != nil {
		return fail(err)
	}
	return sum, nil
}

// partFiles returns the quoted paths of parts.
func (e *Engine) partFiles(parts []partRecord) []string {
	files := make([]string, len(parts))
	for i, p := range parts {
		files[i] = sqlQuote(partPath(e.partsDir(), p.seq))
	}
	return files
}

// olderParts tells whether some of files (quoted paths) predate one of
// partColumns' added columns.
func olderParts(ctx context.Context, conn *sql.Conn, files []string) (bool, error) {
	if len(files) == 0 {
		return false, nil
	}
	var added []string
	for _, c := range partColumns {
		if c.added {
			added = append(added, sqlQuote(c.name))
		}
	}
	var n int64
	err := conn.QueryRowContext(ctx, `SELECT count(DISTINCT file_name) FROM parquet_schema([`+strings.Join(files, ", ")+`]) WHERE name IN (`+strings.Join(added, ", ")+`)
GROUP BY name ORDER BY 1 LIMIT 1`).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return true, nil // none has any
	}
	return n < int64(len(files)), err
}

// queryStrings runs q and calls f with each row's one string.
func queryStrings(ctx context.Context, conn *sql.Conn, q string, f func(string)) error {
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return err
		}
		f(s)
	}
	return closeRows(rows)
}

// exportTable copies the rows of table in batch id to file (through a
// temporary file) and returns how many the file holds and its checksum.
func exportTable(ctx context.Context, conn *sql.Conn, table, id, file string) (int64, string, error) {
	tmp := file + ".tmp"
	fail := func(err error) (int64, string, error) {
		_ = os.Remove(tmp)
		return 0, "", err
	}
	quoted := sqlQuote(tmp)
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
		delete(e.unshipped, id)
		e.snapshotStats(0, 0)
		if e.opts.KeepUntilLoaded {
			e.truncateWAL()
		}
	}
	return nil
}

// DeleteShipped deletes the parts and window rows of batches shipped
// before cutoff, and returns how many batches it emptied. The batch
// records stay (the local list of shipped batches). The parts' records go
// in one transaction, their files after it: a file left by a crash in
// between is named by no committed transaction and deleted at Open.
func (e *Engine) DeleteShipped(cutoff time.Time) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.usable(); err != nil {
		return 0, err
	}
	ctx := context.Background()
	const shippedBefore = `SELECT batch_id FROM outbox_batches WHERE state = ? AND shipped_at < ?`
	var ids []string
	rows, err := e.conn.QueryContext(ctx, `SELECT batch_id FROM outbox_batches WHERE state = ? AND shipped_at < ?
		AND (EXISTS (SELECT 1 FROM outbox_parts p WHERE p.batch_id = outbox_batches.batch_id)
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
	type doomed struct{ seq, bytes int64 }
	var parts []doomed
	rows, err = e.conn.QueryContext(ctx, `SELECT seq, bytes FROM outbox_parts WHERE batch_id IN (`+shippedBefore+`)`, BatchShipped, cutoff)
	if err != nil {
		return 0, fmt.Errorf("engine: cannot list shipped parts: %w", err)
	}
	for rows.Next() {
		var d doomed
		if err := rows.Scan(&d.seq, &d.bytes); err != nil {
			rows.Close()
			return 0, err
		}
		parts = append(parts, d)
	}
	if err := closeRows(rows); err != nil {
		return 0, fmt.Errorf("engine: cannot list shipped parts: %w", err)
	}
	err = e.inTx(ctx, func() error {
		for _, table := range []string{"outbox_parts", "outbox_windows"} {
			if _, err := e.conn.ExecContext(ctx, `DELETE FROM `+table+` WHERE batch_id IN (`+shippedBefore+`)`, BatchShipped, cutoff); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("engine: cannot delete shipped batches: %w", err)
	}
	for _, d := range parts {
		if err := os.Remove(partPath(e.partsDir(), d.seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			e.log.Warn("engine: cannot delete a shipped part; deleted at the next start", "part", d.seq, "err", err)
			continue
		}
		e.partsBytes.Add(-d.bytes)
	}
	return len(ids), nil
}
