package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/bench/gen"
	"github.com/offload/offload/engine"
	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/appliance"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/internal/snowtest"
	"github.com/offload/offload/tui"
	"github.com/offload/offload/wal"
)

// chaosOptions are the settings of `offload bench --chaos`.
type chaosOptions struct {
	brokers []string
	// brokerRestart is a shell command that restarts the broker keeping
	// its data; empty skips the broker-restart scenario.
	brokerRestart string
	kills         int
	partitions    int
	rate          float64 // events per second produced throughout
	dir           string
	seed          uint64
	// tmpfsSize is the size of the tmpfs mounted for the data directory
	// (root only), which the disk-full scenario fills; 0: no tmpfs.
	tmpfsSize int64
	// warehouse is the test warehouse's type (testWarehouse).
	warehouse string
	// scenarios, if any, are the only scenarios run.
	scenarios map[string]bool
	progress  io.Writer
}

// chaosScenario is one fault phase of a chaos run and what it did.
type chaosScenario struct {
	Name    string  `json:"name"`
	Kills   int     `json:"kills"`
	Faults  int     `json:"faults,omitempty"` // injected warehouse faults that hit a request
	Exits   int     `json:"exits,omitempty"`  // times the daemon stopped by itself
	Seconds float64 `json:"seconds"`
	Detail  string  `json:"detail,omitempty"`
	Skipped string  `json:"skipped,omitempty"`
}

// chaosResult is what `offload bench --chaos` reports (--json FILE).
type chaosResult struct {
	Kills     int             `json:"kills"`
	Scenarios []chaosScenario `json:"scenarios"`
	// KillMoments counts the loader's state at each kill (idle, loading,
	// retrying, ...; "starting" when the daemon did not answer yet).
	KillMoments map[string]int `json:"kill_moments"`
	Produced    int64          `json:"produced"` // records sent, every kind
	Valid       int64          `json:"valid"`
	Duplicates  int64          `json:"duplicates"` // extra copies the producer sent
	Malformed   int64          `json:"malformed"`
	Loaded      int64          `json:"loaded"` // rows in the warehouse
	DLQ         int64          `json:"dlq"`    // dead letters
	// Lost counts valid events missing from the warehouse plus malformed
	// records missing from the DLQ; Duplicated the copies beyond one of
	// either; UnexpectedDLQ dead letters of anything but a malformed
	// record; UnexpectedRows warehouse rows of no valid event.
	Lost           int64   `json:"lost"`
	Duplicated     int64   `json:"duplicated"`
	UnexpectedDLQ  int64   `json:"unexpected_dlq"`
	UnexpectedRows int64   `json:"unexpected_rows"`
	ReconcileOK    bool    `json:"reconcile_ok"`
	DaemonStarts   int     `json:"daemon_starts"`
	DrainSeconds   float64 `json:"drain_seconds"` // from the producer's stop to everything loaded
	// OutageDrainPerSec is how fast the backlog of a 20 s outage reached
	// the warehouse once it was back (valid events/s, new ones arriving
	// meanwhile included); OutageDrainRatio that over the rate valid
	// events were produced during the outage.
	OutageDrainPerSec float64  `json:"outage_drain_events_per_sec"`
	OutageDrainRatio  float64  `json:"outage_drain_ratio"`
	Seconds           float64  `json:"seconds"`
	OK                bool     `json:"ok"`
	Errors            []string `json:"errors,omitempty"`
}

// chaosFsyncDelay is the variable the slow-disk scenario sets: the daemon
// then delays every fsync of its WAL by that long (see slowFS).
const chaosFsyncDelay = "OFFLOAD_FAULT_FSYNC_DELAY"

// harness runs a chaos run: the daemon under supervision, the warehouse,
// the producer and the scenarios.
type harness struct {
	o       chaosOptions
	rng     *rand.Rand
	srv     testWarehouse
	d       *supervisor
	dataDir string
	cfgPath string
	admin   string
	res     chaosResult
	g       *gen.Generator
	client  *tui.HTTPClient // the daemon's admin API
}

