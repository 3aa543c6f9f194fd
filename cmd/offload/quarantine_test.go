package main

import (
	"crypto/sha256"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload/offload/internal/deliverytest"
	"github.com/offload/offload/internal/snowtest"
)

// TestOutboxBitFlipsQuarantined runs the daemon with a slow uplink, so the
// loader waits before each upload, and flips random bits in exported rows
// files while it waits: each damaged file is found before its PUT, lies in
// data_dir/quarantine/outbox byte for byte, is counted by /metrics and
// /api/v1/status (what offload top shows), and the warehouse still
// receives every event exactly once, never from a damaged file. After a
// restart, the status and /metrics still count the files in quarantine.
func TestOutboxBitFlipsQuarantined(t *testing.T) {
	// Every staged file a COPY reads, by SHA-256: what was handed over
	// for loading.
	var copiedMu sync.Mutex
	var copied [][32]byte
	var copyErr error
	srv, err := snowtest.New(snowtest.Options{OnCopy: func(path string) {
		b, err := os.ReadFile(path)
		copiedMu.Lock()
		defer copiedMu.Unlock()
		if err != nil && copyErr == nil {
			copyErr = err
		}
		copied = append(copied, sha256.Sum256(b))
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	srv.AddUser(snowtest.User{Name: "OFFLOAD", Password: warehousePassword})
	brokers, cl := kfakeTopic(t, "shop", 2)
	dataDir := t.TempDir()
	cfg := testConfig(t, dataDir, brokers, "shop", warehouseYAML(srv))
	// 400-row batches of 15-25 KB at 12 KiB/s: after the first upload,
	// each waits a second or more, long after the test damaged its file.
	d := startDaemon(t, cfg, warehouseEnv, "OFFLOAD_ADMIN_TOKEN="+adminToken,
		"OFFLOAD_OUTBOX_SEAL_ROWS=400", "OFFLOAD_LOADER_UPLINK_RATE=12KiB")
	base := "http://" + adminAddr(t, d)
	if code, body := adminRequest(t, "POST", base+"/api/v1/loader/pause", adminToken); code != 200 {
		t.Fatalf("pause: %d %s", code, body)
	}
	d.waitLog(t, "partitions assigned", 30*time.Second)
	want, _ := shopEvents(t, cl, 0, 2400, rand.New(rand.NewPCG(11, 12)))

	type status struct {
		Engine struct{ Accepted int64 }
		Outbox struct {
			SealedBatches int `json:"sealed_batches"`
		}
		Loader struct {
			State               string
			Loaded              int64
			QuarantinedFiles    int64  `json:"quarantined_files"`
			LastQuarantinedFile string `json:"last_quarantined_file"`
		}
	}
	poll := func() status {
		t.Helper()
		var st status
		code, body := adminRequest(t, "GET", base+"/api/v1/status", "")
		if code != 200 || json.Unmarshal(body, &st) != nil {
			t.Fatalf("/api/v1/status: %d %s", code, body)
		}
		return st
	}
	// Every event is in a sealed batch before the loader goes: batches
	// then ship back to back, and all but the first wait for the uplink.
	// The last open batch seals at seal_age (1s).
	deadline := time.Now().Add(30 * time.Second)
	for st := poll(); st.Engine.Accepted != int64(len(want)); st = poll() {
		if time.Now().After(deadline) {
			t.Fatalf("not all accepted: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2500 * time.Millisecond)
	st := poll()
	sealed := st.Outbox.SealedBatches
	if sealed < 4 {
		t.Fatalf("%d sealed batches: too few to damage some", sealed)
	}

	// The disk: flips bits in the rows file of the 2nd to last batch that
	// were sealed, once per batch (not in the export that replaces it).
	// The damaged bytes go to a temporary file renamed over the export, so
	// the loader hashes either the whole export or the whole damaged file,
	// never one half-rewritten.
	rng := rand.New(rand.NewPCG(13, 14))
	var mu sync.Mutex
	damaged := map[[32]byte][]byte{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var order []string
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			// A batch's rows are its parts (<batch>.rows.<part>.parquet)
			// or their compaction (<batch>.rows.parquet).
			files, _ := filepath.Glob(filepath.Join(dataDir, "outbox", "*.rows.*parquet"))
			for _, f := range files {
				id, _, _ := strings.Cut(filepath.Base(f), ".rows.")
				if slices.Contains(order, id) {
					continue
				}
				order = append(order, id)
				if len(order) == 1 || len(order) > sealed {
					continue // the first upload does not wait; later batches may not either
				}
				b, err := os.ReadFile(f)
				if err != nil {
					continue
				}
				for range 1 + rng.IntN(6) {
					bit := rng.IntN(len(b) * 8)
					b[bit/8] ^= 1 << (bit % 8)
				}
				tmp := f + ".damaging"
				if os.WriteFile(tmp, b, 0o640) != nil || os.Rename(tmp, f) != nil {
					_ = os.Remove(tmp)
					continue
				}
				mu.Lock()
				damaged[sha256.Sum256(b)] = b
				mu.Unlock()
			}
		}
	}()
	if code, body := adminRequest(t, "POST", base+"/api/v1/loader/resume", adminToken); code != 200 {
		t.Fatalf("resume: %d %s", code, body)
	}
	waitRows(t, srv, d, len(want), 90*time.Second)
	close(stop)
	<-done

	mu.Lock()
	n := len(damaged)
	mu.Unlock()
	if n < 2 {
		t.Fatalf("only %d files damaged", n)
	}
	qdir := filepath.Join(dataDir, "quarantine", "outbox")
	entries, err := os.ReadDir(qdir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(qdir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if want, ok := damaged[sha256.Sum256(b)]; !ok || string(want) != string(b) {
			t.Errorf("quarantined %s is not one of the damaged files", e.Name())
		}
	}
	if len(entries) != n {
		t.Errorf("%d files damaged, %d in quarantine", n, len(entries))
	}
	st = poll()
	if st.Loader.QuarantinedFiles != int64(n) || filepath.Dir(st.Loader.LastQuarantinedFile) != qdir {
		t.Errorf("status: %+v, want %d quarantined files in %s", st.Loader, n, qdir)
	}
	_, metrics := adminRequest(t, "GET", base+"/metrics", "")
	m := regexp.MustCompile(`(?m)^offload_outbox_quarantined_files (\d+)$`).FindSubmatch(metrics)
	if m == nil || string(m[1]) != strconv.Itoa(n) {
		t.Errorf("/metrics: %q, want offload_outbox_quarantined_files %d", m, n)
	}
	if got := strings.Count(d.logs.String(), "does not match its checksum; quarantined, never loaded"); got != n {
		t.Errorf("%d quarantines logged, want %d", got, n)
	}
	stopDaemon(t, d)
	deliverytest.CheckTables(t, srv.DB(), "PUBLIC.", want, -1, true)
	copiedMu.Lock()
	if copyErr != nil {
		t.Fatalf("reading a staged file: %v", copyErr)
	}
	if len(copied) < sealed {
		t.Errorf("%d files handed over for loading, want at least one per batch (%d)", len(copied), sealed)
	}
	for _, sum := range copied {
		if damaged[sum] != nil {
			t.Errorf("a damaged file (sha256 %x) was handed over for loading", sum)
		}
	}
	copiedMu.Unlock()

	// Restarted, the daemon counts the files already in quarantine.
	d = startDaemon(t, cfg, warehouseEnv, "OFFLOAD_ADMIN_TOKEN="+adminToken)
	base = "http://" + adminAddr(t, d)
	st = poll()
	if st.Loader.QuarantinedFiles != int64(n) || filepath.Dir(st.Loader.LastQuarantinedFile) != qdir {
		t.Errorf("after a restart: status %+v, want %d quarantined files in %s", st.Loader, n, qdir)
	}
	_, metrics = adminRequest(t, "GET", base+"/metrics", "")
	m = regexp.MustCompile(`(?m)^offload_outbox_quarantined_files (\d+)$`).FindSubmatch(metrics)
	if m == nil || string(m[1]) != strconv.Itoa(n) {
		t.Errorf("after a restart, /metrics: %q, want offload_outbox_quarantined_files %d", m, n)
	}
	stopDaemon(t, d)
	t.Logf("%d sealed batches, %d rows files damaged and quarantined", sealed, n)
}
