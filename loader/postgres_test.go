package loader

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offload/offload/internal/deliverytest"
	"github.com/offload/offload/internal/pgproxy"
)

// pgServer is a schema of its own on the real PostgreSQL 15 server of
// OFFLOAD_TEST_POSTGRES (scripts/postgres.sh), reached directly and
// through a proxy that injects faults.
type pgServer struct {
	cfg    *pgx.ConnConfig
	db     *sql.DB
	schema string
	proxy  *pgproxy.Proxy
}

func newPgServer(t *testing.T) *pgServer {
	t.Helper()
	cfg, db, schema := deliverytest.PostgresSchema(t)
	proxy, err := pgproxy.New(fmt.Sprintf("%s:%d", cfg.Host, cfg.Port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	return &pgServer{cfg: cfg, db: db, schema: schema, proxy: proxy}
}

// sink returns a postgres sink on the server's schema through the proxy,
// its options adjusted by tune.
func (s *pgServer) sink(t testing.TB, tune func(*PostgresOptions)) *Postgres {
	t.Helper()
	a := s.proxy.Addr()
	o := PostgresOptions{Host: a.IP.String(), Port: a.Port, User: s.cfg.User, Password: s.cfg.Password,
		Database: s.cfg.Database, Schema: s.schema, SSLMode: "disable", ApplianceID: "lt",
		ConnectTimeout: 2 * time.Second, Logger: quietLogger()}
	tune(&o)
	p, err := NewPostgres(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func (s *pgServer) query(t *testing.T, q string) []string {
	t.Helper()
	return deliverytest.QueryStrings(t, s.db, strings.ReplaceAll(q, "PUBLIC.", s.schema+"."))
}

// check asserts the delivery contract on the server's tables.
func (s *pgServer) check(t *testing.T, want map[string]bool, batches int) {
	t.Helper()
	deliverytest.CheckTables(t, s.db, s.schema+".", want, batches, true)
}

func TestPostgresLoadsEveryBatchOnce(t *testing.T) {
	s := newPgServer(t)
	e := testOutbox(t, 3, 40)
	want := outboxEventIDs(t, e)
	sink := s.sink(t, func(*PostgresOptions) {})
	l := shipAll(t, e, fastOptions(e, sink, t.TempDir()))
	s.check(t, want, 3)
	if st := l.Status(); st.Loaded != 3 || st.Retries != 0 {
		t.Fatalf("status %+v", st)
	}
	checkReconcile(t, e, sink, func() { s.query(t, `DELETE FROM PUBLIC.OFFLOAD_TRANSACTIONS WHERE EVENT_ID = 'e-7'`) })
}

// TestPostgresLostCommitAnswer: the server applies a COMMIT whose answer
// never reaches the sink; the retry finds the batch in the ledger and
// loads nothing twice.
func TestPostgresLostCommitAnswer(t *testing.T) {
	s := newPgServer(t)
	e := testOutbox(t, 2, 30)
	want := outboxEventIDs(t, e)
	s.proxy.LoseCommit.Store(1)
	l := shipAll(t, e, fastOptions(e, s.sink(t, func(*PostgresOptions) {}), t.TempDir()))
	if s.proxy.Lost() != 1 {
		t.Fatalf("%d COMMIT answers lost, want 1", s.proxy.Lost())
	}
	st := l.Status()
	if st.Retries != 1 || st.Loaded != 1 || st.AlreadyLoaded != 1 {
		t.Fatalf("status %+v: want one retry, one batch loaded and the other found in the ledger", st)
	}
	s.check(t, want, 2)
}

// TestPostgresCommitAfterTheLoaderGaveUp: the first load's COMMIT runs a
// deferred trigger that waits on a lock the test holds; the sink loses
// its connection meanwhile and gives up, and the server goes on with the
// COMMIT. The retry's ledger lookup runs before that COMMIT ends and does
// not see the batch; its transaction waits on the ledger's lock, and once
// the test lets the COMMIT end it finds the batch and marks it shipped.
// (Without the lock, its ledger INSERT waited on the first's row and then
// failed the primary key: a constraint violation, which parks the batch.)
func TestPostgresCommitAfterTheLoaderGaveUp(t *testing.T) {
	s := newPgServer(t)
	e := testOutbox(t, 2, 20)
	want := outboxEventIDs(t, e)
	sink := s.sink(t, func(*PostgresOptions) {})
	if err := sink.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	held := s.holdFirstLedgerCommit(t)
	steps, done := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(done)
		defer held.release()
		steps <- s.giveUpDuringCommit(held.key)
	}()
	t.Cleanup(func() { <-done })
	l := shipAll(t, e, fastOptions(e, sink, t.TempDir()))
	if err := <-steps; err != nil {
		t.Fatal(err)
	}
	s.check(t, want, 2)
	if st := l.Status(); st.Loaded != 1 || st.AlreadyLoaded != 1 || st.Retries == 0 || st.Parked != 0 {
		t.Fatalf("status %+v: want the batch found in the ledger after a retry", st)
	}
}

// heldCommit is an advisory lock, held by the test on a session of its
// own, that the first COMMIT of a ledger row waits on.
type heldCommit struct {
	key  int64
	conn *sql.Conn
}

// holdFirstLedgerCommit takes the lock and installs the trigger. A cancel
// request does not end the wait: the trigger catches it and waits again,
// so the COMMIT ends only when the lock is released.
func (s *pgServer) holdFirstLedgerCommit(t *testing.T) *heldCommit {
	t.Helper()
	ctx := context.Background()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := &heldCommit{key: 1 + rand.Int64N(1<<31-1), conn: conn} // objid alone names it in pg_locks
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SELECT pg_advisory_lock(%d)", h.key)); err != nil {
		t.Fatal(err)
	}
	s.query(t, `CREATE SEQUENCE PUBLIC.HELD_ONCE`)
	s.query(t, fmt.Sprintf(`CREATE FUNCTION PUBLIC.HELD_COMMIT() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF nextval('PUBLIC.HELD_ONCE') = 1 THEN
		LOOP
			BEGIN
				PERFORM pg_advisory_xact_lock(%d);
				EXIT;
			EXCEPTION WHEN query_canceled THEN
			END;
		END LOOP;
	END IF;
	RETURN NULL;
END $$`, h.key))
	s.query(t, `CREATE CONSTRAINT TRIGGER HELD_COMMIT AFTER INSERT ON PUBLIC.OFFLOAD_LOAD_LEDGER
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION PUBLIC.HELD_COMMIT()`)
	return h
}

// release lets the held COMMIT end.
func (h *heldCommit) release() {
	_, _ = h.conn.ExecContext(context.Background(), fmt.Sprintf("SELECT pg_advisory_unlock(%d)", h.key))
}

// giveUpDuringCommit waits for a COMMIT held on lock key, drops the sink's
// connections (its attempt fails; the server goes on), then waits for the
// retry's transaction to wait on the ledger's lock.
func (s *pgServer) giveUpDuringCommit(key int64) error {
	if err := s.await("the first COMMIT waiting in the trigger", fmt.Sprintf(
		`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %d AND NOT granted`, key)); err != nil {
		return err
	}
	s.proxy.DropAll()
	return s.await("the retry waiting on the ledger's lock", fmt.Sprintf(`SELECT count(*) FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.relation = to_regclass('%s.offload_load_ledger') AND NOT l.granted
AND a.query ILIKE 'LOCK TABLE %%'`, s.schema))
}

// await polls count query q until it counts something (bounded: 30 s,
// for a machine busy with the other packages' tests). On a timeout it
// says what the server's other sessions were doing.
func (s *pgServer) await(what, q string) error {
	const bound = 30 * time.Second
	for deadline := time.Now().Add(bound); ; time.Sleep(10 * time.Millisecond) {
		var n int
		if err := s.db.QueryRow(q).Scan(&n); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if n > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not happen within %s; the sessions:\n%s", what, bound, s.sessions())
		}
	}
}

// sessions lists the server's other sessions: state, what they wait on,
// their query.
func (s *pgServer) sessions() string {
	rows, err := s.db.Query(`SELECT pid, coalesce(state, ''), coalesce(wait_event_type, ''), coalesce(wait_event, ''), left(query, 120)
FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var pid int
		var state, waitType, wait, query string
		if err := rows.Scan(&pid, &state, &waitType, &wait, &query); err != nil {
			return err.Error()
		}
		fmt.Fprintf(&b, "%d %s %s/%s: %s\n", pid, state, waitType, wait, query)
	}
	return b.String()
}

// TestPostgresOutage: with the server unreachable the loader retries and
// opens its circuit; once it is back the backlog drains, exactly once.
func TestPostgresOutage(t *testing.T) {
	s := newPgServer(t)
	checkOutage(t, s.sink(t, func(*PostgresOptions) {}), func() { s.proxy.Refuse.Store(true); s.proxy.DropAll() },
		func() error { s.proxy.Refuse.Store(false); return nil },
		func(want map[string]bool) { s.check(t, want, 2) })
}

// TestPostgresSchemaMismatchParks: a transactions table that cannot take
// the rows is a permanent error: the batch is parked with the server's
// message, nothing of it is loaded, and it loads after the fix.
func TestPostgresSchemaMismatchParks(t *testing.T) {
	s := newPgServer(t)
	checkParks(t, s.sink(t, func(*PostgresOptions) {}),
		func() { s.query(t, `CREATE TABLE PUBLIC.OFFLOAD_TRANSACTIONS (EVENT_ID VARCHAR)`) },
		func() { s.query(t, `DROP TABLE PUBLIC.OFFLOAD_TRANSACTIONS`) },
		func() string {
			if n := s.query(t, `SELECT count(*) FROM PUBLIC.OFFLOAD_LOAD_LEDGER`); n[0] != "0" {
				t.Fatalf("a parked batch has a ledger row: %v", n)
			}
			return s.query(t, `SELECT count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS`)[0]
		}, "SQLSTATE 42703", func(want map[string]bool) { s.check(t, want, 1) })
}

// TestPostgresMergeRowsKeepsDuplicatesOut: checkMergeRows on the
// postgres sink.
func TestPostgresMergeRowsKeepsDuplicatesOut(t *testing.T) {
	for _, merge := range []bool{false, true} {
		t.Run(fmt.Sprintf("merge=%v", merge), func(t *testing.T) {
			s := newPgServer(t)
			checkMergeRows(t, merge, func(appliance string) mergeSink {
				return s.sink(t, func(o *PostgresOptions) { o.MergeRows, o.ApplianceID = merge, appliance })
			}, func() string {
				return s.query(t, `SELECT count(*), count(DISTINCT EVENT_ID) FROM PUBLIC.OFFLOAD_TRANSACTIONS`)[0]
			}, true)
		})
	}
}

// TestPostgresMergeRowsConcurrentAppliances: checkConcurrentMergeRows on
// the postgres sink.
func TestPostgresMergeRowsConcurrentAppliances(t *testing.T) {
	s := newPgServer(t)
	checkConcurrentMergeRows(t, func(appliance string) mergeSink {
		return s.sink(t, func(o *PostgresOptions) { o.MergeRows, o.ApplianceID = true, appliance })
	}, func() string {
		return s.query(t, `SELECT count(*), count(DISTINCT EVENT_ID) FROM PUBLIC.OFFLOAD_TRANSACTIONS`)[0]
	})
}

// TestPostgresWindowVersions: a window loaded again with an older version
// keeps the newer one; a newer version replaces it. Across appliance
// lifetimes (a data directory lost), the row counting more events wins
// whatever the versions: a partial re-emission never replaces a fuller
// row, and a fuller one replaces it even at a lower version.
func TestPostgresWindowVersions(t *testing.T) {
	s := newPgServer(t)
	sink := s.sink(t, func(*PostgresOptions) {})
	ctx := context.Background()
	if err := sink.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := sink.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type row struct{ version, count int }
	load := func(id string, rows ...row) {
		t.Helper()
		parts := sink.staging(id)[1:]
		parts[0].rows = int64(len(rows))
		if err := sink.createStaging(ctx, conn, parts); err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if _, err := conn.ExecContext(ctx, fmt.Sprintf(`INSERT INTO %s VALUES ('s1', 'EUR', 'order_placed', 'web',
				'2026-01-01 10:00:00+00', '2026-01-01 10:01:00+00', %d, %d, 0, 0, 1, 1, 1, %d, now(), '%s')`, parts[0].table, r.count, r.count, r.version, id)); err != nil {
				t.Fatal(err)
			}
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range sink.mergeWindows(parts[0].table) {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	check := func(after, want string) {
		t.Helper()
		if got := s.query(t, `SELECT VERSION, COUNT, BATCH_ID FROM PUBLIC.OFFLOAD_WINDOWS`); strings.Join(got, ",") != want {
			t.Fatalf("after %s: %v, want %s", after, got, want)
		}
	}
	load("lt-1", row{2, 2}, row{5, 5}, row{3, 3})
	load("lt-2", row{4, 4})
	check("versions 2, 5, 3 then 4", "5|5|lt-1")
	load("lt-3", row{6, 6})
	check("version 6", "6|6|lt-3")
	load("lt-4", row{9, 4})
	check("a partial window at a higher version", "6|6|lt-3")
	load("lt-5", row{1, 7})
	check("a fuller window at a lower version", "1|7|lt-5")
	load("lt-6", row{2, 7})
	check("as many events at a higher version", "2|7|lt-6")
}

// TestPostgresCheck: the preflight passes on a usable schema and leaves
// nothing behind, and names the schema a user cannot use.
func TestPostgresCheck(t *testing.T) {
	s := newPgServer(t)
	for _, r := range s.sink(t, func(*PostgresOptions) {}).Check(context.Background()) {
		if !r.OK {
			t.Errorf("%s: %s (%s)", r.Name, r.Detail, r.Fix)
		}
	}
	if left := s.query(t, `SELECT count(*) FROM information_schema.tables WHERE table_schema = '`+s.schema+`'`); left[0] != "0" {
		t.Fatalf("the check left %s tables", left[0])
	}
	res := s.sink(t, func(o *PostgresOptions) { o.Schema = "no_such_schema" }).Check(context.Background())
	last := res[len(res)-1]
	if last.OK || !strings.Contains(last.Name, "schema no_such_schema") || last.Fix == "" || strings.Contains(last.Detail, s.cfg.Password) {
		t.Fatalf("check of a missing schema: %+v", res)
	}
	checkLedgerLockPrivilege(t, s)
}

// checkLedgerLockPrivilege: a user given SELECT and INSERT on an existing
// ledger, but not UPDATE, cannot take the lock every load takes; the
// check says so and what to grant, and passes once UPDATE is granted.
func checkLedgerLockPrivilege(t *testing.T, s *pgServer) {
	t.Helper()
	if err := s.sink(t, func(*PostgresOptions) {}).Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	role, pw := "offload_check_"+randomHex(4), "Check-"+randomHex(6)
	s.query(t, `CREATE ROLE `+role+` LOGIN PASSWORD '`+pw+`'`)
	t.Cleanup(func() {
		if _, err := s.db.Exec(`DROP OWNED BY ` + role + `; DROP ROLE ` + role); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	s.query(t, `GRANT USAGE, CREATE ON SCHEMA `+s.schema+` TO `+role)
	s.query(t, `GRANT SELECT, INSERT ON PUBLIC.OFFLOAD_LOAD_LEDGER TO `+role)
	check := func() []CheckResult {
		return s.sink(t, func(o *PostgresOptions) { o.User, o.Password = role, pw }).Check(context.Background())
	}
	res := check()
	last := res[len(res)-1]
	if last.OK || last.Name != "postgres: the ledger's lock" || !strings.Contains(last.Detail, "42501") ||
		!strings.Contains(last.Fix, "GRANT SELECT, INSERT, UPDATE ON OFFLOAD_LOAD_LEDGER") {
		t.Fatalf("check without UPDATE on the ledger: %+v", res)
	}
	s.query(t, `GRANT UPDATE ON PUBLIC.OFFLOAD_LOAD_LEDGER TO `+role)
	for _, r := range check() {
		if !r.OK {
			t.Errorf("with UPDATE granted: %s: %s (%s)", r.Name, r.Detail, r.Fix)
		}
	}
}

// TestPostgresOptionsNameTheOption: each mistake names its option, and
// the password never shows.
func TestPostgresOptionsNameTheOption(t *testing.T) {
	_, err := NewPostgres(PostgresOptions{Host: "h", Password: "pw-Secret-1", Schema: "a-b", SSLMode: "maybe", Port: 70000})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"warehouse.user", "warehouse.database", "warehouse.schema: \"a-b\"", "warehouse.sslmode", "warehouse.port"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "pw-Secret-1") {
		t.Errorf("the error shows the password: %v", err)
	}
}
