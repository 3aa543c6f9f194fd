package main

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/offload/offload/bench/check"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/internal/pgproxy"
	"github.com/offload/offload/internal/redshifttest"
	"github.com/offload/offload/internal/snowtest"
)

// testWarehouse is a warehouse the demo, the in-process benchmark and the
// fault harness run against: a test server run in-process (over DuckDB,
// or the BigQuery emulator), or (postgres, the fault harness only) a
// database of its own on a real PostgreSQL server behind a proxy. Its
// tables are OFFLOAD_* (in PUBLIC, or BigQuery's dataset), it can refuse
// connections (an outage), and its checks read it all the same.
type testWarehouse interface {
	// configure sets the warehouse options that ship to it, secrets
	// included.
	configure(w *config.Warehouse)
	// yaml is the configuration file's warehouse section; env the
	// variables with its secrets.
	yaml() string
	env() []string
	// file is where it keeps its data ("" on a server of its own).
	file() string
	warehouseTables
	RefuseConnections()
	AcceptConnections() error
	Close() error
}

// warehouseTables reads what the checks need from a test warehouse's
// tables, during an outage too (past the switch that refuses the
// appliance's connections).
type warehouseTables interface {
	// loaded counts the transactions table's rows and distinct events
	// (zeros while it does not exist yet).
	loaded() (rows, events int64)
	// windows counts the windows table's rows (0 while it does not exist).
	windows() int64
	// tally is check.TallyOnce over the transactions table's event ids.
	tally(valid map[string]struct{}) (missing, duplicated, unexpected int64, err error)
	// latencies measures check.Latencies over every row.
	latencies() (check.Latencies, error)
}

// testWarehouseTypes are the warehouse types that run in-process.
const testWarehouseTypes = "snowflake, redshift or bigquery"

// postgresDSNEnv names the PostgreSQL server the fault harness's postgres
// warehouse runs on (an environment variable: the DSN holds a password).
const postgresDSNEnv = "OFFLOAD_BENCH_POSTGRES_DSN"

// newTestWarehouse starts the test server of warehouse type typ with its
// DuckDB file (and, for Snowflake, its stage) under dir; withPostgres
// allows postgres.
func newTestWarehouse(typ, dir string, withPostgres bool) (testWarehouse, error) {
	switch typ {
	case "snowflake":
		path := filepath.Join(dir, "warehouse.duckdb")
		srv, err := snowtest.New(snowtest.Options{Path: path, Dir: filepath.Join(dir, "warehouse-stage")})
		if err != nil {
			return nil, fmt.Errorf("warehouse: %w", err)
		}
		w := &snowflakeTest{Server: srv, sqlTables: sqlTables{srv.DB()}, password: randomHex(12), path: path}
		srv.AddUser(snowtest.User{Name: "OFFLOAD", Password: w.password})
		return w, nil
	case "redshift":
		path := filepath.Join(dir, "warehouse.duckdb")
		srv, err := redshifttest.New(redshifttest.Options{Path: path, User: "offload", Password: randomHex(12)})
		if err != nil {
			return nil, fmt.Errorf("warehouse: %w", err)
		}
		w := &redshiftTest{Server: srv, sqlTables: sqlTables{srv.DB()}, path: path}
		if err := srv.CreateBucket(redshiftTestBucket); err != nil {
			_ = srv.Close()
			return nil, fmt.Errorf("warehouse: %w", err)
		}
		if _, err := srv.DB().Exec("CREATE SCHEMA IF NOT EXISTS PUBLIC"); err != nil {
			_ = srv.Close()
			return nil, fmt.Errorf("warehouse: %w", err)
		}
		return w, nil
	case "bigquery":
		w, err := newBigQueryTest(dir)
		if err != nil {
			return nil, fmt.Errorf("warehouse: %w", err)
		}
		return w, nil
	case "postgres":
		if withPostgres {
			return newPostgresTest(os.Getenv(postgresDSNEnv))
		}
		return nil, usageError{fmt.Errorf("--warehouse postgres needs a PostgreSQL server: only the fault harness (--chaos, the server's DSN in %s) runs against one", postgresDSNEnv)}
	}
	return nil, usageError{fmt.Errorf("--warehouse %q: use %s (the warehouses that run in-process)", typ, testWarehouseTypes)}
}

// snowflakeTest is the Snowflake-protocol test server.
type snowflakeTest struct {
	*snowtest.Server
	sqlTables
	password string
	path     string
}

func (w *snowflakeTest) configure(c *config.Warehouse) {
	*c = config.Warehouse{Type: "snowflake", Account: w.Account(), User: "OFFLOAD", Database: "OFFLOAD_DB",
		Schema: "PUBLIC", Host: "127.0.0.1", Port: w.Port(), Protocol: "http", Auth: "password",
		Password: config.Secret(w.password), Stage: "OFFLOAD_STAGE",
		Tables:       defaultTables(),
		LoginTimeout: config.Duration(2 * time.Second), RequestTimeout: config.Duration(5 * time.Second)}
}

func (w *snowflakeTest) yaml() string {
	return w.WarehouseYAML("OFFLOAD") + "  login_timeout: 2s\n  request_timeout: 5s\n"
}

func (w *snowflakeTest) env() []string { return []string{"OFFLOAD_WAREHOUSE_PASSWORD=" + w.password} }

func (w *snowflakeTest) file() string { return w.path }

// redshiftTestBucket is the fake S3 bucket batches are staged in.
const redshiftTestBucket = "offload-stage"

// redshiftTest is the Redshift-dialect test server with its fake S3.
type redshiftTest struct {
	*redshifttest.Server
	sqlTables
	path string
}

func (w *redshiftTest) file() string { return w.path }

