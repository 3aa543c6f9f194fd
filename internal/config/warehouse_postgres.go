package config

import (
	"fmt"
	"os"
	"time"

	"github.com/offload/offload/loader"
)

// PostgresWarehouse holds the options of warehouse.type postgres; the
// server, user, password, database, schema and tables are the
// warehouse's common options.
type PostgresWarehouse struct {
	// SSLMode is libpq's sslmode: disable, allow, prefer, require,
	// verify-ca or verify-full.
	SSLMode string `yaml:"sslmode"`
	// SSLRootCert is the CA file for verify-ca and verify-full.
	SSLRootCert string `yaml:"sslrootcert"`
}

func (w *Warehouse) validatePostgres() []string {
	return w.validatePgConn("postgres", "warehouse.postgres.", w.Postgres.SSLMode, w.Postgres.SSLRootCert)
}

// validatePgConn checks the options of a PostgreSQL-protocol warehouse
// (postgres, redshift); prefix is its own section's.
func (w *Warehouse) validatePgConn(kind, prefix, sslmode, rootCert string) []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	for _, f := range []struct{ opt, v string }{{"warehouse.host", w.Host}, {"warehouse.user", w.User},
		{"warehouse.database", w.Database}, {"warehouse.schema", w.Schema}} {
		if f.v == "" {
			bad("%s: required with warehouse.type %s", f.opt, kind)
		}
	}
	if w.Auth != "password" {
		bad("warehouse.auth: %q is not allowed with warehouse.type %s; use password", w.Auth, kind)
	}
	if w.Password == "" {
		bad("warehouse.password_file: warehouse.type %s needs the password in a file or in OFFLOAD_WAREHOUSE_PASSWORD", kind)
	}
	if w.Port < 0 || w.Port > 65535 {
		bad("warehouse.port: %d is out of range", w.Port)
	}
	if err := oneOf(prefix+"sslmode", sslmode, "disable", "allow", "prefer", "require", "verify-ca", "verify-full"); err != nil {
		bad("%v", err)
	}
	if rootCert != "" {
		if _, err := os.Stat(rootCert); err != nil {
			bad("%ssslrootcert: %v", prefix, err)
		}
	}
	for _, f := range []struct{ opt, v string }{{"warehouse.schema", w.Schema}, {"warehouse.tables.transactions", w.Tables.Transactions},
		{"warehouse.tables.windows", w.Tables.Windows}, {"warehouse.tables.ledger", w.Tables.Ledger}} {
		if f.v != "" && !loader.ValidIdentifier(f.v) {
			bad("%s: %q is not a plain identifier (letters, digits, _ and $, not starting with a digit)", f.opt, f.v)
		}
	}
	if w.LoginTimeout < Duration(time.Second) {
		bad("warehouse.login_timeout: use at least 1s")
	}
	return errs
}
