package loader

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/offload/offload/engine"
)

// PostgreSQL TLS modes (libpq's sslmode).
var pgSSLModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// PostgresOptions configures the PostgreSQL sink.
type PostgresOptions struct {
	Host     string
	Port     int // [5432]
	User     string
	Password string
	Database string
	// Schema holds the tables; it must exist. Staging tables are
	// temporary, in the session's own schema.
	Schema string
	// SSLMode is libpq's sslmode [verify-full]; SSLRootCert the CA file
	// for verify-ca and verify-full (the system's roots without it).
	SSLMode     string
	SSLRootCert string

	TransactionsTable string
	WindowsTable      string
	LedgerTable       string

	ApplianceID string
	// MergeRows inserts only the rows whose EVENT_ID the table does not
	// hold yet (dedupe.warehouse: merge).
	MergeRows bool
	// ExtraColumns are the typed columns the topics promote, sorted by
	// name; Prepare adds the ones the transactions table lacks.
	ExtraColumns []ExtraColumn
	// ConnectTimeout bounds a connection's set-up; StatementTimeout one
	// statement on the server (0: none).
	ConnectTimeout   time.Duration
	StatementTimeout time.Duration
	Logger           *slog.Logger
}

// Postgres is the PostgreSQL sink: COPY FROM STDIN of the batch's Parquet
// rows into temporary staging tables, then one transaction for the rows,
// the windows and the ledger row (docs/LOADER.md).
type Postgres struct {
	pgSQL
}

// NewPostgres validates the options and returns the sink. It does not
// connect: the first Prepare does.
func NewPostgres(o PostgresOptions) (*Postgres, error) {
	cfg, tables, err := pgConfig("postgres", pgConnOptions{
		Host: o.Host, Port: o.Port, User: o.User, Password: o.Password, Database: o.Database, Schema: o.Schema,
		SSLMode: o.SSLMode, SSLRootCert: o.SSLRootCert, DefaultPort: 5432,
		ConnectTimeout: o.ConnectTimeout, StatementTimeout: o.StatementTimeout,
		Tables: pgTables{o.TransactionsTable, o.WindowsTable, o.LedgerTable},
	})
	if err == nil {
		if errs := checkExtraColumns(o.ExtraColumns); len(errs) > 0 {
			err = errors.New(strings.Join(errs, "\n"))
		}
	}
	if err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	p := &Postgres{newPgSQL(cfg, "postgres", "VARCHAR", o.Schema, tables, o.ApplianceID, o.MergeRows, o.Logger)}
	// JSONB: ATTRIBUTES is queried by key; its text form need not be kept.
	p.rows = rowSQL{extras: o.ExtraColumns, types: pgExtraTypes, attributes: "JSONB",
		parse:   func(e string) string { return "CAST(" + e + " AS JSONB)" },
		extract: func(e, name string) string { return "json_extract_path_text(CAST(" + e + " AS JSON), '" + name + "')" }}
	p.addColumn = "ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s"
	// SHARE ROW EXCLUSIVE conflicts with itself and with writers only:
	// readers of the ledger do not wait.
	p.lockLedger = "LOCK TABLE " + p.tables.Ledger + " IN SHARE ROW EXCLUSIVE MODE"
	return p, nil
}

// pgConnOptions are the connection settings the postgres and redshift
// sinks share.
type pgConnOptions struct {
	Host, User, Password, Database, Schema string
	Port, DefaultPort                      int
	SSLMode, SSLRootCert                   string
	ConnectTimeout, StatementTimeout       time.Duration
	Tables                                 pgTables
}