func runChaos(o chaosOptions) (chaosResult, error) {
	began := time.Now()
	h := &harness{o: o, rng: rand.New(rand.NewPCG(o.seed, o.seed^0xc4a05)), dataDir: filepath.Join(o.dir, "data"),
		res: chaosResult{KillMoments: map[string]int{}}}
	if err := os.MkdirAll(h.dataDir, 0o750); err != nil {
		return h.res, err
	}
	noTmpfs := "" // why the disk-full scenario cannot run
	if o.tmpfsSize > 0 {
		if err := syscall.Mount("tmpfs", h.dataDir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0750", o.tmpfsSize)); err != nil {
			noTmpfs = fmt.Sprintf("cannot mount a tmpfs at %s: %v", h.dataDir, err)
		} else {
			defer func() { _ = syscall.Unmount(h.dataDir, 0) }()
		}
	} else {
		noTmpfs = "no tmpfs (--tmpfs-mib 0)"
	}
	var err error
	if h.srv, err = newTestWarehouse(o.warehouse, o.dir, true); err != nil {
		return h.res, err
	}
	defer h.srv.Close()
	topic := fmt.Sprintf("offload-chaos-%d", time.Now().UnixNano())
	if err := createTopic(o.brokers, topic, o.partitions); err != nil {
		return h.res, err
	}
	if h.admin, err = freeAddr(); err != nil {
		return h.res, err
	}
	h.client = tui.NewHTTPClient(h.admin, "")
	if err := h.writeConfig(topic); err != nil {
		return h.res, err
	}
	self, err := os.Executable()
	if err != nil {
		return h.res, err
	}
	h.d, err = newSupervisor(self, h.cfgPath, filepath.Join(o.dir, "offload.log"), h.srv.env()...)
	if err != nil {
		return h.res, err
	}
	defer h.d.close()

	// AlwaysRetryEOF: franz-go takes an EOF right after a request for a
	// missing SASL setting and fails the records; here it is the broker
	// restart, and the records must be retried, not given up.
	cl, err := kgo.NewClient(kgo.SeedBrokers(o.brokers...), kgo.DefaultProduceTopic(topic), kgo.AlwaysRetryEOF())
	if err != nil {
		return h.res, err
	}
	defer cl.Close()
	batch := max(1, int(o.rate/4)) // a quarter second of events
	h.g = gen.New(gen.Options{Topic: topic, Rate: o.rate, Count: batch, Seed: o.seed,
		RunID: "chaos" + strconv.FormatUint(o.seed%(1<<32), 36)})
	stopProducing := make(chan struct{})
	produced := make(chan error, 1)
	go func() {
		// One quarter-second batch at a time, each produced in full (the
		// client retries through broker restarts), so every event the
		// generator remembers did reach Kafka.
		start := time.Now()
		for k := 0; ; k++ {
			select {
			case <-stopProducing:
				produced <- nil
				return
			default:
			}
			time.Sleep(time.Until(start.Add(time.Duration(float64(k*batch) / o.rate * float64(time.Second)))))
			if _, err := h.g.Run(context.Background(), cl); err != nil {
				produced <- err
				return
			}
		}
	}()

	if err := h.d.start(nil); err != nil {
		return h.res, err
	}
	scenarios := []struct {
		name string
		run  func(*chaosScenario) error
	}{
		{"kills", h.randomKills},
		{"warehouse-outage", h.outages},
		{"warehouse-faults", h.warehouseFaults},
		{"broker-restart", h.brokerRestart},
		{"disk-budget", h.diskBudget},
		{"disk-full", func(sc *chaosScenario) error { return h.diskFull(sc, noTmpfs) }},
		{"slow-disk", h.slowDisk},
	}
	for _, s := range scenarios {
		if len(o.scenarios) > 0 && !o.scenarios[s.name] {
			continue
		}
		sc := chaosScenario{Name: s.name}
		t0 := time.Now()
		h.logf("scenario %s", s.name)
		if err := s.run(&sc); err != nil {
			h.res.Errors = append(h.res.Errors, fmt.Sprintf("%s: %v", s.name, err))
			h.logf("scenario %s failed: %v", s.name, err)
		}
		if sc.Exits > 0 && s.name != "disk-full" {
			// Only a full disk may stop the daemon; anything else is a bug.
			h.res.Errors = append(h.res.Errors, fmt.Sprintf("%s: the daemon stopped by itself %d times (see %s)", s.name, sc.Exits, h.d.logPath))
		}
		sc.Seconds = time.Since(t0).Seconds()
		h.res.Kills += sc.Kills
		h.res.Scenarios = append(h.res.Scenarios, sc)
	}

	close(stopProducing)
	if err := <-produced; err != nil {
		return h.res, err
	}
	stopped := time.Now()
	sum := h.g.Summary()
	h.res.Produced, h.res.Valid, h.res.Duplicates, h.res.Malformed = sum.Produced, sum.Valid, sum.Duplicates, sum.Malformed
	valid, malformed := h.g.ValidIDs(), h.g.MalformedIDs()
	h.logf("produced %d records (%d valid events, %d duplicates, %d malformed); draining", sum.Produced, sum.Valid, sum.Duplicates, sum.Malformed)
	if err := h.drain(len(valid), len(malformed)); err != nil {
		h.res.Errors = append(h.res.Errors, err.Error())
	}
	h.res.DrainSeconds = time.Since(stopped).Seconds()
	if err := h.d.stop(); err != nil {
		h.res.Errors = append(h.res.Errors, err.Error())
	}
	if err := h.tally(valid, malformed); err != nil {
		return h.res, err
	}
	h.res.ReconcileOK = h.reconcile()
	h.res.DaemonStarts = h.d.starts
	h.res.Seconds = time.Since(began).Seconds()
	h.res.OK = len(h.res.Errors) == 0 && h.res.Lost == 0 && h.res.Duplicated == 0 && h.res.UnexpectedDLQ == 0 &&
		h.res.UnexpectedRows == 0 && h.res.ReconcileOK && h.res.Kills >= o.kills
	return h.res, nil
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.o.progress, "chaos: "+format+"\n", args...)
}

