package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// PartsDir is the folder under Options.Dir that holds the outbox's parts:
// one zstd Parquet file of clean rows per micro-batch (doc.go, "Parts").
const PartsDir = "parts"

// partRecord is one part as outbox_parts records it.
type partRecord struct {
	seq    int64
	file   partFile
	totals []CurrencyTotal
	oldest time.Time // the oldest ingest time among its rows
}

func (e *Engine) partsDir() string { return filepath.Join(e.opts.Dir, PartsDir) }

// partPath is the file of part seq. The name sorts in commit order.
func partPath(dir string, seq int64) string {
	return filepath.Join(dir, fmt.Sprintf("%016d.parquet", seq))
}

// writeBatchPart writes the batch's clean rows as part seq and makes the
// file durable; the micro-batch's transaction records it afterwards. A
// part no committed transaction names is deleted at the next Open
// (sweepParts), so a crash between the two leaves nothing behind.
func (e *Engine) writeBatchPart(ctx context.Context, b *batch, seq int64) error {
	if len(b.rows) == 0 {
		return nil
	}
	f, err := e.partEnc.write(ctx, partPath(e.partsDir(), seq), b.rows, b.items)
	if err != nil {
		return err
	}
	p := &partRecord{seq: seq, file: f}
	var sums currencySums
	p.oldest = b.rows[0].source.ingestTime
	for i := range b.rows {
		r := &b.rows[i]
		sums.add(r.ev.Currency, int64(r.ev.Amount))
		if r.source.ingestTime.Before(p.oldest) {
			p.oldest = r.source.ingestTime
		}
	}
	p.totals = sums.totals()
	b.part = p
	return nil
}

// partWrite is a part being written by its own goroutine.
type partWrite struct {
	done chan struct{}
	err  error
}

// startPart writes the batch's part (writeBatchPart) on a goroutine of
// its own; wait joins it.
func (e *Engine) startPart(ctx context.Context, b *batch, seq int64) *partWrite {
	p := &partWrite{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = e.writeBatchPart(ctx, b, seq)
	}()
	return p
}

// wait waits for the part to be written and returns the write's error.
// It may be called more than once.
func (p *partWrite) wait() error {
	<-p.done
	return p.err
}

// recordPart records the batch's part, inside the micro-batch transaction.
func (e *Engine) recordPart(ctx context.Context, b *batch) error {
	p := b.part
	if p == nil {
		return nil
	}
	totals, err := json.Marshal(p.totals)
	if err != nil {
		return fmt.Errorf("BUG: engine: cannot encode part totals: %w", err)
	}
	if _, err := e.conn.ExecContext(ctx, `INSERT INTO outbox_parts VALUES (?, ?, ?, ?, ?, ?, ?, NULL)`,
		p.seq, p.file.Rows, p.file.Bytes, p.file.SHA256, string(totals), p.oldest, b.now); err != nil {
		return fmt.Errorf("cannot record outbox part %d: %w", p.seq, err)
	}
	return nil
}

