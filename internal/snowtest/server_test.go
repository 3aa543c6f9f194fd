package snowtest_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/snowflakedb/gosnowflake"

	"github.com/offload/offload/internal/snowtest"
)

// newServer starts a server with one user of each login kind: "loader"
// (password), "keyed" (key pair) and "oauth" (OAuth token).
func newServer(t *testing.T, opts snowtest.Options) *snowtest.Server {
	t.Helper()
	srv, err := snowtest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv.AddUser(snowtest.User{Name: "loader", Password: "s3cret"})
	srv.AddUser(snowtest.User{Name: "keyed", PrivateKey: key})
	srv.AddUser(snowtest.User{Name: "oauth", OAuthToken: "access-token"})
	return srv
}

// open returns a database/sql handle on the real driver, limited to one
// connection so that statements share a session.
func open(t *testing.T, cfg *gosnowflake.Config) *sql.DB {
	t.Helper()
	db := sql.OpenDB(gosnowflake.NewConnector(gosnowflake.SnowflakeDriver{}, *cfg))
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func exec(t *testing.T, db *sql.DB, query string, args ...any) sql.Result {
	t.Helper()
	r, err := db.ExecContext(ctxT(t), query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return r
}

func count(t *testing.T, db *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(ctxT(t), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func snowflakeCode(err error) int {
	var se *gosnowflake.SnowflakeError
	if errors.As(err, &se) {
		return se.Number
	}
	return -1
}

func TestLogin(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	wrongKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		cfg      func() *gosnowflake.Config
		wantCode int // 0: login succeeds
	}{
		{"password", func() *gosnowflake.Config { return srv.Config("loader") }, 0},
		{"key pair", func() *gosnowflake.Config { return srv.Config("keyed") }, 0},
		{"oauth", func() *gosnowflake.Config { return srv.Config("oauth") }, 0},
		{"wrong password", func() *gosnowflake.Config {
			c := srv.Config("loader")
			c.Password = "guess"
			return c
		}, 390100},
		{"unknown user", func() *gosnowflake.Config {
			c := srv.Config("loader")
			c.User = "nobody"
			return c
		}, 390100},
		{"wrong key", func() *gosnowflake.Config {
			c := srv.Config("keyed")
			c.PrivateKey = wrongKey
			return c
		}, 390144},
		{"wrong oauth token", func() *gosnowflake.Config {
			c := srv.Config("oauth")
			c.Token = "stolen"
			return c
		}, 390303},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := open(t, tc.cfg())
			var one int
			err := db.QueryRowContext(ctxT(t), "SELECT 1").Scan(&one)
			if tc.wantCode == 0 {
				if err != nil || one != 1 {
					t.Fatalf("SELECT 1 = %d, %v", one, err)
				}
				return
			}
			if got := snowflakeCode(err); got != tc.wantCode {
				t.Fatalf("error %v: code %d, want %d", err, got, tc.wantCode)
			}
		})
	}
}

func TestTypesAndBinds(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	db := open(t, srv.Config("loader"))
	exec(t, db, `CREATE TABLE IF NOT EXISTS offload_transactions (
		id INTEGER, amount NUMBER(12,2), rate FLOAT, currency VARCHAR(3), note STRING,
		paid BOOLEAN, event_time TIMESTAMP_TZ, ingest_time TIMESTAMP_NTZ, day DATE, items VARIANT)`)
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	r := exec(t, db, `INSERT INTO offload_transactions (id, amount, rate, currency, note, paid, event_time, ingest_time, day, items)
		SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, PARSE_JSON(?)`,
		int64(1), "12.50", 0.5, "EUR", "it's", true, ts, ts, ts, `[{"sku":"A","qty":2}]`)
	if n, _ := r.RowsAffected(); n != 1 {
		t.Fatalf("RowsAffected = %d, want 1", n)
	}
	exec(t, db, "INSERT INTO OFFLOAD_TRANSACTIONS (id, note) VALUES (:1, :2), (:3, NULL)", int64(2), "second", int64(3))

	var (
		id                  int64
		amount, cur, note   string
		rate                float64
		paid                bool
		eventTime, ingested time.Time
		day                 time.Time
		items               string
	)
	err := db.QueryRowContext(ctxT(t), `SELECT id, amount, rate, currency, note, paid, event_time, ingest_time, day, items
		FROM offload_db.public.Offload_Transactions WHERE id = ?`, int64(1)).
		Scan(&id, &amount, &rate, &cur, &note, &paid, &eventTime, &ingested, &day, &items)
	if err != nil {
		t.Fatal(err)
	}
	if id != 1 || amount != "12.5" || rate != 0.5 || cur != "EUR" || note != "it's" || !paid ||
		!eventTime.Equal(ts) || !ingested.Equal(ts) || !day.Equal(time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC)) ||
		items != `[{"qty":2,"sku":"A"}]` {
		t.Fatalf("row = %v %v %v %v %q %v %v %v %v %s", id, amount, rate, cur, note, paid, eventTime, ingested, day, items)
	}
	if n := count(t, db, "SELECT count(*) FROM offload_transactions WHERE note IS NULL"); n != 1 {
		t.Fatalf("%d rows with a NULL note, want 1", n)
	}
	rows, err := db.QueryContext(ctxT(t), "SELECT id, CURRENT_TIMESTAMP() AS now FROM offload_transactions ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if cols[0] != "ID" || cols[1] != "NOW" {
		t.Fatalf("columns %v: unquoted identifiers must come back upper-case", cols)
	}
}

