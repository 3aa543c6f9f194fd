package main

import (
	"context"
	"log/slog"

	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/loader"
)

// bigquerySink builds the BigQuery sink from the warehouse configuration
// (warehouse.type bigquery). The context only creates the client: its
// requests get theirs from the loader.
func bigquerySink(c *config.Config, log *slog.Logger) (*loader.BigQuery, error) {
	wc, bq := &c.Warehouse, &c.Warehouse.BigQuery
	return loader.NewBigQuery(context.Background(), loader.BigQueryOptions{
		Project: bq.Project, Dataset: bq.Dataset, Location: bq.Location,
		Auth: bq.Auth, CredentialsJSON: []byte(bq.Credentials.Reveal()), Endpoint: bq.Endpoint,
		TransactionsTable: wc.Tables.Transactions, WindowsTable: wc.Tables.Windows, LedgerTable: wc.Tables.Ledger,
		ApplianceID: c.ApplianceID, MergeRows: c.Dedupe.Warehouse == "merge", RequestTimeout: wc.RequestTimeout.D(),
		Logger: log,
	})
}