// sweepParts deletes the files in the parts folder that no committed
// transaction names: parts of micro-batches that did not commit, and
// temporary files of writes cut short. It returns the bytes the named
// parts hold.
func (e *Engine) sweepParts(ctx context.Context) (int64, error) {
	dir := e.partsDir()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, fmt.Errorf("cannot create %s: %w", dir, err)
	}
	named := map[string]bool{}
	rows, err := e.conn.QueryContext(ctx, `SELECT seq FROM outbox_parts`)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			rows.Close()
			return 0, err
		}
		named[filepath.Base(partPath(dir, seq))] = true
	}
	if err := closeRows(rows); err != nil {
		return 0, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var held int64
	var removed []string
	for _, ent := range ents {
		if named[ent.Name()] {
			if info, err := ent.Info(); err == nil {
				held += info.Size()
			}
			continue
		}
		if !ent.Type().IsRegular() || !isPartName(ent.Name()) {
			continue // not the engine's: left alone
		}
		if err := os.Remove(filepath.Join(dir, ent.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("cannot delete the uncommitted part %s: %w", ent.Name(), err)
		}
		removed = append(removed, ent.Name())
	}
	if len(removed) > 0 {
		e.log.Info("engine: deleted outbox parts of micro-batches that did not commit", "dir", dir, "files", removed)
	}
	return held, nil
}

// isPartName tells whether name is a part's file name or its temporary
// name while written (partPath, writePart).
func isPartName(name string) bool {
	name = strings.TrimSuffix(name, ".tmp")
	digits, ok := strings.CutSuffix(name, ".parquet")
	if !ok || len(digits) != 16 {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// batchParts returns the parts of batch id in commit order.
func batchParts(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, id string) ([]partRecord, error) {
	rows, err := q.QueryContext(ctx, `SELECT seq, rows, bytes, sha256, totals, oldest_ingest FROM outbox_parts
		WHERE batch_id = ? ORDER BY seq`, id)
	if err != nil {
		return nil, err
	}
	var out []partRecord
	for rows.Next() {
		var p partRecord
		var totals string
		var oldest sql.NullTime
		if err := rows.Scan(&p.seq, &p.file.Rows, &p.file.Bytes, &p.file.SHA256, &totals, &oldest); err != nil {
			rows.Close()
			return nil, err
		}
		if err := json.Unmarshal([]byte(totals), &p.totals); err != nil {
			rows.Close()
			return nil, fmt.Errorf("outbox part %d: bad totals %q: %w", p.seq, totals, err)
		}
		if oldest.Valid {
			p.oldest = oldest.Time.UTC()
		}
		out = append(out, p)
	}
	return out, closeRows(rows)
}

// currencySums adds amounts (DECIMAL(38,4) units) per currency in 128
// bits, so no batch can overflow them.
type currencySums struct {
	by map[string]*sum128
}

type sum128 struct {
	rows   int64
	hi, lo uint64
}

func (s *currencySums) add(currency string, units int64) {
	if s.by == nil {
		s.by = map[string]*sum128{}
	}
	t := s.by[currency]
	if t == nil {
		t = &sum128{}
		s.by[currency] = t
	}
	t.rows++
	var carry uint64
	t.lo, carry = bits.Add64(t.lo, uint64(units), 0)
	t.hi += uint64(units>>63) + carry // sign extension of units, plus the carry
}

// addTotal adds a total in DECIMAL(38,4) text, as totals() writes it.
func (s *currencySums) addTotal(c CurrencyTotal) error {
	v, ok := new(big.Rat).SetString(c.Amount)
	if !ok {
		return fmt.Errorf("bad amount %q for currency %q", c.Amount, c.Currency)
	}
	units := new(big.Int).Mul(v.Num(), big.NewInt(1e4))
	units.Quo(units, v.Denom())
	if s.by == nil {
		s.by = map[string]*sum128{}
	}
	t := s.by[c.Currency]
	if t == nil {
		t = &sum128{}
		s.by[c.Currency] = t
	}
	sum := new(big.Int).Add(t.big(), units)
	t.rows += c.Rows
	t.set(sum)
	return nil
}

func (t *sum128) big() *big.Int {
	v := new(big.Int).SetUint64(t.hi)
	v.Lsh(v, 64)
	v.Or(v, new(big.Int).SetUint64(t.lo))
	if t.hi>>63 == 1 { // negative in two's complement
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), 128))
	}
	return v
}

func (t *sum128) set(v *big.Int) {
	if v.Sign() < 0 {
		v = new(big.Int).Add(v, new(big.Int).Lsh(big.NewInt(1), 128))
	}
	lo := new(big.Int).And(v, new(big.Int).SetUint64(^uint64(0)))
	t.lo = lo.Uint64()
	t.hi = new(big.Int).Rsh(v, 64).Uint64()
}

// totals returns the sums by currency, in currency order, amounts as
// DuckDB prints a DECIMAL(38,4): "-12.3400".
func (s *currencySums) totals() []CurrencyTotal {
	out := make([]CurrencyTotal, 0, len(s.by))
	for c, t := range s.by {
		out = append(out, CurrencyTotal{Currency: c, Rows: t.rows, Amount: formatE4(t.big())})
	}
	slices.SortFunc(out, func(a, b CurrencyTotal) int { return strings.Compare(a.Currency, b.Currency) })
	return out
}

