package testwarehouse

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/offload/offload/bench/check"
	"github.com/offload/offload/internal/bqtest"
	"github.com/offload/offload/internal/config"
)

// bigQuery is the BigQuery emulator (internal/bqtest) as a test
// warehouse, with a client of its own for the checks. The client talks to
// the emulator past its relay, so the checks read during an outage too.
type bigQuery struct {
	srv    *bqtest.Server
	client *bigquery.Client
	path   string

	mu sync.Mutex
	// counted is Loaded's last count by a query job.
	counted struct{ rows, events int64 }
}

// bigQueryDataset is the test warehouse's dataset.
const bigQueryDataset = "offload"

// bigQueryReadTimeout bounds one of the checks' queries: the client
// retries a failed request until its context ends.
const bigQueryReadTimeout = time.Minute

// newBigQuery starts the emulator, as its own program (the offload binary
// does not link it), with its data in dir.
func newBigQuery(dir string) (*bigQuery, error) {
	w := &bigQuery{path: filepath.Join(dir, "warehouse-bigquery.sqlite")}
	prog, err := bqtest.FindProgram()
	if err != nil {
		return nil, err
	}
	srv, err := bqtest.Start(bqtest.Options{Launch: bqtest.Program(prog), Project: "offload-demo", Path: w.path})
	if err != nil {
		return nil, err
	}
	w.srv = srv
	if w.client, err = bigquery.NewClient(context.Background(), srv.Project(), option.WithEndpoint(srv.DirectEndpoint()), option.WithoutAuthentication()); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("cannot create a client of the BigQuery emulator: %w", err)
	}
	return w, nil
}

// bigQueryRequestTimeout is the sink's request timeout on the emulator,
// which runs a query job within its insert request (BigQuery answers at
// once and runs it after): its commit scripts take seconds there, and
// over 30 s late in a run, when every job before them has slowed it
// (docs/LOADER.md, "BigQuery emulator gaps"); a commit cut off and
// retried adds jobs and slows the next one further.
const bigQueryRequestTimeout = 2 * time.Minute

func (w *bigQuery) Configure(c *config.Warehouse) {
	*c = config.Warehouse{Type: "bigquery", Tables: defaultTables(),
		LoginTimeout: config.Duration(2 * time.Second), RequestTimeout: config.Duration(bigQueryRequestTimeout),
		BigQuery: config.BigQuery{Project: w.srv.Project(), Dataset: bigQueryDataset, Auth: config.BigQueryAuthNone, Endpoint: w.srv.Endpoint()}}
}

func (w *bigQuery) YAML() string {
	return fmt.Sprintf(`warehouse:
  type: bigquery
  login_timeout: 2s
  request_timeout: %s
  bigquery:
    project: %s
    dataset: %s
    auth: %s
    endpoint: %s
`, bigQueryRequestTimeout, w.srv.Project(), bigQueryDataset, config.BigQueryAuthNone, w.srv.Endpoint())
}

// Env seals the fault harness's batches every 5 s rather than every
// second: the emulator takes no credentials, but its every job costs
// more than the one before (docs/LOADER.md, "BigQuery emulator gaps"),
// so fewer, larger loads keep a run's drain within minutes.
func (w *bigQuery) Env() []string { return []string{"OFFLOAD_OUTBOX_SEAL_AGE=5s"} }

func (w *bigQuery) File() string { return w.path }

func (w *bigQuery) RefuseConnections() { w.srv.RefuseConnections() }

func (w *bigQuery) AcceptConnections() error { return w.srv.AcceptConnections() }

// Close stops the client, then the emulator.
func (w *bigQuery) Close() error {
	_ = w.client.Close()
	return w.srv.Close()
}

func (w *bigQuery) table(name string) string {
	return "`" + w.srv.Project() + "." + bigQueryDataset + "." + name + "`"
}

// query runs q and yields its rows until yield returns false. It then
// deletes the query's job: the emulator reads every job it holds, with
// its results, on every request, so the checks' jobs would slow the
// loader's (docs/LOADER.md, "BigQuery emulator gaps").
func (w *bigQuery) query(q string, yield func([]bigquery.Value) bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), bigQueryReadTimeout)
	defer cancel()
	job, err := w.client.Query(q).Run(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = job.Delete(ctx) }()
	it, err := job.Read(ctx)
	if err != nil {
		return err
	}
	for {
		var row []bigquery.Value
		err := it.Next(&row)
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return err
		}
		if !yield(row) {
			return nil
		}
	}
}

