package loader

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offload/offload/internal/deliverytest"
	"github.com/offload/offload/internal/testenv"
)

// fakesnowSink returns a Snowflake sink on the fakesnow server of
// OFFLOAD_TEST_FAKESNOW (scripts/fakesnow.sh), in a database of its own:
// fakesnow keeps every database in memory for its lifetime.
func fakesnowSink(t *testing.T, requestTimeout time.Duration) *Snowflake {
	t.Helper()
	return fakesnowSinkWith(t, func(o *SnowflakeOptions) { o.RequestTimeout = requestTimeout })
}

// fakesnowSinkWith is fakesnowSink with its options adjusted by tune.
func fakesnowSinkWith(t *testing.T, tune func(*SnowflakeOptions)) *Snowflake {
	t.Helper()
	addr := testenv.Fakesnow(t)
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("OFFLOAD_TEST_FAKESNOW=%q: %v", addr, err)
	}
	port, _ := strconv.Atoi(portText)
	o := SnowflakeOptions{
		Account: "fakesnow", User: "offload", Password: "any", Auth: AuthPassword,
		Database: fmt.Sprintf("OFFLOAD_T%d", time.Now().UnixNano()), Schema: "PUBLIC",
		Host: host, Port: port, Protocol: "http", ApplianceID: "lt",
		LoginTimeout: 10 * time.Second, RequestTimeout: 10 * time.Second, ClientTimeout: 30 * time.Second,
		Logger: quietLogger(),
	}
	tune(&o)
	sink, err := NewSnowflake(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	return sink
}

// TestFakesnowLoads runs the loader against fakesnow, an independent
// Snowflake emulator, with the real driver: the production load path and
// the same checks of the delivery contract as against the project's test
// server, on batches without window rows. fakesnow's gaps are in
// docs/LOADER.md: MERGE inside a transaction that has written already
// fails there (TestFakesnowMergeGap), REMOVE of staged files is
// unsupported (the loader's cleanup logs it at debug level and goes on),
// and its login accepts any credentials.
func TestFakesnowLoads(t *testing.T) {
	sink := fakesnowSink(t, 10*time.Second)
	// 15 events 10 s apart: no window closes, so the batches hold none.
	e := testOutbox(t, 3, 5)
	want := outboxEventIDs(t, e)
	l := shipAll(t, e, fastOptions(e, sink, t.TempDir()))
	deliverytest.CheckTables(t, sink.db, "", want, 3, false)
	if st := l.Status(); st.Loaded != 3 || st.Retries != 0 {
		t.Fatalf("status %+v", st)
	}
}

// TestFakesnowMergeGap documents what fakesnow 0.12.1 lacks for batches
// with window rows: the MERGE of windows inside the load's transaction
// fails (fakesnow runs MERGE through its own metadata database, and DuckDB
// lets a transaction write to one database only), and the transaction
// then leaves nothing behind. The same MERGE statement run on its own
// works, so the loader's SQL is accepted. If fakesnow fixes the gap, this
// test fails and the load path test should take windows too.
func TestFakesnowMergeGap(t *testing.T) {
	sink := fakesnowSink(t, 2*time.Second)
	e := testOutbox(t, 1, 60) // ten minutes of events: windows close
	bs, _ := e.SealedBatches()
	x, err := e.ExportBatch(context.Background(), bs[0].ID, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if x.WindowRows == 0 {
		t.Fatal("the batch holds no window rows")
	}
	ctx := context.Background()
	if err := sink.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	err = sink.Load(ctx, x)
	if err == nil || !strings.Contains(err.Error(), "MERGE windows") {
		t.Fatalf("load with windows on fakesnow: %v (the gap may be fixed: see the test's comment)", err)
	}
	for _, q := range []string{"SELECT count(*) FROM OFFLOAD_TRANSACTIONS", "SELECT count(*) FROM OFFLOAD_LOAD_LEDGER"} {
		if got := deliverytest.QueryStrings(t, sink.db, q); got[0] != "0" {
			t.Fatalf("%s after the failed load: %v", q, got)
		}
	}
	// The MERGE on its own, outside a transaction.
	stg := stagingName(x.ID, "WINDOWS")
	path := "@" + sink.opts.Stage + "/" + x.ID + "/"
	for _, q := range []string{
		fmt.Sprintf("PUT 'file://%s' %s AUTO_COMPRESS=FALSE OVERWRITE=TRUE", x.WindowsFile, path),
		ddl(stg, windowColumns, ""),
		fmt.Sprintf("COPY INTO %s FROM %s%s FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE FORCE = TRUE", stg, path, x.ID+".windows.parquet"),
		sink.mergeWindows(stg),
	} {
		if _, err := sink.db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", firstWords(q), err)
		}
	}
	if got := deliverytest.QueryStrings(t, sink.db, "SELECT count(*) FROM OFFLOAD_WINDOWS"); got[0] != strconv.FormatInt(x.WindowRows, 10) {
		t.Fatalf("windows merged: %v, want %d", got, x.WindowRows)
	}
}

// TestFakesnowTransactionFunctionsGap: fakesnow has neither
// CURRENT_TRANSACTION() nor SYSTEM$ABORT_TRANSACTION, which the sink uses
// with a transaction file (docs/LOADER.md); if this fails, fakesnow has
// them and TestFakesnowLoads should run with a transaction file.
func TestFakesnowTransactionFunctionsGap(t *testing.T) {
	sink := fakesnowSink(t, 2*time.Second)
	for _, q := range []string{"SELECT CURRENT_TRANSACTION()", "SELECT SYSTEM$ABORT_TRANSACTION(1)"} {
		var v sql.NullString
		if err := sink.db.QueryRowContext(context.Background(), q).Scan(&v); err == nil {
			t.Errorf("%s on fakesnow: %v, no error (the gap may be fixed: see the test's comment)", q, v)
		}
	}
}

// TestFakesnowCheck runs the sink's preflight against fakesnow, an
// independent emulator: on a new database and on one the loader prepared,
// every check passes (fakesnow's REMOVE gap only costs a debug line).
func TestFakesnowCheck(t *testing.T) {
	sink := fakesnowSink(t, 10*time.Second)
	for _, prepared := range []bool{false, true} {
		if prepared {
			if err := sink.Prepare(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		rs := sink.Check(context.Background())
		if f := failed(rs); len(f) > 0 {
			t.Fatalf("prepared %v: failed checks %+v\nall: %v", prepared, f, checkNames(rs))
		}
		if !strings.Contains(strings.Join(checkNames(rs), "\n"), "snowflake: read back OFFLOAD_CHECK_") {
			t.Fatalf("prepared %v: no round trip in %v", prepared, checkNames(rs))
		}
	}
}