// writeConfig writes the daemon's configuration: the warehouse with fast
// retries, batches sealed every second, a fixed admin address.
func (h *harness) writeConfig(topic string) error {
	body := fmt.Sprintf(`appliance_id: chaos
data_dir: %s
disk_budget: 1GiB
shutdown_grace: 10s
log: {level: info}
kafka:
  brokers: [%s]
  topics: [%s]
  group: %s
  session_timeout: 6s
engine:
  interval: 200ms
outbox:
  seal_age: 1s
loader:
  retry_base: 50ms
  retry_max: 1s
  breaker_failures: 3
  breaker_cooldown: 1s
  load_timeout: 20s
admin:
  listen: %s
`, h.dataDir, strings.Join(h.o.brokers, ", "), topic, topic, h.admin) + h.srv.yaml()
	h.cfgPath = filepath.Join(h.o.dir, "offload.yaml")
	return os.WriteFile(h.cfgPath, []byte(body), 0o600)
}

// freeAddr returns a loopback address nobody listens on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// pause sleeps a random time in [lo, hi).
func (h *harness) pause(lo, hi time.Duration) {
	time.Sleep(lo + time.Duration(h.rng.Int64N(int64(hi-lo))))
}

// kill SIGKILLs the daemon, noting what its loader was doing, and starts
// it again at once with env.
func (h *harness) kill(sc *chaosScenario, env []string) error {
	h.res.KillMoments[h.loaderState()]++
	exited, err := h.d.kill()
	if err != nil {
		return err
	}
	if exited {
		sc.Exits++
	} else {
		sc.Kills++
	}
	return h.d.start(env)
}

// status reads the daemon's status document; false when it does not
// answer (starting, stopped).
func (h *harness) status() (admin.Status, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	st, err := h.client.Status(ctx)
	return st, err == nil
}

// loaderState is what the daemon's loader is doing.
func (h *harness) loaderState() string {
	st, ok := h.status()
	if !ok || st.Loader == nil {
		return "starting"
	}
	return st.Loader.State
}

// waitStatus waits until the daemon's status satisfies cond.
func (h *harness) waitStatus(what string, timeout time.Duration, cond func(admin.Status) bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if st, ok := h.status(); ok && cond(st) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the daemon was not %s within %s", what, timeout)
}

// randomKills: SIGKILLs at random moments while everything is healthy,
// most of the run's kills. Loads are short next to the time between
// them, so every third kill waits (up to 5 s) for one to be under way.
func (h *harness) randomKills(sc *chaosScenario) error {
	n := max(h.o.kills-10, 1)
	for sc.Kills < n {
		if sc.Exits > 3 {
			return fmt.Errorf("the daemon stopped by itself %d times; giving up (see %s)", sc.Exits, h.d.logPath)
		}
		h.pause(300*time.Millisecond, 2500*time.Millisecond)
		if sc.Kills%3 == 2 {
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && h.loaderState() != "loading"; {
				time.Sleep(5 * time.Millisecond)
			}
		}
		if err := h.kill(sc, nil); err != nil {
			return err
		}
	}
	return nil
}

