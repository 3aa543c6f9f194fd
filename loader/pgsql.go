package loader

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offload/offload/engine"
)

// pgTables names the warehouse objects of the PostgreSQL and Redshift
// sinks.
type pgTables struct {
	Transactions, Windows, Ledger string
}

// pgSQL is what the postgres and redshift sinks share: the DDL, the ledger
// lookup, the load's one transaction, reconcile and error classification,
// in the SQL both accept (docs/LOADER.md): MERGE from a table with one
// WHEN MATCHED and one WHEN NOT MATCHED and no target alias, no QUALIFY,
// no ON CONFLICT, and no reliance on PRIMARY KEY, which Redshift does not
// enforce. Only how a staging table is filled differs.
type pgSQL struct {
	db          *sql.DB
	name        string // "postgres" or "redshift", in messages
	schema      string
	tables      pgTables
	applianceID string
	mergeRows   bool
	// varchar is the type of the text columns: PostgreSQL's VARCHAR is
	// unbounded, Redshift's is VARCHAR(256).
	varchar string
	// rows writes ATTRIBUTES and the extra columns; addColumn is the
	// ALTER TABLE of a missing one (table, column, type).
	rows      rowSQL
	addColumn string
	// lockLedger is the LOCK statement of the ledger that every load
	// takes first: loads of the tables then commit one at a time,
	// and each one's ledger lookup and anti-join see what the one before
	// it committed (docs/LOADER.md).
	lockLedger string
	log        *slog.Logger
	// duplicates counts rows mergeRows kept out because the table held
	// their event already.
	duplicates atomic.Int64
}

// columns returns cols in the types of PostgreSQL and Redshift.
func (p *pgSQL) columns(cols []column) []column {
	r := strings.NewReplacer("NUMBER(38,4)", "NUMERIC(38,4)", "TIMESTAMP_TZ", "TIMESTAMPTZ", "VARCHAR", p.varchar)
	out := make([]column, len(cols))
	for i, c := range cols {
		out[i] = column{c.name, r.Replace(c.typ)}
	}
	return out
}

// DDL returns the statements Prepare runs: the documented warehouse
// objects.
func (p *pgSQL) DDL() []string {
	t := p.tables
	return []string{
		ddl(t.Transactions, p.columns(p.rows.tableColumns(transactionColumns)), ""),
		ddl(t.Windows, p.columns(windowTableColumns), ", PRIMARY KEY ("+strings.Join(windowTableKey, ", ")+")"),
		ddl(t.Ledger, p.columns(ledgerColumns), ", PRIMARY KEY (BATCH_ID)"),
	}
}

// Prepare creates the tables where missing and adds the transactions
// table's missing columns: ATTRIBUTES, the extra columns. Appliances that
// start together race to create the same objects: PostgreSQL checks IF
// NOT EXISTS before it writes its catalog, so the loser fails with a
// unique violation on the catalog or "already exists". Run again, it
// finds what the other created.
func (p *pgSQL) Prepare(ctx context.Context) error {
	for try := 1; ; try++ {
		err := p.prepare(ctx)
		var pe *pgconn.PgError
		// Each object can be lost to the race once.
		if try > len(p.DDL()) || !errors.As(err, &pe) || !slices.Contains([]string{"23505", "42P07", "42710", "42701"}, pe.Code) {
			return err
		}
		p.log.Info("loader: another appliance created a warehouse object at the same moment; looking again", "err", err)
	}
}

func (p *pgSQL) prepare(ctx context.Context) error {
	for _, q := range p.DDL() {
		if _, err := p.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", firstWords(q), err)
		}
	}
	return addColumns(ctx, p.db, p.tables.Transactions, p.columns(p.rows.added()), p.addColumn, pgx.QueryExecModeSimpleProtocol)
}

// Loaded tells whether the ledger holds batch id.
func (p *pgSQL) Loaded(ctx context.Context, id string) (bool, error) {
	return p.inLedger(ctx, p.db, id)
}

