package loader

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	// DuckDB writes the check's Parquet file, as the engine writes the
	// batches' files.
	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/snowflakedb/gosnowflake"
)

// CheckResult is one preflight check's outcome (offload check).
type CheckResult struct {
	Name   string // what was checked, e.g. "snowflake: login"
	OK     bool
	Detail string // on failure: the warehouse's message and the statement that failed; never a secret
	Fix    string // on failure: what the operator should do
}

// Checker is a Sink that can prove, without touching production tables, that loads will work.
type Checker interface {
	Check(ctx context.Context) []CheckResult
}

// checkRow is what the check's Parquet file holds, and what must come
// back out of the scratch table.
const (
	checkName  = "offload-check"
	checkValue = 42
)

// checkCleanupTimeout bounds the clean-up after the checks, which runs
// even when the caller's context is done.
const checkCleanupTimeout = 30 * time.Second

// snowflakeCheck runs the Snowflake sink's checks on one session, in
// order, and stops at the first failure that makes the rest meaningless.
type snowflakeCheck struct {
	s    *Snowflake
	conn *sql.Conn
	out  []CheckResult
}

// Check proves that loads will work (docs/OPERATIONS.md, offload check):
// the login with the configured method, the database, schema and
// warehouse, the privileges the loader needs, and a round trip through a
// scratch table of its own (PUT a tiny Parquet file to the stage, COPY it
// in, read it back, INSERT and MERGE, drop it). Production tables are
// only read, and written with statements of zero rows (privilege checks
// that change nothing); a missing one is reported, since Prepare creates
// it.
func (s *Snowflake) Check(ctx context.Context) []CheckResult {
	c := &snowflakeCheck{s: s}
	c.run(ctx)
	return c.out
}

// run runs the checks in order; the clean-up's results come last.
func (c *snowflakeCheck) run(ctx context.Context) {
	s, o := c.s, c.s.opts
	conn, err := s.db.Conn(ctx)
	if err == nil {
		err = conn.PingContext(ctx)
	}
	if !c.result(fmt.Sprintf("snowflake: login (%s, user %s, account %s)", o.Auth, o.User, o.Account), "login", err) {
		if conn != nil {
			_ = conn.Close()
		}
		return
	}
	c.conn = conn
	defer conn.Close()
	if !c.exec(ctx, "snowflake: database "+o.Database, "USE DATABASE "+o.Database) ||
		!c.exec(ctx, "snowflake: schema "+o.Database+"."+o.Schema, "USE SCHEMA "+o.Schema) {
		return
	}
	if o.Warehouse == "" {
		c.out = append(c.out, CheckResult{Name: "snowflake: warehouse (none configured: the user's default runs the loads)", OK: true})
	} else if !c.exec(ctx, "snowflake: warehouse "+o.Warehouse, "USE WAREHOUSE "+o.Warehouse) {
		return
	}
	suffix := randomSuffix()
	scratch := "OFFLOAD_CHECK_" + suffix
	path := "@" + o.Stage + "/offload-check-" + suffix + "/"
	if !c.exec(ctx, "snowflake: create table (scratch table "+scratch+")", "CREATE TABLE "+scratch+" (NAME VARCHAR, N BIGINT)") {
		return
	}
	defer c.cleanup(scratch, path)
	if !c.exec(ctx, "snowflake: stage "+o.Stage+" (create or use)", "CREATE STAGE IF NOT EXISTS "+o.Stage) {
		return
	}
	if !c.roundTrip(ctx, scratch, path) {
		return
	}
	c.exec(ctx, "snowflake: insert (scratch table)", fmt.Sprintf("INSERT INTO %s (NAME, N) SELECT NAME, N + 1 FROM %s", scratch, scratch))
	c.exec(ctx, "snowflake: merge (scratch table)", fmt.Sprintf(`MERGE INTO %s t USING (SELECT '%s-merge' AS NAME, %d AS N) s ON t.NAME = s.NAME
WHEN NOT MATCHED THEN INSERT (NAME, N) VALUES (s.NAME, s.N)`, scratch, checkName, checkValue))
	c.production(ctx)
}

