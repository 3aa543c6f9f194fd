package main

import (
	"context"
	"io"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/snowtest"
	"github.com/offload/offload/tui"
)

// pollStatus fetches the status document as the dashboard does.
func pollStatus(t *testing.T, base string) admin.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := admin.NewClient(base, "").Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// dashboardView is what `offload top` shows of the appliance at base
// after its first poll, in plain text.
func dashboardView(t *testing.T, base string) string {
	t.Helper()
	r := lipgloss.NewRenderer(io.Discard)
	r.SetColorProfile(termenv.Ascii)
	m := tui.New(tui.Options{Client: admin.NewClient(base, ""), Addr: base, Interval: time.Second, Renderer: r})
	// Init batches the first poll with the clock; the poll comes first.
	batch, ok := m.Init()().(tea.BatchMsg)
	if !ok || len(batch) == 0 {
		t.Fatal("the dashboard's Init does not start a poll")
	}
	next, _ := m.Update(batch[0]())
	return next.View()
}

// metricValue reads one unlabelled gauge from /metrics.
func metricValue(t *testing.T, base, name string) float64 {
	t.Helper()
	_, body := adminRequest(t, "GET", base+"/metrics", "")
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics lacks %s", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// holdUnavailable polls the status at base for d, failing the test
// unless every poll says warehouse_unavailable with the loader's reason;
// it returns the loader states seen meanwhile.
func holdUnavailable(t *testing.T, base string, d time.Duration) map[string]bool {
	t.Helper()
	states := map[string]bool{}
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		st := pollStatus(t, base)
		states[st.Loader.State] = true
		if st.State != "warehouse_unavailable" || st.Loader.Message == "" {
			t.Fatalf("with the warehouse away: state %s, loader %+v", st.State, st.Loader)
		}
	}
	return states
}

// TestHungWarehouseShows: a warehouse that holds a load's COPY without
// answering shows in the status (warehouse_unavailable, "warehouse not
// answering for ..."), on the dashboard and in the metric before the
// driver's request timeout ends the request; the retry then loads
// everything. A warehouse refusing connections keeps the status at
// warehouse_unavailable, without flickering to ok while the loader's
// probes run, until it is back.
func TestHungWarehouseShows(t *testing.T) {
	const requestTimeout = 10 * time.Second
	srv := newWarehouse(t)
	brokers, cl := kfakeTopic(t, "shop", 1)
	wh := strings.Replace(warehouseYAML(srv), "request_timeout: 2s", "request_timeout: "+requestTimeout.String(), 1)
	wh = strings.Replace(wh, "loader:\n", "loader:\n  unanswered_after: 1s\n  load_timeout: 30s\n", 1)
	d := startDaemon(t, testConfig(t, t.TempDir(), brokers, "shop", wh), warehouseEnv)
	base := "http://" + adminAddr(t, d)
	d.waitLog(t, "partitions assigned", 30*time.Second)
	rng := rand.New(rand.NewPCG(16, 3))
	want, _ := shopEvents(t, cl, 0, 200, rng)
	waitRows(t, srv, d, len(want), 60*time.Second)
	if st := pollStatus(t, base); st.State != "ok" || st.Loader.Message != "" {
		t.Fatalf("status after the first loads: %s %+v", st.State, st.Loader)
	}

	hang := srv.Inject(snowtest.Fault{Kind: snowtest.FaultHang, SQL: regexp.MustCompile(`^COPY INTO`), Hang: time.Minute})
	more, _ := shopEvents(t, cl, 200, 200, rng)
	deadline := time.Now().Add(60 * time.Second)
	for hang.Hits() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no COPY reached the warehouse within 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	hungAt := time.Now()
	var st admin.Status
	for {
		st = pollStatus(t, base)
		if st.State == "warehouse_unavailable" && st.Loader.UnansweredSeconds > 0 {
			break
		}
		if time.Since(hungAt) > requestTimeout {
			t.Fatalf("%s after the COPY hung, the status still says %s, loader %+v", requestTimeout, st.State, st.Loader)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("warehouse_unavailable %s after the COPY hung: %s", time.Since(hungAt).Round(time.Millisecond), st.Loader.Message)
	if st.Loader.State != "loading" || !strings.HasPrefix(st.Loader.Message, "warehouse not answering for ") {
		t.Fatalf("loader status while the COPY hangs: %+v", st.Loader)
	}
	view := dashboardView(t, base)
	if !strings.Contains(view, "warehouse_unavailable") || !strings.Contains(view, "warehouse not answering for ") {
		t.Fatalf("the dashboard does not show the hung warehouse:\n%s", view)
	}
	if v := metricValue(t, base, "offload_loader_unanswered_seconds"); v < 1 {
		t.Fatalf("offload_loader_unanswered_seconds = %v while the warehouse hangs", v)
	}
	if time.Since(hungAt) > requestTimeout {
		t.Fatalf("the checks ended %s after the hang began, past the request timeout %s", time.Since(hungAt), requestTimeout)
	}
	// The driver gives up at the request timeout; the retry loads it all.
	waitRows(t, srv, d, len(want)+len(more), 90*time.Second)

	srv.RefuseConnections()
	down, _ := shopEvents(t, cl, 400, 100, rng)
	deadline = time.Now().Add(60 * time.Second)
	for pollStatus(t, base).State != "warehouse_unavailable" {
		if time.Now().After(deadline) {
			t.Fatal("the status never said warehouse_unavailable with the warehouse refusing connections")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Retries, the open circuit and its probes: unavailable all along.
	states := holdUnavailable(t, base, 4*time.Second)
	t.Logf("loader states seen while the warehouse refused connections: %v", states)
	if err := srv.AcceptConnections(); err != nil {
		t.Fatal(err)
	}
	waitRows(t, srv, d, len(want)+len(more)+len(down), 90*time.Second)
	deadline = time.Now().Add(30 * time.Second)
	for st := pollStatus(t, base); st.State != "ok"; st = pollStatus(t, base) {
		if time.Now().After(deadline) {
			t.Fatalf("status after the warehouse came back: %s, loader %+v", st.State, st.Loader)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
