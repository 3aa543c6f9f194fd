package loader

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/snowflakedb/gosnowflake"

	"github.com/offload/offload/engine"
)

// Snowflake authentication methods.
const (
	AuthPassword = "password"
	AuthKeyPair  = "keypair"
	AuthOAuth    = "oauth"
)

// SnowflakeOptions configures the Snowflake sink.
type SnowflakeOptions struct {
	Account   string
	User      string
	Role      string
	Database  string
	Schema    string
	Warehouse string
	// Host, Port and Protocol override the account's endpoint
	// (<account>.snowflakecomputing.com:443, https).
	Host     string
	Port     int
	Protocol string

	Auth       string // AuthPassword, AuthKeyPair or AuthOAuth
	Password   string
	PrivateKey *rsa.PrivateKey
	OAuthToken string

	// Stage is the internal stage batches are PUT to; the tables are
	// created in Database.Schema when missing.
	Stage             string
	TransactionsTable string
	WindowsTable      string
	LedgerTable       string

	ApplianceID string
	// MergeRows inserts a batch's rows with a MERGE on EVENT_ID instead of
	// an INSERT, so an event already in the table (loaded by another
	// appliance after a partition moved between them) is not loaded again.
	// It costs a join with the whole table on every load.
	MergeRows bool
	// ExtraColumns are the typed columns the topics promote, sorted by
	// name; Prepare adds the ones the transactions table lacks.
	ExtraColumns []ExtraColumn
	// TransactionFile, if set, is where the id of the load transaction in
	// flight is kept, so that the transaction a crash left open (holding
	// Snowflake's table locks for hours) is aborted at the next start
	// (snowflake_tx.go).
	TransactionFile string
	// LoginTimeout and RequestTimeout bound the driver's own retries of a
	// login and of one request (network errors, 5xx, 429); ClientTimeout
	// one round trip.
	LoginTimeout   time.Duration
	RequestTimeout time.Duration
	ClientTimeout  time.Duration
	Logger         *slog.Logger
}

// Default object names.
const (
	DefaultStage             = "OFFLOAD_STAGE"
	DefaultTransactionsTable = "OFFLOAD_TRANSACTIONS"
	DefaultWindowsTable      = "OFFLOAD_WINDOWS"
	DefaultLedgerTable       = "OFFLOAD_LOAD_LEDGER"
)

