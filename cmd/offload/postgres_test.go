package main

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/offload/offload/bench/testwarehouse"
	"github.com/offload/offload/internal/deliverytest"
)

// TestEndToEndToPostgres: the daemon ships to a real PostgreSQL 15 server:
// every valid event exactly once, the windows equal to a recomputation
// from the rows, the ledger's control totals equal to the rows; then
// `offload reconcile` finds all equal, and reports rows deleted since.
func TestEndToEndToPostgres(t *testing.T) {
	cfg, db, schema := deliverytest.PostgresSchema(t)
	brokers, cl := kfakeTopic(t, "shop", 2)
	conf := testConfig(t, t.TempDir(), brokers, "shop",
		testwarehouse.PostgresYAML(cfg.Host, int(cfg.Port), cfg.User, cfg.Database, schema)+strings.Replace(fastLoads, "  seal_age: 1s\n", "  seal_age: 1s\n  seal_rows: 500\n", 1))
	env := "OFFLOAD_WAREHOUSE_PASSWORD=" + cfg.Password
	d := startDaemon(t, conf, env)
	d.waitLog(t, "partitions assigned", 30*time.Second)
	want, _ := shopEvents(t, cl, 0, 3000, rand.New(rand.NewPCG(21, 22)))
	waitTableRows(t, db, schema+".OFFLOAD_TRANSACTIONS", d, len(want), 60*time.Second)
	stopDaemon(t, d)
	deliverytest.CheckTables(t, db, schema+".", want, -1, true)

	t.Setenv("OFFLOAD_WAREHOUSE_PASSWORD", cfg.Password)
	code, out, errOut := runCLI("reconcile", "--config", conf)
	if code != 0 || !strings.Contains(out, "all match") {
		t.Fatalf("reconcile after a clean run: %d\n%s%s", code, out, errOut)
	}
	batches := deliverytest.QueryStrings(t, db, `SELECT BATCH_ID FROM `+schema+`.OFFLOAD_LOAD_LEDGER ORDER BY 1`)
	if len(batches) < 2 {
		t.Fatalf("only %d batches", len(batches))
	}
	if _, err := db.Exec(`DELETE FROM ` + schema + `.OFFLOAD_TRANSACTIONS WHERE EVENT_ID IN (SELECT EVENT_ID FROM ` + schema +
		`.OFFLOAD_TRANSACTIONS WHERE BATCH_ID = '` + batches[0] + `' LIMIT 3)`); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI("reconcile", "--config", conf)
	if code != 1 || !strings.Contains(out, batches[0]+"  mismatch") {
		t.Fatalf("reconcile after rows were deleted: exit %d\n%s", code, out)
	}
	if strings.Contains(out+d.logs.String(), cfg.Password) {
		t.Fatal("the password shows in the output or the log")
	}
}
