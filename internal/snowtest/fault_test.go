package snowtest_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offload/offload/internal/snowtest"
)

var commitSQL = regexp.MustCompile(`^COMMIT`)

// TestFaultHTTPStatus: a 5xx or 429 from Snowflake's front end. The driver
// retries these itself (retry.go) with a 1-16 s backoff; with
// Config.RequestTimeout at 1 s it gives up after the first answer and
// returns a plain error (not a *SnowflakeError) naming the status.
func TestFaultHTTPStatus(t *testing.T) {
	for _, status := range []int{500, 503, 429} {
		srv := newServer(t, snowtest.Options{})
		db := open(t, srv.Config("loader"))
		exec(t, db, "SELECT 1")
		f := srv.Inject(snowtest.Fault{Kind: snowtest.FaultHTTPStatus, Endpoint: snowtest.EndpointQuery, Status: status})
		_, err := db.ExecContext(ctxT(t), "SELECT 1")
		if err == nil || snowflakeCode(err) != -1 || !strings.Contains(err.Error(), "HTTP Status: "+strconv.Itoa(status)) {
			t.Fatalf("HTTP %d: error %v, want a plain error naming the status", status, err)
		}
		if f.Hits() != 1 {
			t.Fatalf("fault hit %d times, want 1", f.Hits())
		}
		exec(t, db, "SELECT 1") // the session survives
	}
	// Other 4xx are not retried: a *SnowflakeError 261000.
	srv := newServer(t, snowtest.Options{})
	db := open(t, srv.Config("loader"))
	srv.Inject(snowtest.Fault{Kind: snowtest.FaultHTTPStatus, Endpoint: snowtest.EndpointQuery, Status: 403})
	if _, err := db.ExecContext(ctxT(t), "SELECT 1"); snowflakeCode(err) != 261000 {
		t.Fatalf("HTTP 403: error %v, want 261000", err)
	}
}

// TestFaultHTTPStatusRetriedByDriver: with the driver's default retries
// (RequestTimeout 0) one 503 is invisible: the driver sleeps 1-3 s and
// sends the request again.
func TestFaultHTTPStatusRetriedByDriver(t *testing.T) {
	t.Parallel() // the driver sleeps 1-3 s before retrying
	srv := newServer(t, snowtest.Options{})
	cfg := srv.Config("loader")
	//lint:ignore SA1019 deprecated without a replacement in gosnowflake v1.19.1
	cfg.RequestTimeout = 0
	db := open(t, cfg)
	exec(t, db, "CREATE TABLE t (id INT)")
	f := srv.Inject(snowtest.Fault{Kind: snowtest.FaultHTTPStatus, SQL: regexp.MustCompile(`^INSERT`), Status: 503})
	exec(t, db, "INSERT INTO t VALUES (1)")
	if f.Hits() != 1 || count(t, db, "SELECT count(*) FROM t") != 1 {
		t.Fatalf("fault hits %d; the retried INSERT must run once", f.Hits())
	}
}

// TestFaultRefusedConnections: the server stops accepting connections. The
// driver gets ECONNREFUSED (wrapped in *url.Error, not retried with
// RequestTimeout 1 s) and carries on with the same session once the
// server is back.
func TestFaultRefusedConnections(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	db := open(t, srv.Config("loader"))
	exec(t, db, "CREATE TABLE t (id INT)")
	srv.RefuseConnections()
	// The first request may still go out on the kept-alive connection the
	// server just closed, and see EOF; the next one is refused.
	_, err := db.ExecContext(ctxT(t), "INSERT INTO t VALUES (1)")
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T), want a *url.Error", err, err)
	}
	_, err = db.ExecContext(ctxT(t), "INSERT INTO t VALUES (1)")
	if !errors.As(err, &ue) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("error %v (%T), want a *url.Error wrapping ECONNREFUSED", err, err)
	}
	if err := srv.AcceptConnections(); err != nil {
		t.Fatal(err)
	}
	exec(t, db, "INSERT INTO t VALUES (2)")
	if n := count(t, db, "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
}

