package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/engine"
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
	withRows, err := engine.RowsSQL(context.Background(), db, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(withRows + `SELECT split_part(event_id, '-', 1), CAST(base_amount AS VARCHAR), count(*) FROM outbox_rows GROUP BY ALL ORDER BY 1`)
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

// TestSIGHUPReloadsConfiguration changes filter rules, the seal policy and
// the log level in the file and sends SIGHUP: they apply without a
// restart; a changed Kafka group is reported as needing one.
func TestSIGHUPReloadsConfiguration(t *testing.T) {
	brokers, cl := kfakeTopic(t, "shop", 1)
	cfg := testConfig(t, t.TempDir(), brokers, "shop", "topics:\n  shop:\n    filters:\n      - {name: test_orders, field: order_id, prefix: [TEST-]}\n")
	d := startDaemon(t, cfg)
	base := "http://" + adminAddr(t, d)
	d.waitLog(t, "partitions assigned", 30*time.Second)
	body, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.NewReplacer(
		"prefix: [TEST-]}", "prefix: [TEST-]}\n      - {name: qa_stores, field: store_id, prefix: [qa-]}",
		"level: debug", "level: info",
		"group: offload-test", "group: offload-other",
	).Replace(string(body)) + "outbox:\n  seal_rows: 5\n"
	if err := os.WriteFile(cfg, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, "SIGHUP: configuration reloaded", 10*time.Second)
	line := d.logs.String()[strings.LastIndex(d.logs.String(), "SIGHUP: configuration reloaded"):]
	line = line[:strings.Index(line, "\n")]
	for _, want := range []string{"log.level", "outbox.seal_rows", "topics.shop.filters", "not_reloaded_restart_needed=[kafka.group]"} {
		if !strings.Contains(line, want) {
			t.Fatalf("reload line lacks %q: %s", want, line)
		}
	}
	now := time.Now().UTC().Format(time.RFC3339)
	var recs []*kgo.Record
	for i := 0; i < 12; i++ {
		store := "s1"
		if i%3 == 0 {
			store = "qa-1"
		}
		recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil, `{"event_id":"r-%d","event_type":"order_placed","store_id":"%s","amount":"1","currency":"EUR","event_time":"%s"}`, i, store, now)})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// The new rule filters the qa store's 4 events; the seal policy of 5
	// rows seals the other 8 at once; debug lines stop.
	d.waitLog(t, "outbox batch sealed", 20*time.Second)
	var st struct {
		Engine struct {
			Accepted, Filtered int64
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for st.Engine.Accepted < 8 && time.Now().Before(deadline) {
		_, b := adminRequest(t, "GET", base+"/api/v1/status", "")
		_ = json.Unmarshal(b, &st)
		time.Sleep(50 * time.Millisecond)
	}
	if st.Engine.Accepted != 8 || st.Engine.Filtered != 4 {
		t.Fatalf("after the reload: %+v", st.Engine)
	}
	after := d.logs.String()[strings.Index(d.logs.String(), "SIGHUP: configuration reloaded"):]
	if strings.Contains(after, "level=DEBUG") {
		t.Fatal("debug lines after the level went to info")
	}
	stopDaemon(t, d)
}
