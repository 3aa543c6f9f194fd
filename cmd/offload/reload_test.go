package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestSIGHUPReloadsTables runs the daemon with a rates file, changes the
// file and sends SIGHUP: events consumed after the reload get the new rate,
// those before keep the old one. A broken file on a later SIGHUP is
// reported and the tables in use stay.
func TestSIGHUPReloadsTables(t *testing.T) {
	brokers, cl := kfakeTopic(t, "shop", 1)
	now := time.Now().UTC().Format(time.RFC3339)
	produceN := func(prefix string, n int) {
		t.Helper()
		var recs []*kgo.Record
		for i := 0; i < n; i++ {
			recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil,
				`{"event_id":"%s-%d","event_type":"order_placed","store_id":"s1","amount":"10.00","currency":"EUR","event_time":"%s"}`, prefix, i, now)})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	dataDir := t.TempDir()
	rates := filepath.Join(t.TempDir(), "rates.csv")
	writeRates := func(body string) {
		t.Helper()
		if err := os.WriteFile(rates, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeRates("currency,rate\nEUR,1.5\n")
	cfg := testConfig(t, dataDir, brokers, "shop")
	d := startDaemon(t, cfg, "OFFLOAD_ENGINE_BASE_CURRENCY=USD", "OFFLOAD_ENGINE_RATES_FILE="+rates)
	d.waitLog(t, "partitions assigned", 30*time.Second)
	produceN("before", 10)
	waitOutbox := func(want int) {
		t.Helper()
		d.waitLog(t, fmt.Sprintf("accepted_total=%d ", want), 30*time.Second)
	}
	waitOutbox(10)

	writeRates("currency,rate\nEUR,2\n")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, "rates and reference tables reloaded", 10*time.Second)
	produceN("after", 10)
	waitOutbox(20)

	writeRates("currency,rate\nEUR,two\n")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, "tables not reloaded", 10*time.Second)
	if !strings.Contains(d.logs.String(), rates) {
		t.Fatalf("the reload error does not name the file %s", rates)
	}
	produceN("broken", 10)
	waitOutbox(30)

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	db, err := sql.Open("duckdb", filepath.Join(dataDir, "engine.duckdb")+"?access_mode=read_only")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT split_part(event_id, '-', 1), CAST(base_amount AS VARCHAR), count(*) FROM outbox_rows GROUP BY ALL ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var prefix, base string
		var n int
		if err := rows.Scan(&prefix, &base, &n); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s %d", prefix, base, n))
	}
	want := "[after 20.0000 10 before 15.0000 10 broken 20.0000 10]"
	if fmt.Sprint(got) != want {
		t.Fatalf("base amounts by phase: %v, want %s", got, want)
	}
}