// defaultTables names the tables left unnamed.
func defaultTables(transactions, windows, ledger *string) {
	for _, t := range []struct {
		name *string
		def  string
	}{
		{transactions, DefaultTransactionsTable}, {windows, DefaultWindowsTable}, {ledger, DefaultLedgerTable}} {
		if *t.name == "" {
			*t.name = t.def
		}
	}
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]{0,254}$`)

// ValidIdentifier tells whether s is a plain (unquoted) Snowflake
// identifier, as stage and table names must be.
func ValidIdentifier(s string) bool { return identRE.MatchString(s) }

// Snowflake is the Snowflake sink: PUT the batch's Parquet files to an
// internal stage, COPY them into per-batch staging tables, then in one
// transaction insert the rows, merge the windows and write the ledger row.
type Snowflake struct {
	opts SnowflakeOptions
	db   *sql.DB
	log  *slog.Logger
	rows rowSQL
	// duplicates counts rows MergeRows kept out because the table held
	// their event already.
	duplicates atomic.Int64
}

// Duplicates returns how many rows MergeRows kept out of the warehouse
// because their event was there already.
func (s *Snowflake) Duplicates() int64 { return s.duplicates.Load() }

// NewSnowflake validates the options and returns the sink. It does not
// connect: the first Prepare does.
func NewSnowflake(o SnowflakeOptions) (*Snowflake, error) {
	if o.Stage == "" {
		o.Stage = DefaultStage
	}
	defaultTables(&o.TransactionsTable, &o.WindowsTable, &o.LedgerTable)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var errs []string
	for _, f := range []struct{ name, v string }{{"account", o.Account}, {"user", o.User}, {"database", o.Database}, {"schema", o.Schema}} {
		if f.v == "" {
			errs = append(errs, "warehouse."+f.name+" is required")
		}
	}
	for _, f := range []struct{ name, v string }{{"stage", o.Stage}, {"tables.transactions", o.TransactionsTable},
		{"tables.windows", o.WindowsTable}, {"tables.ledger", o.LedgerTable}} {
		if !ValidIdentifier(f.v) {
			errs = append(errs, fmt.Sprintf("warehouse.%s: %q is not a plain identifier (letters, digits, _ and $, not starting with a digit)", f.name, f.v))
		}
	}
	errs = append(errs, checkExtraColumns(o.ExtraColumns)...)
	switch o.Auth {
	case AuthPassword:
		if o.Password == "" {
			errs = append(errs, "warehouse.password_file: auth password needs a password (file or OFFLOAD_WAREHOUSE_PASSWORD)")
		}
	case AuthKeyPair:
		if o.PrivateKey == nil {
			errs = append(errs, "warehouse.private_key_file: auth keypair needs a private key")
		}
	case AuthOAuth:
		if o.OAuthToken == "" {
			errs = append(errs, "warehouse.oauth_token_file: auth oauth needs a token (file or OFFLOAD_WAREHOUSE_OAUTH_TOKEN)")
		}
	default:
		errs = append(errs, fmt.Sprintf("warehouse.auth: %q is not allowed; use password, keypair or oauth", o.Auth))
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	cfg := &gosnowflake.Config{
		Account: o.Account, User: o.User, Role: o.Role, Database: o.Database, Schema: o.Schema, Warehouse: o.Warehouse,
		Host: o.Host, Port: o.Port, Protocol: o.Protocol,
		// gosnowflake v1.19.1 deprecates its timeouts and DisableTelemetry
		// without a replacement; they are still the only way to set them.
		//lint:ignore SA1019 deprecated without a replacement in gosnowflake v1.19.1
		LoginTimeout: o.LoginTimeout, RequestTimeout: o.RequestTimeout, ClientTimeout: o.ClientTimeout, DisableTelemetry: true,
		Params: map[string]*string{},
	}
	switch o.Auth {
	case AuthPassword:
		cfg.Authenticator, cfg.Password = gosnowflake.AuthTypeSnowflake, o.Password
	case AuthKeyPair:
		cfg.Authenticator, cfg.PrivateKey = gosnowflake.AuthTypeJwt, o.PrivateKey
	case AuthOAuth:
		cfg.Authenticator, cfg.Token = gosnowflake.AuthTypeOAuth, o.OAuthToken
	}
	// The driver logs its errors to stderr on its own; the loader reports
	// them with their batch, so the driver's lines go to the debug log.
	gosnowflake.GetLogger().SetOutput(driverLog{o.Logger})
	connector := gosnowflake.NewConnector(gosnowflake.SnowflakeDriver{}, *cfg)
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(2)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &Snowflake{opts: o, db: db, log: o.Logger, rows: snowflakeRows(o.ExtraColumns)}, nil
}

// Close closes the connections.
func (s *Snowflake) Close() error { return s.db.Close() }

type column struct{ name, typ string }

// transactionColumns and windowColumns are the warehouse tables' columns:
// the outbox's columns (engine/schema.go) upper-cased, in Snowflake types.
// snowflake_test.go checks them against the engine's Parquet files.
var transactionColumns = []column{
	{"EVENT_ID", "VARCHAR NOT NULL"}, {"ORDER_ID", "VARCHAR"}, {"EVENT_TYPE", "VARCHAR"}, {"STORE_ID", "VARCHAR"},
	{"CUSTOMER_ID", "VARCHAR"}, {"CUSTOMER_EMAIL_HASH", "VARCHAR"}, {"AMOUNT", "NUMBER(38,4)"}, {"CURRENCY", "VARCHAR"},
	{"PAYMENT_METHOD", "VARCHAR"}, {"CARD_LAST4", "VARCHAR"}, {"CHANNEL", "VARCHAR"}, {"COUNTRY", "VARCHAR"},
	{"ITEMS", "VARCHAR"}, {"EVENT_TIME", "TIMESTAMP_TZ"}, {"BASE_AMOUNT", "NUMBER(38,4)"}, {"REGION", "VARCHAR"},
	{"TIMEZONE", "VARCHAR"}, {"SOURCE_TOPIC", "VARCHAR"}, {"SOURCE_PARTITION", "INTEGER"}, {"SOURCE_OFFSET", "BIGINT"},
	{"KAFKA_TIME", "TIMESTAMP_TZ"}, {"INGEST_TIME", "TIMESTAMP_TZ"}, {"BATCH_ID", "VARCHAR"},
	{"ATTRIBUTES", "VARIANT"},
}

var windowColumns = []column{
	{"STORE_ID", "VARCHAR NOT NULL"}, {"CURRENCY", "VARCHAR NOT NULL"}, {"EVENT_TYPE", "VARCHAR NOT NULL"},
	{"CHANNEL", "VARCHAR NOT NULL"}, {"WINDOW_START", "TIMESTAMP_TZ NOT NULL"}, {"WINDOW_END", "TIMESTAMP_TZ"},
	{"COUNT", "BIGINT"}, {"SUM_AMOUNT", "NUMBER(38,4)"}, {"SUM_BASE_AMOUNT", "NUMBER(38,4)"}, {"BASE_COUNT", "BIGINT"},
	{"MIN_AMOUNT", "NUMBER(38,4)"}, {"MAX_AMOUNT", "NUMBER(38,4)"}, {"DISTINCT_CUSTOMERS", "BIGINT"},
	{"VERSION", "BIGINT"}, {"EMITTED_AT", "TIMESTAMP_TZ"}, {"BATCH_ID", "VARCHAR"},
}

// windowKey identifies a window of one appliance.
var windowKey = []string{"STORE_ID", "CURRENCY", "EVENT_TYPE", "CHANNEL", "WINDOW_START"}

// The warehouse's windows table adds APPLIANCE_ID to the outbox's window
// columns: appliances of one consumer group each aggregate the partitions
// they consume, so a window's totals are the sum over appliances, and one
// appliance's versions must never replace another's.
var (
	windowTableColumns = append(append([]column(nil), windowColumns...), column{"APPLIANCE_ID", "VARCHAR NOT NULL"})
	windowTableKey     = append(append([]string(nil), windowKey...), "APPLIANCE_ID")
)

var ledgerColumns = []column{
	{"BATCH_ID", "VARCHAR NOT NULL"}, {"APPLIANCE_ID", "VARCHAR NOT NULL"}, {"ROWS", "BIGINT"}, {"WINDOW_ROWS", "BIGINT"},
	{"BYTES", "BIGINT"}, {"CONTROL_TOTALS", "VARCHAR"}, {"LOADED_AT", "TIMESTAMP_TZ"}, {"DUPLICATES", "BIGINT"},
}

// lockColumns are the load lock table's: one row, which every load with
// MergeRows updates first (lockLoads).
var lockColumns = []column{{"NAME", "VARCHAR NOT NULL"}, {"APPLIANCE_ID", "VARCHAR"}, {"LOCKED_AT", "TIMESTAMP_TZ"}}

func ddl(table string, cols []column, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s (", table)
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.name + " " + c.typ)
	}
	b.WriteString(extra + ")")
	return b.String()
}

func names(cols []column, prefix string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = prefix + c.name
	}
	return strings.Join(out, ", ")
}

// DDL returns the statements Prepare runs: the documented warehouse
// objects.
func (s *Snowflake) DDL() []string {
	o := s.opts
	q := []string{
		ddl(o.TransactionsTable, s.rows.tableColumns(transactionColumns), ""),
		ddl(o.WindowsTable, windowTableColumns, ", PRIMARY KEY ("+strings.Join(windowTableKey, ", ")+")"),
		ddl(o.LedgerTable, ledgerColumns, ", PRIMARY KEY (BATCH_ID)"),
		"CREATE STAGE IF NOT EXISTS " + o.Stage,
	}
	if o.MergeRows {
		q = append(q, ddl(s.lockTable(), lockColumns, ""))
	}
	return q
}

// lockTable is the table whose one row serialises the loads of the
// appliances sharing the warehouse tables with MergeRows: the ledger's
// name with _LOCK.
func (s *Snowflake) lockTable() string { return s.opts.LedgerTable + "_LOCK" }

// lockLoads is a load's first statement with MergeRows. Snowflake's
// UPDATE and MERGE hold the table's lock until the transaction ends, so
// the loads of all appliances commit one at a time, and each one's MERGE
// of rows, a statement begun after the lock was granted, sees what the
// one before it committed (read committed). Without it two appliances
// loading the same events at once would each find them missing and both
// insert them.
func (s *Snowflake) lockLoads(ctx context.Context, tx *sql.Tx) error {
	q := fmt.Sprintf(`MERGE INTO %s t USING (SELECT 'loads' AS NAME) s ON t.NAME = s.NAME
