package testwarehouse

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"time"

	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/internal/snowtest"
)

// Snowflake is the Snowflake-protocol test server (internal/snowtest),
// whose faults the harness injects.
type Snowflake struct {
	*snowtest.Server
	sqlTables
	password string
	path     string
}

// newSnowflake starts the server with its DuckDB file and stage in dir
// and a user OFFLOAD with a password of its own.
func newSnowflake(dir string) (*Snowflake, error) {
	path := filepath.Join(dir, "warehouse.duckdb")
	// The fault harness kills appliances inside a load's transaction and
	// can delete their data directory, and with it the file that lets the
	// next start abort that transaction: Snowflake would keep its locks
	// for 4 hours (docs/OPERATIONS.md).
	srv, err := snowtest.New(snowtest.Options{Path: path, Dir: filepath.Join(dir, "warehouse-stage"), DetachedTimeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("cannot start the Snowflake-protocol test server: %w", err)
	}
	w := &Snowflake{Server: srv, sqlTables: sqlTables{srv.DB()}, password: rand.Text(), path: path}
	srv.AddUser(snowtest.User{Name: "OFFLOAD", Password: w.password})
	return w, nil
}

// Configure implements Warehouse.
func (w *Snowflake) Configure(c *config.Warehouse) {
	*c = config.Warehouse{Type: "snowflake", Account: w.Account(), User: "OFFLOAD", Database: "OFFLOAD_DB",
		Schema: "PUBLIC", Host: "127.0.0.1", Port: w.Port(), Protocol: "http", Auth: "password",
		Password: config.Secret(w.password), Stage: "OFFLOAD_STAGE",
		Tables:       defaultTables(),
		LoginTimeout: config.Duration(2 * time.Second), RequestTimeout: config.Duration(5 * time.Second)}
}

// YAML implements Warehouse.
func (w *Snowflake) YAML() string {
	return w.WarehouseYAML("OFFLOAD") + "  login_timeout: 2s\n  request_timeout: 5s\n"
}

// Env implements Warehouse.
func (w *Snowflake) Env() []string { return []string{"OFFLOAD_WAREHOUSE_PASSWORD=" + w.password} }

// File implements Warehouse.
func (w *Snowflake) File() string { return w.path }