// roundTrip PUTs a one-row Parquet file to the stage, COPYs it into the
// scratch table and reads it back.
func (c *snowflakeCheck) roundTrip(ctx context.Context, scratch, path string) bool {
	dir, err := os.MkdirTemp("", "offload-check-")
	if err != nil {
		c.out = append(c.out, CheckResult{Name: "snowflake: write a Parquet file to upload", Detail: err.Error(),
			Fix: "make the temporary directory ($TMPDIR) writable"})
		return false
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "offload-check.parquet")
	if err := writeCheckParquet(ctx, file); err != nil {
		c.out = append(c.out, CheckResult{Name: "snowflake: write a Parquet file to upload", Detail: err.Error(),
			Fix: "make the temporary directory ($TMPDIR) writable"})
		return false
	}
	if !c.exec(ctx, "snowflake: PUT to "+path, fmt.Sprintf("PUT 'file://%s' %s AUTO_COMPRESS=FALSE OVERWRITE=TRUE", sqlString(file), path)) ||
		!c.exec(ctx, "snowflake: COPY INTO "+scratch, fmt.Sprintf("COPY INTO %s FROM %s%s FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE FORCE = TRUE",
			scratch, path, filepath.Base(file))) {
		return false
	}
	name := "snowflake: read back " + scratch
	q := "SELECT NAME, N FROM " + scratch
	var got []string
	rows, err := c.conn.QueryContext(ctx, q)
	if err == nil {
		for rows.Next() {
			var n string
			var v int64
			if err = rows.Scan(&n, &v); err != nil {
				break
			}
			got = append(got, fmt.Sprintf("%s/%d", n, v))
		}
		if err == nil {
			err = rows.Err()
		}
		_ = rows.Close()
	}
	if want := fmt.Sprintf("%s/%d", checkName, checkValue); err == nil && (len(got) != 1 || got[0] != want) {
		c.out = append(c.out, CheckResult{Name: name, Detail: fmt.Sprintf("statement: %s; the table holds %v, want [%s]", q, got, want),
			Fix: "the warehouse did not load the uploaded file as written: check the stage's file format and report it"})
		return false
	}
	return c.statement(name, q, err)
}