func formatE4(units *big.Int) string {
	neg := units.Sign() < 0
	digits := new(big.Int).Abs(units).String()
	for len(digits) < 5 {
		digits = "0" + digits
	}
	s := digits[:len(digits)-4] + "." + digits[len(digits)-4:]
	if neg {
		s = "-" + s
	}
	return s
}

// RowsSQL returns a WITH clause that names the outbox's clean rows
// outbox_rows, as one relation over the committed parts with each part's
// batch id (NULL while its batch is open): for inspecting a stopped
// appliance's outbox with DuckDB, and for tests. dir is the data
// directory; q reads the engine's database.
func RowsSQL(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, dir string) (string, error) {
	rows, err := q.QueryContext(ctx, `SELECT seq, batch_id FROM outbox_parts ORDER BY seq`)
	if err != nil {
		return "", fmt.Errorf("engine: cannot list the outbox parts: %w", err)
	}
	var files, values []string
	for rows.Next() {
		var seq int64
		var id sql.NullString
		if err := rows.Scan(&seq, &id); err != nil {
			rows.Close()
			return "", err
		}
		f := sqlQuote(partPath(filepath.Join(dir, PartsDir), seq))
		batch := "NULL"
		if id.Valid {
			batch = sqlQuote(id.String)
		}
		files = append(files, f)
		values = append(values, "("+f+", "+batch+")")
	}
	if err := closeRows(rows); err != nil {
		return "", fmt.Errorf("engine: cannot list the outbox parts: %w", err)
	}
	if len(files) == 0 {
		return "WITH outbox_rows AS (SELECT *, NULL::VARCHAR AS batch_id FROM (" + emptyRows() + ")) ", nil
	}
	return "WITH outbox_rows AS (SELECT r.* EXCLUDE (filename), p.batch_id FROM read_parquet([" + strings.Join(files, ", ") +
		"], filename = true, union_by_name = true) r JOIN (VALUES " + strings.Join(values, ", ") + ") p(filename, batch_id) USING (filename)) ", nil
}

// emptyRows is a query of no rows with a part's columns.
func emptyRows() string {
	cols := make([]string, len(partColumns))
	for i, c := range partColumns {
		cols[i] = "NULL::" + c.duckType + " AS " + c.name
	}
	return "SELECT " + strings.Join(cols, ", ") + " WHERE false"
}

func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// partColumns are the columns of a part, in file order, with the DuckDB
// type read_parquet gives each. Columns marked added are absent from
// parts written by an offload that predates them: readers take them as
// NULL (docs/ARCHITECTURE.md, "Engine: from the WAL to the outbox").
var partColumns = []struct {
	name, duckType string
	added          bool
}{
	{"event_id", "VARCHAR", false}, {"order_id", "VARCHAR", false}, {"event_type", "VARCHAR", false}, {"store_id", "VARCHAR", false},
	{"customer_id", "VARCHAR", false}, {"customer_email_hash", "VARCHAR", false}, {"amount", "DECIMAL(18,4)", false},
	{"currency", "VARCHAR", false}, {"payment_method", "VARCHAR", false}, {"card_last4", "VARCHAR", false}, {"channel", "VARCHAR", false},
	{"country", "VARCHAR", false}, {"items", "VARCHAR", false}, {"event_time", "TIMESTAMPTZ", false}, {"base_amount", "DECIMAL(18,4)", false},
	{"region", "VARCHAR", false}, {"timezone", "VARCHAR", false}, {"source_topic", "VARCHAR", false}, {"source_partition", "INTEGER", false},
	{"source_offset", "BIGINT", false}, {"kafka_time", "TIMESTAMPTZ", false}, {"ingest_time", "TIMESTAMPTZ", false},
	{"attributes", "VARCHAR", true}, {"extras", "VARCHAR", true},
}
