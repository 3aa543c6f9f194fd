package loader

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// Check proves, on a scratch table of its own that it drops after, that
// loads will work: login, the schema's privileges, the ledger's lock, and
// a round trip through CREATE, INSERT, a temporary table, MERGE and
// SELECT, the statements of a load.
func (p *pgSQL) Check(ctx context.Context) []CheckResult {
	var out []CheckResult
	report := func(what string, err error, detail, fix string) bool {
		r := CheckResult{Name: p.name + ": " + what, OK: err == nil}
		if err != nil {
			r.Detail, r.Fix = fmt.Sprintf("%s: %v", detail, err), fix
		}
		out = append(out, r)
		return err == nil
	}
	conn, err := p.db.Conn(ctx)
	if err == nil {
		err = conn.PingContext(ctx)
		defer conn.Close()
	}
	if !report("login", err, "connect", "check warehouse.host, warehouse.port, warehouse.user, warehouse.sslmode and the password (warehouse.password_file or OFFLOAD_WAREHOUSE_PASSWORD)") {
		return out
	}
	var usage, create bool
	q := "SELECT has_schema_privilege($1, 'USAGE'), has_schema_privilege($1, 'CREATE')"
	err = conn.QueryRowContext(ctx, q, p.schema).Scan(&usage, &create)
	if err == nil && !(usage && create) {
		err = fmt.Errorf("the user has USAGE %v and CREATE %v on schema %s", usage, create, p.schema)
	}
	if !report("schema "+p.schema, err, q, fmt.Sprintf("create schema %s, or GRANT USAGE, CREATE ON SCHEMA %s to the user, or set warehouse.schema", p.schema, p.schema)) {
		return out
	}
	if !report("the ledger's lock", p.checkLock(ctx, conn), p.lockLedger,
		fmt.Sprintf("GRANT SELECT, INSERT, UPDATE ON %s to the user (every load takes this lock; docs/LOADER.md)", p.tables.Ledger)) {
		return out
	}
	scratch := "OFFLOAD_CHECK_" + randomHex(6)
	src := scratch + "_SRC"
	defer p.dropStaging(conn, "check", scratch, src)
	for _, q := range []string{
		"CREATE TABLE " + scratch + " (ID INTEGER, V " + p.varchar + ")",
		"INSERT INTO " + scratch + " (ID, V) VALUES (1, 'a')",
		"CREATE TEMP TABLE " + src + " (ID INTEGER, V " + p.varchar + ")",
		"INSERT INTO " + src + " (ID, V) VALUES (1, 'b'), (2, 'c')",
		"MERGE INTO " + scratch + " USING " + src + " s ON " + scratch + ".ID = s.ID WHEN MATCHED THEN UPDATE SET V = s.V WHEN NOT MATCHED THEN INSERT (ID, V) VALUES (s.ID, s.V)",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			report("round trip through a scratch table", err, q, "GRANT CREATE, and INSERT and UPDATE on new tables, on schema "+p.schema+" to the user")
			return out
		}
	}
	var n int
	var v string
	q = "SELECT COUNT(*), MIN(V) FROM " + scratch
	err = conn.QueryRowContext(ctx, q).Scan(&n, &v)
	if err == nil && (n != 2 || v != "b") {
		err = fmt.Errorf("the scratch table holds %d rows, the least %q; want 2 and \"b\"", n, v)
	}
	report("round trip through a scratch table", err, q, "the warehouse does not run MERGE as offload needs: see docs/LOADER.md")
	return out
}

// checkLock takes the ledger's lock as a load does, in a transaction it
// rolls back: PostgreSQL's mode needs UPDATE on the ledger, which a user
// given only SELECT and INSERT lacks. A ledger not created yet passes: the
// user creates it and owns it.
func (p *pgSQL) checkLock(ctx context.Context, conn *sql.Conn) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	_, err = tx.ExecContext(ctx, p.lockLedger)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" {
		return nil
	}
	return err
}

// randomHex is n random bytes in hex, for scratch names.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