// outages: the warehouse refuses connections for 2 s, then for 12 s with
// two kills during it.
func (h *harness) outages(sc *chaosScenario) error {
	for _, d := range []time.Duration{2 * time.Second, 12 * time.Second} {
		h.srv.RefuseConnections()
		end := time.Now().Add(d)
		if d > 5*time.Second {
			for range 2 {
				h.pause(time.Second, 4*time.Second)
				if err := h.kill(sc, nil); err != nil {
					return err
				}
			}
		}
		time.Sleep(time.Until(end))
		if err := h.srv.AcceptConnections(); err != nil {
			return err
		}
		h.pause(time.Second, 3*time.Second)
	}
	// A 20 s outage without kills measures the drain: from the return
	// until the warehouse holds every event produced before it.
	const outage = 20 * time.Second
	v0, t0 := h.g.Summary().Valid, time.Now()
	h.srv.RefuseConnections()
	time.Sleep(outage)
	v1, r1 := h.g.Summary().Valid, h.loadedRows()
	produced := float64(v1-v0) / time.Since(t0).Seconds()
	back := time.Now()
	if err := h.srv.AcceptConnections(); err != nil {
		return err
	}
	if err := h.waitRows(v1, 3*time.Minute); err != nil {
		return err
	}
	took := time.Since(back).Seconds()
	h.res.OutageDrainPerSec = float64(h.loadedRows()-r1) / took
	h.res.OutageDrainRatio = h.res.OutageDrainPerSec / produced
	sc.Detail = fmt.Sprintf("refused connections for 2s, 12s, then 20s: a backlog of %d events drained in %.1fs, %.0f events/s, %.1f× the %.0f/s produced",
		v1-r1, took, h.res.OutageDrainPerSec, h.res.OutageDrainRatio, produced)
	return nil
}

