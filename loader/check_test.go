package loader

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/offload/offload/internal/snowtest"
)

// checkNames returns the names of results, "FAIL " before failed ones.
func checkNames(rs []CheckResult) []string {
	var out []string
	for _, r := range rs {
		n := r.Name
		if !r.OK {
			n = "FAIL " + n
		}
		out = append(out, n)
	}
	return out
}

// failed returns the failed results.
func failed(rs []CheckResult) []CheckResult {
	var out []CheckResult
	for _, r := range rs {
		if !r.OK {
			out = append(out, r)
		}
	}
	return out
}

// noScratchLeft fails if a check's scratch table is left in the warehouse.
func noScratchLeft(t *testing.T, w *warehouse) {
	t.Helper()
	if got := w.query(t, `SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'OFFLOAD_CHECK_%'`); got[0] != "0" {
		t.Fatalf("%s scratch tables left behind", got[0])
	}
}

// TestSnowflakeCheckPasses: with every authentication method, on a new
// warehouse (no tables yet) and on one the loader prepared, every check
// passes, the round trip goes through the stage, and the scratch table is
// gone afterwards; the loader's tables are not changed.
func TestSnowflakeCheckPasses(t *testing.T) {
	w := newWarehouse(t)
	for _, auth := range []string{AuthPassword, AuthKeyPair, AuthOAuth} {
		t.Run(auth, func(t *testing.T) {
			sink := w.sink(t, auth)
			var _ Checker = sink
			rs := sink.Check(context.Background())
			if f := failed(rs); len(f) > 0 {
				t.Fatalf("failed checks: %+v", f)
			}
			names := strings.Join(checkNames(rs), "\n")
			for _, want := range []string{"snowflake: login (" + auth, "snowflake: PUT to @OFFLOAD_STAGE/offload-check-",
				"snowflake: COPY INTO OFFLOAD_CHECK_", "snowflake: read back", "snowflake: merge (scratch table)", "snowflake: drop table"} {
				if !strings.Contains(names, want) {
					t.Errorf("no check %q in:\n%s", want, names)
				}
			}
			noScratchLeft(t, w)
		})
	}
	sink := w.sink(t, AuthPassword)
	rs := sink.Check(context.Background())
	if !strings.Contains(strings.Join(checkNames(rs), "\n"), "snowflake: table OFFLOAD_TRANSACTIONS (missing, or not visible to the role: the loader creates it if missing)") {
		t.Fatalf("a missing table is not reported:\n%s", strings.Join(checkNames(rs), "\n"))
	}
	if err := sink.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	rs = sink.Check(context.Background())
	if f := failed(rs); len(f) > 0 {
		t.Fatalf("failed checks on prepared tables: %+v", f)
	}
	names := strings.Join(checkNames(rs), "\n")
	for _, want := range []string{"snowflake: INSERT into OFFLOAD_TRANSACTIONS (zero rows)", "snowflake: MERGE into OFFLOAD_WINDOWS (zero rows)",
		"snowflake: INSERT into OFFLOAD_LOAD_LEDGER (zero rows)"} {
		if !strings.Contains(names, want) {
			t.Errorf("no check %q in:\n%s", want, names)
		}
	}
	for _, table := range []string{"OFFLOAD_TRANSACTIONS", "OFFLOAD_WINDOWS", "OFFLOAD_LOAD_LEDGER"} {
		if got := w.query(t, "SELECT count(*) FROM PUBLIC."+table); got[0] != "0" {
			t.Errorf("the check wrote %s rows to %s", got[0], table)
		}
	}
}

// TestSnowflakeCheckMerge: with MergeRows the check runs the rows' MERGE
// and an UPDATE of the load lock's table with zero rows, and leaves the
// lock's one row as Prepare wrote it.
func TestSnowflakeCheckMerge(t *testing.T) {
	w := newWarehouse(t)
	sink := w.sinkWith(t, AuthPassword, func(o *SnowflakeOptions) { o.MergeRows = true })
	if err := sink.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	rs := sink.Check(context.Background())
	if f := failed(rs); len(f) > 0 {
		t.Fatalf("failed checks: %+v", f)
	}
	names := strings.Join(checkNames(rs), "\n")
	for _, want := range []string{"snowflake: MERGE into OFFLOAD_TRANSACTIONS (zero rows)", "snowflake: UPDATE into OFFLOAD_LOAD_LEDGER_LOCK (zero rows)"} {
		if !strings.Contains(names, want) {
			t.Errorf("no check %q in:\n%s", want, names)
		}
	}
	if got := w.query(t, "SELECT NAME, count(*), count(LOCKED_AT) FROM PUBLIC.OFFLOAD_LOAD_LEDGER_LOCK GROUP BY NAME"); len(got) != 1 || got[0] != "loads|1|0" {
		t.Fatalf("lock table after Prepare and Check: %v, want [loads|1|0]", got)
	}
}