// production checks the loader's tables: each one present must take the
// loader's statements (a zero-row INSERT, or MERGE where the loader
// merges); a missing one is created by the loader.
func (c *snowflakeCheck) production(ctx context.Context) {
	o := c.s.opts
	cols := func(cc []column) string { return names(cc, "") }
	type table struct {
		name, verb, stmt string
	}
	// Without ATTRIBUTES: Prepare adds it (and the extra columns) to a
	// transactions table of an earlier release.
	txCols := slices.DeleteFunc(slices.Clone(transactionColumns), func(c column) bool { return c.name == "ATTRIBUTES" })
	rowsVerb, rowsStmt := "INSERT", fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s WHERE 1 = 0", o.TransactionsTable, cols(txCols), cols(txCols), o.TransactionsTable)
	if o.MergeRows {
		rowsVerb, rowsStmt = "MERGE", fmt.Sprintf("MERGE INTO %s t USING (SELECT %s FROM %s WHERE 1 = 0) s ON t.EVENT_ID = s.EVENT_ID WHEN NOT MATCHED THEN INSERT (%s) VALUES (%s)",
			o.TransactionsTable, cols(txCols), o.TransactionsTable, cols(txCols), names(txCols, "s."))
	}
	// Without DUPLICATES: Prepare adds it to a ledger of an earlier
	// release.
	ledger := slices.DeleteFunc(slices.Clone(ledgerColumns), func(c column) bool { return c.name == "DUPLICATES" })
	tables := []table{
		{o.TransactionsTable, rowsVerb, rowsStmt},
		{o.WindowsTable, "MERGE", c.s.mergeWindows(fmt.Sprintf("(SELECT %s FROM %s WHERE 1 = 0)", cols(windowColumns), o.WindowsTable))},
		{o.LedgerTable, "INSERT", fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s WHERE 1 = 0", o.LedgerTable, cols(ledger), cols(ledger), o.LedgerTable)},
	}
	if o.MergeRows {
		tables = append(tables, table{c.s.lockTable(), "UPDATE", fmt.Sprintf("UPDATE %s SET LOCKED_AT = LOCKED_AT WHERE 1 = 0", c.s.lockTable())})
	}
	for _, t := range tables {
		probe := "SELECT COUNT(*) FROM " + t.name + " WHERE 1 = 0"
		var n int64
		err := c.conn.QueryRowContext(ctx, probe).Scan(&n)
		var se *gosnowflake.SnowflakeError
		// 002003 is "does not exist or not authorized": Snowflake does not
		// tell a missing table from one the role may not see.
		if errors.As(err, &se) && se.Number == 2003 {
			c.out = append(c.out, CheckResult{Name: "snowflake: table " + t.name + " (missing, or not visible to the role: the loader creates it if missing)", OK: true})
			continue
		}
		if !c.statement("snowflake: read table "+t.name, probe, err) {
			continue
		}
		c.exec(ctx, "snowflake: "+t.verb+" into "+t.name+" (zero rows)", t.stmt)
	}
}

// cleanup drops the scratch table and removes the uploaded file.
func (c *snowflakeCheck) cleanup(scratch, path string) {
	ctx, cancel := context.WithTimeout(context.Background(), checkCleanupTimeout)
	defer cancel()
	c.exec(ctx, "snowflake: drop table "+scratch, "DROP TABLE IF EXISTS "+scratch)
	if _, err := c.conn.ExecContext(ctx, "REMOVE "+path); err != nil {
		// A file left on the stage is harmless; the loader's own
		// cleanup logs the same at debug level.
		c.s.log.Debug("offload check: cannot remove the check's file from the stage", "path", path, "err", c.s.redact(err.Error()))
	}
}

// exec runs one statement as the check name.
func (c *snowflakeCheck) exec(ctx context.Context, name, q string) bool {
	_, err := c.conn.ExecContext(ctx, q)
	return c.statement(name, q, err)
}

// statement records the outcome of statement q.
func (c *snowflakeCheck) statement(name, q string, err error) bool {
	if err == nil {
		c.out = append(c.out, CheckResult{Name: name, OK: true})
		return true
	}
	c.out = append(c.out, CheckResult{Name: name, Detail: "statement: " + q + "; error: " + c.s.redact(err.Error()), Fix: c.s.fix(err, q)})
	return false
}

// result records the outcome of a step that is not a statement (the
// login).
func (c *snowflakeCheck) result(name, step string, err error) bool {
	if err == nil {
		c.out = append(c.out, CheckResult{Name: name, OK: true})
		return true
	}
	c.out = append(c.out, CheckResult{Name: name, Detail: step + ": " + c.s.redact(err.Error()), Fix: c.s.fix(err, step)})
	return false
}

// fix says what the operator should do about err, from Snowflake's error
// number.
func (s *Snowflake) fix(err error, q string) string {
	o := s.opts
	var se *gosnowflake.SnowflakeError
	if !errors.As(err, &se) {
		if errors.Is(err, context.DeadlineExceeded) {
			return "the warehouse did not answer in time: check warehouse.host/port, the network path, and that the warehouse is running"
		}
		return "cannot reach the warehouse: check warehouse.account, warehouse.host/port/protocol, DNS, proxies and the firewall"
	}
	role := o.Role
	if role == "" {
		role = "<the user's default role>"
	}
	switch se.Number {
	case 390100, 390101, 390102:
		return "the login was refused: check warehouse.user and warehouse.password_file (or OFFLOAD_WAREHOUSE_PASSWORD)"
	case 390144, 394304:
		return "the key pair login was refused: check warehouse.private_key_file (and its passphrase) and that its public key is set on the user (ALTER USER " + o.User + " SET RSA_PUBLIC_KEY = ...)"
	case 390303, 390318:
		return "the OAuth token was refused: check warehouse.oauth_token_file (or OFFLOAD_WAREHOUSE_OAUTH_TOKEN); renew an expired token"
	case 3001:
		fix := fmt.Sprintf("the role lacks a privilege: GRANT %s TO ROLE %s", grantFor(q, o), role)
		if strings.HasPrefix(q, "CREATE STAGE") {
			fix += fmt.Sprintf(", or create stage %s beforehand and GRANT READ, WRITE ON STAGE %s.%s.%s TO ROLE %s", o.Stage, o.Database, o.Schema, o.Stage, role)
		}
		return fix + " (docs/LOADER.md lists the loader's grants)"
	case 904:
		return "a column is missing or named otherwise than the loader's: compare the table with docs/LOADER.md"
	case 2003, 2043:
		return fmt.Sprintf("the object does not exist or the role %s may not use it: check the name in the configuration and GRANT USAGE on it", role)
	}
	return "see the warehouse's message above"
}

// grantFor names the grant statement q needs.
func grantFor(q string, o SnowflakeOptions) string {
	schema := o.Database + "." + o.Schema
	switch {
	case strings.HasPrefix(q, "CREATE TABLE"):
		return "CREATE TABLE ON SCHEMA " + schema
	case strings.HasPrefix(q, "CREATE STAGE"):
		return "CREATE STAGE ON SCHEMA " + schema
	case strings.HasPrefix(q, "PUT"), strings.HasPrefix(q, "COPY"):
		return "READ, WRITE ON STAGE " + schema + "." + o.Stage
	case strings.HasPrefix(q, "MERGE"):
		return "INSERT, UPDATE ON TABLE <the table>"
	case strings.HasPrefix(q, "INSERT"):
		return "INSERT ON TABLE <the table>"
	case strings.HasPrefix(q, "USE DATABASE"):
		return "USAGE ON DATABASE " + o.Database
	case strings.HasPrefix(q, "USE SCHEMA"):
		return "USAGE ON SCHEMA " + schema
	case strings.HasPrefix(q, "USE WAREHOUSE"):
		return "USAGE ON WAREHOUSE " + o.Warehouse
	}
	return "SELECT ON TABLE <the table>"
}

// redact takes the sink's secrets out of a message, and puts it on one
// line.
func (s *Snowflake) redact(msg string) string {
	msg = strings.Join(strings.Fields(msg), " ")
	for _, secret := range []string{s.opts.Password, s.opts.OAuthToken} {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "[redacted]")
		}
	}
	return msg
}

// writeCheckParquet writes the check's one-row Parquet file with DuckDB.
func writeCheckParquet(ctx context.Context, file string) error {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return fmt.Errorf("cannot open DuckDB: %w", err)
	}
	defer db.Close()
	q := fmt.Sprintf("COPY (SELECT '%s' AS NAME, CAST(%d AS BIGINT) AS N) TO '%s' (FORMAT PARQUET)", checkName, checkValue, sqlString(file))
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("cannot write %s: %w", file, err)
	}
	return nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}