// inLedger looks batch id up in the ledger, in a transaction or not.
func (p *pgSQL) inLedger(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (bool, error) {
	var n int64
	if err := q.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+p.tables.Ledger+" WHERE BATCH_ID = $1", id).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

// Duplicates returns how many rows mergeRows kept out of the warehouse
// because their event was there already.
func (p *pgSQL) Duplicates() int64 { return p.duplicates.Load() }

// Close closes the connections.
func (p *pgSQL) Close() error { return p.db.Close() }

// staging returns the temporary staging tables' names of batch id; they
// live as long as the session that created them.
func (p *pgSQL) staging(id string) []staged {
	return []staged{{table: stagingName(id, "ROWS"), cols: fileColumns}, {table: stagingName(id, "WINDOWS"), cols: windowColumns}}
}

// createStaging (re)creates the empty staging tables of parts on conn.
func (p *pgSQL) createStaging(ctx context.Context, conn *sql.Conn, parts []staged) error {
	for _, f := range parts {
		if _, err := conn.ExecContext(ctx, "DROP TABLE IF EXISTS "+f.table); err != nil {
			return fmt.Errorf("cannot drop the staging table left by an earlier attempt: %w", err)
		}
		if _, err := conn.ExecContext(ctx, strings.Replace(ddl(f.table, p.columns(f.cols), ""), "CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE", 1)); err != nil {
			return fmt.Errorf("cannot create staging table: %w", err)
		}
	}
	return nil
}

// dropStaging drops the staging tables after a load, on success or
// failure; what it cannot drop dies with the session.
func (p *pgSQL) dropStaging(conn *sql.Conn, id string, tables ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, t := range tables {
		if _, err := conn.ExecContext(ctx, "DROP TABLE IF EXISTS "+t); err != nil {
			p.log.Debug("loader: cleanup after a load failed (harmless; the session's end drops it)", "batch", id, "table", t, "err", err)
			return
		}
	}
}

// load runs a load on one session: fresh staging tables, filled by fill
// from each of the batch's files in turn, then the one transaction.
func (p *pgSQL) load(ctx context.Context, x engine.Export, fill func(ctx context.Context, conn *sql.Conn, s staged, file string) error) error {
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("cannot connect: %w", err)
	}
	defer conn.Close()
	parts := p.staging(x.ID)
	parts[0].rows, parts[1].rows = x.Rows, x.WindowRows
	files := [][]string{x.RowsFiles, {x.WindowsFile}}
	if x.WindowRows == 0 { // most batches between two window closings have none
		parts = parts[:1]
	}
	tables := make([]string, len(parts))
	for i, s := range parts {
		tables[i] = s.table
	}
	defer p.dropStaging(conn, x.ID, tables...)
	if err := p.createStaging(ctx, conn, parts); err != nil {
		return err
	}
	for i, s := range parts {
		for _, f := range files[i] {
			if err := fill(ctx, conn, s, f); err != nil {
				return err
			}
		}
	}
	return p.commit(ctx, conn, x, parts)
}

// commit runs the load's one transaction on conn, whose session holds the
// filled staging tables of parts (rows first, then windows if any): the
// rows, the windows and the ledger row.
func (p *pgSQL) commit(ctx context.Context, conn *sql.Conn, x engine.Export, parts []staged) error {
	return commitLoad(ctx, conn.BeginTx, x, p.log, &p.duplicates, func(tx *sql.Tx) (int64, error) {
		return p.inTx(ctx, tx, x, parts)
	})
}

// inTx runs the load's statements and returns, with mergeRows, the rows
// the table held already.
func (p *pgSQL) inTx(ctx context.Context, tx *sql.Tx, x engine.Export, parts []staged) (skipped int64, err error) {
	t := p.tables
	if err := p.lockUnloaded(ctx, tx, x.ID); err != nil {
		return 0, err
	}
	if err := checkStaged(ctx, tx, parts); err != nil {
		return 0, err
	}
	cols := names(p.rows.tableColumns(transactionColumns), "")
	if p.mergeRows {
		// The insert of WHEN NOT MATCHED as an anti-join: Redshift's MERGE
		// must have a WHEN MATCHED clause too.
		res, err := tx.ExecContext(ctx, fmt.Sprintf(`INSERT INTO %s (%s) SELECT %s FROM (
SELECT %s, ROW_NUMBER() OVER (PARTITION BY EVENT_ID ORDER BY SOURCE_OFFSET) AS OFFLOAD_RN FROM %s) s
WHERE s.OFFLOAD_RN = 1 AND NOT EXISTS (SELECT 1 FROM %s t WHERE t.EVENT_ID = s.EVENT_ID)`,
			t.Transactions, cols, p.rows.values("s.", batchLiteral(x.ID)), names(fileColumns, ""), parts[0].table, t.Transactions))
		if err != nil {
			return 0, fmt.Errorf("INSERT new rows: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n < x.Rows {
			skipped = x.Rows - n
		}
	} else if _, err := tx.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s", t.Transactions, cols, p.rows.values("", batchLiteral(x.ID)), parts[0].table)); err != nil {
		return 0, fmt.Errorf("INSERT rows: %w", err)
	}
	if len(parts) > 1 {
		for _, q := range p.mergeWindows(parts[1].table) {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return 0, fmt.Errorf("MERGE windows: %s: %w", firstWords(q), err)
			}
		}
	}
	ct, err := ledgerTotals(ctx, tx, x, skipped, t.Transactions, "$1")
	if err != nil {
		return 0, err
	}
	// LOADED_AT comes from here: CURRENT_TIMESTAMP runs on Redshift's
	// leader node only.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (%s) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", t.Ledger, names(ledgerColumns, "")),
		x.ID, p.applianceID, x.Rows, x.WindowRows, x.FileBytes, ct, time.Now().UTC(), skipped); err != nil {
		return 0, fmt.Errorf("INSERT ledger row: %w", err)
	}
	return skipped, nil
}