WHEN MATCHED THEN UPDATE SET APPLIANCE_ID = ?, LOCKED_AT = CURRENT_TIMESTAMP()
WHEN NOT MATCHED THEN INSERT (NAME, APPLIANCE_ID, LOCKED_AT) VALUES (s.NAME, ?, CURRENT_TIMESTAMP())`, s.lockTable())
	if _, err := tx.ExecContext(ctx, q, s.opts.ApplianceID, s.opts.ApplianceID); err != nil {
		return fmt.Errorf("lock the loads (%s): %w", s.lockTable(), err)
	}
	return nil
}

// Prepare aborts the load transaction a crash left open (snowflake_tx.go),
// creates the tables and the stage where missing, and adds the
// DUPLICATES column to a ledger created before it existed (its rows read
// as 0). The ALTER runs only when the column is missing: it needs the
// table's ownership, which a role using objects created beforehand may
// not have.
func (s *Snowflake) Prepare(ctx context.Context) error {
	if err := s.abortLeftTransaction(ctx); err != nil {
		return err
	}
	for _, q := range s.DDL() {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", firstWords(q), err)
		}
	}
	if s.opts.MergeRows {
		// The lock's row exists before the first load: two first loads
		// that both inserted it would not wait for each other.
		if _, err := s.db.ExecContext(ctx, fmt.Sprintf("INSERT INTO %[1]s (NAME) SELECT 'loads' WHERE NOT EXISTS (SELECT 1 FROM %[1]s WHERE NAME = 'loads')", s.lockTable())); err != nil {
			return fmt.Errorf("cannot add the row of %s: %w", s.lockTable(), err)
		}
	}
	if err := addColumns(ctx, s.db, s.opts.TransactionsTable, s.rows.added(), "ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s"); err != nil {
		return err
	}
	rows, err := s.db.QueryContext(ctx, "SELECT DUPLICATES FROM "+s.opts.LedgerTable+" LIMIT 0")
	if err == nil {
		return rows.Close()
	}
	if _, err := s.db.ExecContext(ctx, "ALTER TABLE "+s.opts.LedgerTable+" ADD COLUMN IF NOT EXISTS DUPLICATES BIGINT"); err != nil {
		return fmt.Errorf("add column DUPLICATES to %s: %w", s.opts.LedgerTable, err)
	}
	return nil
}

// snowflakeRows is the Snowflake SQL of ATTRIBUTES and the extra columns.
func snowflakeRows(extras []ExtraColumn) rowSQL {
	return rowSQL{extras: extras, types: snowflakeExtraTypes, attributes: "VARIANT",
		parse:   func(e string) string { return "PARSE_JSON(" + e + ")" },
		extract: func(e, name string) string { return "JSON_EXTRACT_PATH_TEXT(" + e + ", '" + name + "')" }}
}

// Loaded tells whether the ledger holds batch id. It first ends the
// transaction an earlier attempt left (snowflake_tx.go): a COMMIT whose
// answer the loader gave up on may still be running, and only once it has
// ended does the ledger tell whether the batch is in.
func (s *Snowflake) Loaded(ctx context.Context, id string) (bool, error) {
	if err := s.abortLeftTransaction(ctx); err != nil {
		return false, err
	}
	var n int64
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.opts.LedgerTable+" WHERE BATCH_ID = ?", id).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

// stagingName is the per-batch staging table's name: a hash of the batch
// id, since ids may hold characters identifiers may not.
func stagingName(id, kind string) string {
	sum := sha256.Sum256([]byte(id))
	return "OFFLOAD_STG_" + strings.ToUpper(hex.EncodeToString(sum[:10])) + "_" + kind
}

// staged is the Parquet files of a batch on their way into one staging
// table.
type staged struct {
	files []string
	table string
	cols  []column
	rows  int64
}

// Load loads x: PUT, COPY INTO staging tables, then one transaction for
// the rows, the windows and the ledger row.
func (s *Snowflake) Load(ctx context.Context, x engine.Export) error {
	o := s.opts
	// Batch ids and file names are [A-Za-z0-9._-] (the appliance id's
	// alphabet, '-' and hex), so the stage path needs no quoting.
	path := "@" + o.Stage + "/" + x.ID + "/"
	stgRows, stgWindows := stagingName(x.ID, "ROWS"), stagingName(x.ID, "WINDOWS")
	defer s.cleanup(x.ID, path, stgRows, stgWindows)

	parts := []staged{{x.RowsFiles, stgRows, fileColumns, x.Rows}}
	if x.WindowRows > 0 { // most batches between two window closings have none
		parts = append(parts, staged{[]string{x.WindowsFile}, stgWindows, windowColumns, x.WindowRows})
	}
	for _, f := range parts {
		for _, file := range f.files {
			// Upload from the file's path: gosnowflake v1.19.1 writes a
			// 0-byte file when a stream is uploaded to a LOCAL_FS stage,
			// and a path is what the driver handles best everywhere.
			put := fmt.Sprintf("PUT 'file://%s' %s AUTO_COMPRESS=FALSE OVERWRITE=TRUE", sqlString(file), path)
			if _, err := s.db.ExecContext(ctx, put); err != nil {
				return fmt.Errorf("PUT %s: %w", filepath.Base(file), err)
			}
		}
		if _, err := s.db.ExecContext(ctx, strings.Replace(ddl(f.table, f.cols, ""), "CREATE TABLE IF NOT EXISTS", "CREATE OR REPLACE TABLE", 1)); err != nil {
			return fmt.Errorf("create staging table: %w", err)
		}
		for _, file := range f.files {
			// COPY is not DML that an explicit transaction groups in
			// Snowflake, so it runs before the transaction. FORCE: a
			// retry loads the file again into the fresh staging table.
			// One COPY a file, from its path: fakesnow takes no FILES
			// list (docs/LOADER.md).
			copyInto := fmt.Sprintf("COPY INTO %s FROM %s%s FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE FORCE = TRUE",
				f.table, path, filepath.Base(file))
			if _, err := s.db.ExecContext(ctx, copyInto); err != nil {
				return fmt.Errorf("COPY INTO staging: %w", err)
			}
		}
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	err = commitLoad(ctx, conn.BeginTx, x, s.log, &s.duplicates, func(tx *sql.Tx) (int64, error) {
		if err := s.recordTransaction(ctx, tx); err != nil {
			return 0, err
		}
		return s.inTx(ctx, tx, x, parts)
	})
	release(conn, err != nil)
	if err == nil {
		s.forgetTransaction()
	}
	return err
}

// release gives back the session of a load's transaction, closing it
// when the load failed: its ROLLBACK may not have reached the warehouse
// (the load's deadline had passed, or the answer was lost), and a session
// still in the transaction would run the next attempt inside it.
// Snowflake ignores a BEGIN in an open transaction, so that attempt's
// COMMIT would commit the failed one's rows as well. Closing the session
// ends its transaction.
func release(conn *sql.Conn, failed bool) {
	if failed {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	_ = conn.Close()
}

// inTx runs the load's transaction and returns, with MergeRows, the rows
// the table held already. The ledger row records the batch's rows, the
// rows kept out as duplicates, and the control totals of what went in.
func (s *Snowflake) inTx(ctx context.Context, tx *sql.Tx, x engine.Export, parts []staged) (skipped int64, err error) {
	o := s.opts
	if o.MergeRows {
		if err := s.lockLoads(ctx, tx); err != nil {
			return 0, err
		}
	}
	if err := checkStaged(ctx, tx, parts); err != nil {
		return 0, err
	}
	if o.MergeRows {
		res, err := tx.ExecContext(ctx, fmt.Sprintf(`MERGE INTO %s t USING (SELECT * FROM %s QUALIFY ROW_NUMBER() OVER (PARTITION BY EVENT_ID ORDER BY SOURCE_OFFSET) = 1) s
