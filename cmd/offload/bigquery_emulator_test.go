package main

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

// bigQueryWarehouse is the BigQuery emulator (internal/bqtest) run
// in-process as the embedded appliance's warehouse (`offload demo
// --warehouse bigquery`), with a client of its own for the final check.
type bigQueryWarehouse struct {
	srv    *bqtest.Server
	client *bigquery.Client

	mu sync.Mutex
	up bool // the emulator accepts connections
}

// bigQueryDataset is the embedded warehouse's dataset.
const bigQueryDataset = "offload"

// startBigQueryWarehouse starts the emulator with its data in dir.
func startBigQueryWarehouse(dir string) (*bigQueryWarehouse, error) {
	srv, err := bqtest.Start(bqtest.Options{Project: "offload-demo", Path: filepath.Join(dir, "warehouse-bigquery.sqlite")})
	if err != nil {
		return nil, err
	}
	client, err := bigquery.NewClient(context.Background(), srv.Project(), option.WithEndpoint(srv.Endpoint()), option.WithoutAuthentication())
	if err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("cannot create a client of the BigQuery emulator: %w", err)
	}
	return &bigQueryWarehouse{srv: srv, client: client, up: true}, nil
}

// warehouse is the configuration that ships to the emulator.
func (w *bigQueryWarehouse) warehouse() config.Warehouse {
	c := config.Default().Warehouse
	c.Type = "bigquery"
	c.BigQuery = config.BigQuery{Project: w.srv.Project(), Dataset: bigQueryDataset, Auth: config.BigQueryAuthNone, Endpoint: w.srv.Endpoint()}
	// The emulator runs a query job within its insert request (BigQuery
	// answers at once and runs it after), and the demo's commit scripts
	// take seconds there: long enough for them; a refused connection
	// still hands over to the loader's backoff within it.
	c.RequestTimeout = config.Duration(30 * time.Second)
	return c
}

// isUp and setUp are the dashboard's warehouse switch.
func (w *bigQueryWarehouse) isUp() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.up
}

func (w *bigQueryWarehouse) setUp(up bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if up == w.up {
		return nil
	}
	if up {
		if err := w.srv.AcceptConnections(); err != nil {
			return err
		}
	} else {
		w.srv.RefuseConnections()
	}
	w.up = up
	return nil
}

// count runs a query of one integer (0 on failure, e.g. while the
// tables do not exist yet).
func (w *bigQueryWarehouse) count(ctx context.Context, q string) int64 {
	it, err := w.client.Query(q).Read(ctx)
	if err != nil {
		return 0
	}
	var row []bigquery.Value
	if err := it.Next(&row); err != nil || len(row) != 1 {
		return 0
	}
	n, _ := row[0].(int64)
	return n
}

func (w *bigQueryWarehouse) table(name string) string {
	return "`" + w.srv.Project() + "." + bigQueryDataset + "." + name + "`"
}

// distinctEvents is how many distinct events the transactions table holds.
func (w *bigQueryWarehouse) distinctEvents(ctx context.Context) int64 {
	return w.count(ctx, "SELECT COUNT(DISTINCT `EVENT_ID`) FROM "+w.table("OFFLOAD_TRANSACTIONS"))
}

// verify checks that the emulator holds each valid event exactly once and
// nothing else, as embedded.verify does on the Snowflake test server.
func (w *bigQueryWarehouse) verify(ctx context.Context, valid map[string]struct{}) (verified, error) {
	v := verified{Loaded: w.count(ctx, "SELECT COUNT(*) FROM "+w.table("OFFLOAD_TRANSACTIONS")),
		Windows: w.count(ctx, "SELECT COUNT(*) FROM "+w.table("OFFLOAD_WINDOWS"))}
	it, err := w.client.Query("SELECT `EVENT_ID`, COUNT(*) FROM " + w.table("OFFLOAD_TRANSACTIONS") + " GROUP BY 1").Read(ctx)
	if err != nil {
		return v, err
	}
	missing, duplicated, unexpected, err := check.TallyCopies(func(yield func(string, int64) bool) error {
		for {
			var row []bigquery.Value
			err := it.Next(&row)
			if errors.Is(err, iterator.Done) {
				return nil
			}
			if err != nil {
				return err
			}
			id, _ := row[0].(string)
			n, _ := row[1].(int64)
			if !yield(id, n) {
				return nil
			}
		}
	}, valid)
	if err != nil {
		return v, err
	}
	v.Missing, v.Extra = missing, duplicated+unexpected
	v.ExactlyOnce = v.Missing == 0 && v.Extra == 0 && v.Loaded == int64(len(valid))
	return v, nil
}

// close stops the client, then the emulator.
func (w *bigQueryWarehouse) close() error {
	_ = w.client.Close()
	return w.srv.Close()
}