// TestSnowflakeCheckEarlierLedger: a ledger created before the DUPLICATES
// column existed passes (the loader adds the column at start).
func TestSnowflakeCheckEarlierLedger(t *testing.T) {
	w := newWarehouse(t)
	for _, q := range []string{`CREATE SCHEMA IF NOT EXISTS PUBLIC`,
		`CREATE TABLE PUBLIC.OFFLOAD_LOAD_LEDGER (BATCH_ID VARCHAR NOT NULL, APPLIANCE_ID VARCHAR NOT NULL, ROWS BIGINT,
			WINDOW_ROWS BIGINT, BYTES BIGINT, CONTROL_TOTALS VARCHAR, LOADED_AT TIMESTAMPTZ, PRIMARY KEY (BATCH_ID))`,
	} {
		if _, err := w.srv.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	rs := w.sink(t, AuthPassword).Check(context.Background())
	if f := failed(rs); len(f) > 0 || !strings.Contains(strings.Join(checkNames(rs), "\n"), "snowflake: INSERT into OFFLOAD_LOAD_LEDGER (zero rows)") {
		t.Fatalf("checks: %v", checkNames(rs))
	}
}

// TestSnowflakeCheckWrongPassword: a refused login is the one result, with
// Snowflake's message and the fix, and never the password.
func TestSnowflakeCheckWrongPassword(t *testing.T) {
	w := newWarehouse(t)
	const wrong = "not-the-Passw0rd"
	sink := w.sinkWith(t, AuthPassword, func(o *SnowflakeOptions) { o.Password = wrong })
	rs := sink.Check(context.Background())
	if len(rs) != 1 || rs[0].OK || !strings.HasPrefix(rs[0].Name, "snowflake: login (password, user LOADER_PW") {
		t.Fatalf("results: %+v", rs)
	}
	if !strings.Contains(rs[0].Detail, "390100") || !strings.Contains(rs[0].Fix, "warehouse.password_file") {
		t.Fatalf("detail %q, fix %q", rs[0].Detail, rs[0].Fix)
	}
	if strings.Contains(rs[0].Detail+rs[0].Fix, wrong) {
		t.Fatalf("the password is in the result: %+v", rs[0])
	}
}

// TestSnowflakeCheckDeniedPrivilege: a role without CREATE STAGE fails at
// the stage, with Snowflake's 003001, the statement and the grant to give,
// and stops there; one without MERGE fails that check only. The scratch
// table is dropped either way.
func TestSnowflakeCheckDeniedPrivilege(t *testing.T) {
	w := newWarehouse(t)
	sink := w.sink(t, AuthPassword)
	deny := w.srv.Inject(snowtest.Fault{Kind: snowtest.FaultInsufficientPrivileges, SQL: regexp.MustCompile(`^CREATE STAGE`)})
	rs := sink.Check(context.Background())
	if deny.Hits() != 1 {
		t.Fatalf("the fault hit %d statements", deny.Hits())
	}
	f := failed(rs)
	if len(f) != 1 || f[0].Name != "snowflake: stage OFFLOAD_STAGE (create or use)" {
		t.Fatalf("failed checks: %+v\nall: %v", f, checkNames(rs))
	}
	if !strings.Contains(f[0].Detail, "statement: CREATE STAGE IF NOT EXISTS OFFLOAD_STAGE") || !strings.Contains(f[0].Detail, "003001") ||
		!strings.Contains(f[0].Detail, "Insufficient privileges") || !strings.Contains(f[0].Fix, "GRANT CREATE STAGE ON SCHEMA") {
		t.Fatalf("detail %q, fix %q", f[0].Detail, f[0].Fix)
	}
	if names := strings.Join(checkNames(rs), "\n"); strings.Contains(names, "PUT") || !strings.Contains(names, "snowflake: drop table") {
		t.Fatalf("checks after the denied stage:\n%s", names)
	}
	noScratchLeft(t, w)

	w.srv.Inject(snowtest.Fault{Kind: snowtest.FaultInsufficientPrivileges, SQL: regexp.MustCompile(`^MERGE`)})
	rs = sink.Check(context.Background())
	f = failed(rs)
	if len(f) != 1 || f[0].Name != "snowflake: merge (scratch table)" || !strings.Contains(f[0].Fix, "GRANT INSERT, UPDATE") {
		t.Fatalf("failed checks: %+v\nall: %v", f, checkNames(rs))
	}
	noScratchLeft(t, w)
}