ON t.EVENT_ID = s.EVENT_ID
WHEN NOT MATCHED THEN INSERT (%s) VALUES (%s)`, o.TransactionsTable, parts[0].table, names(s.rows.tableColumns(transactionColumns), ""), s.rows.values("s.", batchLiteral(x.ID))))
		if err != nil {
			return 0, fmt.Errorf("MERGE rows: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n < x.Rows {
			skipped = x.Rows - n
		}
	} else if _, err := tx.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s",
		o.TransactionsTable, names(s.rows.tableColumns(transactionColumns), ""), s.rows.values("", batchLiteral(x.ID)), parts[0].table)); err != nil {
		return 0, fmt.Errorf("INSERT rows: %w", err)
	}
	if len(parts) > 1 {
		if _, err := tx.ExecContext(ctx, s.mergeWindows(parts[1].table)); err != nil {
			return 0, fmt.Errorf("MERGE windows: %w", err)
		}
	}
	ct, err := ledgerTotals(ctx, tx, x, skipped, o.TransactionsTable, "?")
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (%s) SELECT ?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP(), ?",
		o.LedgerTable, names(ledgerColumns, "")), x.ID, o.ApplianceID, x.Rows, x.WindowRows, x.FileBytes, ct, skipped); err != nil {
		return 0, fmt.Errorf("INSERT ledger row: %w", err)
	}
	return skipped, nil
}

// mergeWindows upserts the staged windows of this appliance: a batch may
// hold several versions of one window (a late event re-emitted it), and
// only the highest goes in. A row replaces the table's only if it counts
// more events, or as many with a higher version: an older version never
// replaces a newer one, and after a lost data directory a window emitted
// again from re-read events replaces the table's row only when it is
// fuller (docs/ARCHITECTURE.md, "End-to-end delivery").
func (s *Snowflake) mergeWindows(stg string) string {
	var on, set []string
	for _, k := range windowTableKey {
		on = append(on, "t."+k+" = s."+k)
	}
	for _, c := range windowColumns[len(windowKey):] {
		set = append(set, c.name+" = s."+c.name)
	}
	return fmt.Sprintf(`MERGE INTO %s t USING (SELECT w.*, '%s' AS APPLIANCE_ID FROM %s w QUALIFY ROW_NUMBER() OVER (PARTITION BY %s ORDER BY VERSION DESC) = 1) s
