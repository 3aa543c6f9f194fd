package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/engine/window"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/internal/ingest"
	"github.com/offload/offload/loader"
	"github.com/offload/offload/wal"
)

// hashKeyPath is where a generated e-mail hash key is kept.
func hashKeyPath(dataDir string) string { return filepath.Join(dataDir, "secrets", "hash.key") }

// storedHashKey returns the configured e-mail hash key, or the one kept in
// the data directory; nil without an error when neither exists yet.
func storedHashKey(c *config.Config) ([]byte, error) {
	if c.Engine.HashKey != "" {
		return []byte(c.Engine.HashKey.Reveal()), nil
	}
	p := hashKeyPath(c.DataDir)
	b, err := os.ReadFile(p)
	if err == nil {
		if k := strings.TrimSpace(string(b)); len(k) >= event.MinHashKeyBytes {
			return []byte(k), nil
		}
		return nil, fmt.Errorf("engine: the hash key in %s is shorter than %d bytes; restore it from a backup or set engine.hash_key_file", p, event.MinHashKeyBytes)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("engine: cannot read the hash key: %w", err)
	}
	return nil, nil
}

// hashKey returns the configured e-mail hash key, or the one generated in
// the data directory on first start.
func hashKey(c *config.Config, log *slog.Logger) ([]byte, error) {
	if k, err := storedHashKey(c); k != nil || err != nil {
		return k, err
	}
	p := hashKeyPath(c.DataDir)
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	k := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, fmt.Errorf("engine: cannot create %s: %w", filepath.Dir(p), err)
	}
	if err := os.WriteFile(p, []byte(k+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("engine: cannot write the hash key: %w", err)
	}
	log.Warn("engine: generated the e-mail hash key; back it up with the data directory, or customer hashes change if it is lost",
		"path", p)
	return []byte(k), nil
}

// loadTables loads the rates and reference tables named by the config.
func loadTables(c *config.Config) (*event.Rates, *event.Reference, error) {
	var rates *event.Rates
	var ref *event.Reference
	var err error
	if c.Engine.RatesFile != "" {
		if rates, err = event.LoadRates(c.Engine.RatesFile, c.Engine.BaseCurrency); err != nil {
			return nil, nil, fmt.Errorf("engine.rates_file: %w", err)
		}
	}
	if c.Engine.ReferenceFile != "" {
		if ref, err = event.LoadReference(c.Engine.ReferenceFile); err != nil {
			return nil, nil, fmt.Errorf("engine.reference_file: %w", err)
		}
	}
	return rates, ref, nil
}

// engineOptions builds the engine's options from the configuration.
func engineOptions(c *config.Config, w *wal.WAL, log *slog.Logger) (engine.Options, error) {
	key, err := hashKey(c, log)
	if err != nil {
		return engine.Options{}, err
	}
	rates, ref, err := loadTables(c)
	if err != nil {
		return engine.Options{}, err
	}
	topics := make(map[string]event.Config, len(c.Kafka.Topics))
	for _, name := range c.Kafka.Topics {
		tc := c.Topics[name]
		tc.HashKey, tc.Rates, tc.Reference = key, rates, ref
		tc.EnsureDefaults()
		topics[name] = tc
	}
	lateness := c.Engine.Lateness.D()
	if lateness == 0 {
		lateness = window.NoLateness // zero in window.Options means its default
	}
	return engine.Options{
		Dir:          c.DataDir,
		ApplianceID:  c.ApplianceID,
		WAL:          w,
		Topics:       topics,
		Interval:     c.Engine.Interval.D(),
		BatchRecords: c.Engine.BatchRecords,
		MemoryLimit:  int64(c.Engine.MemoryLimit),
		Threads:      c.Engine.Threads,
		DedupeWindow: c.Engine.DedupeWindow.D(),
		DedupeMemory: int64(c.Engine.DedupeMemory),
		Window:       window.Options{Size: c.Engine.Window.D(), Lateness: lateness},
		Seal:         engine.SealPolicy{Rows: int64(c.Outbox.SealRows), Bytes: int64(c.Outbox.SealBytes), Age: c.Outbox.SealAge.D()},
		Logger:       log,
	}, nil
}

// kafkaTLS and kafkaSASL are the consumer's security options (config
// kafka.tls, kafka.sasl), for ingest and for offload check.
func kafkaTLS(c *config.Config) ingest.TLSOptions {
	t := c.Kafka.TLS
	return ingest.TLSOptions{Enabled: t.Enabled, CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile,
		ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
}

func kafkaSASL(c *config.Config) ingest.SASLOptions {
	s := c.Kafka.SASL
	return ingest.SASLOptions{Mechanism: s.Mechanism, Username: s.Username, Password: s.Password.Reveal()}
}

// outboxDir is where the loader writes a batch's files while shipping it.
func outboxDir(dataDir string) string { return filepath.Join(dataDir, "outbox") }

// outboxQuarantineDir is where the loader keeps exported files that failed
// their checksum, for the operator (docs/OPERATIONS.md).
func outboxQuarantineDir(dataDir string) string {
	return filepath.Join(quarantineDir(dataDir), "outbox")
}

// openLoader builds the warehouse sink and the loader from the
// configuration; both are nil without a warehouse.
func openLoader(c *config.Config, eng *engine.Engine, log *slog.Logger, onLoaded func(engine.Export, time.Time)) (*loader.Loader, loader.Sink, error) {
	if c.Warehouse.Type == "" {
		log.Warn("no warehouse configured (warehouse.type): sealed batches stay in the outbox")
		return nil, nil, nil
	}
	sink, err := newSink(c, log)
	if err != nil {
		return nil, nil, err
	}
	lc := &c.Loader
	var windows []loader.ShippingWindow
	for _, s := range lc.ShippingWindows {
		sw, err := loader.ParseShippingWindow(s)
		if err != nil {
			return nil, nil, fmt.Errorf("loader.shipping_windows: %w", err)
		}
		windows = append(windows, sw)
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

// newSink builds the sink of the configured warehouse type.
func newSink(c *config.Config, log *slog.Logger) (loader.Sink, error) {
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
		Logger: log,
	})
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
		Logger: log,
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
		Logger: log,
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
