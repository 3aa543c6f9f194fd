package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const adminToken = "admin-t0ken-5c1e8a"

// adminAddr returns the daemon's admin address from its log.
func adminAddr(t *testing.T, d *daemonProc) string {
	t.Helper()
	d.waitLog(t, "admin endpoint listening", 30*time.Second)
	m := regexp.MustCompile(`admin endpoint listening"? addr=(\S+)`).FindStringSubmatch(d.logs.String())
	if m == nil {
		t.Fatal("no admin address in the log")
	}
	return m[1]
}

func adminRequest(t *testing.T, method, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

// catalogNames returns the metric names of docs/METRICS.md's tables.
func catalogNames(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/METRICS.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(offload_[a-z0-9_]+)` \\| (\\w+) ").FindAllStringSubmatch(string(b), -1) {
		name := m[1]
		if m[2] == "histogram" {
			name += "_bucket"
		}
		out = append(out, name)
	}
	if len(out) < 30 {
		t.Fatalf("only %d metrics found in docs/METRICS.md", len(out))
	}
	return out
}

// TestAdminAPI runs the daemon into the test warehouse with a token and
// DogStatsD output on: /metrics serves every metric of the catalog,
// /api/v1/status reports the run, actions need the token and work with it,
// and a UDP listener receives the metrics under the documented names and
// tags.
func TestAdminAPI(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	srv := newWarehouse(t)
	brokers, cl := kfakeTopic(t, "shop", 2)
	cfg := testConfig(t, t.TempDir(), brokers, "shop", warehouseYAML(srv), fmt.Sprintf(`datadog:
  statsd_addr: %s
  interval: 1s
  tags: [site:test-lab]
topics:
  shop:
    filters:
      - {name: test_orders, field: order_id, prefix: [TEST-]}
`, udp.LocalAddr()))
	d := startDaemon(t, cfg, warehouseEnv, "OFFLOAD_ADMIN_TOKEN="+adminToken)
	base := "http://" + adminAddr(t, d)
	d.waitLog(t, "partitions assigned", 30*time.Second)
	want, malformed := shopEvents(t, cl, 0, 2000, rand.New(rand.NewPCG(7, 8)))
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte(`{"event_id":"t-1","order_id":"TEST-1","event_type":"order_placed","store_id":"s","amount":"1","currency":"EUR","event_time":"` + time.Now().UTC().Format(time.RFC3339) + `"}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// One event with a field the mapping does not read, so the unmapped
	// fields' counter has a series.
	want["t-2"] = true
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte(`{"event_id":"t-2","order_id":"ord-t-2","event_type":"order_placed","store_id":"s","amount":"1","currency":"EUR","coupon":"WINTER","event_time":"` + shopEpoch.Add(2000*300*time.Millisecond).Format(time.RFC3339) + `"}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitRows(t, srv, d, len(want), 60*time.Second)

	code, body := adminRequest(t, "GET", base+"/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, name := range catalogNames(t) {
		if !regexp.MustCompile(`(?m)^` + name + `[{ ]`).Match(body) {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	var st struct {
		ApplianceID string `json:"appliance_id"`
		State       string
		Kafka       struct {
			Ready      bool
			Records    uint64
			Partitions []struct{ Lag int64 }
		}
		Engine struct {
			Accepted, Rejected, Filtered, Deduplicated int64
			Watermark                                  *time.Time
			Unmapped                                   []struct {
				Name string
				Rows int64
			} `json:"unmapped_fields"`
		}
		Disk struct {
			BudgetBytes int64   `json:"budget_bytes"`
			Runway      float64 `json:"runway_seconds"`
		}
		Loader *struct {
			State   string
			Circuit string
			Rows    int64
		}
	}
	code, body = adminRequest(t, "GET", base+"/api/v1/status", "")
	if code != 200 || json.Unmarshal(body, &st) != nil {
		t.Fatalf("/api/v1/status: %d %s", code, body)
	}
	if st.ApplianceID != "test" || !st.Kafka.Ready || len(st.Kafka.Partitions) != 2 || st.Engine.Accepted != int64(len(want)) ||
		st.Engine.Rejected != int64(malformed) || st.Engine.Filtered != 1 || st.Engine.Deduplicated == 0 || st.Engine.Watermark == nil ||
		st.Disk.BudgetBytes != 256<<20 || st.Loader == nil || st.Loader.Rows != int64(len(want)) || st.Loader.Circuit != "closed" ||
		len(st.Engine.Unmapped) != 1 || st.Engine.Unmapped[0].Name != "coupon" || st.Engine.Unmapped[0].Rows != 1 {
		t.Fatalf("status:\n%s", body)
	}

	for _, path := range []string{"/api/v1/loader/pause", "/api/v1/loader/resume", "/api/v1/batches/x/retry"} {
		if code, _ := adminRequest(t, "POST", base+path, ""); code != 401 {
			t.Errorf("POST %s without the token: %d, want 401", path, code)
		}
	}
	if code, body := adminRequest(t, "POST", base+"/api/v1/loader/pause", adminToken); code != 200 {
		t.Fatalf("pause: %d %s", code, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for st.Loader.State != "paused" && time.Now().Before(deadline) {
		_, body = adminRequest(t, "GET", base+"/api/v1/status", "")
		_ = json.Unmarshal(body, &st)
		time.Sleep(50 * time.Millisecond)
	}
	if st.Loader.State != "paused" {
		t.Fatalf("the loader did not pause: %s", body)
	}
	if code, _ := adminRequest(t, "POST", base+"/api/v1/loader/resume", adminToken); code != 200 {
		t.Fatal("resume failed")
	}
	if code, body := adminRequest(t, "POST", base+"/api/v1/batches/nope/retry", adminToken); code != 400 || !strings.Contains(string(body), "no such outbox batch") {
		t.Fatalf("retry of an unknown batch: %d %s", code, body)
	}

	// DogStatsD: every datagram line is NAME:VALUE|TYPE|#tags.
	wantDD := map[string]string{"offload.ingest_records_total": "|c|", "offload.loader_rows_total": "|c|",
		"offload.outbox_rows": "|g|", "offload.kafka_lag_records": "|g|", "offload.wal_append_seconds.count": "|c|"}
	seen := map[string]string{}
	all := func() bool {
		for name := range wantDD {
			if _, ok := seen[name]; !ok {
				return false
			}
		}
		return true
	}
	buf := make([]byte, 65536)
	deadline = time.Now().Add(10 * time.Second)
	for !all() && time.Now().Before(deadline) {
		_ = udp.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := udp.ReadFrom(buf)
		if err != nil {
			break
		}
		for _, line := range strings.Split(strings.TrimSpace(string(buf[:n])), "\n") {
			name, rest, _ := strings.Cut(line, ":")
			seen[name] = rest
		}
	}
	for name, kind := range wantDD {
		rest, ok := seen[name]
		if !ok {
			t.Errorf("DogStatsD: %s not received (got %d names)", name, len(seen))
			continue
		}
		if !strings.Contains(rest, kind) || !strings.Contains(rest, "appliance:test") || !strings.Contains(rest, "site:test-lab") {
			t.Errorf("DogStatsD: %s:%s lacks type %s or the tags", name, rest, kind)
		}
	}
	if rest := seen["offload.kafka_lag_records"]; !strings.Contains(rest, "topic:shop") || !strings.Contains(rest, "partition:") {
		t.Errorf("DogStatsD: labels are not tags: %s", rest)
	}
	stopDaemon(t, d)
}