// lockUnloaded takes the ledger's lock, then makes sure the ledger does
// not hold batch id: the lock waits for a load of it still committing, an
// earlier attempt's COMMIT the warehouse went on with after the loader gave
// up (timed out, or lost the connection), which the ledger lookup before
// the load could not see yet. Redshift enforces no primary key that would
// stop its second ledger row (docs/LOADER.md, "A COMMIT that outlives
// its attempt").
func (p *pgSQL) lockUnloaded(ctx context.Context, tx *sql.Tx, id string) error {
	if _, err := tx.ExecContext(ctx, p.lockLedger); err != nil {
		return fmt.Errorf("LOCK %s: %w", p.tables.Ledger, err)
	}
	in, err := p.inLedger(ctx, tx, id)
	if err != nil {
		return fmt.Errorf("ledger lookup under the lock: %w", err)
	}
	if in {
		return errInLedger
	}
	return nil
}

// mergeWindows returns the statements that upsert the staged windows of
// this appliance, keeping the highest version of each: a batch may hold
// several versions of one window (a late event re-emitted it). A row
// replaces the table's only if it counts more events, or as many with a
// higher version (Snowflake.mergeWindows says why). Redshift's MERGE takes
// neither a condition on WHEN MATCHED nor a subquery as its source, so
// the rows that replace go to a table of their own first, and the MERGE
// replaces whatever it matches.
func (p *pgSQL) mergeWindows(stg string) []string {
	newer := stg + "_NEWER"
	var held, on, set []string
	for _, k := range windowTableKey {
		held = append(held, "t."+k+" = w."+k)
		on = append(on, p.tables.Windows+"."+k+" = s."+k)
	}
	for _, c := range windowColumns[len(windowKey):] {
		set = append(set, c.name+" = s."+c.name)
	}
	return []string{
		"DROP TABLE IF EXISTS " + newer,
		fmt.Sprintf(`CREATE TEMP TABLE %s AS SELECT %s FROM (
SELECT %s, CAST('%s' AS VARCHAR(255)) AS APPLIANCE_ID, ROW_NUMBER() OVER (PARTITION BY %s ORDER BY VERSION DESC) AS OFFLOAD_RN FROM %s) w
WHERE w.OFFLOAD_RN = 1 AND NOT EXISTS (SELECT 1 FROM %s t WHERE %s AND (t.COUNT > w.COUNT OR (t.COUNT = w.COUNT AND t.VERSION >= w.VERSION)))`,
			newer, names(windowTableColumns, "w."), names(windowColumns, ""), sqlString(p.applianceID),
			strings.Join(windowKey, ", "), stg, p.tables.Windows, strings.Join(held, " AND ")),
		fmt.Sprintf(`MERGE INTO %s USING %s s ON %s
WHEN MATCHED THEN UPDATE SET %s
WHEN NOT MATCHED THEN INSERT (%s) VALUES (%s)`,
			p.tables.Windows, newer, strings.Join(on, " AND "), strings.Join(set, ", "),
			names(windowTableColumns, ""), names(windowTableColumns, "s.")),
		"DROP TABLE " + newer,
	}
}

// Ledger returns the load ledger's rows of applianceID.
func (p *pgSQL) Ledger(ctx context.Context, applianceID string) (map[string]BatchTotals, error) {
	return readLedger(ctx, p.db, p.tables.Ledger, "$1", applianceID)
}

// Held returns what the transactions table holds of each batch of
// applianceID.
func (p *pgSQL) Held(ctx context.Context, applianceID string) (map[string]BatchTotals, error) {
	return heldBatches(ctx, p.db, p.tables.Transactions, "$1", applianceID)
}

// Classify sorts errors by SQLSTATE: syntax, access and undefined objects
// (class 42), data exceptions (22) and constraint violations (23) are the
// batch's fault and permanent; connection errors (08), serialization
// failures and deadlocks (40001, 40P01), insufficient resources (53),
// the server shutting down (57P0x), network errors and everything else
// retryable. Login failures (28) stay retryable, as with Snowflake: the
// operator fixes them, not the batch.
func (p *pgSQL) Classify(err error) Class {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "42", "22", "23":
			return Permanent
		}
	}
	return Retryable
}
