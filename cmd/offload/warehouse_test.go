package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/internal/deliverytest"
	"github.com/offload/offload/internal/snowtest"
)

const warehousePassword = "Wh-pass-7f3a9c"

// detachedTimeout is how long the test warehouse keeps the locks of a
// transaction whose appliance was killed.
const detachedTimeout = 5 * time.Second

// newWarehouse starts a Snowflake-protocol test server with user OFFLOAD.
func newWarehouse(t *testing.T) *snowtest.Server {
	t.Helper()
	// Tests kill appliances inside a load's transaction and some delete
	// their data directory, and with it the file that lets the next start
	// abort that transaction: Snowflake would keep its locks for 4 hours
	// (docs/OPERATIONS.md).
	srv, err := snowtest.New(snowtest.Options{DetachedTimeout: detachedTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	srv.AddUser(snowtest.User{Name: "OFFLOAD", Password: warehousePassword})
	return srv
}

// warehouseYAML is the configuration that ships to srv, with fast retries
// and batches sealed every second. The password comes from the
// environment (warehouseEnv).
func warehouseYAML(srv *snowtest.Server) string {
	return srv.WarehouseYAML("OFFLOAD") + "  login_timeout: 1s\n  request_timeout: 2s\n" + fastLoads
}

// fastLoads has batches sealed every second and fast retries.
const fastLoads = `outbox:
  seal_age: 1s
loader:
  retry_base: 20ms
  retry_max: 300ms
  breaker_failures: 3
  breaker_cooldown: 300ms
`

var warehouseEnv = "OFFLOAD_WAREHOUSE_PASSWORD=" + warehousePassword

// shopEpoch is the event time of shop event 0: two hours ago, so windows
// close. It is fixed for the test binary, so producing event i again
// sends the same bytes, as a producer's retry does.
var shopEpoch = time.Now().UTC().Add(-2 * time.Hour)

// shopEvents produces n valid events (300 ms of event time apart from
// shopEpoch) plus duplicates of some and a few malformed records, and
// returns the valid event ids and the number of malformed records.
func shopEvents(t *testing.T, cl *kgo.Client, from, n int, rng *rand.Rand) (map[string]bool, int) {
	t.Helper()
	valid := map[string]bool{}
	malformed := 0
	start := shopEpoch
	var recs []*kgo.Record
	for i := from; i < from+n; i++ {
		id := fmt.Sprintf("evt-%06d", i)
		v := fmt.Sprintf(`{"event_id":"%s","order_id":"ord-%d","event_type":"order_placed","store_id":"s-%d","amount":"%d.%02d","currency":"%s","channel":"web","customer_email":"c%d@example.com","event_time":"%s"}`,
			id, i/2, i%5, i%300, i%100, []string{"EUR", "USD", "GBP"}[i%3], i%50, start.Add(time.Duration(i)*300*time.Millisecond).Format(time.RFC3339Nano))
		valid[id] = true
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("ord-%d", i/2)), Value: []byte(v)})
		if rng.IntN(20) == 0 { // a duplicate, sent again later
			recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("ord-%d", i/2)), Value: []byte(v)})
		}
		if rng.IntN(50) == 0 {
			malformed++
			recs = append(recs, &kgo.Record{Value: []byte(fmt.Sprintf(`{"event_id":"bad-%d","amount":"lots"`, i))})
		}
	}
	// In event-time order, a few hundred at a time, as a live shop sends
	// them: the partitions stay within the windows' lateness of each other.
	for len(recs) > 0 {
		chunk := recs[:min(300, len(recs))]
		recs = recs[len(chunk):]
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := cl.ProduceSync(ctx, chunk...).FirstErr()
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return valid, malformed
}

// waitRows waits until the warehouse's transactions table holds n rows.
func waitRows(t *testing.T, srv *snowtest.Server, d *daemonProc, n int, timeout time.Duration) {
	t.Helper()
	waitTableRows(t, srv.DB(), "PUBLIC.OFFLOAD_TRANSACTIONS", d, n, timeout)
}

