package loader

import (
	"context"
	"database/sql"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/offload/offload/internal/bqtest"
	"github.com/offload/offload/internal/deliverytest"
)

// newEmulator starts the BigQuery emulator for one test.
func newEmulator(t testing.TB) *bqtest.Server {
	t.Helper()
	srv, err := bqtest.Start(bqtest.Options{})
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
	case typ == "VARCHAR":
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
