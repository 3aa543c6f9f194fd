// Package testwarehouse holds the warehouses offload's demo, in-process
// benchmark and fault harness ship to: the project's test servers run
// in-process (Snowflake protocol and Redshift dialect over DuckDB, the
// BigQuery emulator), or a database of its own on a real PostgreSQL
// server behind a proxy. Each hands out the configuration that reaches
// it, can refuse connections (an outage), and reads its tables for the
// checks during an outage too (docs/PERFORMANCE.md, docs/RELIABILITY.md).
package testwarehouse

import (
	"fmt"
	"os"

	"github.com/offload/offload/bench/check"
	"github.com/offload/offload/internal/config"
)

// Warehouse is a test warehouse. Its tables are OFFLOAD_* (in PUBLIC, or
// BigQuery's dataset).
type Warehouse interface {
	// Configure sets the warehouse options that ship to it, secrets
	// included.
	Configure(w *config.Warehouse)
	// YAML is the configuration file's warehouse section; Env the
	// variables with its secrets.
	YAML() string
	Env() []string
	// File is where it keeps its data ("" on a server of its own).
	File() string
	Tables
	// RefuseConnections starts an outage: the appliance's connections
	// are refused (and open ones dropped where the server can).
	RefuseConnections()
	// AcceptConnections ends the outage.
	AcceptConnections() error
	// Close stops the server (or drops the database of its own).
	Close() error
}

// Tables reads what the checks need from a test warehouse's tables,
// during an outage too (past the switch that refuses the appliance's
// connections).
type Tables interface {
	// Loaded counts the transactions table's rows and distinct events
	// (zeros while it does not exist yet).
	Loaded() (rows, events int64)
	// Windows counts the windows table's rows (0 while it does not exist).
	Windows() int64
	// Tally is check.TallyOnce over the transactions table's event ids.
	Tally(valid map[string]struct{}) (missing, duplicated, unexpected int64, err error)
	// Latencies measures check.Latencies over every row.
	Latencies() (check.Latencies, error)
}

// Types are the warehouse types that run in-process.
const Types = "snowflake, redshift or bigquery"

// PostgresDSNEnv names the PostgreSQL server the fault harness's postgres
// warehouse runs on (an environment variable: the DSN holds a password).
const PostgresDSNEnv = "OFFLOAD_BENCH_POSTGRES_DSN"

// TypeError is Check's error: a warehouse type the caller cannot run,
// which the commands report as a bad --warehouse.
type TypeError struct {
	Type   string // the type asked for
	reason string
}

// Error says what is wrong and which types can run.
func (e *TypeError) Error() string { return e.reason }

// Check says whether New can start warehouse type typ: one of Types, or,
// when withPostgres, postgres with its server's DSN in PostgresDSNEnv.
// Its errors are *TypeError and name the --warehouse option.
func Check(typ string, withPostgres bool) error {
	switch {
	case typ == "snowflake" || typ == "redshift" || typ == "bigquery":
		return nil
	case typ == "postgres" && !withPostgres:
		return &TypeError{typ, fmt.Sprintf("--warehouse postgres needs a PostgreSQL server: only the fault harness (--chaos, the server's DSN in %s) runs against one", PostgresDSNEnv)}
	case typ == "postgres" && os.Getenv(PostgresDSNEnv) == "":
		return &TypeError{typ, fmt.Sprintf("--warehouse postgres needs the DSN of a PostgreSQL server in %s (scripts/postgres.sh start prints one)", PostgresDSNEnv)}
	case typ == "postgres":
		return nil
	}
	return &TypeError{typ, fmt.Sprintf("--warehouse %q: use %s (the warehouses that run in-process)", typ, Types)}
}

// New starts the test warehouse of type typ (Check) with its files
// (DuckDB, the stage, the emulator's database) under dir.
func New(typ, dir string, withPostgres bool) (Warehouse, error) {
	if err := Check(typ, withPostgres); err != nil {
		return nil, err
	}
	var w Warehouse
	var err error
	switch typ {
	case "snowflake":
		w, err = newSnowflake(dir)
	case "redshift":
		w, err = newRedshift(dir)
	case "bigquery":
		w, err = newBigQuery(dir)
	default:
		w, err = newPostgres(os.Getenv(PostgresDSNEnv))
	}
	if err != nil {
		return nil, fmt.Errorf("cannot start the %s test warehouse: %w", typ, err)
	}
	return w, nil
}

func defaultTables() config.WarehouseTables {
	return config.WarehouseTables{Transactions: "OFFLOAD_TRANSACTIONS", Windows: "OFFLOAD_WINDOWS", Ledger: "OFFLOAD_LOAD_LEDGER"}
}