// waitTableRows waits until table of db holds n rows.
func waitTableRows(t *testing.T, db *sql.DB, table string, d *daemonProc, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var got int
		err := db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&got)
		if err == nil && got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the warehouse holds %d rows after %s, want %d (%v)", got, timeout, n, err)
		}
		if d.cmd.ProcessState != nil {
			t.Fatalf("offload exited with %d rows in the warehouse", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopDaemon sends SIGTERM and expects exit 0.
func stopDaemon(t *testing.T, d *daemonProc) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// checkDeadLetters expects exactly n dead letters, all bad_amount or
// invalid JSON from the malformed records.
func checkDeadLetters(t *testing.T, dataDir string, n int) {
	t.Helper()
	dl := 0
	for _, offs := range heldRecords(t, dataDir) {
		for _, hs := range offs {
			for _, h := range hs {
				if h.where == "dlq" {
					dl++
					if !strings.Contains(h.eventID, "bad-") {
						t.Errorf("a valid record was dead-lettered: %s", h.eventID)
					}
				}
			}
		}
	}
	if dl != n {
		t.Fatalf("%d dead letters, want the %d malformed records", dl, n)
	}
}

// TestEndToEndToWarehouse: kfake → ingest → WAL → engine → loader → the
// Snowflake-protocol test server, through the real daemon: every valid
// event in the transactions table exactly once (duplicates dropped), the
// windows table equal to a recomputation from the clean rows, the ledger's
// control totals equal to the rows, the malformed records in the DLQ.
func TestEndToEndToWarehouse(t *testing.T) {
	srv := newWarehouse(t)
	brokers, cl := kfakeTopic(t, "shop", 3)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	dataDir := t.TempDir()
	d := startDaemon(t, testConfig(t, dataDir, brokers, "shop", warehouseYAML(srv)), warehouseEnv)
	d.waitLog(t, "partitions assigned", 30*time.Second)
	want, malformed := shopEvents(t, cl, 0, 3000, rng)
	waitRows(t, srv, d, len(want), 60*time.Second)
	stopDaemon(t, d)
	deliverytest.CheckTables(t, srv.DB(), "PUBLIC.", want, -1, true)
	checkDeadLetters(t, dataDir, malformed)
	if !strings.Contains(d.logs.String(), "loader: batch loaded") {
		t.Fatal("no load was logged")
	}
}

// TestWarehouseOutage: the warehouse is away while ingest goes on; the
// backlog waits on disk (sealed batches pile up, nothing is lost); when it
// returns everything arrives exactly once. With a small byte budget,
// ingest pauses during the outage and resumes after.
func TestWarehouseOutage(t *testing.T) {
	for _, small := range []bool{false, true} {
		t.Run(fmt.Sprintf("small_budget=%v", small), func(t *testing.T) {
			srv := newWarehouse(t)
			brokers, cl := kfakeTopic(t, "shop", 3)
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
			dataDir := t.TempDir()
			extra := []string{warehouseYAML(srv)}
			total := 4000
			if small {
				// ~1.2 MB of events per 4000: 20000 overrun a 4 MiB budget.
				total = 20000
			}
			cfg := testConfig(t, dataDir, brokers, "shop", extra...)
			if small {
				body, err := os.ReadFile(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(cfg, []byte(strings.Replace(string(body), "disk_budget: 256MiB", "disk_budget: 4MiB", 1)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			srv.RefuseConnections()
			d := startDaemon(t, cfg, warehouseEnv)
			d.waitLog(t, "partitions assigned", 30*time.Second)
			want, malformed := shopEvents(t, cl, 0, total, rng)
			// The backlog waits in the outbox: batches are sealed, none
			// is loaded, and the loader keeps retrying.
			d.waitLog(t, "outbox batch sealed", 30*time.Second)
			d.waitLog(t, "load failed; will retry", 30*time.Second)
			if small {
				d.waitLog(t, "paused fetching from Kafka", 30*time.Second)
			}
			time.Sleep(2 * time.Second)
			logs := d.logs.String()
			if strings.Contains(logs, "loader: batch loaded") {
				t.Fatal("a batch was loaded while the warehouse was away")
			}
			sealed := strings.Count(logs, "outbox batch sealed")
			if err := srv.AcceptConnections(); err != nil {
				t.Fatal(err)
			}
			waitRows(t, srv, d, len(want), 90*time.Second)
			stopDaemon(t, d)
			deliverytest.CheckTables(t, srv.DB(), "PUBLIC.", want, -1, true)
			checkDeadLetters(t, dataDir, malformed)
			t.Logf("%d events; %d batches sealed during the outage; ledger rows: %v", len(want), sealed,
				deliverytest.QueryStrings(t, srv.DB(), `SELECT count(*) FROM PUBLIC.OFFLOAD_LOAD_LEDGER`))
		})
	}
}

// TestParkedBatchRetriedByOperator: a warehouse table the rows do not fit
// parks the batches; the operator sees them with `offload outbox list`,
// fixes the table, queues them with `offload outbox retry`, and the
// restarted appliance loads them, each event once.
func TestParkedBatchRetriedByOperator(t *testing.T) {
	srv := newWarehouse(t)
	for _, q := range []string{`CREATE SCHEMA IF NOT EXISTS PUBLIC`, `CREATE TABLE PUBLIC.OFFLOAD_TRANSACTIONS (EVENT_ID VARCHAR)`} {
		if _, err := srv.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	brokers, cl := kfakeTopic(t, "shop", 2)
	dataDir := t.TempDir()
	cfg := testConfig(t, dataDir, brokers, "shop", warehouseYAML(srv))
	d := startDaemon(t, cfg, warehouseEnv)
	d.waitLog(t, "partitions assigned", 30*time.Second)
	want, _ := shopEvents(t, cl, 0, 2000, rand.New(rand.NewPCG(5, 6)))
	d.waitLog(t, "refused the batch for good; parked", 30*time.Second)
	stopDaemon(t, d)

	t.Setenv("OFFLOAD_WAREHOUSE_PASSWORD", warehousePassword)
	code, out, errOut := runCLI("outbox", "list", "--config", cfg)
	if code != 0 || !strings.Contains(out, "parked") || !strings.Contains(out, "ORDER_ID") {
		t.Fatalf("outbox list: %d\n%s%s", code, out, errOut)
	}
	if _, err := srv.DB().Exec(`DROP TABLE PUBLIC.OFFLOAD_TRANSACTIONS`); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI("outbox", "retry", "--config", cfg, "--all-parked")
	if code != 0 || !strings.Contains(out, "queued for the loader again") {
		t.Fatalf("outbox retry: %d\n%s%s", code, out, errOut)
	}
	d = startDaemon(t, cfg, warehouseEnv)
	waitRows(t, srv, d, len(want), 60*time.Second)
	stopDaemon(t, d)
	deliverytest.CheckTables(t, srv.DB(), "PUBLIC.", want, -1, true)
	if code, out, _ := runCLI("outbox", "list", "--config", cfg); code != 0 || !strings.Contains(out, "0 of them parked") {
		t.Fatalf("after the retry: %s", out)
	}
}

// TestSIGTERMWhileLoading stops the daemon while a load hangs in the
// warehouse (at the ledger insert, inside the load's transaction): it
// exits 0 within the grace period, the batch stays in the outbox, and
// after a restart every event is in the warehouse exactly once.
func TestSIGTERMWhileLoading(t *testing.T) {
	srv := newWarehouse(t)
	hang := srv.Inject(snowtest.Fault{Kind: snowtest.FaultHang, Hang: time.Minute, SQL: regexp.MustCompile(`^INSERT INTO OFFLOAD_LOAD_LEDGER`)})
	brokers, cl := kfakeTopic(t, "shop", 2)
	dataDir := t.TempDir()
	cfg := testConfig(t, dataDir, brokers, "shop", warehouseYAML(srv))
	d := startDaemon(t, cfg, warehouseEnv)
	d.waitLog(t, "partitions assigned", 30*time.Second)
	want, _ := shopEvents(t, cl, 0, 2000, rand.New(rand.NewPCG(9, 10)))
	deadline := time.Now().Add(30 * time.Second)
	for hang.Hits() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if hang.Hits() == 0 {
		t.Fatal("no load reached the ledger insert")
	}
	start := time.Now()
	stopDaemon(t, d)
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("stopping took %s with shutdown_grace 10s", took)
	}
	if n := deliverytest.QueryStrings(t, srv.DB(), `SELECT count(*) FROM PUBLIC.OFFLOAD_LOAD_LEDGER`); n[0] != "0" {
		t.Fatalf("the interrupted load committed: %v ledger rows", n)
	}
	srv.ClearFaults()
	d = startDaemon(t, cfg, warehouseEnv)
	waitRows(t, srv, d, len(want), 60*time.Second)
	stopDaemon(t, d)
	deliverytest.CheckTables(t, srv.DB(), "PUBLIC.", want, -1, true)
}

// TestReconcile: after a run, `offload reconcile` finds everything equal
// and exits 0; rows deleted in the warehouse, a ledger row gone and a
// stranger's ledger row are each reported, with exit 1.
func TestReconcile(t *testing.T) {
	srv := newWarehouse(t)
	brokers, cl := kfakeTopic(t, "shop", 2)
	// Batches of 500 rows: several to compare.
	cfg := testConfig(t, t.TempDir(), brokers, "shop", strings.Replace(warehouseYAML(srv), "  seal_age: 1s\n", "  seal_age: 1s\n  seal_rows: 500\n", 1))
	d := startDaemon(t, cfg, warehouseEnv)
	d.waitLog(t, "partitions assigned", 30*time.Second)
	want, _ := shopEvents(t, cl, 0, 3000, rand.New(rand.NewPCG(11, 12)))
	waitRows(t, srv, d, len(want), 60*time.Second)
	stopDaemon(t, d)

	t.Setenv("OFFLOAD_WAREHOUSE_PASSWORD", warehousePassword)
	code, out, errOut := runCLI("reconcile", "--config", cfg)
	if code != 0 || !strings.Contains(out, "all match") {
		t.Fatalf("reconcile after a clean run: %d\n%s%s", code, out, errOut)
	}
	batches := deliverytest.QueryStrings(t, srv.DB(), `SELECT BATCH_ID FROM PUBLIC.OFFLOAD_LOAD_LEDGER ORDER BY 1`)
	if len(batches) < 2 {
		t.Fatalf("only %d batches", len(batches))
	}
	for _, q := range []string{
		`DELETE FROM PUBLIC.OFFLOAD_TRANSACTIONS WHERE EVENT_ID IN (SELECT EVENT_ID FROM PUBLIC.OFFLOAD_TRANSACTIONS WHERE BATCH_ID = '` + batches[0] + `' LIMIT 3)`,
		`DELETE FROM PUBLIC.OFFLOAD_LOAD_LEDGER WHERE BATCH_ID = '` + batches[1] + `'`,
		`INSERT INTO PUBLIC.OFFLOAD_LOAD_LEDGER (BATCH_ID, APPLIANCE_ID, ROWS, WINDOW_ROWS, BYTES, CONTROL_TOTALS, LOADED_AT)
			VALUES ('test-ffffffffffffffff', 'test', 1, 0, 10, '[]', now())`,
	} {
		if _, err := srv.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	code, out, _ = runCLI("reconcile", "--config", cfg)
	if code != 1 {
		t.Fatalf("reconcile after tampering: exit %d\n%s", code, out)
	}
	for _, want := range []string{batches[0] + "  mismatch", batches[1] + "  missing", "test-ffffffffffffffff  extra"} {
		if !strings.Contains(out, want) {
			t.Errorf("reconcile does not report %q:\n%s", want, out)
		}
	}
}
