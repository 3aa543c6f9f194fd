// Package harness is offload's fault harness (`offload bench --chaos`,
// docs/RELIABILITY.md): it runs the appliance as a subprocess the way
// systemd does, against a real Kafka broker and a test warehouse
// (bench/testwarehouse), while a producer sends events at a steady rate,
// and goes through its scenarios: SIGKILLs at random moments and during
// loads, warehouse outages, injected warehouse faults at each step of a
// load, a broker restart, an exhausted disk budget, a full disk (a tmpfs
// it mounts, as root), a slow one (bench/slowfs) and, in end-to-end
// delivery, the loss of the whole data directory. It ends by draining,
// counting the warehouse and the dead letters against what was produced
// and running `offload reconcile`: nothing lost, nothing duplicated.
//
// It owns the daemon process, the warehouse, the producer and the mount;
// it leaves none of them behind.
package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/bench/gen"
	"github.com/offload/offload/bench/testwarehouse"
	"github.com/offload/offload/engine"
	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/config"
)

// Options are the settings of a run (`offload bench --chaos`).
type Options struct {
	// Binary is the offload binary the supervisor runs (`offload run`,
	// `offload reconcile`).
	Binary  string
	Brokers []string
	// BrokerRestart is a shell command that restarts the broker keeping
	// its data; empty skips the broker-restart scenario.
	BrokerRestart string
	// Kills is the least number of SIGKILLs of the daemon.
	Kills      int
	Partitions int
	Rate       float64 // events per second produced throughout
	// Dir holds the run: configuration, log, data, warehouse.
	Dir  string
	Seed uint64
	// TmpfsSize is the size of the tmpfs mounted for the data directory
	// (root only), which the disk-full scenario fills; 0: no tmpfs.
	TmpfsSize int64
	// Warehouse is the test warehouse's type (bench/testwarehouse).
	Warehouse string
	// Scenarios, if any, are the only scenarios run.
	Scenarios map[string]bool
	// Progress receives a line per step.
	Progress io.Writer
	// DeadLetters lists the dead letters of the stopped appliance that c
	// configures; the command supplies it, as it opens the appliance's
	// WAL and engine (cmd/offload).
	DeadLetters func(c *config.Config) ([]engine.DLQEntry, error)
}

// Scenario is one fault phase of a chaos run and what it did.
type Scenario struct {
	Name    string  `json:"name"`
	Kills   int     `json:"kills"`
	Faults  int     `json:"faults,omitempty"` // injected warehouse faults that hit a request
	Exits   int     `json:"exits,omitempty"`  // times the daemon stopped by itself
	Seconds float64 `json:"seconds"`
	Detail  string  `json:"detail,omitempty"`
	Skipped string  `json:"skipped,omitempty"`
}

