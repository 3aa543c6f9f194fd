package loader

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/internal/bqemu"
	"github.com/offload/offload/internal/bqtest"
	"github.com/offload/offload/internal/deliverytest"
)

// newEmulator starts the BigQuery emulator for one test.
func newEmulator(t testing.TB) *bqtest.Server {
	t.Helper()
	srv, err := bqtest.Start(bqtest.Options{Launch: bqemu.Start})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// bqSink returns a BigQuery sink on srv, its options adjusted by tune.
func bqSink(t testing.TB, srv *bqtest.Server, tune func(*BigQueryOptions)) *BigQuery {
	t.Helper()
	o := BigQueryOptions{Project: srv.Project(), Dataset: "offload", Auth: BigQueryAuthNone, Endpoint: srv.Endpoint(),
		ApplianceID: "lt", RequestTimeout: 5 * time.Second, Logger: quietLogger()}
	if tune != nil {
		tune(&o)
	}
	s, err := NewBigQuery(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// duckType is the DuckDB type of a column of the shared definitions, for
// copying the BigQuery tables into DuckDB.
func duckType(c column) string {
	typ, _ := strings.CutSuffix(c.typ, " NOT NULL")
	switch {
	case typ == "VARCHAR", typ == "VARIANT":
		return "VARCHAR"
	case typ == "TIMESTAMP_TZ":
		return "TIMESTAMPTZ"
	case strings.HasPrefix(typ, "NUMBER("):
		return "DECIMAL(38,4)"
	}
	return "BIGINT"
}

// copyToDuckDB reads the warehouse tables of s through the client and
// writes them into a DuckDB database as PUBLIC.<table>, so that the
// delivery contract checks (internal/deliverytest) run on what BigQuery
// holds.
func copyToDuckDB(t *testing.T, s *BigQuery) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Exec("CREATE SCHEMA PUBLIC"); err != nil {
		t.Fatal(err)
	}
	for _, tb := range []struct {
		name string
		cols []column
	}{{s.opts.TransactionsTable, transactionColumns}, {s.opts.WindowsTable, windowTableColumns}, {s.opts.LedgerTable, ledgerColumns}} {
		var defs, marks []string
		for _, c := range tb.cols {
			defs = append(defs, c.name+" "+duckType(c))
			marks = append(marks, "?")
		}
		if _, err := db.Exec(fmt.Sprintf("CREATE TABLE PUBLIC.%s (%s)", tb.name, strings.Join(defs, ", "))); err != nil {
			t.Fatal(err)
		}
		rows, err := s.query(context.Background(), "SELECT "+quoted(tb.cols, "")+" FROM "+s.table(tb.name))
		if err != nil {
			t.Fatalf("read %s: %v", tb.name, err)
		}
		for _, r := range rows {
			vals := make([]any, len(r))
			for i, v := range r {
				switch v := v.(type) {
				case *big.Rat:
					vals[i] = v.FloatString(4)
				default:
					vals[i] = v
				}
			}
			if _, err := db.Exec(fmt.Sprintf("INSERT INTO PUBLIC.%s VALUES (%s)", tb.name, strings.Join(marks, ", ")), vals...); err != nil {
				t.Fatalf("copy a row of %s: %v", tb.name, err)
			}
		}
	}
	return db
}

// checkBigQuery asserts the delivery contract on what the emulator holds,
// all but the amounts: the emulator loads Parquet DECIMAL values as 0
// (TestBigQueryEmulatorGaps pins it).
func checkBigQuery(t *testing.T, s *BigQuery, want map[string]bool, batches int) {
	t.Helper()
	deliverytest.CheckTablesOf(t, copyToDuckDB(t, s), "PUBLIC.", want, batches, deliverytest.Checks{Windows: true})
}

// stagingLeft lists the staging tables left in the dataset.
func stagingLeft(t *testing.T, s *BigQuery) []string {
	t.Helper()
	var out []string
	it := s.client.Dataset(s.opts.Dataset).Tables(context.Background())
	for {
		tb, err := it.Next()
		if err != nil {
			break
		}
		if strings.HasPrefix(tb.TableID, "OFFLOAD_STG_") {
			out = append(out, tb.TableID)
		}
	}
	return out
}

func TestBigQueryLoadsEveryBatchOnce(t *testing.T) {
	srv := newEmulator(t)
	e := testOutbox(t, 3, 40)
	want := outboxEventIDs(t, e)
	sink := bqSink(t, srv, nil)
	l := shipAll(t, e, fastOptions(e, sink, t.TempDir()))
	if st := l.Status(); st.Loaded != 3 || st.Retries != 0 || st.WindowRows == 0 {
		t.Fatalf("status %+v", st)
	}
	checkBigQuery(t, sink, want, 3)
	if left := stagingLeft(t, sink); len(left) != 0 {
		t.Fatalf("staging tables left: %v", left)
	}
}

// runScript runs sql as a query job with id (random when empty) and
// returns the job's error or the insert's.
func runScript(t *testing.T, s *BigQuery, id, sql string, params ...bigquery.QueryParameter) error {
	t.Helper()
	q := s.client.Query(sql)
	q.JobID, q.Parameters = id, params
	j, err := q.Run(context.Background())
	if err != nil {
		return err
	}
	return wait(context.Background(), j)
}

// count returns SELECT COUNT(*) of table where cond.
func count(t *testing.T, s *BigQuery, table, cond string) int64 {
	t.Helper()
	rows, err := s.query(context.Background(), "SELECT COUNT(*) FROM "+s.table(table)+" WHERE "+cond)
	if err != nil {
		t.Fatal(err)
	}
	return rows[0][0].(int64)
}

// TestBigQueryEmulatorGaps pins what the emulator does differently from
// BigQuery (docs/LOADER.md, "BigQuery emulator gaps"): when one of these
// fails, the emulator changed and the workaround or the doc must too.
func TestBigQueryEmulatorGaps(t *testing.T) {
	srv := newEmulator(t)
	sink := bqSink(t, srv, nil)
	ctx := context.Background()
	if err := sink.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := runScript(t, sink, "", "CREATE TABLE "+sink.table("gap")+" (n INT64)"); err != nil {
		t.Fatal(err)
	}
	t.Run("wide parquet decimals load as 0", func(t *testing.T) {
		e := testOutbox(t, 3, 40) // enough event time to close windows
		shipAll(t, e, fastOptions(e, sink, t.TempDir()))
		// Every amount of the outbox is n.50, none is 0. The rows files'
		// DECIMAL(18,4) (INT64) load; the windows file's DECIMAL(38,4)
		// (16-byte) values load as 0.
		if n := count(t, sink, sink.opts.TransactionsTable, "`AMOUNT` = 0"); n != 0 {
			t.Fatalf("%d amounts are 0: the emulator no longer loads DECIMAL(18,4)", n)
		}
		if n := count(t, sink, sink.opts.TransactionsTable, "TRUE"); n != 120 {
			t.Fatalf("%d rows, want 120", n)
		}
		windows := count(t, sink, sink.opts.WindowsTable, "TRUE")
		if n := count(t, sink, sink.opts.WindowsTable, "`SUM_AMOUNT` != 0"); windows == 0 || n != 0 {
			t.Fatalf("%d of %d windows' sums are not 0: the emulator loads DECIMAL(38,4) now; check the amounts again (deliverytest.Checks)", n, windows)
		}
	})
	t.Run("alter table add column changes nothing", func(t *testing.T) {
		if err := runScript(t, sink, "", "ALTER TABLE "+sink.table("gap")+" ADD COLUMN IF NOT EXISTS m STRING"); err != nil {
			t.Fatal(err)
		}
		if _, err := sink.query(ctx, "SELECT m FROM "+sink.table("gap")); err == nil || !strings.Contains(err.Error(), "m") {
			t.Fatalf("the column added by ALTER TABLE is there (%v): the emulator adds columns now; let TestBigQueryExtraColumnAdded alter its table", err)
		}
	})
	t.Run("begin and commit are no-ops: a failed script keeps what ran before the failure", func(t *testing.T) {
		err := runScript(t, sink, "", "BEGIN TRANSACTION;\nINSERT INTO "+sink.table("gap")+" (n) VALUES (1);\n"+
			"INSERT INTO "+sink.table("gap")+" (n) SELECT CAST('x' AS INT64);\nCOMMIT TRANSACTION;")
		if err == nil || !strings.Contains(err.Error(), "Could not cast") {
			t.Fatalf("script error %v", err)
		}
		if n := count(t, sink, "gap", "n = 1"); n != 1 {
			t.Fatalf("a failed script left %d rows of its first INSERT; the emulator rolls scripts back now (docs/LOADER.md)", n)
		}
	})
	t.Run("a duplicate job id is refused with 400, not 409, and runs nothing", func(t *testing.T) {
		q := "INSERT INTO " + sink.table("gap") + " (n) VALUES (2)"
		if err := runScript(t, sink, "gap_dup", q); err != nil {
			t.Fatal(err)
		}
		err := runScript(t, sink, "gap_dup", q)
		if err == nil || httpCode(err) != 400 || !strings.Contains(err.Error(), "already created") {
			t.Fatalf("second insert of job gap_dup: %v", err)
		}
		if isDuplicate(err) {
			t.Fatal("the emulator answers 409 now: runJob's jobs.get path runs on it")
		}
		if n := count(t, sink, "gap", "n = 2"); n != 1 {
			t.Fatalf("%d rows after the refused duplicate, want 1", n)
		}
	})
	t.Run("parameters bind to every statement of a script", func(t *testing.T) {
		err := runScript(t, sink, "", "SELECT 1;\nINSERT INTO "+sink.table("gap")+" (n) VALUES (@n);",
			bigquery.QueryParameter{Name: "n", Value: 3})
		if err == nil || !strings.Contains(err.Error(), "arguments") {
			t.Fatalf("script with a parameter: %v", err)
		}
	})
	t.Run("merge takes a table, not a query", func(t *testing.T) {
		err := runScript(t, sink, "", "MERGE "+sink.table("gap")+" t USING (SELECT 4 AS n) s ON t.n = s.n WHEN NOT MATCHED THEN INSERT (n) VALUES (s.n)")
		if err == nil || !strings.Contains(err.Error(), "single-table reference") {
			t.Fatalf("MERGE from a query: %v", err)
		}
	})
}

// faultTransport carries the client's requests to the emulator. It can
// drop the answer of a jobs.insert whose job id matches drop (once): the
// job runs on the server and the client gets a connection reset instead
// of its answer. With refuseDuplicates it answers a jobs.insert of a job
// id the server created before as BigQuery does (HTTP 409, reason
// duplicate) instead of passing it on: the emulator answers 400
// (TestBigQueryEmulatorGaps).
type faultTransport struct {
	base             http.RoundTripper
	drop             *regexp.Regexp
	refuseDuplicates bool

	mu         sync.Mutex
	dropped    int
	created    map[string]bool
	refused    int
	jobInserts map[string]int
}

func newFaultTransport(drop string, refuseDuplicates bool) *faultTransport {
	return &faultTransport{base: http.DefaultTransport, drop: regexp.MustCompile(drop), refuseDuplicates: refuseDuplicates,
		created: map[string]bool{}, jobInserts: map[string]int{}}
}

var errConnReset = errors.New("read tcp 127.0.0.1: connection reset by peer")

func (f *faultTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/jobs") || r.Body == nil {
		return f.base.RoundTrip(r)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	var job struct {
		JobReference struct{ JobID string } `json:"jobReference"`
	}
	_ = json.Unmarshal(body, &job)
	id := job.JobReference.JobID
	f.mu.Lock()
	f.jobInserts[id]++
	if id != "" && f.refuseDuplicates && f.created[id] {
		f.refused++
		f.mu.Unlock()
		msg := `{"error":{"code":409,"message":"Already Exists: Job ` + id + `","errors":[{"message":"Already Exists: Job ` + id + `","domain":"global","reason":"duplicate"}],"status":"ALREADY_EXISTS"}}`
		return &http.Response{StatusCode: http.StatusConflict, Status: "409 Conflict", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(msg)), Request: r}, nil
	}
	drop := id != "" && f.drop.MatchString(id) && f.dropped == 0
	if drop {
		f.dropped++
	}
	f.mu.Unlock()
	resp, err := f.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if id != "" && resp.StatusCode/100 == 2 {
		f.mu.Lock()
		f.created[id] = true
		f.mu.Unlock()
	}
	if drop {
		// The server has answered: the job ran. The answer is lost.
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return nil, errConnReset
	}
	return resp, nil
}

// TestBigQueryLostCommitAnswer: the commit job runs, its answer is lost,
// the client inserts it again under the same id. BigQuery refuses the
// insert (409) and the sink waits for the job that exists (jobs.get):
// one load, no retry. The emulator refuses it with 400 instead: the
// loader retries and the ledger lookup finds the batch. Either way every
// event is in the warehouse once.
func TestBigQueryLostCommitAnswer(t *testing.T) {
	for _, bq409 := range []bool{true, false} {
		t.Run(fmt.Sprintf("409=%v", bq409), func(t *testing.T) {
			srv := newEmulator(t)
			e := testOutbox(t, 2, 20)
			want := outboxEventIDs(t, e)
			ft := newFaultTransport(`_commit_0$`, bq409)
			sink := bqSink(t, srv, func(o *BigQueryOptions) { o.HTTPClient = &http.Client{Transport: ft} })
			l := shipAll(t, e, fastOptions(e, sink, t.TempDir()))
			st := l.Status()
			if ft.dropped != 1 {
				t.Fatalf("%d answers dropped", ft.dropped)
			}
			if bq409 {
				if ft.refused == 0 || st.Loaded != 2 || st.AlreadyLoaded != 0 || st.Retries != 0 {
					t.Fatalf("refused %d; status %+v", ft.refused, st)
				}
			} else if st.Loaded != 1 || st.AlreadyLoaded != 1 || st.Retries == 0 {
				t.Fatalf("status %+v", st)
			}
			checkBigQuery(t, sink, want, 2)
		})
	}
}

// TestBigQueryCommitJobOfAnEarlierAttempt: a commit job that failed
// (its cause since fixed) keeps its id; the next attempt takes the next
// id instead of being answered with the failure forever.
func TestBigQueryCommitJobOfAnEarlierAttempt(t *testing.T) {
	srv := newEmulator(t)
	e := testOutbox(t, 1, 60)
	want := outboxEventIDs(t, e)
	sink := bqSink(t, srv, nil)
	bs, _ := e.SealedBatches()
	if err := sink.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := runScript(t, sink, jobID(bs[0].ID, "commit_0"), "SELECT * FROM "+sink.table("nosuch")); err == nil {
		t.Fatal("the failing job did not fail")
	}
	l := shipAll(t, e, fastOptions(e, sink, t.TempDir()))
	if st := l.Status(); st.Loaded != 1 || st.Retries != 0 {
		t.Fatalf("status %+v", st)
	}
	checkBigQuery(t, sink, want, 1)
}

// TestBigQuerySchemaMismatchParks: a transactions table without the
// columns offload loads is a permanent error: the batch is parked with
// the message naming the column, and loads after the fix.
func TestBigQuerySchemaMismatchParks(t *testing.T) {
	srv := newEmulator(t)
	e := testOutbox(t, 1, 60)
	sink := bqSink(t, srv, nil)
	if err := sink.client.Dataset("offload").Create(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if err := runScript(t, sink, "", "CREATE TABLE "+sink.table(DefaultTransactionsTable)+" (EVENT_ID STRING)"); err != nil {
		t.Fatal(err)
	}
	l, err := New(fastOptions(e, sink, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, l, func() bool { return l.Status().Parked == 1 })
	bs, _ := e.SealedBatches()
	if len(bs) != 1 || bs[0].State != engine.BatchParked || !strings.Contains(bs[0].Error, "has no column ORDER_ID") {
		t.Fatalf("outbox: %+v", bs)
	}
	if n := count(t, sink, DefaultTransactionsTable, "TRUE"); n != 0 {
		t.Fatalf("rows of a parked batch reached the warehouse: %d", n)
	}
	if err := runScript(t, sink, "", "DROP TABLE "+sink.table(DefaultTransactionsTable)); err != nil {
		t.Fatal(err)
	}
	if err := l.RetryParked(bs[0].ID); err != nil {
		t.Fatal(err)
	}
	want := outboxEventIDs(t, e)
	runUntil(t, l, outboxEmpty(e))
	checkBigQuery(t, sink, want, 1)
}

// TestBigQueryOutage: with the emulator refusing connections the loader
// retries and opens the circuit; once it is back the backlog drains,
// every event once.
func TestBigQueryOutage(t *testing.T) {
	srv := newEmulator(t)
	e := testOutbox(t, 2, 20)
	want := outboxEventIDs(t, e)
	// A short request timeout: the client's own retries of a refused
	// connection end quickly, and the loader's take over.
	sink := bqSink(t, srv, func(o *BigQueryOptions) { o.RequestTimeout = 300 * time.Millisecond })
	srv.RefuseConnections()
	l, err := New(fastOptions(e, sink, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	st := runUntilOpen(l)
	if st.State != StateOpen || st.LastError == "" || st.Retries < 3 || st.Loaded != 0 {
		t.Fatalf("with the warehouse away: %+v", st)
	}
	if err := srv.AcceptConnections(); err != nil {
		t.Fatal(err)
	}
	l.Resume()
	runUntil(t, l, outboxEmpty(e))
	checkBigQuery(t, sink, want, 2)
}

// TestBigQueryReconcile: reconcile finds the ledger and the table in
// agreement (but for the amounts the emulator holds as 0), and finds a
// batch whose rows were deleted.
func TestBigQueryReconcile(t *testing.T) {
	srv := newEmulator(t)
	e := testOutbox(t, 2, 20)
	sink := bqSink(t, srv, nil)
	shipAll(t, e, fastOptions(e, sink, t.TempDir()))
	ctx := context.Background()
	reconcile := func() ([]Discrepancy, map[string]BatchTotals) {
		t.Helper()
		ledger, err := sink.Ledger(ctx, "lt")
		if err != nil {
			t.Fatal(err)
		}
		held, err := sink.Held(ctx, "lt")
		if err != nil {
			t.Fatal(err)
		}
		shipped := map[string]int64{}
		for id, l := range ledger {
			shipped[id] = l.Rows
		}
		if len(shipped) != 2 {
			t.Fatalf("ledger %+v", ledger)
		}
		return Reconcile(shipped, ledger, held), ledger
	}
	found, ledger := reconcile()
	if len(found) != 0 {
		t.Fatalf("found %+v", found)
	}
	var victim string
	for id, l := range ledger {
		victim = id
		if l.Rows != 20 || l.Totals["EUR"] == "" || l.Totals["EUR"] == "0.0000" {
			t.Fatalf("ledger row %s: %+v", id, l)
		}
	}
	if err := runScript(t, sink, "", "DELETE FROM "+sink.table(DefaultTransactionsTable)+" WHERE `BATCH_ID` = '"+victim+"'"); err != nil {
		t.Fatal(err)
	}
	found, _ = reconcile()
	var rows bool
	for _, d := range found {
		rows = rows || (d.Batch == victim && d.What == "ledger says 20 rows, the warehouse holds 0")
	}
	if !rows {
		t.Fatalf("reconcile missed the deleted rows: %+v", found)
	}
}

// TestBigQueryMergeRows: two appliances ship the same events. With
// MergeRows the warehouse holds them once and the ledger counts what was
// kept out.
func TestBigQueryMergeRows(t *testing.T) {
	for _, merge := range []bool{false, true} {
		t.Run(fmt.Sprintf("merge=%v", merge), func(t *testing.T) {
			srv := newEmulator(t)
			var sink *BigQuery
			checkMergeRows(t, merge, func(appliance string) mergeSink {
				sink = bqSink(t, srv, func(o *BigQueryOptions) { o.MergeRows, o.ApplianceID = merge, appliance })
				return sink
			}, func() string {
				rows, err := sink.query(context.Background(), "SELECT COUNT(*), COUNT(DISTINCT `EVENT_ID`) FROM "+sink.table(DefaultTransactionsTable))
				if err != nil {
					t.Fatal(err)
				}
				return fmt.Sprintf("%d|%d", rows[0][0], rows[0][1])
			}, false)
		})
	}
}

// TestBigQueryCheck: every preflight check passes on the emulator and
// leaves no table behind; with the warehouse away the first one fails
// and says what to do.
func TestBigQueryCheck(t *testing.T) {
	srv := newEmulator(t)
	sink := bqSink(t, srv, func(o *BigQueryOptions) { o.RequestTimeout = 2 * time.Second })
	var _ Checker = sink
	res := sink.Check(context.Background())
	var names []string
	for _, r := range res {
		if !r.OK {
			t.Errorf("%s failed: %s (%s)", r.Name, r.Detail, r.Fix)
		}
		names = append(names, r.Name)
	}
	if want := "bigquery: credentials,bigquery: dataset,bigquery: create table,bigquery: transaction (insert, merge),bigquery: round trip,bigquery: drop table"; strings.Join(names, ",") != want {
		t.Fatalf("checks %v", names)
	}
	it := sink.client.Dataset(sink.opts.Dataset).Tables(context.Background())
	if tb, err := it.Next(); err == nil {
		t.Fatalf("table left behind: %s", tb.TableID)
	}
	srv.RefuseConnections()
	res = sink.Check(context.Background())
	if len(res) != 1 || res[0].OK || res[0].Name != "bigquery: credentials" || res[0].Detail == "" || !strings.Contains(res[0].Fix, "endpoint") {
		t.Fatalf("with the warehouse away: %+v", res)
	}
}

// TestBigQueryClassify: the reasons and statuses BigQuery answers with,
// sorted into retry and park.
func TestBigQueryClassify(t *testing.T) {
	sink := &BigQuery{}
	api := func(code int, reason string) error {
		return fmt.Errorf("commit job x: %w", &googleapi.Error{Code: code, Errors: []googleapi.ErrorItem{{Reason: reason}}})
	}
	job := func(reason string) error { return fmt.Errorf("load: %w", &bigquery.Error{Reason: reason}) }
	// Another appliance's load changed the table at the same moment.
	concurrent := func(msg string) error {
		return fmt.Errorf("commit job x: %w", &googleapi.Error{Code: 400, Message: msg, Errors: []googleapi.ErrorItem{{Reason: "invalidQuery", Message: msg}}})
	}
	for _, c := range []struct {
		err  error
		want Class
	}{
		{api(429, "rateLimitExceeded"), Retryable},
		{api(403, "rateLimitExceeded"), Retryable},
		{api(500, "backendError"), Retryable},
		{api(503, ""), Retryable},
		{api(401, "unauthorized"), Retryable},
		{api(400, "invalid"), Permanent},
		{api(400, "invalidQuery"), Permanent},
		{api(404, "notFound"), Permanent},
		{api(403, "accessDenied"), Permanent},
		{job("invalidQuery"), Permanent},
		{concurrent("Transaction is aborted due to concurrent update against table p:d.OFFLOAD_TRANSACTIONS. Transaction ID: 1"), Retryable},
		{concurrent("Could not serialize access to table p:d.OFFLOAD_WINDOWS due to concurrent update"), Retryable},
		{fmt.Errorf("script: %w", &bigquery.Error{Reason: "invalidQuery", Message: "Transaction is aborted due to concurrent update against table p:d.T"}), Retryable},
		{job("backendError"), Retryable},
		{job("jobInternalError"), Retryable},
		{fmt.Errorf("prepare: %w", errBigQuerySchema), Permanent},
		{&url.Error{Op: "Post", URL: "https://bigquery.googleapis.com", Err: errConnReset}, Retryable},
		{context.DeadlineExceeded, Retryable},
	} {
		if got := sink.Classify(c.err); got != c.want {
			t.Errorf("%v: class %d, want %d", c.err, got, c.want)
		}
	}
}

// TestBigQueryOptionsRefused: bad options are refused naming the option,
// and a key that is not JSON is never quoted back.
func TestBigQueryOptionsRefused(t *testing.T) {
	for _, c := range []struct {
		o    BigQueryOptions
		want string
	}{
		{BigQueryOptions{Dataset: "d"}, "warehouse.bigquery.project"},
		{BigQueryOptions{Project: "p"}, "warehouse.bigquery.dataset"},
		{BigQueryOptions{Project: "p", Dataset: "d", Auth: BigQueryAuthServiceAccount}, "warehouse.bigquery.credentials_file"},
		{BigQueryOptions{Project: "p", Dataset: "d", Auth: BigQueryAuthServiceAccount, CredentialsJSON: []byte("hunter2-private-key")}, "not JSON"},
		{BigQueryOptions{Project: "p", Dataset: "d", Auth: BigQueryAuthNone}, "warehouse.bigquery.endpoint"},
		{BigQueryOptions{Project: "p", Dataset: "d", Auth: "kerberos"}, "adc, service_account or none"},
	} {
		_, err := NewBigQuery(context.Background(), c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%+v: %v, want an error naming %q", c.o.Auth, err, c.want)
		}
	}
}