// TestFaultHang: the warehouse does not answer. A context deadline ends
// the wait with context.DeadlineExceeded, and the driver then sends an
// abort request for the query.
func TestFaultHang(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	db := open(t, srv.Config("loader"))
	exec(t, db, "SELECT 1")
	f := srv.Inject(snowtest.Fault{Kind: snowtest.FaultHang, Endpoint: snowtest.EndpointQuery, Hang: time.Minute})
	ctx, cancel := context.WithTimeout(ctxT(t), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := db.ExecContext(ctx, "SELECT 1")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("error %v after %v, want context.DeadlineExceeded soon after 300ms", err, time.Since(start))
	}
	if f.Hits() != 1 || srv.Requests(snowtest.EndpointAbort) != 1 {
		t.Fatalf("hang hits %d, abort requests %d; want 1 and 1", f.Hits(), srv.Requests(snowtest.EndpointAbort))
	}
	// A hang shorter than the client's patience is only a slow answer.
	srv.Inject(snowtest.Fault{Kind: snowtest.FaultHang, Endpoint: snowtest.EndpointQuery, Hang: 50 * time.Millisecond})
	exec(t, db, "SELECT 1")
}

// TestFaultSlowCommit: the warehouse runs a COMMIT after the client gave
// up on it. The client gets context.DeadlineExceeded, the commit is
// applied all the same, and SYSTEM$ABORT_TRANSACTION from another session
// returns only once it has been, even while the client closes the
// session: after it, the table tells the truth.
func TestFaultSlowCommit(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	db := open(t, srv.Config("loader"))
	exec(t, db, "CREATE TABLE t (id INT)")
	// The transaction by statements on one connection, which is closed
	// (its session ended) after the failed COMMIT.
	conn, err := db.Conn(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, q := range []string{"BEGIN", "INSERT INTO t VALUES (1)"} {
		if _, err := conn.ExecContext(ctxT(t), q); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.QueryRowContext(ctxT(t), "SELECT CURRENT_TRANSACTION()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	const slow = 2 * time.Second
	f := srv.Inject(snowtest.Fault{Kind: snowtest.FaultSlow, SQL: commitSQL, Hang: slow})
	ctx, cancel := context.WithTimeout(ctxT(t), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := conn.ExecContext(ctx, "COMMIT"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("commit error %v, want context.DeadlineExceeded", err)
	}
	closed := make(chan error, 1)
	go func() {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		closed <- conn.Close()
	}()
	time.Sleep(200 * time.Millisecond) // the session's close reaches the server and waits
	other := open(t, srv.Config("loader"))
	var answer string
	if err := other.QueryRowContext(ctxT(t), "SELECT SYSTEM$ABORT_TRANSACTION("+id+")").Scan(&answer); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); f.Hits() != 1 || took < slow || answer != "transaction ["+id+"] is not running." {
		t.Fatalf("fault hits %d, abort answered %q after %v; want 1, not running, after %v", f.Hits(), answer, took, slow)
	}
	if n := count(t, other, "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("%d rows, want the slow commit's 1", n)
	}
	<-closed
}

// TestFaultSessionExpired: the driver renews an expired session token with
// its master token (/session/token-request) and re-sends the query: the
// caller sees nothing. When the master token has expired too, it gets
// 390114 and must log in again (a new connection).
func TestFaultSessionExpired(t *testing.T) {
	srv := newServer(t, snowtest.Options{SessionTTL: 200 * time.Millisecond, MasterTTL: time.Hour})
	db := open(t, srv.Config("loader"))
	exec(t, db, "CREATE TABLE t (id INT)")
	f := srv.Inject(snowtest.Fault{Kind: snowtest.FaultSessionExpired, SQL: regexp.MustCompile(`^INSERT`)})
	exec(t, db, "INSERT INTO t VALUES (1)")
	time.Sleep(300 * time.Millisecond) // the token's own expiry
	exec(t, db, "INSERT INTO t VALUES (2)")
	if f.Hits() != 1 || srv.Requests(snowtest.EndpointRenew) != 2 {
		t.Fatalf("fault hits %d, renewals %d; want 1 and 2", f.Hits(), srv.Requests(snowtest.EndpointRenew))
	}
	if n := count(t, db, "SELECT count(*) FROM t"); n != 2 {
		t.Fatalf("%d rows, want 2", n)
	}

	short := newServer(t, snowtest.Options{SessionTTL: 100 * time.Millisecond, MasterTTL: 100 * time.Millisecond})
	db = open(t, short.Config("loader"))
	exec(t, db, "SELECT 1")
	time.Sleep(200 * time.Millisecond)
	if _, err := db.ExecContext(ctxT(t), "SELECT 1"); snowflakeCode(err) != 390114 {
		t.Fatalf("error %v, want 390114 (master token expired)", err)
	}
}

// TestFaultCommitFails: the COMMIT fails in the warehouse; the transaction
// is rolled back and the driver returns the *SnowflakeError (000603).
func TestFaultCommitFails(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	db := open(t, srv.Config("loader"))
	exec(t, db, "CREATE TABLE t (id INT)")
	f := srv.Inject(snowtest.Fault{Kind: snowtest.FaultStatementError, SQL: commitSQL})
	tx, err := db.BeginTx(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctxT(t), "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); snowflakeCode(err) != 603 {
		t.Fatalf("commit error %v, want 000603", err)
	}
	if f.Hits() != 1 || count(t, db, "SELECT count(*) FROM t") != 0 {
		t.Fatal("the failed commit must roll the row back")
	}
}

// TestFaultCommitAppliedResponseLost: the COMMIT is applied and the
// connection drops before the answer. With retries off the caller gets a
// network error (not a *SnowflakeError) although the row IS committed:
// only a lookup (the loader's ledger) can tell.
func TestFaultCommitAppliedResponseLost(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	db := open(t, srv.Config("loader"))
	exec(t, db, "CREATE TABLE t (id INT)")
	f := srv.Inject(snowtest.Fault{Kind: snowtest.FaultResponseLost, SQL: commitSQL})
	tx, err := db.BeginTx(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctxT(t), "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	err = tx.Commit()
	var ue *url.Error
	if err == nil || snowflakeCode(err) != -1 || !errors.As(err, &ue) {
		t.Fatalf("commit error %v (%T), want a network error", err, err)
	}
	if f.Hits() != 1 || count(t, db, "SELECT count(*) FROM t") != 1 {
		t.Fatal("the commit must have been applied")
	}
}

// TestFaultCommitResponseLostRetriedByDriver: with the driver's default
// retries it re-sends the COMMIT with the same requestId; like Snowflake,
// the server answers a retried request from its first execution, so the
// caller sees success and nothing runs twice.
func TestFaultCommitResponseLostRetriedByDriver(t *testing.T) {
	t.Parallel() // the driver sleeps 1-3 s before retrying
	srv := newServer(t, snowtest.Options{})
	cfg := srv.Config("loader")
	//lint:ignore SA1019 deprecated without a replacement in gosnowflake v1.19.1
	cfg.RequestTimeout = 0
	db := open(t, cfg)
	exec(t, db, "CREATE TABLE t (id INT)")
	f := srv.Inject(snowtest.Fault{Kind: snowtest.FaultResponseLost, SQL: regexp.MustCompile(`^INSERT`)})
	exec(t, db, "INSERT INTO t VALUES (1)")
	if f.Hits() != 1 || count(t, db, "SELECT count(*) FROM t") != 1 {
		t.Fatalf("fault hits %d; the INSERT must be applied exactly once", f.Hits())
	}
}

// TestFaultDropConnection: the connection drops before the statement
// runs: a network error, and nothing applied.
func TestFaultDropConnection(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	db := open(t, srv.Config("loader"))
	exec(t, db, "CREATE TABLE t (id INT)")
	srv.Inject(snowtest.Fault{Kind: snowtest.FaultDropConnection, Endpoint: snowtest.EndpointQuery})
	_, err := db.ExecContext(ctxT(t), "INSERT INTO t VALUES (1)")
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T), want a *url.Error", err, err)
	}
	if n := count(t, db, "SELECT count(*) FROM t"); n != 0 {
		t.Fatalf("%d rows: a dropped request must not run", n)
	}
}

// TestFaultLogin: 503 on login with retries cut short by LoginTimeout.
func TestFaultLogin(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	cfg := srv.Config("loader")
	//lint:ignore SA1019 deprecated without a replacement in gosnowflake v1.19.1
	cfg.LoginTimeout = time.Second
	f := srv.Inject(snowtest.Fault{Kind: snowtest.FaultHTTPStatus, Endpoint: snowtest.EndpointLogin, Status: 503, Times: 100})
	db := open(t, cfg)
	start := time.Now()
	err := db.PingContext(ctxT(t))
	if err == nil || f.Hits() == 0 {
		t.Fatalf("login through a 503: error %v, hits %d", err, f.Hits())
	}
	t.Logf("login error after %v and %d attempts: %v (%T)", time.Since(start).Round(time.Millisecond), f.Hits(), err, err)
}