func (w *redshiftTest) configure(c *config.Warehouse) {
	host, port := w.Addr()
	user, pw := w.User()
	*c = config.Warehouse{Type: "redshift", Host: host, Port: port, User: user, Password: config.Secret(pw), Auth: "password",
		Database: "dev", Schema: "PUBLIC", Tables: defaultTables(),
		LoginTimeout: config.Duration(2 * time.Second), RequestTimeout: config.Duration(5 * time.Second),
		Redshift: config.RedshiftWarehouse{SSLMode: "disable", IAMRole: w.IAMRole(), S3: config.RedshiftS3{
			Bucket: redshiftTestBucket, Prefix: "offload/", Region: "us-east-1", Endpoint: w.S3Endpoint(), PathStyle: true}}}
	c.Redshift.S3.AccessKeyID, c.Redshift.S3.SecretAccessKey = w.s3Key()
}

func (w *redshiftTest) s3Key() (string, config.Secret) {
	id, secret := w.S3Key()
	return id, config.Secret(secret)
}

func (w *redshiftTest) yaml() string {
	host, port := w.Addr()
	user, _ := w.User()
	id, _ := w.s3Key()
	return fmt.Sprintf(`warehouse:
  type: redshift
  host: %s
  port: %d
  user: %s
  database: dev
  schema: PUBLIC
  login_timeout: 2s
  redshift:
    sslmode: disable
    iam_role: %s
    s3:
      bucket: %s
      prefix: offload/
      region: us-east-1
      endpoint: %s
      path_style: true
      access_key_id: %s
`, host, port, user, w.IAMRole(), redshiftTestBucket, w.S3Endpoint(), id)
}

func (w *redshiftTest) env() []string {
	_, pw := w.User()
	_, secret := w.S3Key()
	return []string{"OFFLOAD_WAREHOUSE_PASSWORD=" + pw, "OFFLOAD_WAREHOUSE_REDSHIFT_S3_SECRET_ACCESS_KEY=" + secret}
}

func defaultTables() config.WarehouseTables {
	return config.WarehouseTables{Transactions: "OFFLOAD_TRANSACTIONS", Windows: "OFFLOAD_WINDOWS", Ledger: "OFFLOAD_LOAD_LEDGER"}
}

// postgresTest is a database of its own on a real PostgreSQL server,
// reached by the daemon through a proxy that makes the outages.
type postgresTest struct {
	sqlTables // its db: the server itself, past the proxy
	admin     *sql.DB
	cfg       *pgx.ConnConfig // the server, the database the test's own
	proxy     *pgproxy.Proxy
}

func newPostgresTest(dsn string) (*postgresTest, error) {
	if dsn == "" {
		return nil, usageError{fmt.Errorf("--warehouse postgres needs the DSN of a PostgreSQL server in %s (scripts/postgres.sh start prints one)", postgresDSNEnv)}
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", postgresDSNEnv, err)
	}
	cfg.RuntimeParams["timezone"] = "UTC"
	w := &postgresTest{admin: stdlib.OpenDB(*cfg)}
	name := fmt.Sprintf("offload_chaos_%d", time.Now().UnixNano())
	if _, err := w.admin.Exec("CREATE DATABASE " + name); err != nil {
		_ = w.admin.Close()
		return nil, fmt.Errorf("warehouse: cannot create database %s: %w", name, err)
	}
	w.cfg = cfg.Copy()
	w.cfg.Database = name
	w.db = stdlib.OpenDB(*w.cfg)
	if w.proxy, err = pgproxy.New(fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("warehouse: %w", err)
	}
	return w, nil
}

func (w *postgresTest) configure(c *config.Warehouse) {
	a := w.proxy.Addr()
	*c = config.Warehouse{Type: "postgres", Host: a.IP.String(), Port: a.Port, User: w.cfg.User, Password: config.Secret(w.cfg.Password),
		Auth: "password", Database: w.cfg.Database, Schema: "public", Tables: defaultTables(),
		LoginTimeout: config.Duration(2 * time.Second), RequestTimeout: config.Duration(5 * time.Second),
		Postgres: config.PostgresWarehouse{SSLMode: "disable"}}
}

func (w *postgresTest) yaml() string {
	a := w.proxy.Addr()
	return postgresYAML(a.IP.String(), a.Port, w.cfg.User, w.cfg.Database, "public")
}

// postgresYAML is the warehouse section of a PostgreSQL server without TLS.
func postgresYAML(host string, port int, user, database, schema string) string {
	return fmt.Sprintf(`warehouse:
  type: postgres
  host: %s
  port: %d
  user: %s
  database: %s
  schema: %s
  login_timeout: 2s
  postgres:
    sslmode: disable
`, host, port, user, database, schema)
}

func (w *postgresTest) env() []string {
	return []string{"OFFLOAD_WAREHOUSE_PASSWORD=" + w.cfg.Password}
}

// file is empty: the data is the server's.
func (w *postgresTest) file() string { return "" }

func (w *postgresTest) RefuseConnections() {
	w.proxy.Refuse.Store(true)
	w.proxy.DropAll()
}

func (w *postgresTest) AcceptConnections() error {
	w.proxy.Refuse.Store(false)
	return nil
}

// Close drops the test's database.
func (w *postgresTest) Close() error {
	if w.proxy != nil {
		w.proxy.Close()
	}
	var errs []error
	if w.db != nil {
		errs = append(errs, w.db.Close())
	}
	if _, err := w.admin.Exec("DROP DATABASE IF EXISTS " + w.cfg.Database + " WITH (FORCE)"); err != nil {
		errs = append(errs, fmt.Errorf("cannot drop database %s: %w", w.cfg.Database, err))
	}
	return errors.Join(append(errs, w.admin.Close())...)
}
