package drain

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload/offload/internal/testenv"
)

// offloadBin returns $OFFLOAD_BIN, or builds the binary for this test.
func offloadBin(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("OFFLOAD_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "offload")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/offload/offload/cmd/offload").CombinedOutput(); err != nil {
		t.Fatalf("cannot build offload (or set OFFLOAD_BIN): %v\n%s", err, out)
	}
	return bin
}

// TestDrain runs a small drain against the real broker: the appliance as
// its own process loads every valid event exactly once, and the JSON
// report has every figure, each positive.
func TestDrain(t *testing.T) {
	brokers := testenv.Brokers(t)
	dir := t.TempDir()
	var progress strings.Builder
	o := Options{Brokers: strings.Split(brokers, ","), Binary: offloadBin(t), Events: 20_000, Partitions: 4,
		Rate: 2000, Steady: 3 * time.Second, Dir: filepath.Join(dir, "run"), Keep: true,
		CPUProfile: filepath.Join(dir, "appliance.pprof"), ProfileSeconds: 1, Progress: &progress}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	t.Logf("progress:\n%s", progress.String())
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", b)
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["profile"] != "drain" {
		t.Errorf("profile = %v, want drain", got["profile"])
	}
	if got["exactly_once"] != true || res.Missing != 0 || res.Extra != 0 {
		t.Errorf("exactly_once = %v (missing %d, extra %d)", got["exactly_once"], res.Missing, res.Extra)
	}
	for _, name := range []string{"events", "valid_events", "drain_kafka_events_per_sec", "drain_engine_events_per_sec",
		"drain_loaded_events_per_sec", "appliance_cpu_us_per_event", "appliance_peak_rss_bytes",
		"bare_consumer_events_per_sec", "ratio", "p50_durable_ms", "p99_durable_ms", "p50_warehouse_ms", "p99_warehouse_ms"} {
		v, ok := got[name].(float64)
		if !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", name, got[name])
		}
	}
	if res.Events < 20_000 || res.ValidEvents >= res.Events {
		t.Errorf("events %d, valid %d: want at least 20000 records, some of them duplicates or malformed", res.Events, res.ValidEvents)
	}
	// The stages catch up in data-flow order, and the bare consumer read
	// both phases.
	if res.DrainKafkaEventsPerSec < res.DrainEngineEventsPerSec || res.DrainEngineEventsPerSec < res.DrainLoadedEventsPerSec {
		t.Errorf("rates kafka %.0f, engine %.0f, loaded %.0f: want each stage no faster than the one before",
			res.DrainKafkaEventsPerSec, res.DrainEngineEventsPerSec, res.DrainLoadedEventsPerSec)
	}
	// /proc and the appliance's own /metrics, read 1 poll apart, agree.
	if d := res.ApplianceMetricsCPUSeconds - res.ApplianceCPUSeconds; d < -0.05 || d > 0.3+0.1*res.ApplianceCPUSeconds {
		t.Errorf("CPU seconds: /proc %.2f, /metrics %.2f", res.ApplianceCPUSeconds, res.ApplianceMetricsCPUSeconds)
	}
	// The dedupe index remembers every valid event of both phases, in the
	// default window.
	if d := res.Dedupe; d.Keys < res.ValidEvents || d.HeldSeconds <= 0 || d.WindowSeconds != 24*3600 || d.FilterBytes <= 0 {
		t.Errorf("dedupe %+v: want at least %d keys, a window of 24h held in part, filters", d, res.ValidEvents)
	}
	if res.BareConsumerEvents != res.Events+res.SteadyEvents {
		t.Errorf("the bare consumer read %d records, want %d", res.BareConsumerEvents, res.Events+res.SteadyEvents)
	}
	// The appliance's profile exists where its admin API serves one.
	if res.CPUProfile != "" {
		if st, err := os.Stat(res.CPUProfile); err != nil || st.Size() == 0 {
			t.Errorf("the CPU profile %s is missing or empty (%v)", res.CPUProfile, err)
		}
	} else if !strings.Contains(progress.String(), errNoPprof.Error()) {
		t.Errorf("no CPU profile, and the progress does not say the appliance has no /debug/pprof")
	}
	// The password reached the appliance through its environment only.
	cfg, err := os.ReadFile(filepath.Join(o.Dir, "offload.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cfg), "password") {
		t.Errorf("the configuration file names a password:\n%s", cfg)
	}
}

// TestDrainNoBinary: an appliance that cannot start fails the run with
// what to do, and the run's files stay for a look.
func TestDrainNoBinary(t *testing.T) {
	brokers := testenv.Brokers(t)
	dir := filepath.Join(t.TempDir(), "run")
	var progress strings.Builder
	_, err := Run(context.Background(), Options{Brokers: strings.Split(brokers, ","), Binary: filepath.Join(t.TempDir(), "no-offload"),
		Events: 100, Partitions: 1, Dir: dir, Progress: &progress})
	if err == nil || !strings.Contains(err.Error(), "OFFLOAD_BIN") {
		t.Fatalf("err = %v, want one naming OFFLOAD_BIN", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "offload.yaml")); err != nil || !strings.Contains(progress.String(), "files stay in "+dir) {
		t.Errorf("the run's files are gone (%v) or unnamed:\n%s", err, progress.String())
	}
}
