package snowtest_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/offload/offload/internal/snowtest"
)

// TestDMLWaitsForTheTableLock: an UPDATE in one session's transaction
// makes a MERGE of the same table in another session wait until the
// first commits; the MERGE, begun after the lock was granted, sees the
// committed row. INSERT takes no lock.
func TestDMLWaitsForTheTableLock(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	a, b := open(t, srv.Config("loader")), open(t, srv.Config("loader"))
	exec(t, a, "CREATE TABLE t (k VARCHAR, v NUMBER)")
	exec(t, a, "INSERT INTO t VALUES ('lock', 0)")
	ctx := ctxT(t)
	holder, err := a.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec("UPDATE t SET v = 1 WHERE k = 'lock'"); err != nil {
		t.Fatal(err)
	}
	exec(t, b, "INSERT INTO t VALUES ('free', 0)") // no lock: does not wait
	merged := make(chan error, 1)
	go func() {
		tx, err := b.BeginTx(ctx, nil)
		if err != nil {
			merged <- err
			return
		}
		if _, err := tx.Exec("MERGE INTO t USING (SELECT 'new' AS k) s ON t.k = s.k WHEN NOT MATCHED THEN INSERT (k, v) VALUES (s.k, 2)"); err != nil {
			_ = tx.Rollback()
			merged <- err
			return
		}
		merged <- tx.Commit()
	}()
	select {
	case err := <-merged:
		t.Fatalf("the MERGE of a locked table did not wait: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := holder.Exec("INSERT INTO t VALUES ('new', 1)"); err != nil {
		t.Fatal(err)
	}
	if err := holder.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-merged:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the MERGE still waits 10s after the holder committed")
	}
	if n := count(t, a, "SELECT count(*) FROM t WHERE k = 'new'"); n != 1 {
		t.Fatalf("%d rows 'new': the waiting MERGE did not see the committed row", n)
	}
}

// TestDetachedTransactionRolledBack: a transaction whose client stopped
// sending statements holds its table's lock until it has been idle for
// DetachedTimeout; then the waiter rolls it back and goes on. Until then
// a waiter gives up after LockTimeout with 000625.
func TestDetachedTransactionRolledBack(t *testing.T) {
	srv := newServer(t, snowtest.Options{LockTimeout: 300 * time.Millisecond, DetachedTimeout: 3 * time.Second})
	a, b := open(t, srv.Config("loader")), open(t, srv.Config("loader"))
	exec(t, a, "CREATE TABLE t (k VARCHAR, v NUMBER)")
	exec(t, a, "INSERT INTO t VALUES ('lock', 0)")
	detached, err := a.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := detached.Exec("UPDATE t SET v = 1"); err != nil {
		t.Fatal(err)
	}
	// The client goes away without COMMIT or ROLLBACK.
	if _, err := b.ExecContext(ctxT(t), "UPDATE t SET v = 2"); snowflakeCode(err) != 625 {
		t.Fatalf("UPDATE of a table locked by a live transaction: %v, want 000625 after the lock timeout", err)
	}
	time.Sleep(3 * time.Second)
	exec(t, b, "UPDATE t SET v = 2")
	if n := count(t, b, "SELECT count(*) FROM t WHERE v = 2"); n != 1 {
		t.Fatalf("%d rows updated after the detached transaction was rolled back, want 1", n)
	}
	// The client of the rolled back transaction comes back: what it
	// sends fails, its COMMIT too, and nothing of it is applied.
	if _, err := detached.Exec("INSERT INTO t VALUES ('late', 3)"); snowflakeCode(err) != 625 {
		t.Fatalf("statement in a transaction rolled back as detached: %v, want 000625", err)
	}
	if err := detached.Commit(); snowflakeCode(err) != 625 {
		t.Fatalf("COMMIT of a transaction rolled back as detached: %v, want 000625", err)
	}
	if n := count(t, b, "SELECT count(*) FROM t WHERE v <> 2"); n != 0 {
		t.Fatalf("%d rows of the rolled back transaction", n)
	}
}

// TestAbortTransaction: CURRENT_TRANSACTION() names a session's open
// transaction and SYSTEM$ABORT_TRANSACTION ends it from another session,
// its locks with it; a transaction no longer running is left alone.
func TestAbortTransaction(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	a, b := open(t, srv.Config("loader")), open(t, srv.Config("loader"))
	exec(t, a, "CREATE TABLE t (k VARCHAR, v NUMBER)")
	exec(t, a, "INSERT INTO t VALUES ('lock', 0)")
	var none sql.NullString
	if err := a.QueryRowContext(ctxT(t), "SELECT CURRENT_TRANSACTION()").Scan(&none); err != nil || none.Valid {
		t.Fatalf("CURRENT_TRANSACTION() outside a transaction: %v, %v", none, err)
	}
	tx, err := a.BeginTx(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("UPDATE t SET v = 1"); err != nil {
		t.Fatal(err)
	}
	var id string
	if err := tx.QueryRow("SELECT CURRENT_TRANSACTION()").Scan(&id); err != nil || id == "" {
		t.Fatalf("CURRENT_TRANSACTION(): %q, %v", id, err)
	}
	var msg string
	if err := b.QueryRowContext(ctxT(t), "SELECT SYSTEM$ABORT_TRANSACTION("+id+")").Scan(&msg); err != nil || !strings.Contains(msg, "aborted") {
		t.Fatalf("SYSTEM$ABORT_TRANSACTION: %q, %v", msg, err)
	}
	exec(t, b, "UPDATE t SET v = 2") // the lock went with the transaction
	if err := tx.Commit(); snowflakeCode(err) != 625 {
		t.Fatalf("COMMIT of an aborted transaction: %v, want 000625", err)
	}
	if err := b.QueryRowContext(ctxT(t), "SELECT SYSTEM$ABORT_TRANSACTION("+id+")").Scan(&msg); err != nil || !strings.Contains(msg, "not running") {
		t.Fatalf("SYSTEM$ABORT_TRANSACTION of an ended transaction: %q, %v", msg, err)
	}
	if n := count(t, b, "SELECT count(*) FROM t WHERE v = 2"); n != 1 {
		t.Fatalf("%d rows with v = 2, want 1", n)
	}
}