// Result is what `offload bench --chaos` reports (--json FILE).
type Result struct {
	Kills     int        `json:"kills"`
	Scenarios []Scenario `json:"scenarios"`
	// KillMoments counts the loader's state at each kill (idle, loading,
	// retrying, ...; "starting" when the daemon did not answer yet).
	KillMoments map[string]int `json:"kill_moments"`
	Produced    int64          `json:"produced"` // records sent, every kind
	Valid       int64          `json:"valid"`
	Duplicates  int64          `json:"duplicates"` // extra copies the producer sent
	Malformed   int64          `json:"malformed"`
	Loaded      int64          `json:"loaded"` // rows in the warehouse
	// DLQ counts the dead letters, those of the deleted data directories
	// included (read from each before its deletion), a record's dead
	// letter written again after a deletion once.
	DLQ int64 `json:"dlq"`
	// DataDirsDeleted counts the data directories the disk-loss scenario
	// deleted; DLQRewritten the dead letters written again after one, of
	// records whose offsets were not committed then and that were read
	// again; LedgerOnlyBatches the batches in the warehouse's ledger that
	// no surviving data directory shipped (reconcile lists them as
	// extra; their rows and control totals must still match).
	DataDirsDeleted   int   `json:"data_dirs_deleted,omitempty"`
	DLQRewritten      int64 `json:"dlq_rewritten,omitempty"`
	LedgerOnlyBatches int   `json:"ledger_only_batches,omitempty"`
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

// harness runs a chaos run: the daemon under supervision, the warehouse,
// the producer and the scenarios.
type harness struct {
	o       Options
	rng     *rand.Rand
	srv     testwarehouse.Warehouse
	d       *supervisor
	dataDir string
	cfgPath string
	admin   string
	res     Result
	g       *gen.Generator
	client  *admin.Client // the daemon's admin API
	// deletedDLQ holds the dead letters of each data directory the
	// disk-loss scenario deleted, read before the deletion.
	deletedDLQ [][]engine.DLQEntry
}

// Run runs the harness with o.
func Run(o Options) (Result, error) {
	began := time.Now()
	h := &harness{o: o, rng: rand.New(rand.NewPCG(o.Seed, o.Seed^0xc4a05)), dataDir: filepath.Join(o.Dir, "data"),
		res: Result{KillMoments: map[string]int{}}}
	if err := os.MkdirAll(h.dataDir, 0o750); err != nil {
		return h.res, err
	}
	noTmpfs := "" // why the disk-full scenario cannot run
	if o.TmpfsSize > 0 {
		if err := syscall.Mount("tmpfs", h.dataDir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0750", o.TmpfsSize)); err != nil {
			noTmpfs = fmt.Sprintf("cannot mount a tmpfs at %s: %v", h.dataDir, err)
		} else {
			defer func() { _ = syscall.Unmount(h.dataDir, 0) }()
		}
	} else {
		noTmpfs = "no tmpfs (--tmpfs-mib 0)"
	}
	var err error
	if h.srv, err = testwarehouse.New(o.Warehouse, o.Dir, true); err != nil {
		return h.res, err
	}
	defer h.srv.Close()
	topic := fmt.Sprintf("offload-chaos-%d", time.Now().UnixNano())
	if err := gen.CreateTopicOn(o.Brokers, topic, o.Partitions); err != nil {
		return h.res, err
	}
	if h.admin, err = freeAddr(); err != nil {
		return h.res, err
	}
	h.client = admin.NewClient(h.admin, "")
	if err := h.writeConfig(topic); err != nil {
		return h.res, err
	}
	h.d, err = newSupervisor(o.Binary, h.cfgPath, daemonLog(o.Dir), h.srv.Env()...)
	if err != nil {
		return h.res, err
	}
	defer h.d.close()

	// AlwaysRetryEOF: franz-go takes an EOF right after a request for a
	// missing SASL setting and fails the records; here it is the broker
	// restart, and the records must be retried, not given up.
	cl, err := kgo.NewClient(kgo.SeedBrokers(o.Brokers...), kgo.DefaultProduceTopic(topic), kgo.AlwaysRetryEOF())
	if err != nil {
		return h.res, err
	}
	defer cl.Close()
	stopProducing := h.produce(cl, topic, producerStopBound)
	defer func() { _ = stopProducing() }()

	if err := h.d.start(nil); err != nil {
		return h.res, err
	}
	scenarios := []struct {
		name string
		run  func(*Scenario) error
	}{
		{"kills", h.randomKills},
		{"warehouse-outage", h.outages},
		{"warehouse-faults", h.warehouseFaults},
		{"broker-restart", h.brokerRestart},
		{"disk-budget", h.diskBudget},
		{"disk-full", func(sc *Scenario) error { return h.diskFull(sc, noTmpfs) }},
		{"slow-disk", h.slowDisk},
		// Last: it leaves the daemon in end-to-end delivery.
		{"disk-loss", h.diskLoss},
	}
	for _, s := range scenarios {
		if len(o.Scenarios) > 0 && !o.Scenarios[s.name] {
			continue
		}
		sc := Scenario{Name: s.name}
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

	if err := stopProducing(); err != nil {
		return h.res, err
	}
	stopped := time.Now()
	sum := h.g.Summary()
	h.res.Produced, h.res.Valid, h.res.Duplicates, h.res.Malformed = sum.Produced, sum.Valid, sum.Duplicates, sum.Malformed
	valid, malformed := h.g.ValidIDs(), h.g.MalformedIDs()
	h.logf("produced %d records (%d valid events, %d duplicates, %d malformed); draining", sum.Produced, sum.Valid, sum.Duplicates, sum.Malformed)
	if err := h.drain(len(valid), malformed); err != nil {
		h.res.Errors = append(h.res.Errors, err.Error())
	}
	h.res.DrainSeconds = time.Since(stopped).Seconds()
	if err := h.d.stop(); err != nil {
		h.res.Errors = append(h.res.Errors, err.Error())
	}
	if err := h.tally(valid, malformed); err != nil {
		// The report still shows what came before (a drain that did not
		// end, say), which the tally's failure often follows from.
		h.res.Errors = append(h.res.Errors, fmt.Sprintf("tally: %v", err))
	}
	h.res.ReconcileOK = h.reconcile()
	h.res.DaemonStarts = h.d.starts
	h.res.Seconds = time.Since(began).Seconds()
	h.res.OK = len(h.res.Errors) == 0 && h.res.Lost == 0 && h.res.Duplicated == 0 && h.res.UnexpectedDLQ == 0 &&
		h.res.UnexpectedRows == 0 && h.res.ReconcileOK && h.res.Kills >= o.Kills
	return h.res, nil
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.o.Progress, "chaos: "+format+"\n", args...)
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
`, h.dataDir, strings.Join(h.o.Brokers, ", "), topic, topic, h.admin) + h.srv.YAML()
	h.cfgPath = filepath.Join(h.o.Dir, "offload.yaml")
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
func (h *harness) kill(sc *Scenario, env []string) error {
	if err := h.sigkill(sc); err != nil {
		return err
	}
	return h.d.start(env)
}

// sigkill SIGKILLs the daemon, noting what its loader was doing.
func (h *harness) sigkill(sc *Scenario) error {
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
	return nil
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

// drain waits until the warehouse holds every valid event of the run,
// the engine has dead-lettered every malformed record and the loader has
// taken every sealed batch for shipped (a load whose commit the
// warehouse shows may not have been answered yet: stopped then, the
// appliance would not know it shipped, and reconcile would say so),
// restarting a daemon that stopped by itself. After a deleted data
// directory, whose dead letters the status no longer counts, it waits
// instead for the daemon to have fetched every record and processed it:
// every malformed record it read again is then dead-lettered. (The
// offsets themselves are not all committed: in end-to-end delivery the
// records of the windows still open wait.)
func (h *harness) drain(valid int, malformed map[string]struct{}) error {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		_, _ = h.d.restartIfExited()
		_, loaded := h.srv.Loaded()
		if st, ok := h.status(); ok && loaded >= int64(valid) && st.Outbox.SealedBatches == 0 {
			if len(h.deletedDLQ) == 0 && st.DLQ.Rows >= int64(len(malformed)) ||
				len(h.deletedDLQ) > 0 && allProcessed(st) {
				return nil
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return errors.New("the run was not all loaded within 10 minutes")
}

// allProcessed says the WAL holds every partition up to its high
// watermark and the engine has consumed it all.
func allProcessed(st admin.Status) bool {
	for _, p := range st.Kafka.Partitions {
		if p.HighWatermark < 0 || p.Durable < p.HighWatermark {
			return false
		}
	}
	return len(st.Kafka.Partitions) > 0 && st.Engine.BacklogRecords == 0
}

// reconcile runs `offload reconcile` on the stopped appliance. After a
// deleted data directory the batches it shipped are in the ledger only:
// reconcile lists them as extra, and any other discrepancy (a batch
// missing from the ledger, rows or control totals that differ from the
// warehouse's, rows without a ledger row) still fails the run.
func (h *harness) reconcile() bool {
	cmd := exec.Command(h.d.bin, "reconcile", "--config", h.cfgPath)
	cmd.Env = h.d.environ(h.d.extra)
	out, err := cmd.CombinedOutput()
	if err == nil {
		return true
	}
	if n, ok := ledgerOnly(string(out)); ok && len(h.deletedDLQ) > 0 {
		h.res.LedgerOnlyBatches = n
		return true
	}
	h.res.Errors = append(h.res.Errors, fmt.Sprintf("reconcile: %v: %s", err, truncate(string(out), 500)))
	return false
}

// ledgerOnly counts the discrepancies in reconcile's report (its table
// from the BATCH header to the count), if each is a batch in the ledger
// that this appliance did not ship, and there is nothing else.
func ledgerOnly(report string) (int, bool) {
	lines := strings.Split(strings.TrimSpace(report), "\n")
	head := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "BATCH") })
	if head < 0 || len(lines)-head < 3 || !strings.Contains(lines[len(lines)-1], " discrepancies (") {
		return 0, false
	}
	found := lines[head+1 : len(lines)-1]
	for _, l := range found {
		if f := strings.Fields(l); len(f) < 2 || f[1] != "extra" || !strings.HasSuffix(l, "in the warehouse's ledger but not shipped by this appliance") {
			return 0, false
		}
	}
	return len(found), true
}
