package main

import (
	"context"
	"log/slog"

	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/loader"
)

// newBigQuerySink builds the BigQuery sink from the warehouse
// configuration (warehouse.type bigquery).
func newBigQuerySink(ctx context.Context, c *config.Config, log *slog.Logger) (*loader.BigQuery, error) {
	wc, bq := &c.Warehouse, &c.Warehouse.BigQuery
	return loader.NewBigQuery(ctx, loader.BigQueryOptions{
		Project: bq.Project, Dataset: bq.Dataset, Location: bq.Location,
		Auth: bq.Auth, CredentialsJSON: []byte(bq.Credentials.Reveal()), Endpoint: bq.Endpoint,
		TransactionsTable: wc.Tables.Transactions, WindowsTable: wc.Tables.Windows, LedgerTable: wc.Tables.Ledger,
		ApplianceID: c.ApplianceID, MergeRows: c.Dedupe.Warehouse == "merge", RequestTimeout: wc.RequestTimeout.D(),
		Logger: log,
	})
}
