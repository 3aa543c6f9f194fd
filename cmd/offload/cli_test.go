package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offload/offload/internal/appliance"
	"github.com/offload/offload/wal"
)

func TestVersionAndUsage(t *testing.T) {
	if code, out, _ := runCLI("version"); code != 0 || !strings.HasPrefix(out, "offload ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, out, _ := runCLI("help"); code != 0 || !strings.Contains(out, "validate") {
		t.Fatalf("help: %d %q", code, out)
	}
	if code, _, errOut := runCLI("frobnicate"); code != exitUsage || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI("run"); code != exitUsage || !strings.Contains(errOut, "--config") {
		t.Fatalf("run without config: %d %q", code, errOut)
	}
}

func TestValidate(t *testing.T) {
	good := testConfig(t, t.TempDir(), "127.0.0.1:9092", "orders")
	code, out, errOut := runCLI("validate", "--config", good)
	if code != 0 || !strings.Contains(out, "is valid") || !strings.Contains(out, "topics:") {
		t.Fatalf("validate good config: %d %q %q", code, out, errOut)
	}
	bad := testConfig(t, t.TempDir(), "127.0.0.1:9092", "orders", "log: {level: loud}")
	code, _, errOut = runCLI("validate", "--config", bad)
	if code != exitUsage || !strings.Contains(errOut, "log") {
		t.Fatalf("validate bad config: %d %q", code, errOut)
	}
	bad = testConfig(t, t.TempDir(), "127.0.0.1:9092", "orders", "wal: {memtable_size: 1KiB}")
	code, _, errOut = runCLI("validate", "--config", bad)
	if code != exitUsage || !strings.Contains(errOut, "wal.memtable_size") || !strings.Contains(errOut, "4MiB to 1GiB") {
		t.Fatalf("validate bad memtable size: %d %q", code, errOut)
	}
}

// fillWAL writes records to a WAL under dataDir, enough to flush sstables.
func fillWAL(t *testing.T, dataDir string, records int) {
	t.Helper()
	w, err := wal.Open(appliance.WALDir(dataDir), wal.Options{MemTableSize: 1 << 20, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	val := []byte(strings.Repeat("v", 300))
	for p := int32(0); p < 2; p++ {
		for off := 0; off < records; off += 100 {
			recs := make([]wal.Record, 100)
			for i := range recs {
				recs[i] = wal.Record{Offset: int64(off + i), Timestamp: 1, Value: val}
			}
			if _, err := w.Append(wal.TopicPartition{Topic: "orders", Partition: p}, recs); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestWALStatsAndVerify(t *testing.T) {
	dir := t.TempDir()
	fillWAL(t, dir, 5000)
	code, out, errOut := runCLI("wal", "stats", "--data-dir", dir, "--json")
	if code != 0 {
		t.Fatalf("wal stats: %d %s", code, errOut)
	}
	var st struct {
		Records    int                                  `json:"records"`
		Bytes      int                                  `json:"bytes"`
		Partitions map[string]struct{ HighWater int64 } `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("wal stats --json is not JSON: %v\n%s", err, out)
	}
	if st.Records != 10000 || st.Bytes < 10000*300 || len(st.Partitions) != 2 {
		t.Fatalf("wal stats: %+v", st)
	}
	code, out, _ = runCLI("wal", "verify", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "verify: ok: ") || !strings.Contains(out, "10000 records") {
		t.Fatalf("wal verify on a sound WAL: %d %q", code, out)
	}
}

// flipSSTableByte flips a bit a third into the first sstable of the WAL
// under dataDir and returns the file's path.
func flipSSTableByte(t *testing.T, dataDir string) string {
	t.Helper()
	ssts, _ := filepath.Glob(filepath.Join(appliance.WALDir(dataDir), "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no sstable was flushed")
	}
	b, err := os.ReadFile(ssts[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x40
	if err := os.WriteFile(ssts[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	return ssts[0]
}

// TestWALVerifyFindsFlippedByte flips one byte in the middle of an sstable
// and expects `offload wal verify` to exit 1 naming the damaged position.
func TestWALVerifyFindsFlippedByte(t *testing.T) {
	dir := t.TempDir()
	fillWAL(t, dir, 5000)
	sst := flipSSTableByte(t, dir)
	code, out, errOut := runCLI("wal", "verify", "--data-dir", dir)
	if code != exitFailure {
		t.Fatalf("wal verify on a damaged WAL exited %d: %q %q", code, out, errOut)
	}
	name := strings.TrimSuffix(filepath.Base(sst), ".sst")
	if !strings.Contains(out, "damaged:") || !strings.Contains(out, name) || !regexp.MustCompile(`\d+/\d+`).MatchString(out) {
		t.Fatalf("wal verify does not name the damaged file %s and position: %q %q", name, out, errOut)
	}
	t.Logf("verify printed: %s", out)
}

// TestUnreachableBroker starts the daemon against a closed port: it keeps
// running and retrying, says so in its log, is not ready, and stops cleanly
// on SIGTERM.
func TestUnreachableBroker(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), "127.0.0.1:1", "orders")
	d := startDaemon(t, cfg)
	d.waitLog(t, "admin endpoint listening", 10*time.Second)
	addr := regexp.MustCompile(`admin endpoint listening" addr=(\S+)`).FindStringSubmatch(d.logs.String())[1]
	d.waitLog(t, "127.0.0.1:1", 15*time.Second)
	time.Sleep(2 * time.Second)
	select {
	case <-d.done:
		t.Fatalf("offload exited while the broker was unreachable")
	default:
	}
	resp, err := http.Get(fmt.Sprintf("http://%s/readyz", addr))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d while the broker is unreachable", resp.StatusCode)
	}
	if resp, err := http.Get(fmt.Sprintf("http://%s/healthz", addr)); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v", err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}
