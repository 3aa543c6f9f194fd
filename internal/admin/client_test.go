package admin

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const testToken = "s3cret-token-0123456789"

// appliance serves the status and actions as the admin server does (the
// status documents are the dashboard's golden ones, tui/testdata):
// actions need the bearer token, status is open.
func appliance(t *testing.T, statusFile string) *httptest.Server {
	t.Helper()
	raw, err := os.ReadFile(statusFile)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(raw)
	})
	mux.HandleFunc("POST /api/v1/batches/{id}/retry", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error": "a bearer token is required (admin.token_file)"}`))
			return
		}
		w.Write([]byte(`{"result": "` + r.PathValue("id") + ` queued for the loader again"}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestClientStatus(t *testing.T) {
	for file, demo := range map[string]bool{"../../tui/testdata/healthy.json": false, "../../tui/testdata/demo.json": true} {
		srv := appliance(t, file)
		st, err := NewClient(srv.URL, "").Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.ApplianceID != "edge-berlin-3" || st.Loader == nil || len(st.Kafka.Partitions) != 5 {
			t.Errorf("%s: decoded %+v", file, st)
		}
		if (st.Demo != nil) != demo || (demo && !st.Demo.WarehouseUp) {
			t.Errorf("%s: demo = %+v, want present %v", file, st.Demo, demo)
		}
	}
}

func TestClientActions(t *testing.T) {
	srv := appliance(t, "../../tui/testdata/parked.json")
	addr := strings.TrimPrefix(srv.URL, "http://") // a bare host:port works too
	res, err := NewClient(addr, testToken).Post(context.Background(), "/api/v1/batches/b1/retry")
	if err != nil || res != "b1 queued for the loader again" {
		t.Errorf("retry = %q, %v", res, err)
	}

	_, err = NewClient(srv.URL, "wrong-token-0123456789").Post(context.Background(), "/api/v1/batches/b1/retry")
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "bearer token is required") {
		t.Errorf("wrong token: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "wrong-token") {
		t.Errorf("the error shows the token: %v", err)
	}

	if _, err := NewClient(srv.URL, "").Post(context.Background(), "/api/v1/loader/pause"); !errors.Is(err, ErrNoToken) {
		t.Errorf("without a token: %v, want ErrNoToken", err)
	}
}

func TestClientDown(t *testing.T) {
	srv := appliance(t, "../../tui/testdata/healthy.json")
	srv.Close()
	if _, err := NewClient(srv.URL, testToken).Status(context.Background()); err == nil || strings.Contains(err.Error(), testToken) {
		t.Errorf("status from a stopped appliance: %v", err)
	}
}

// TestClientMetrics reads a real Prometheus exposition (client_golang,
// as internal/admin serves it): unlabelled samples by name, nothing else.
func TestClientMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "offload_test_backlog_records"})
	g.Set(1234.5)
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "offload_test_lag"}, []string{"partition"})
	v.WithLabelValues("0").Set(7)
	reg.MustRegister(g, v)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	m, err := NewClient(srv.URL, "").Metrics(context.Background(),
		"process_cpu_seconds_total", "offload_test_backlog_records", "offload_test_lag", "offload_not_exported")
	if err != nil {
		t.Fatal(err)
	}
	// The CPU seconds are read, whatever their value: a test process
	// can be under one clock tick (10 ms) of CPU here, which reads 0.
	if cpu, ok := m["process_cpu_seconds_total"]; !ok || cpu < 0 || m["offload_test_backlog_records"] != 1234.5 || len(m) != 2 {
		t.Errorf("metrics = %v, want the process's CPU seconds and the backlog only", m)
	}
	if _, err := NewClient(srv.URL+"/missing", "").Metrics(context.Background(), "x"); err == nil {
		t.Errorf("no error for a 404")
	}
}
