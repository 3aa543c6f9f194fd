package redshifttest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

func open(t *testing.T, s *Server, password string) *sql.DB {
	t.Helper()
	host, port := s.Addr()
	user, _ := s.User()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=dev sslmode=disable connect_timeout=2", host, port, user))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = password
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// openNew starts a server and logs in to it as its user.
func openNew(t *testing.T) *sql.DB {
	t.Helper()
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	_, pw := s.User()
	return open(t, s, pw)
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestRefusesWhatRedshiftRefuses: the SQL PostgreSQL takes and Redshift
// does not is answered 0A000; the Redshift forms work.
func TestRefusesWhatRedshiftRefuses(t *testing.T) {
	db := openNew(t)
	for _, q := range []string{"CREATE TABLE w (k VARCHAR(65535) PRIMARY KEY, v BIGINT)", "CREATE TABLE src (k VARCHAR(65535), v BIGINT)",
		"INSERT INTO src VALUES ('a', 1), ('b', 2)",
		"MERGE INTO w USING src s ON w.k = s.k WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT (k, v) VALUES (s.k, s.v)"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var n int64
	if err := db.QueryRow("SELECT COUNT(*) FROM w WHERE v > $1", int64(0)).Scan(&n); err != nil || n != 2 {
		t.Fatalf("count after MERGE: %d, %v", n, err)
	}
	for _, q := range []string{
		"MERGE INTO w t USING src s ON t.k = s.k WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT (k, v) VALUES (s.k, s.v)",
		"MERGE INTO w USING (SELECT * FROM src) s ON w.k = s.k WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT (k, v) VALUES (s.k, s.v)",
		"MERGE INTO w USING src s ON w.k = s.k WHEN MATCHED AND s.v > w.v THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT (k, v) VALUES (s.k, s.v)",
		"MERGE INTO w USING src s ON w.k = s.k WHEN NOT MATCHED THEN INSERT (k, v) VALUES (s.k, s.v)",
		"INSERT INTO w VALUES ('a', 3) ON CONFLICT DO NOTHING",
		"COPY w FROM STDIN",
	} {
		if _, err := db.Exec(q); sqlState(err) != "0A000" {
			t.Errorf("%s: %v, want SQLSTATE 0A000", q, err)
		}
	}
}

// TestLoginAndFaults: a wrong password is refused with 28P01; an
// injected statement failure carries its SQLSTATE; an answer lost after
// COMMIT leaves the transaction committed; refused connections refuse.
func TestLoginAndFaults(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := open(t, s, "wrong").Ping(); err == nil {
		t.Fatal("a wrong password logged in")
	}
	_, pw := s.User()
	db := open(t, s, pw)
	if _, err := db.Exec("CREATE TABLE t (v BIGINT)"); err != nil {
		t.Fatal(err)
	}
	in := s.Inject(Fault{Kind: FaultStatementError, SQL: regexp.MustCompile(`^INSERT`), Code: "53100"})
	if _, err := db.Exec("INSERT INTO t VALUES (1)"); sqlState(err) != "53100" || in.Hits() != 1 {
		t.Fatalf("injected failure: %v, hits %d", err, in.Hits())
	}
	lost := s.Inject(Fault{Kind: FaultAnswerLost, SQL: regexp.MustCompile(`(?i)^commit`)})
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO t VALUES ($1)", int64(7)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err == nil {
		t.Fatal("COMMIT answered although its answer was to be lost")
	}
	if lost.Applied() != 1 {
		t.Fatalf("the COMMIT whose answer was lost ran %d times, want 1", lost.Applied())
	}
	var v int64
	if err := s.DB().QueryRow("SELECT v FROM t").Scan(&v); err != nil || v != 7 {
		t.Fatalf("after the lost answer the table holds %d (%v), want the committed 7", v, err)
	}
	s.RefuseConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := open(t, s, pw).PingContext(ctx); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("ping with connections refused: %v", err)
	}
	if err := s.AcceptConnections(); err != nil {
		t.Fatal(err)
	}
	if err := open(t, s, pw).PingContext(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLockWaitsForTheHolder: a LOCK on a table another transaction holds
// waits until that transaction commits; a LOCK outside a transaction does
// not keep the table.
func TestLockWaitsForTheHolder(t *testing.T) {
	db := openNew(t)
	if _, err := db.Exec("CREATE TABLE ledger (id VARCHAR(64))"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("LOCK ledger"); err != nil {
		t.Fatalf("LOCK outside a transaction: %v", err)
	}
	ctx := context.Background()
	holder, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec("LOCK TABLE ledger"); err != nil {
		t.Fatal(err)
	}
	locked := make(chan error, 1)
	go func() {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			locked <- err
			return
		}
		defer func() { _ = tx.Rollback() }()
		if _, err := tx.Exec("LOCK ledger"); err != nil {
			locked <- err
			return
		}
		var n int64
		locked <- tx.QueryRow("SELECT COUNT(*) FROM ledger").Scan(&n)
		if n != 1 {
			locked <- fmt.Errorf("the waiter sees %d rows after the holder's commit, want 1", n)
		}
	}()
	select {
	case err := <-locked:
		t.Fatalf("LOCK of a held table returned at once: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := holder.Exec("INSERT INTO ledger VALUES ('b1')"); err != nil {
		t.Fatal(err)
	}
	if err := holder.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-locked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("LOCK still waits 10s after the holder committed")
	}
	select {
	case err := <-locked:
		t.Fatal(err)
	default:
	}
}

// TestKeysNotEnforced: PRIMARY KEY and UNIQUE are taken, as Redshift
// takes them, and not enforced.
func TestKeysNotEnforced(t *testing.T) {
	db := openNew(t)
	for _, q := range []string{
		"CREATE TABLE ledger (id VARCHAR(64) NOT NULL, n BIGINT, PRIMARY KEY (id))",
		"CREATE TABLE w (k VARCHAR(64) PRIMARY KEY, u BIGINT UNIQUE)",
		"INSERT INTO ledger VALUES ('b1', 1), ('b1', 2)",
		"INSERT INTO w VALUES ('a', 1), ('a', 1)",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, table := range []string{"ledger", "w"} {
		var n int64
		if err := db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil || n != 2 {
			t.Fatalf("%s holds %d rows (%v), want both", table, n, err)
		}
	}
}

// TestFaultSlowCommit: a COMMIT held by FaultSlow commits after its
// client gave up and closed the connection.
func TestFaultSlowCommit(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	host, port := s.Addr()
	user, pw := s.User()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=dev sslmode=disable connect_timeout=2", host, port, user, pw))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{"CREATE TABLE t (v BIGINT)", "BEGIN", "INSERT INTO t VALUES (7)"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	in := s.Inject(Fault{Kind: FaultSlow, SQL: regexp.MustCompile(`(?i)^commit`), Hang: time.Second})
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := conn.Exec(cctx, "COMMIT"); err == nil {
		t.Fatal("the held COMMIT answered within 200ms")
	}
	count := func() int64 {
		var n int64
		if err := s.DB().QueryRow("SELECT COUNT(*) FROM t").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 0 || in.Hits() != 1 {
		t.Fatalf("while the COMMIT is held: %d rows, %d hits; want 0 and 1", n, in.Hits())
	}
	for deadline := time.Now().Add(10 * time.Second); in.Applied() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the COMMIT its client gave up on never ran")
		}
	}
	if n := count(); n != 1 {
		t.Fatalf("after the held COMMIT ran: %d rows, want 1", n)
	}
}
