package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/offload/offload/bench/slowfs"
	"github.com/offload/offload/bench/testwarehouse"
	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/appliance"
	"github.com/offload/offload/internal/snowtest"
)

// randomKills: SIGKILLs at random moments while everything is healthy,
// most of the run's kills. Loads are short next to the time between
// them, so every third kill waits (up to 5 s) for one to be under way.
func (h *harness) randomKills(sc *Scenario) error {
	n := max(h.o.Kills-10, 1)
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
func (h *harness) outages(sc *Scenario) error {
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
func (h *harness) warehouseFaults(sc *Scenario) error {
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
	srv, ok := h.srv.(*testwarehouse.Snowflake)
	if !ok {
		sc.Skipped = "the fault kinds are the Snowflake-protocol server's; the other sinks' fault matrices run in the loader's tests (docs/LOADER.md)"
		return nil
	}
	var done []string
	for i, f := range faults {
		// Every kind once at a moment in turn, and the ambiguous commit
		// (response lost) always at COMMIT, where it matters most.
		m := moments[(i+int(h.o.Seed))%len(moments)]
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
func (h *harness) brokerRestart(sc *Scenario) error {
	if h.o.BrokerRestart == "" {
		sc.Skipped = "no --broker-restart command"
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", h.o.BrokerRestart)
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
		return fmt.Errorf("%s: %v: %s", h.o.BrokerRestart, err, strings.TrimSpace(out.String()))
	}
	sc.Detail = "restarted with: " + h.o.BrokerRestart
	h.pause(2*time.Second, 4*time.Second)
	return nil
}

// diskBudget: a 4 MiB budget while the warehouse is away; ingest must
// pause (Kafka keeps the data), survive a kill while paused, pause again
// after the restart, and resume once the backlog ships.
func (h *harness) diskBudget(sc *Scenario) error {
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
	n, _ := h.srv.Loaded()
	return n
}

// diskFull fills the data directory's file system (the tmpfs) until the
// daemon meets ENOSPC, keeps it full a while, then frees it: the daemon
// stops on the error (or is restarted until it can start) and resumes.
func (h *harness) diskFull(sc *Scenario, noTmpfs string) error {
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
func (h *harness) slowDisk(sc *Scenario) error {
	slow := []string{slowfs.FsyncDelayEnv + "=25ms"}
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

// diskLosses is how many times diskLoss deletes the data directory.
const diskLosses = 3

// diskLoss switches the daemon to kafka.delivery: end-to-end with
// dedupe.warehouse: merge, then SIGKILLs it diskLosses times, deletes its
// whole data directory and starts it again empty: Kafka, which holds
// every record whose load has not committed, is the replica
// (docs/ARCHITECTURE.md, "End-to-end delivery"). As docs/OPERATIONS.md
// advises for this mode, the e-mail hash key is kept outside the data
// directory. Every other kill waits (up to 5 s) for a load to be under
// way.
func (h *harness) diskLoss(sc *Scenario) error {
	// Run alone, the scenario starts on a warehouse without tables.
	if err := h.waitRows(1, time.Minute); err != nil {
		return err
	}
	if err := h.sigkill(sc); err != nil {
		return err
	}
	key, err := os.ReadFile(appliance.HashKeyPath(h.dataDir))
	if err != nil {
		return fmt.Errorf("cannot read the generated hash key: %w", err)
	}
	keyFile := filepath.Join(h.o.Dir, "hash.key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		return err
	}
	e2e := []string{"OFFLOAD_KAFKA_DELIVERY=end-to-end", "OFFLOAD_DEDUPE_WAREHOUSE=merge", "OFFLOAD_ENGINE_HASH_KEY_FILE=" + keyFile}
	// In custody the offsets of what the WAL and the outbox hold are
	// committed already: all that must be loaded before the first
	// deletion, which would lose it.
	before := h.g.ValidIDs()
	if err := h.d.start(e2e); err != nil {
		return err
	}
	if err := h.waitLoaded(before, 3*time.Minute); err != nil {
		return fmt.Errorf("before the first deletion: %w", err)
	}
	var moments []string
	for i := range diskLosses {
		h.pause(time.Second, 4*time.Second)
		if i%2 == 1 {
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && h.loaderState() != "loading"; {
				time.Sleep(5 * time.Millisecond)
			}
		}
		moments = append(moments, h.loaderState())
		if err := h.sigkill(sc); err != nil {
			return err
		}
		if err := h.deleteDataDir(e2e); err != nil {
			return err
		}
		if err := h.d.start(e2e); err != nil {
			return err
		}
	}
	h.pause(2*time.Second, 4*time.Second)
	sc.Detail = fmt.Sprintf("end-to-end, merge: data dir deleted %d× (loader %s), restarted empty",
		diskLosses, strings.Join(moments, ", "))
	return nil
}

// waitLoaded waits until the warehouse holds every event of ids.
func (h *harness) waitLoaded(ids map[string]struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		missing, _, _, err := h.srv.Tally(ids)
		if err != nil {
			return err
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d events are not in the warehouse after %s", missing, len(ids), timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// deleteDataDir keeps the dead letters of the stopped daemon's data
// directory (configured with env) for the tally, then deletes everything
// in it (the directory itself may be the tmpfs's mount point).
func (h *harness) deleteDataDir(env []string) error {
	entries, err := h.deadLetters(env)
	if err != nil {
		return err
	}
	h.deletedDLQ = append(h.deletedDLQ, entries)
	names, err := os.ReadDir(h.dataDir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := os.RemoveAll(filepath.Join(h.dataDir, n.Name())); err != nil {
			return err
		}
	}
	h.res.DataDirsDeleted++
	return nil
}
