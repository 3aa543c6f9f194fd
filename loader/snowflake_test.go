package loader

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"database/sql"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/internal/deliverytest"
	"github.com/offload/offload/internal/snowtest"
)

// warehouse is a test server with one user per authentication method.
type warehouse struct {
	srv *snowtest.Server
	key *rsa.PrivateKey
}

func newWarehouse(t testing.TB) *warehouse {
	t.Helper()
	return newWarehouseWith(t, snowtest.Options{})
}

// newWarehouseWith is newWarehouse with the server's options.
func newWarehouseWith(t testing.TB, opts snowtest.Options) *warehouse {
	t.Helper()
	srv, err := snowtest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv.AddUser(snowtest.User{Name: "LOADER_PW", Password: "pw-s3cret-Loader"})
	srv.AddUser(snowtest.User{Name: "LOADER_KEY", PrivateKey: key})
	srv.AddUser(snowtest.User{Name: "LOADER_OAUTH", OAuthToken: "oauth-t0ken-Loader"})
	return &warehouse{srv: srv, key: key}
}

// sink returns a Snowflake sink logging in as user with auth.
func (w *warehouse) sink(t testing.TB, auth string) *Snowflake {
	t.Helper()
	return w.sinkWith(t, auth, func(*SnowflakeOptions) {})
}