func TestUnsupportedStatementFails(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	db := open(t, srv.Config("loader"))
	for _, q := range []string{"GRANT ROLE r TO USER u", "CREATE WAREHOUSE w", "SHOW TABLES", "SELECT * FROM missing_table"} {
		_, err := db.ExecContext(ctxT(t), q)
		if code := snowflakeCode(err); code != 1003 && code != 2003 {
			t.Errorf("%s: error %v (code %d), want a SQL compilation error", q, err, code)
		}
	}
}

func TestTransactions(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	db := open(t, srv.Config("loader"))
	exec(t, db, "CREATE TABLE t (id INT)")
	ctx := ctxT(t)

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	// Another session does not see the uncommitted row.
	other := open(t, srv.Config("keyed"))
	if n := count(t, other, "SELECT count(*) FROM t"); n != 0 {
		t.Fatalf("another session sees %d uncommitted rows", n)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n := count(t, other, "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("%d rows after one commit and one rollback, want 1", n)
	}
	// COMMIT without a transaction is a no-op, as in Snowflake.
	exec(t, db, "COMMIT")
}

func TestMerge(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	db := open(t, srv.Config("loader"))
	exec(t, db, "CREATE TABLE windows (k VARCHAR, n BIGINT)")
	exec(t, db, "INSERT INTO windows VALUES ('a', 1)")
	exec(t, db, "CREATE TABLE staged (k VARCHAR, n BIGINT)")
	exec(t, db, "INSERT INTO staged VALUES ('a', 5), ('b', 2)")
	r := exec(t, db, `MERGE INTO windows w USING staged s ON w.k = s.k
		WHEN MATCHED THEN UPDATE SET n = s.n
		WHEN NOT MATCHED THEN INSERT (k, n) VALUES (s.k, s.n)`)
	if n, _ := r.RowsAffected(); n != 2 {
		t.Fatalf("MERGE RowsAffected = %d, want 2 (1 inserted + 1 updated)", n)
	}
	if n := count(t, db, "SELECT sum(n) FROM windows"); n != 7 {
		t.Fatalf("sum after MERGE = %d, want 7", n)
	}
}

func TestHeartbeat(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	tokens := &tokenSpy{}
	cfg := srv.Config("loader")
	cfg.TokenAccessor = tokens
	db := open(t, cfg)
	exec(t, db, "SELECT 1")
	// The driver heartbeats at most every 900 s (heartbeat.go), too slow
	// for a test: send its request (heartbeatMain) with its token.
	if code := heartbeat(t, srv, tokens.token()); code != "" {
		t.Fatalf("heartbeat answered code %s, want success", code)
	}
	srv.Inject(snowtest.Fault{Kind: snowtest.FaultSessionExpired, Endpoint: snowtest.EndpointHeartbeat})
	if code := heartbeat(t, srv, tokens.token()); code != "390112" {
		t.Fatalf("heartbeat on an expired session answered %q, want 390112", code)
	}
	// The driver renews on its next query.
	exec(t, db, "SELECT 1")
	if srv.Requests(snowtest.EndpointRenew) != 1 {
		t.Fatalf("%d token renewals, want 1", srv.Requests(snowtest.EndpointRenew))
	}
}

// tokenSpy is a gosnowflake.TokenAccessor that lets a test read the
// session token, locking like the driver's own accessor.
type tokenSpy struct {
	renewing sync.Mutex // Lock and Unlock
	mu       sync.Mutex // guards the fields below
	tok      string
	master   string
	id       int64
}

func (s *tokenSpy) GetTokens() (string, string, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok, s.master, s.id
}

func (s *tokenSpy) SetTokens(tok, master string, id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tok, s.master, s.id = tok, master, id
}

func (s *tokenSpy) Lock() error { s.renewing.Lock(); return nil }
func (s *tokenSpy) Unlock()     { s.renewing.Unlock() }

func (s *tokenSpy) token() string {
	tok, _, _ := s.GetTokens()
	return tok
}

// heartbeat sends the driver's heartbeat request and returns the answer's
// error code ("" on success).
func heartbeat(t *testing.T, srv *snowtest.Server, token string) string {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d%s?requestId=1&request_guid=2", srv.Port(), snowtest.EndpointHeartbeat)
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", `Snowflake Token="`+token+`"`)
	req.Header.Set("Accept", "application/snowflake")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct {
		Code    *string
		Success bool
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		t.Fatal(err)
	}
	if answer.Success {
		return ""
	}
	if answer.Code == nil {
		t.Fatal("failed heartbeat without a code")
	}
	return *answer.Code
}

// TestDuckDBSettings: the server's DuckDB runs on one thread and
// checkpoints per GB of its WAL, on a file and in memory.
func TestDuckDBSettings(t *testing.T) {
	for _, path := range []string{"", filepath.Join(t.TempDir(), "w.duckdb")} {
		srv := newServer(t, snowtest.Options{Path: path})
		var threads, threshold string
		if err := srv.DB().QueryRowContext(ctxT(t), `SELECT current_setting('threads')::VARCHAR, current_setting('checkpoint_threshold')`).Scan(&threads, &threshold); err != nil {
			t.Fatal(err)
		}
		if threads != "1" || threshold != "953.6 MiB" {
			t.Errorf("path %q: threads %s, checkpoint_threshold %s; want 1 and 953.6 MiB (1GB)", path, threads, threshold)
		}
	}
}