// waitRows waits until the warehouse holds n rows.
func (h *harness) waitRows(n int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for h.loadedRows() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("the warehouse holds %d rows after %s, want %d", h.loadedRows(), timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// warehouseFaults injects each kind of warehouse fault at a step of the
// load, waits for it to hit, and after the faults that leave a load
// hanging or its answer lost, kills the daemon at that moment.
func (h *harness) warehouseFaults(sc *chaosScenario) error {
	moments := []struct{ name, re string }{
		{"put", `^PUT `}, {"copy", `^COPY INTO`}, {"insert rows", `^INSERT INTO OFFLOAD_TRANSACTIONS`},
		{"ledger", `^INSERT INTO OFFLOAD_LOAD_LEDGER`}, {"commit", `(?i)^commit`}, {"lookup", `^SELECT COUNT\(\*\) FROM OFFLOAD_LOAD_LEDGER`},
	}
	faults := []struct {
		name string
		f    snowtest.Fault
		kill bool
	}{
		{"http 503", snowtest.Fault{Kind: snowtest.FaultHTTPStatus, Status: 503, Times: 2}, false},
		{"http 429", snowtest.Fault{Kind: snowtest.FaultHTTPStatus, Status: 429, Times: 2}, false},
		{"hang", snowtest.Fault{Kind: snowtest.FaultHang, Hang: 8 * time.Second}, true},
		{"dropped connection", snowtest.Fault{Kind: snowtest.FaultDropConnection}, false},
		{"response lost", snowtest.Fault{Kind: snowtest.FaultResponseLost}, true},
		{"session expired", snowtest.Fault{Kind: snowtest.FaultSessionExpired}, false},
		{"statement error", snowtest.Fault{Kind: snowtest.FaultStatementError}, false},
	}
	srv, ok := h.srv.(*snowflakeTest)
	if !ok {
		sc.Skipped = "the fault kinds are the Snowflake-protocol server's; the other sinks' fault matrices run in the loader's tests (docs/LOADER.md)"
		return nil
	}
	var done []string
	for i, f := range faults {
		// Every kind once at a moment in turn, and the ambiguous commit
		// (response lost) always at COMMIT, where it matters most.
		m := moments[(i+int(h.o.seed))%len(moments)]
		if f.f.Kind == snowtest.FaultResponseLost {
			m = moments[4]
		}
		f.f.Endpoint, f.f.SQL = snowtest.EndpointQuery, regexp.MustCompile(m.re)
		inj := srv.Inject(f.f)
		deadline := time.Now().Add(60 * time.Second)
		for inj.Hits() == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		srv.ClearFaults()
		if inj.Hits() == 0 {
			return fmt.Errorf("fault %q at %s never hit a request in 60s", f.name, m.name)
		}
		sc.Faults++
		done = append(done, f.name+" at "+m.name)
		if f.kill {
			if err := h.kill(sc, nil); err != nil {
				return err
			}
		}
		h.pause(500*time.Millisecond, 1500*time.Millisecond)
	}
	sc.Detail = strings.Join(done, ", ")
	return nil
}

// brokerRestart restarts the broker while the daemon runs, and kills the
// daemon once while the broker is away.
func (h *harness) brokerRestart(sc *chaosScenario) error {
	if h.o.brokerRestart == "" {
		sc.Skipped = "no --broker-restart command"
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", h.o.brokerRestart)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	if err := h.kill(sc, nil); err != nil {
		return err
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%s: %v: %s", h.o.brokerRestart, err, strings.TrimSpace(out.String()))
	}
	sc.Detail = "restarted with: " + h.o.brokerRestart
	h.pause(2*time.Second, 4*time.Second)
	return nil
}

// diskBudget: a 4 MiB budget while the warehouse is away; ingest must
// pause (Kafka keeps the data), survive a kill while paused, pause again
// after the restart, and resume once the backlog ships.
func (h *harness) diskBudget(sc *chaosScenario) error {
	small := []string{"OFFLOAD_DISK_BUDGET=4MiB"}
	paused := func(st admin.Status) bool { return st.Kafka.Paused }
	h.srv.RefuseConnections()
	if err := h.kill(sc, small); err != nil {
		return err
	}
	if err := h.waitStatus("paused for its budget", 90*time.Second, paused); err != nil {
		return err
	}
	if err := h.kill(sc, small); err != nil {
		return err
	}
	if err := h.waitStatus("paused for its budget after a restart", 60*time.Second, paused); err != nil {
		return err
	}
	before := h.loadedRows()
	if err := h.srv.AcceptConnections(); err != nil {
		return err
	}
	if err := h.waitStatus("fetching again and loading", 90*time.Second, func(st admin.Status) bool {
		return !st.Kafka.Paused && h.loadedRows() > before
	}); err != nil {
		return err
	}
	sc.Detail = "4MiB budget during a warehouse outage: paused, killed while paused, paused again, resumed"
	return h.kill(sc, nil)
}

// loadedRows counts the rows in the warehouse.
func (h *harness) loadedRows() int64 {
	n, _ := h.srv.loaded()
	return n
}

// diskFull fills the data directory's file system (the tmpfs) until the
// daemon meets ENOSPC, keeps it full a while, then frees it: the daemon
// stops on the error (or is restarted until it can start) and resumes.
func (h *harness) diskFull(sc *chaosScenario, noTmpfs string) error {
	if noTmpfs != "" {
		sc.Skipped = noTmpfs
		return nil
	}
	filler := filepath.Join(h.dataDir, "chaos-filler")
	f, err := os.Create(filler)
	if err != nil {
		return err
	}
	chunk := make([]byte, 1<<20)
	var filled int64
	for {
		n, err := f.Write(chunk)
		filled += int64(n)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				_ = f.Close()
				return err
			}
			break
		}
	}
	_ = f.Close()
	mark := h.d.logSize()
	err = h.d.waitLog(mark, "no space left on device", 90*time.Second)
	hit := err == nil
	// Keep it full a little; the supervisor restarts a daemon that stopped.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if exited, _ := h.d.restartIfExited(); exited {
			sc.Exits++
		}
	}
	if rerr := os.Remove(filler); rerr != nil {
		return rerr
	}
	if !hit {
		return fmt.Errorf("the daemon never met ENOSPC with the file system full: %v", err)
	}
	const enospc = "no space left on device"
	line := h.d.firstLine(mark, enospc)
	if i := strings.Index(line, "msg="); i >= 0 {
		line = line[i:]
	}
	// The report keeps the start of the line (who met the full disk) and
	// the error itself, which a long path may push past the cut.
	// DuckDB writes the error capitalised ("No space left on device").
	if i := strings.Index(strings.ToLower(line), enospc); i+len(enospc) > 300 {
		line = truncate(line[:i+len(enospc)], 120) + " … " + line[i:i+len(enospc)]
	}
	sc.Detail = fmt.Sprintf("filled %d MiB; the daemon reported: %s", filled>>20, truncate(line, 300))
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if exited, _ := h.d.restartIfExited(); exited {
			sc.Exits++
		}
	}
	return h.kill(sc, nil)
}

