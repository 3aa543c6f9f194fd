package appliance

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/loader"
)

// newLoader builds the warehouse sink and the loader from the
// configuration; both are nil without a warehouse.
func newLoader(c *config.Config, eng *engine.Engine, log *slog.Logger, onLoaded func(engine.Export, time.Time)) (*loader.Loader, loader.Sink, error) {
	if c.Warehouse.Type == "" {
		log.Warn("no warehouse configured (warehouse.type): sealed batches stay in the outbox")
		return nil, nil, nil
	}
	sink, err := NewSink(c, log)
	if err != nil {
		return nil, nil, err
	}
	lc := &c.Loader
	windows, err := shippingWindows(lc.ShippingWindows)
	if err != nil {
		_ = sink.Close()
		return nil, nil, err
	}
	ld, err := loader.New(loader.Options{
		Sink: sink, Outbox: eng, Dir: outboxDir(c.DataDir), QuarantineDir: outboxQuarantineDir(c.DataDir), Order: lc.Order,
		RetryBase: lc.RetryBase.D(), RetryMax: lc.RetryMax.D(),
		BreakerFailures: lc.BreakerFailures, BreakerCooldown: lc.BreakerCooldown.D(),
		ShippingWindows: windows, UplinkRate: int64(lc.UplinkRate), ShippedGrace: lc.ShippedGrace.D(),
		LoadTimeout: lc.LoadTimeout.D(), UnansweredAfter: lc.UnansweredAfter.D(), OnLoaded: onLoaded,
		Logger: log,
	})
	if err != nil {
		_ = sink.Close()
		return nil, nil, err
	}
	return ld, sink, nil
}

// shippingWindows parses loader.shipping_windows.
func shippingWindows(specs []string) ([]loader.ShippingWindow, error) {
	var windows []loader.ShippingWindow
	for _, s := range specs {
		sw, err := loader.ParseShippingWindow(s)
		if err != nil {
			return nil, fmt.Errorf("loader.shipping_windows: %w", err)
		}
		windows = append(windows, sw)
	}
	return windows, nil
}

// NewSink builds the sink of the configured warehouse type; the caller
// closes it.
func NewSink(c *config.Config, log *slog.Logger) (loader.Sink, error) {
	switch c.Warehouse.Type {
	case "snowflake":
		return snowflakeSink(c, log)
	case "postgres":
		return postgresSink(c, log)
	case "redshift":
		return redshiftSink(c, log)
	case "bigquery":
		return bigquerySink(c, log)
	}
	return nil, fmt.Errorf("warehouse.type: %q is not allowed; use one of snowflake, bigquery, postgres, redshift", c.Warehouse.Type)
}

// postgresSink builds the PostgreSQL sink from the warehouse configuration.
func postgresSink(c *config.Config, log *slog.Logger) (*loader.Postgres, error) {
	wc := &c.Warehouse
	return loader.NewPostgres(loader.PostgresOptions{
		Host: wc.Host, Port: wc.Port, User: wc.User, Password: wc.Password.Reveal(), Database: wc.Database, Schema: wc.Schema,
		SSLMode: wc.Postgres.SSLMode, SSLRootCert: wc.Postgres.SSLRootCert,
		TransactionsTable: wc.Tables.Transactions, WindowsTable: wc.Tables.Windows, LedgerTable: wc.Tables.Ledger,
		ApplianceID: c.ApplianceID, MergeRows: c.Dedupe.Warehouse == "merge", ConnectTimeout: wc.LoginTimeout.D(),
		ExtraColumns: extraColumns(c), Logger: log,
	})
}

// extraColumns are the configured extra columns as the sinks take them.
func extraColumns(c *config.Config) []loader.ExtraColumn {
	var out []loader.ExtraColumn
	for _, x := range c.ExtraColumns() {
		out = append(out, loader.ExtraColumn{Name: x.Name, Type: x.Type})
	}
	return out
}

// redshiftSink builds the Redshift sink from the warehouse configuration.
func redshiftSink(c *config.Config, log *slog.Logger) (*loader.Redshift, error) {
	wc := &c.Warehouse
	r := &wc.Redshift
	return loader.NewRedshift(loader.RedshiftOptions{
		Host: wc.Host, Port: wc.Port, User: wc.User, Password: wc.Password.Reveal(), Database: wc.Database, Schema: wc.Schema,
		SSLMode: r.SSLMode, SSLRootCert: r.SSLRootCert,
		TransactionsTable: wc.Tables.Transactions, WindowsTable: wc.Tables.Windows, LedgerTable: wc.Tables.Ledger,
		IAMRole: r.IAMRole, S3Bucket: r.S3.Bucket, S3Prefix: r.S3.Prefix, S3Region: r.S3.Region, S3Endpoint: r.S3.Endpoint,
		S3PathStyle: r.S3.PathStyle, S3AccessKeyID: r.S3.AccessKeyID, S3SecretAccessKey: r.S3.SecretAccessKey.Reveal(),
		ApplianceID: c.ApplianceID, MergeRows: c.Dedupe.Warehouse == "merge", ConnectTimeout: wc.LoginTimeout.D(),
		ExtraColumns: extraColumns(c), Logger: log,
	})
}

// snowflakeSink builds the Snowflake sink from the warehouse configuration.
func snowflakeSink(c *config.Config, log *slog.Logger) (*loader.Snowflake, error) {
	wc := &c.Warehouse
	o := loader.SnowflakeOptions{
		Account: wc.Account, User: wc.User, Role: wc.Role, Database: wc.Database, Schema: wc.Schema, Warehouse: wc.Warehouse,
		Host: wc.Host, Port: wc.Port, Protocol: wc.Protocol, Auth: wc.Auth,
		Password: wc.Password.Reveal(), OAuthToken: wc.OAuthToken.Reveal(),
		Stage: wc.Stage, TransactionsTable: wc.Tables.Transactions, WindowsTable: wc.Tables.Windows, LedgerTable: wc.Tables.Ledger,
		ApplianceID: c.ApplianceID, MergeRows: c.Dedupe.Warehouse == "merge", LoginTimeout: wc.LoginTimeout.D(), RequestTimeout: wc.RequestTimeout.D(), ClientTimeout: wc.RequestTimeout.D(),
		ExtraColumns: extraColumns(c), Logger: log,
		TransactionFile: snowflakeTransactionFile(c.DataDir),
	}
	if wc.Auth == loader.AuthKeyPair {
		pem, err := os.ReadFile(wc.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("warehouse.private_key_file: %w", err)
		}
		if o.PrivateKey, err = loader.ParsePrivateKey(pem, []byte(wc.PrivateKeyPassphrase.Reveal())); err != nil {
			return nil, fmt.Errorf("warehouse.private_key_file %s: %w", wc.PrivateKeyFile, err)
		}
	}
	return loader.NewSnowflake(o)
}

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
		ExtraColumns: extraColumns(c), Logger: log,
	})
}