// ints runs q, a query of one row of integers, into dst (zeros on
// failure, e.g. while the tables do not exist yet).
func (w *bigQuery) ints(q string, dst ...*int64) {
	_ = w.query(q, func(row []bigquery.Value) bool {
		for i := range min(len(row), len(dst)) {
			*dst[i], _ = row[i].(int64)
		}
		return false
	})
}

// Loaded counts the transactions table's rows by tables.get, which
// the emulator answers without a job, and its events by a query job
// only when the row count moved since the last count: the fault harness
// polls Loaded up to 20 times a second, and every query job costs the
// emulator memory it never gives back, until it fails mid-run
// (docs/LOADER.md, "BigQuery emulator gaps"). Nothing deletes the
// table's rows, so the same row count means the same events.
func (w *bigQuery) Loaded() (rows, events int64) {
	ctx, cancel := context.WithTimeout(context.Background(), bigQueryReadTimeout)
	defer cancel()
	md, err := w.client.Dataset(bigQueryDataset).Table("OFFLOAD_TRANSACTIONS").Metadata(ctx)
	if err != nil || md.NumRows == 0 {
		return 0, 0 // not created yet, or empty
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if int64(md.NumRows) == w.counted.rows {
		return w.counted.rows, w.counted.events
	}
	w.ints("SELECT COUNT(*), COUNT(DISTINCT `EVENT_ID`) FROM "+w.table("OFFLOAD_TRANSACTIONS"), &rows, &events)
	w.counted.rows, w.counted.events = rows, events
	return rows, events
}

func (w *bigQuery) Windows() (n int64) {
	w.ints("SELECT COUNT(*) FROM "+w.table("OFFLOAD_WINDOWS"), &n)
	return n
}

func (w *bigQuery) Tally(valid map[string]struct{}) (missing, duplicated, unexpected int64, err error) {
	return check.TallyCopies(func(yield func(string, int64) bool) error {
		return w.query("SELECT `EVENT_ID`, COUNT(*) FROM "+w.table("OFFLOAD_TRANSACTIONS")+" GROUP BY 1", func(row []bigquery.Value) bool {
			id, _ := row[0].(string)
			n, _ := row[1].(int64)
			return yield(id, n)
		})
	}, valid)
}

// Latencies computes check.Latencies with BigQuery's PERCENTILE_CONT,
// an analytic function there (one row of the window over all is enough).
func (w *bigQuery) Latencies() (check.Latencies, error) {
	var l check.Latencies
	pct := func(col string) string {
		return fmt.Sprintf("PERCENTILE_CONT(%[1]s, 0.5) OVER (), PERCENTILE_CONT(%[1]s, 0.99) OVER (), PERCENTILE_CONT(%[1]s, 0.999) OVER ()", col)
	}
	q := "SELECT " + pct("durable") + ", " + pct("warehouse") + ` FROM (
		SELECT TIMESTAMP_DIFF(t.INGEST_TIME, t.KAFKA_TIME, MILLISECOND) AS durable, TIMESTAMP_DIFF(l.LOADED_AT, t.KAFKA_TIME, MILLISECOND) AS warehouse
		FROM ` + w.table("OFFLOAD_TRANSACTIONS") + " t JOIN " + w.table("OFFLOAD_LOAD_LEDGER") + " l ON t.BATCH_ID = l.BATCH_ID) LIMIT 1"
	dst := []*float64{&l.P50DurableMs, &l.P99DurableMs, &l.P999DurableMs, &l.P50WarehouseMs, &l.P99WarehouseMs, &l.P999WarehouseMs}
	var bad error
	err := w.query(q, func(row []bigquery.Value) bool {
		for i := range dst {
			f, ok := row[i].(float64)
			if !ok {
				bad = fmt.Errorf("a latency percentile is %T %v, not a number", row[i], row[i])
				return false
			}
			*dst[i] = f
		}
		return false
	})
	if err = errors.Join(err, bad); err != nil {
		return l, fmt.Errorf("cannot measure latencies in the warehouse: %w", err)
	}
	return l, nil
}