// slowDisk restarts the daemon with every WAL fsync delayed by 25 ms,
// kills it twice meanwhile, then goes back to the normal disk.
func (h *harness) slowDisk(sc *chaosScenario) error {
	slow := []string{chaosFsyncDelay + "=25ms"}
	mark := h.d.logSize()
	if err := h.kill(sc, slow); err != nil {
		return err
	}
	if err := h.d.waitLog(mark, "fault injection: every WAL fsync delayed", 30*time.Second); err != nil {
		return err
	}
	for range 2 {
		h.pause(2*time.Second, 5*time.Second)
		if err := h.kill(sc, slow); err != nil {
			return err
		}
	}
	h.pause(2*time.Second, 4*time.Second)
	sc.Detail = "WAL fsync delayed by 25ms"
	return h.kill(sc, nil)
}

// drain waits until the warehouse holds every valid event of the run,
// the engine has dead-lettered every malformed record and the loader has
// taken every sealed batch for shipped (a load whose commit the
// warehouse shows may not have been answered yet: stopped then, the
// appliance would not know it shipped, and reconcile would say so),
// restarting a daemon that stopped by itself.
func (h *harness) drain(valid, malformed int) error {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		_, _ = h.d.restartIfExited()
		_, loaded := h.srv.loaded()
		if st, ok := h.status(); ok && loaded >= int64(valid) && st.DLQ.Rows >= int64(malformed) && st.Outbox.SealedBatches == 0 {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return errors.New("the run was not all loaded within 10 minutes")
}

// eventIDInRaw finds the event id in a dead letter's raw bytes.
var eventIDInRaw = regexp.MustCompile(`"event_id":"([^"]+)"`)

// tally counts the warehouse's rows and the DLQ against what was produced.
func (h *harness) tally(valid, malformed map[string]struct{}) error {
	lost, duplicated, unexpected, err := h.srv.tally(valid)
	if err != nil {
		return err
	}
	h.res.Loaded = h.loadedRows()
	h.res.Lost += lost
	h.res.Duplicated += duplicated
	h.res.UnexpectedRows += unexpected

	c, err := config.Load(h.cfgPath, h.d.environ(nil))
	if err != nil {
		return err
	}
	log := quietLogger()
	w, err := wal.Open(appliance.WALDir(c.DataDir), wal.Options{Logger: log})
	if err != nil {
		return err
	}
	defer w.Close()
	eng, err := openEngine(c, w, log)
	if err != nil {
		return err
	}
	defer eng.Close()
	entries, err := eng.DLQList(engine.DLQFilter{Limit: math.MaxInt32})
	if err != nil {
		return err
	}
	dead := map[string]int64{}
	for _, d := range entries {
		h.res.DLQ++
		m := eventIDInRaw.FindSubmatch(d.Raw)
		if m == nil {
			h.res.UnexpectedDLQ++
			continue
		}
		if _, ok := malformed[string(m[1])]; !ok {
			h.res.UnexpectedDLQ++
			continue
		}
		dead[string(m[1])]++
	}
	for _, n := range dead {
		h.res.Duplicated += n - 1
	}
	h.res.Lost += int64(len(malformed) - len(dead))
	return nil
}

// reconcile runs `offload reconcile` on the stopped appliance.
func (h *harness) reconcile() bool {
	cmd := exec.Command(h.d.bin, "reconcile", "--config", h.cfgPath)
	cmd.Env = h.d.environ(nil)
	out, err := cmd.CombinedOutput()
	if err != nil {
		h.res.Errors = append(h.res.Errors, fmt.Sprintf("reconcile: %v: %s", err, truncate(string(out), 500)))
		return false
	}
	return true
}

func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// printChaos writes the human-readable report.
func printChaos(w io.Writer, r chaosResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tkills\tfaults\texits\tseconds\tdetail")
	for _, s := range r.Scenarios {
		detail := s.Detail
		if s.Skipped != "" {
			detail = "SKIPPED: " + s.Skipped
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%s\n", s.Name, s.Kills, s.Faults, s.Exits, s.Seconds, truncate(detail, 90))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nkills %d (loader state at the kill: %v), daemon starts %d, %.0f s\n", r.Kills, r.KillMoments, r.DaemonStarts, r.Seconds)
	fmt.Fprintf(w, "produced %d records: %d valid events, %d duplicates, %d malformed\n", r.Produced, r.Valid, r.Duplicates, r.Malformed)
	fmt.Fprintf(w, "warehouse %d rows, DLQ %d; drained %.1f s after the producer stopped; reconcile ok: %v\n",
		r.Loaded, r.DLQ, r.DrainSeconds, r.ReconcileOK)
	if r.OutageDrainPerSec > 0 { // the warehouse-outage scenario ran
		fmt.Fprintf(w, "after a 20 s outage the backlog drained at %.0f events/s, %.1f× the rate produced\n", r.OutageDrainPerSec, r.OutageDrainRatio)
	}
	fmt.Fprintf(w, "lost %d  duplicated %d  unexpected_dlq %d  unexpected_rows %d\n", r.Lost, r.Duplicated, r.UnexpectedDLQ, r.UnexpectedRows)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
	if r.OK {
		fmt.Fprintln(w, "chaos: OK, nothing lost, nothing duplicated")
	} else {
		fmt.Fprintln(w, "chaos: FAILED")
	}
}

// supervisor runs `offload run` as a subprocess the way systemd does:
// started again after it stops, its output appended to one log file.
type supervisor struct {
	bin, cfg string
	env      []string
	logPath  string
	logFile  *os.File

	// One goroutine (the harness's) starts, kills and stops the daemon.
	cmd    *exec.Cmd
	done   chan struct{}
	extra  []string // the environment of the last start
	starts int
}

func newSupervisor(bin, cfg, logPath string, env ...string) (*supervisor, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &supervisor{bin: bin, cfg: cfg, env: env, logPath: logPath, logFile: f}, nil
}

func (s *supervisor) environ(extra []string) []string {
	env := append(os.Environ(), s.env...)
	return append(env, extra...)
}

// start starts the daemon with extra environment variables.
func (s *supervisor) start(extra []string) error {
	cmd := exec.Command(s.bin, "run", "--config", s.cfg)
	cmd.Env = s.environ(extra)
	cmd.Stdout, cmd.Stderr = s.logFile, s.logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot start offload run: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done, s.extra = cmd, done, extra
	s.starts++
	return nil
}

func (s *supervisor) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the daemon and waits for it; exited says it had stopped
// by itself already.
func (s *supervisor) kill() (exited bool, err error) {
	if s.exited() {
		return true, nil
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return false, err
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		return false, errors.New("offload did not die within 30s of SIGKILL")
	}
	return false, nil
}

// restartIfExited starts the daemon again, with the environment it had,
// if it stopped by itself, after a second (as systemd's Restart= does).
func (s *supervisor) restartIfExited() (bool, error) {
	if !s.exited() {
		return false, nil
	}
	time.Sleep(time.Second)
	return true, s.start(s.extra)
}

// stop sends SIGTERM and expects a clean exit.
func (s *supervisor) stop() error {
	if s.exited() {
		return fmt.Errorf("offload had stopped by itself (exit %d) before the final stop", s.cmd.ProcessState.ExitCode())
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		return errors.New("offload did not stop within 60s of SIGTERM")
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("offload exited %d on SIGTERM", code)
	}
	return nil
}

func (s *supervisor) close() {
	if s.cmd != nil && !s.exited() {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	_ = s.logFile.Close()
}

// logSize is the log's current length, a mark for waitLog.
func (s *supervisor) logSize() int64 {
	st, err := os.Stat(s.logPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

// firstLine returns the first log line after mark that contains text,
// ignoring case.
func (s *supervisor) firstLine(mark int64, text string) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil || int64(len(b)) < mark {
		return ""
	}
	text = strings.ToLower(text)
	for line := range strings.Lines(string(b[mark:])) {
		if strings.Contains(strings.ToLower(line), text) {
			return line
		}
	}
	return ""
}

// waitLog waits until a log line after mark contains text (any case).
func (s *supervisor) waitLog(mark int64, text string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if s.firstLine(mark, text) != "" {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the daemon's log (%s) did not say %q within %s", s.logPath, text, timeout)
}