// pgConfig validates o, naming the option of each mistake, and returns the
// driver's configuration and the tables with their defaults.
func pgConfig(kind string, o pgConnOptions) (*pgx.ConnConfig, pgTables, error) {
	t := o.Tables
	defaultTables(&t.Transactions, &t.Windows, &t.Ledger)
	if o.Port == 0 {
		o.Port = o.DefaultPort
	}
	if o.SSLMode == "" {
		o.SSLMode = "verify-full"
	}
	var errs []string
	for _, f := range []struct{ name, v string }{{"host", o.Host}, {"user", o.User}, {"database", o.Database}, {"schema", o.Schema}} {
		if f.v == "" {
			errs = append(errs, fmt.Sprintf("warehouse.%s is required with warehouse.type %s", f.name, kind))
		}
	}
	if o.Password == "" {
		errs = append(errs, fmt.Sprintf("warehouse.password_file: warehouse.type %s needs a password (file or OFFLOAD_WAREHOUSE_PASSWORD)", kind))
	}
	for _, f := range []struct{ name, v string }{{"schema", o.Schema}, {"tables.transactions", t.Transactions},
		{"tables.windows", t.Windows}, {"tables.ledger", t.Ledger}} {
		if f.v != "" && !ValidIdentifier(f.v) {
			errs = append(errs, fmt.Sprintf("warehouse.%s: %q is not a plain identifier (letters, digits, _ and $, not starting with a digit)", f.name, f.v))
		}
	}
	if !slices.Contains(pgSSLModes, o.SSLMode) {
		errs = append(errs, fmt.Sprintf("warehouse.sslmode: %q is not allowed; use one of %s", o.SSLMode, strings.Join(pgSSLModes, ", ")))
	}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Sprintf("warehouse.port: %d is out of range", o.Port))
	}
	if len(errs) > 0 {
		return nil, t, errors.New(strings.Join(errs, "\n"))
	}
	// Everything but the password goes through the connection string, the
	// driver's one complete parser of TLS settings; values are quoted.
	kv := []string{"host=" + pgQuote(o.Host), fmt.Sprintf("port=%d", o.Port), "user=" + pgQuote(o.User),
		"dbname=" + pgQuote(o.Database), "sslmode=" + o.SSLMode, "application_name=offload"}
	if o.SSLRootCert != "" {
		kv = append(kv, "sslrootcert="+pgQuote(o.SSLRootCert))
	}
	if o.ConnectTimeout > 0 {
		kv = append(kv, fmt.Sprintf("connect_timeout=%d", max(1, int(o.ConnectTimeout.Seconds()))))
	}
	cfg, err := pgx.ParseConfig(strings.Join(kv, " "))
	if err != nil {
		return nil, t, fmt.Errorf("warehouse: cannot configure the %s connection: %w", kind, err)
	}
	cfg.Password = o.Password
	cfg.RuntimeParams["search_path"] = o.Schema
	if o.StatementTimeout > 0 {
		cfg.RuntimeParams["statement_timeout"] = fmt.Sprint(o.StatementTimeout.Milliseconds())
	}
	return cfg, t, nil
}

// pgQuote quotes a connection string value.
func pgQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func newPgSQL(cfg *pgx.ConnConfig, name, varchar, schema string, t pgTables, applianceID string, mergeRows bool, log *slog.Logger) pgSQL {
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(2)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return pgSQL{db: db, name: name, schema: schema, tables: t, applianceID: applianceID, mergeRows: mergeRows, varchar: varchar, log: log}
}

// Load loads x: COPY FROM STDIN into temporary staging tables on one
// session, then the one transaction.
func (p *Postgres) Load(ctx context.Context, x engine.Export) error {
	return p.load(ctx, x, copyFromFile)
}

// copyFromFile streams a Parquet file into staging table s with COPY FROM
// STDIN (binary) on conn's session.
func copyFromFile(ctx context.Context, conn *sql.Conn, s staged, path string) error {
	return conn.Raw(func(dc any) error {
		src, err := openParquetRows(ctx, path, s.cols)
		if err != nil {
			return err
		}
		defer src.Close()
		// Unquoted names fold to lower case; COPY quotes what it is given.
		cols := make([]string, len(s.cols))
		for i, c := range s.cols {
			cols[i] = strings.ToLower(c.name)
		}
		if _, err := dc.(*stdlib.Conn).Conn().CopyFrom(ctx, pgx.Identifier{strings.ToLower(s.table)}, cols, src); err != nil {
			return fmt.Errorf("COPY %s FROM STDIN: %w", strings.ToLower(s.table), err)
		}
		return nil
	})
}
