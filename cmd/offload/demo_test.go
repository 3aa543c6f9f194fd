package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/testenv"
)

// TestDemoHeadless runs `offload demo --no-tui --json` for a few seconds:
// everything embedded, and the summary says every valid event reached the
// warehouse exactly once, duplicates were dropped and malformed records
// dead-lettered. It runs once per in-process warehouse type; the redshift
// and bigquery runs last the 30 s in which windows close (10 s windows,
// 15 s lateness) and must ship them; bigquery runs at the demo's default
// rate for it. Its --dir does not exist yet: the demo creates it and says
// so.
func TestDemoHeadless(t *testing.T) {
	for warehouse, flags := range map[string][]string{
		"snowflake": {"--duration", "12s", "--rate", "400"},
		"redshift":  {"--duration", "30s", "--rate", "400"},
		"bigquery":  {"--duration", "30s"},
	} {
		t.Run(warehouse, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "new", "demo")
			args := append([]string{"demo", "--warehouse", warehouse, "--no-tui", "--json", "--dir", dir}, flags...)
			cmd := boundedCommand(t, 5*time.Minute, offloadBin, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("offload demo: %v\n%s\n%s", err, out, stderr.String())
			}
			if want := "created the data directory " + dir; !strings.Contains(stderr.String(), want) {
				t.Fatalf("stderr does not say %q:\n%s", want, stderr.String())
			}
			var s demoSummary
			if err := json.Unmarshal(out, &s); err != nil {
				t.Fatalf("summary is not JSON: %v\n%s", err, out)
			}
			if !s.ExactlyOnce || s.Produced < 1000 || s.Loaded != s.Valid || s.Deduplicated != s.Duplicates ||
				s.DeadLettered != s.Malformed || s.Missing != 0 || s.Extra != 0 || (warehouse != "snowflake" && s.Windows == 0) {
				t.Fatalf("summary: %+v", s)
			}
		})
	}
}

// TestDemoEndsOnHangup: a demo whose terminal closes (SIGHUP) stops,
// checks the warehouse and prints its summary, instead of running on.
func TestDemoEndsOnHangup(t *testing.T) {
	cmd := exec.Command(offloadBin, "demo", "--no-tui", "--duration", "10m", "--rate", "200", "--dir", t.TempDir())
	var stdout bytes.Buffer
	stderr := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(stderr.String(), "admin endpoint"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("the demo did not start within 60s:\n%s", stderr.String())
		}
	}
	time.Sleep(3 * time.Second)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil || !regexp.MustCompile(`exactly once +yes`).MatchString(stdout.String()) {
			t.Fatalf("demo after SIGHUP: %v\n%s\n%s", err, stdout.String(), stderr.String())
		}
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("the demo still runs 3 minutes after SIGHUP:\n%s", stderr.String())
	}
}

// TestDemoWarehouseDownState takes the demo's warehouse down through the
// dashboard's action while events flow: the status document (and so the
// dashboard's header) says warehouse_unavailable within the loader's first
// retries and keeps saying it, whatever the loader is doing (retrying,
// circuit open, probing, idle between batches), until the warehouse is
// back; then it says ok again and every valid event is loaded exactly
// once. It runs once per in-process warehouse type.
func TestDemoWarehouseDownState(t *testing.T) {
	for _, warehouse := range []string{"snowflake", "redshift"} {
		t.Run(warehouse, func(t *testing.T) {
			d, err := startDemo(t.TempDir(), 300, warehouse)
			if err != nil {
				t.Fatal(err)
			}
			defer d.close()
			base := "http://" + d.adminAddr
			waitDemoState(t, base, "ok", func(st admin.Status) bool { return st.Loader.Loaded > 0 }, 60*time.Second)

			if code, body := adminRequest(t, "POST", base+"/api/v1/demo/warehouse/down", d.Token); code != http.StatusOK {
				t.Fatalf("warehouse down: %d %s", code, body)
			}
			waitDemoState(t, base, "warehouse_unavailable", nil, 30*time.Second)
			loaderStates := holdUnavailable(t, base, 8*time.Second)
			t.Logf("loader states seen while the warehouse was down: %v", loaderStates)
			if header := strings.SplitN(dashboardView(t, base), "\n", 2)[0]; !strings.Contains(header, "warehouse_unavailable") {
				t.Fatalf("the dashboard's header with the warehouse down: %q", header)
			}

			if code, body := adminRequest(t, "POST", base+"/api/v1/demo/warehouse/up", d.Token); code != http.StatusOK {
				t.Fatalf("warehouse up: %d %s", code, body)
			}
			waitDemoState(t, base, "ok", nil, 60*time.Second)
			sum, err := d.finish()
			if err != nil {
				t.Fatal(err)
			}
			if !sum.ExactlyOnce || sum.Loaded != sum.Valid {
				t.Fatalf("summary after the outage: %+v", sum)
			}
		})
	}
}

// waitDemoState polls the status at base until its state is want (and
// extra, when given, holds), or fails the test after timeout.
func waitDemoState(t *testing.T, base, want string, extra func(admin.Status) bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := pollStatus(t, base)
		if st.State == want && (extra == nil || extra(st)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the status did not say %s within %s: state %s, loader %+v", want, timeout, st.State, st.Loader)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