// sinkWith is sink with its options adjusted by tune.
func (w *warehouse) sinkWith(t testing.TB, auth string, tune func(*SnowflakeOptions)) *Snowflake {
	t.Helper()
	c := w.srv.Config("LOADER_PW")
	o := SnowflakeOptions{
		Account: c.Account, Database: c.Database, Schema: c.Schema, Warehouse: c.Warehouse,
		Host: c.Host, Port: c.Port, Protocol: c.Protocol, Auth: auth, ApplianceID: "lt",
		// A login timeout of 1 s is shorter than the driver's first
		// backoff: a refused login fails at once, and the loader's own
		// retries take over.
		LoginTimeout: time.Second, RequestTimeout: 2 * time.Second, ClientTimeout: 5 * time.Second,
		Logger: quietLogger(),
	}
	switch auth {
	case AuthPassword:
		o.User, o.Password = "LOADER_PW", "pw-s3cret-Loader"
	case AuthKeyPair:
		o.User, o.PrivateKey = "LOADER_KEY", w.key
	case AuthOAuth:
		o.User, o.OAuthToken = "LOADER_OAUTH", "oauth-t0ken-Loader"
	}
	tune(&o)
	s, err := NewSnowflake(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// query runs q on the server's DuckDB and returns the rows as strings.
func (w *warehouse) query(t *testing.T, q string) []string {
	t.Helper()
	return deliverytest.QueryStrings(t, w.srv.DB(), q)
}

// exportAll exports every sealed batch of e to a directory of its own:
// the files as the outbox holds them, for the checks below.
func exportAll(t *testing.T, e *engine.Engine) []engine.Export {
	t.Helper()
	bs, err := e.SealedBatches()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var out []engine.Export
	for _, b := range bs {
		x, err := e.ExportBatch(context.Background(), b.ID, dir)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
	return out
}

// outboxEventIDs returns the event ids the engine's outbox holds, as the
// checks below compare them with the warehouse.
func outboxEventIDs(t *testing.T, e *engine.Engine) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, x := range exportAll(t, e) {
		rows, err := db.Query(`SELECT event_id FROM read_parquet(?::VARCHAR[])`, x.RowsFiles)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			out[id] = true
		}
		rows.Close()
	}
	return out
}

// checkWarehouse asserts the delivery contract on what the test server
// holds.
func checkWarehouse(t *testing.T, w *warehouse, want map[string]bool, batches int) {
	t.Helper()
	deliverytest.CheckTables(t, w.srv.DB(), "PUBLIC.", want, batches, true)
}

func TestSnowflakeLoadsEveryBatchOnce(t *testing.T) {
	for _, auth := range []string{AuthPassword, AuthKeyPair, AuthOAuth} {
		t.Run(auth, func(t *testing.T) {
			w := newWarehouse(t)
			e := testOutbox(t, 3, 40)
			want := outboxEventIDs(t, e)
			l := shipAll(t, e, fastOptions(e, w.sink(t, auth), t.TempDir()))
			checkWarehouse(t, w, want, 3)
			if st := l.Status(); st.Loaded != 3 || st.Retries != 0 {
				t.Fatalf("status %+v", st)
			}
			// No staging table or staged file is left behind.
			if left := w.query(t, `SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'OFFLOAD_STG_%'`); len(left) != 0 {
				t.Fatalf("staging tables left: %v", left)
			}
		})
	}
}

// TestLedgerFromAnEarlierRelease: a ledger table created before the
// DUPLICATES column existed gets it from Prepare; batches load, and its
// old rows read as no duplicates, so reconcile still matches them.
func TestLedgerFromAnEarlierRelease(t *testing.T) {
	w := newWarehouse(t)
	for _, q := range []string{`CREATE SCHEMA IF NOT EXISTS PUBLIC`,
		`CREATE TABLE PUBLIC.OFFLOAD_LOAD_LEDGER (BATCH_ID VARCHAR NOT NULL, APPLIANCE_ID VARCHAR NOT NULL, ROWS BIGINT,
			WINDOW_ROWS BIGINT, BYTES BIGINT, CONTROL_TOTALS VARCHAR, LOADED_AT TIMESTAMPTZ, PRIMARY KEY (BATCH_ID))`,
		`INSERT INTO PUBLIC.OFFLOAD_LOAD_LEDGER VALUES ('lt-0000000000000000', 'lt', 0, 0, 0, '[]', now())`,
	} {
		if _, err := w.srv.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	e := testOutbox(t, 2, 20)
	want := outboxEventIDs(t, e)
	sink := w.sink(t, AuthPassword)
	l := shipAll(t, e, fastOptions(e, sink, t.TempDir()))
	if st := l.Status(); st.Loaded != 2 || st.Parked != 0 {
		t.Fatalf("status %+v", st)
	}
	checkWarehouse(t, w, want, 3)
	ledger, err := sink.Ledger(context.Background(), "lt")
	if err != nil {
		t.Fatal(err)
	}
	if old, ok := ledger["lt-0000000000000000"]; !ok || old.Duplicates != 0 || len(ledger) != 3 {
		t.Fatalf("ledger %+v", ledger)
	}
}

// TestSnowflakeFaultMatrix injects every fault of the test server at
// every step of a load, and checks after recovery that the warehouse holds
// each event exactly once, the windows and the ledger agreeing.
func TestSnowflakeFaultMatrix(t *testing.T) {
	moments := map[string]string{
		"put":         `^PUT `,
		"copy":        `^COPY INTO`,
		"insert rows": `^INSERT INTO OFFLOAD_TRANSACTIONS`,
		"merge":       `^MERGE INTO`,
		"ledger":      `^INSERT INTO OFFLOAD_LOAD_LEDGER`,
		"commit":      `(?i)^commit`,
		"lookup":      `^SELECT COUNT\(\*\) FROM OFFLOAD_LOAD_LEDGER`,
	}
	faults := map[string]snowtest.Fault{
		"503":            {Kind: snowtest.FaultHTTPStatus, Status: 503, Times: 3},
		"429":            {Kind: snowtest.FaultHTTPStatus, Status: 429, Times: 3},
		"hang":           {Kind: snowtest.FaultHang, Hang: 10 * time.Second},
		"slow":           {Kind: snowtest.FaultSlow, Hang: 4 * time.Second},
		"drop":           {Kind: snowtest.FaultDropConnection},
		"response lost":  {Kind: snowtest.FaultResponseLost},
		"session expiry": {Kind: snowtest.FaultSessionExpired},
		"statement fail": {Kind: snowtest.FaultStatementError},
	}
	for fname, f := range faults {
		for mname, re := range moments {
			t.Run(fname+" at "+mname, func(t *testing.T) {
				t.Parallel()
				w := newWarehouse(t)
				e := testOutbox(t, 2, 20)
				want := outboxEventIDs(t, e)
				f := f
				f.SQL = regexp.MustCompile(re)
				f.Endpoint = snowtest.EndpointQuery
				inj := w.srv.Inject(f)
				opts := fastOptions(e, w.sink(t, AuthPassword), t.TempDir())
				opts.LoadTimeout = 3 * time.Second
				shipAll(t, e, opts)
				if inj.Hits() == 0 {
					t.Fatalf("the fault never fired")
				}
				checkWarehouse(t, w, want, 2)
			})
		}
	}
	t.Run("refused connections", func(t *testing.T) {
		w := newWarehouse(t)
		checkOutage(t, w.sink(t, AuthPassword), w.srv.RefuseConnections, w.srv.AcceptConnections,
			func(want map[string]bool) { checkWarehouse(t, w, want, 2) })
	})
}

// TestSnowflakeLoadWhoseRollbackFails: a load's statement fails and its
// ROLLBACK gets no answer, so the session's transaction may still be
// open on the warehouse. The next attempt must not run in that session:
// its BEGIN would be ignored inside the open transaction (as Snowflake
// ignores it) and its COMMIT would commit the failed attempt's rows too.
// With the transaction file (the appliance's setting) and without.
func TestSnowflakeLoadWhoseRollbackFails(t *testing.T) {
	for _, txFile := range []bool{false, true} {
		t.Run(fmt.Sprintf("transaction file=%v", txFile), func(t *testing.T) {
			w := newWarehouse(t)
			e := testOutbox(t, 2, 20)
			want := outboxEventIDs(t, e)
			failed := w.srv.Inject(snowtest.Fault{Kind: snowtest.FaultStatementError, Endpoint: snowtest.EndpointQuery,
				SQL: regexp.MustCompile(`^INSERT INTO OFFLOAD_LOAD_LEDGER`)})
			// More 503s than the driver retries within its request timeout.
			refused := w.srv.Inject(snowtest.Fault{Kind: snowtest.FaultHTTPStatus, Status: 503, Times: 1000, Endpoint: snowtest.EndpointQuery,
				SQL: regexp.MustCompile(`(?i)^ROLLBACK`)})
			sink := w.sinkWith(t, AuthPassword, func(o *SnowflakeOptions) {
				if txFile {
					o.TransactionFile = filepath.Join(t.TempDir(), "load-transaction")
				}
			})
			l := shipAll(t, e, fastOptions(e, sink, t.TempDir()))
			if failed.Hits() != 1 || refused.Hits() == 0 {
				t.Fatalf("faults fired %d and %d times", failed.Hits(), refused.Hits())
			}
			if st := l.Status(); st.Loaded != 2 || st.Retries == 0 {
				t.Fatalf("status %+v", st)
			}
			checkWarehouse(t, w, want, 2)
		})
	}
}

// TestSnowflakeSchemaMismatchParks: a transactions table whose AMOUNT
// column cannot take the rows is a permanent error: the batch is parked
// with the warehouse's message, and loads after the fix.
func TestSnowflakeSchemaMismatchParks(t *testing.T) {
	w := newWarehouse(t)
	sink := w.sink(t, AuthPassword)
	exec := func(q string) {
		if _, err := sink.db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	checkParks(t, sink, func() { exec(`CREATE TABLE OFFLOAD_TRANSACTIONS (EVENT_ID VARCHAR)`) }, func() { exec(`DROP TABLE OFFLOAD_TRANSACTIONS`) },
		func() string { return w.query(t, `SELECT count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS`)[0] }, "",
		func(want map[string]bool) { checkWarehouse(t, w, want, 1) })
}

// TestWarehouseColumnsMatchTheOutbox: the staging tables' columns are
// the Parquet files' columns, in order, so MATCH_BY_COLUMN_NAME (and
// Redshift's COPY, by position) finds every one; the rows files lack
// BATCH_ID, which the load
// sets.
func TestWarehouseColumnsMatchTheOutbox(t *testing.T) {
	e := testOutbox(t, 1, 3)
	bs, _ := e.SealedBatches()
	x, err := e.ExportBatch(context.Background(), bs[0].ID, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, f := range []struct {
		file string
		cols []column
	}{{x.RowsFiles[0], fileColumns}, {x.WindowsFile, windowColumns}} {
		rows, err := db.Query(`SELECT upper(column_name) FROM (DESCRIBE SELECT * FROM read_parquet(?))`, f.file)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			got = append(got, c)
		}
		rows.Close()
		if want := strings.Split(names(f.cols, ""), ", "); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("%s columns %v, warehouse table %v", f.file, got, want)
		}
	}
}

// TestMergeRowsKeepsCrossApplianceDuplicatesOut: checkMergeRows on the
// Snowflake sink.
func TestMergeRowsKeepsCrossApplianceDuplicatesOut(t *testing.T) {
	for _, merge := range []bool{false, true} {
		t.Run(fmt.Sprintf("merge=%v", merge), func(t *testing.T) {
			w := newWarehouse(t)
			checkMergeRows(t, merge, func(appliance string) mergeSink {
				return w.sinkWith(t, AuthPassword, func(o *SnowflakeOptions) { o.MergeRows, o.ApplianceID = merge, appliance })
			}, func() string {
				return w.query(t, `SELECT count(*), count(DISTINCT EVENT_ID) FROM PUBLIC.OFFLOAD_TRANSACTIONS`)[0]
			}, true)
		})
	}
}

// TestMergeRowsConcurrentAppliances: checkConcurrentMergeRows on the
// Snowflake sink.
func TestMergeRowsConcurrentAppliances(t *testing.T) {
	w := newWarehouse(t)
	checkConcurrentMergeRows(t, func(appliance string) mergeSink {
		return w.sinkWith(t, AuthPassword, func(o *SnowflakeOptions) { o.MergeRows, o.ApplianceID = true, appliance })
	}, func() string {
		return w.query(t, `SELECT count(*), count(DISTINCT EVENT_ID) FROM PUBLIC.OFFLOAD_TRANSACTIONS`)[0]
	})
}

// mergeSink is a sink reconcile reads that counts the rows MergeRows
// kept out.
type mergeSink interface {
	Sink
	Reconciler
	Duplicates() int64
}

// checkConcurrentMergeRows ships the same events from three appliances
// at once, each through sinkOf(appliance) with MergeRows, the way
// appliances of one consumer group do after a partition moved while
// copies were resent: their loads overlap in time, and still every event
// is in the transactions table once and the rows kept out are counted.
// rowsDistinct reads "rows|distinct event ids" of the transactions table.
func checkConcurrentMergeRows(t *testing.T, sinkOf func(appliance string) mergeSink, rowsDistinct func() string) {
	t.Helper()
	const batches, rowsPer = 6, 30
	boxes := []string{"box-a", "box-b", "box-c"}
	loaders := make([]*Loader, len(boxes))
	outboxes := make([]*engine.Engine, len(boxes))
	sinks := make([]mergeSink, len(boxes))
	for i, box := range boxes {
		outboxes[i] = testOutboxOf(t, box, batches, rowsPer)
		sinks[i] = sinkOf(box)
		l, err := New(fastOptions(outboxes[i], sinks[i], t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		loaders[i] = l
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, len(loaders))
	for _, l := range loaders {
		wg.Go(func() { errs <- l.Run(ctx) })
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, e := range outboxes {
		for !outboxEmpty(e)() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, e := range outboxes {
		if !outboxEmpty(e)() {
			t.Fatalf("%s did not ship its batches within 60s: %+v", boxes[i], loaders[i].Status())
		}
	}
	var dups int64
	for _, s := range sinks {
		dups += s.Duplicates()
	}
	want := fmt.Sprintf("%d|%d", batches*rowsPer, batches*rowsPer)
	if rows := rowsDistinct(); rows != want || dups != int64((len(boxes)-1)*batches*rowsPer) {
		t.Fatalf("rows|distinct %s, want %s; duplicates counted %d, want %d", rows, want, dups, (len(boxes)-1)*batches*rowsPer)
	}
}

// checkMergeRows ships the same 20 events from two appliances (a partition
// moved between them), each through sinkOf(appliance). With plain inserts
// the warehouse holds them twice; with MergeRows once, and the sink counts
// what it kept out. rowsDistinct reads "rows|distinct event ids" of the
// transactions table. exact: reconcile must match the second appliance's
// batch (false for a server whose amounts differ, where it must match only
// when no row went in).
func checkMergeRows(t *testing.T, merge bool, sinkOf func(appliance string) mergeSink, rowsDistinct func() string, exact bool) {
	t.Helper()
	a, b := testOutboxOf(t, "box-a", 1, 20), testOutboxOf(t, "box-b", 1, 20)
	shipAll(t, a, fastOptions(a, sinkOf("box-a"), t.TempDir()))
	sink := sinkOf("box-b")
	shipAll(t, b, fastOptions(b, sink, t.TempDir()))
	rows := rowsDistinct()
	want, dups := "40|20", int64(0)
	if merge {
		want, dups = "20|20", 20
	}
	if rows != want || sink.Duplicates() != dups {
		t.Fatalf("rows|distinct %s, want %s; duplicates counted %d, want %d", rows, want, sink.Duplicates(), dups)
	}
	// The ledger says what went in, so box-b's batch, all of whose
	// rows were kept out, still reconciles.
	ledger, err := sink.Ledger(context.Background(), "box-b")
	if err != nil {
		t.Fatal(err)
	}
	held, err := sink.Held(context.Background(), "box-b")
	if err != nil {
		t.Fatal(err)
	}
	shipped := map[string]int64{}
	for id, l := range ledger {
		shipped[id] = l.Rows
		if l.Rows != 20 || l.Duplicates != dups {
			t.Errorf("ledger of %s: %+v, want 20 rows, %d duplicates", id, l, dups)
		}
	}
	if found := Reconcile(shipped, ledger, held); len(shipped) != 1 || ((exact || merge) && len(found) != 0) {
		t.Errorf("%d batches of box-b; reconcile found %v", len(shipped), found)
	}
}