ON %s
WHEN MATCHED AND (s.COUNT > t.COUNT OR (s.COUNT = t.COUNT AND s.VERSION > t.VERSION)) THEN UPDATE SET %s
WHEN NOT MATCHED THEN INSERT (%s) VALUES (%s)`,
		s.opts.WindowsTable, sqlString(s.opts.ApplianceID), stg, strings.Join(windowKey, ", "), strings.Join(on, " AND "),
		strings.Join(set, ", "), names(windowTableColumns, ""), names(windowTableColumns, "s."))
}

// cleanup drops the staging tables and removes the staged files, on
// success or failure; what it cannot remove is logged and harmless (the
// next attempt replaces it).
func (s *Snowflake) cleanup(id, path string, tables ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stmts := []string{"REMOVE " + path}
	for _, t := range tables {
		stmts = append(stmts, "DROP TABLE IF EXISTS "+t)
	}
	for _, q := range stmts {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			s.log.Debug("loader: cleanup after a load failed (harmless; retried with the next attempt)", "batch", id, "stmt", firstWords(q), "err", err)
		}
	}
}

var errStagedCount = errors.New("staged row count differs")

// Snowflake error numbers the loader treats as the batch's fault: the
// warehouse refuses this batch and will again.
var permanentCodes = map[int]bool{
	1003:   true, // SQL compilation error: syntax
	2003:   true, // object does not exist or not authorized
	904:    true, // invalid identifier
	2023:   true, // expression type does not match column data type
	2025:   true, // number of columns mismatch
	3001:   true, // insufficient privileges
	100038: true, // numeric value not recognized
	100071: true, // failed to cast variant value
	100072: true, // NULL result in a non-nullable column
}

// Classify sorts errors: the SQL and access errors above are permanent,
// everything else (network, HTTP 5xx and 429, session expiry, login
// failures, timeouts) retryable. Login failures are retryable on purpose:
// a wrong password is fixed by the operator, not by parking every batch.
func (s *Snowflake) Classify(err error) Class {
	var se *gosnowflake.SnowflakeError
	if errors.As(err, &se) && permanentCodes[se.Number] {
		return Permanent
	}
	return Retryable
}

func sqlString(s string) string { return strings.ReplaceAll(s, "'", "''") }

func firstWords(q string) string {
	f := strings.Fields(q)
	if len(f) > 4 {
		f = f[:4]
	}
	return strings.Join(f, " ")
}

// driverLog writes the driver's log lines to a slog logger at debug level.
type driverLog struct{ log *slog.Logger }

func (d driverLog) Write(p []byte) (int, error) {
	d.log.Debug("gosnowflake", "line", strings.TrimSpace(string(p)))
	return len(p), nil
}
