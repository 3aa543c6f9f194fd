package deliverytest

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/offload/offload/internal/testenv"
)

// PostgresSchema creates a schema of its own, dropped when the test ends,
// on the PostgreSQL server of OFFLOAD_TEST_POSTGRES (scripts/postgres.sh),
// and returns the server's connection settings, a connection for the
// checks (in UTC, as CheckTables needs), and the schema's name.
func PostgresSchema(t testing.TB) (*pgx.ConnConfig, *sql.DB, string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["timezone"] = "UTC"
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { _ = db.Close() })
	raw := make([]byte, 6)
	_, _ = rand.Read(raw)
	schema := "t_" + hex.EncodeToString(raw)
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return cfg, db, schema
}
