package testwarehouse

import (
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/internal/pgproxy"
)

// postgres is a database of its own on a real PostgreSQL server,
// reached by the daemon through a proxy that makes the outages.
type postgres struct {
	sqlTables // its db: the server itself, past the proxy
	admin     *sql.DB
	cfg       *pgx.ConnConfig // the server, the database the test's own
	proxy     *pgproxy.Proxy
}

// newPostgres creates a database of its own on the server dsn names and
// a proxy in front of the server.
func newPostgres(dsn string) (*postgres, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", PostgresDSNEnv, err)
	}
	cfg.RuntimeParams["timezone"] = "UTC"
	w := &postgres{admin: stdlib.OpenDB(*cfg)}
	name := fmt.Sprintf("offload_chaos_%d", time.Now().UnixNano())
	if _, err := w.admin.Exec("CREATE DATABASE " + name); err != nil {
		_ = w.admin.Close()
		return nil, fmt.Errorf("cannot create database %s: %w", name, err)
	}
	w.cfg = cfg.Copy()
	w.cfg.Database = name
	w.db = stdlib.OpenDB(*w.cfg)
	if w.proxy, err = pgproxy.New(fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)); err != nil {
		_ = w.Close()
		return nil, err
	}
	return w, nil
}

func (w *postgres) Configure(c *config.Warehouse) {
	a := w.proxy.Addr()
	*c = config.Warehouse{Type: "postgres", Host: a.IP.String(), Port: a.Port, User: w.cfg.User, Password: config.Secret(w.cfg.Password),
		Auth: "password", Database: w.cfg.Database, Schema: "public", Tables: defaultTables(),
		LoginTimeout: config.Duration(2 * time.Second), RequestTimeout: config.Duration(5 * time.Second),
		Postgres: config.PostgresWarehouse{SSLMode: "disable"}}
}

func (w *postgres) YAML() string {
	a := w.proxy.Addr()
	return PostgresYAML(a.IP.String(), a.Port, w.cfg.User, w.cfg.Database, "public")
}

// PostgresYAML is the warehouse section of a PostgreSQL server without TLS.
func PostgresYAML(host string, port int, user, database, schema string) string {
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

func (w *postgres) Env() []string {
	return []string{"OFFLOAD_WAREHOUSE_PASSWORD=" + w.cfg.Password}
}

// File is empty: the data is the server's.
func (w *postgres) File() string { return "" }

func (w *postgres) RefuseConnections() {
	w.proxy.Refuse.Store(true)
	w.proxy.DropAll()
}

func (w *postgres) AcceptConnections() error {
	w.proxy.Refuse.Store(false)
	return nil
}

// Close drops the test's database.
func (w *postgres) Close() error {
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
