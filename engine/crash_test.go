package engine

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/offload/offload/wal"
)

// crashDirEnv, set to a data directory, makes the test binary run
// crashHelper instead of the tests: the engine as a process of its own,
// for the crash test to SIGKILL.
const crashDirEnv = "OFFLOAD_ENGINE_CRASH_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		os.Exit(crashHelper(dir))
	}
	os.Exit(m.Run())
}

// crashOptions are the engine options of the crash test: small
// micro-batches, sealing by rows, a short dedupe window (keys expire
// minute by minute, slices' filters are freed, and the workload's hour
// boundary deletes a key store bucket) and the smallest filter memory,
// so that every kind of state change happens many times.
func crashOptions(dir string, w *wal.WAL) Options {
	o := baseOptions(dir, w)
	o.BatchRecords = 100
	o.Seal.Rows = 700
	o.DedupeWindow = 10 * time.Minute
	o.DedupeMemory = minDedupeMemory
	return o
}

// crashHelper opens the engine over dir and steps until the WAL is
// drained, then seals what is open.
func crashHelper(dir string) int {
	w, err := wal.Open(filepath.Join(dir, "wal"), wal.Options{Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	e, err := Open(crashOptions(dir, w))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("open")
	for {
		n, err := e.Step(context.Background())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if n == 0 {
			break
		}
		fmt.Println("step") // the parent counts kills that landed mid-run
	}
	if err := errorsJoin(e.Close(), w.Close()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

func errorsJoin(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// crashWorkload appends a deterministic mix of records to the WAL in dir:
// four partitions (three JSON, one CSV), event times over about 40
// minutes with late and too-late events, duplicates (within and across
// partitions, before and after the dedupe window), bad records of every
// kind and filtered ones, in WAL entries of 1 to 40 records.
func crashWorkload(t *testing.T, dir string, n int) {
	w, err := wal.Open(filepath.Join(dir, "wal"), wal.Options{Logger: quietLogger(),
		Now: func() time.Time { return kafkaTime.Add(time.Second) }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	parts := []wal.TopicPartition{{Topic: "orders", Partition: 0}, {Topic: "orders", Partition: 1}, {Topic: "orders", Partition: 2}, {Topic: "orders_csv", Partition: 0}}
	pending := make([][]wal.Record, len(parts))
	next := make([]int64, len(parts))
	flush := func(p int) {
		if len(pending[p]) == 0 {
			return
		}
		if _, err := w.Append(parts[p], pending[p]); err != nil {
			t.Fatal(err)
		}
		pending[p] = nil
	}
	stores := []string{"s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"}
	var ids []string
	for i := 0; i < n; i++ {
		p := rng.IntN(len(parts))
		// From half an hour before t0: the dedupe horizon crosses an
		// hour, so a key store bucket is deleted by range.
		when := t0.Add(-30*time.Minute + time.Duration(i)*300*time.Millisecond)
		if rng.IntN(20) == 0 {
			when = when.Add(-time.Duration(1+rng.IntN(8)) * time.Minute) // late, some too late
		}
		id := fmt.Sprintf("evt-%05d", i)
		switch r := rng.IntN(100); {
		case r < 8 && len(ids) > 0:
			id = ids[rng.IntN(len(ids))] // a duplicate, maybe long expired
		case r < 10:
			id = "TEST-" + id
		}
		ids = append(ids, id)
		store := stores[rng.IntN(len(stores))]
		amount := fmt.Sprintf("%d.%02d", rng.IntN(500), rng.IntN(100))
		var val string
		switch {
		case rng.IntN(30) == 0:
			br := badRecords[rng.IntN(len(badRecords))]
			val = br.raw
		case parts[p].Topic == "orders_csv":
			val = fmt.Sprintf("%s,order_placed,%s,%s,EUR,%s", id, store, amount, when.Format(time.RFC3339Nano))
		default:
			extra := []any{"customer_id", fmt.Sprintf("c%d", rng.IntN(50)), "channel", []string{"web", "app", "pos"}[rng.IntN(3)],
				"event_type", []string{"order_placed", "payment_captured", "refund"}[rng.IntN(3)]}
			if strings.HasPrefix(id, "TEST-") {
				extra = append(extra, "order_id", id)
			}
			val = ev(id, store, amount, when, extra...)
		}
		pending[p] = append(pending[p], wal.Record{Offset: next[p], Timestamp: kafkaTime.UnixMilli(), Value: []byte(val)})
		next[p]++
		if rng.IntN(20) == 0 || len(pending[p]) >= 40 {
			flush(p)
		}
	}
	for p := range parts {
		flush(p)
	}
}

func copyDir(t *testing.T, from, to string) {
	err := filepath.Walk(from, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, src); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// crashTables are what the crash test compares: every table a micro-batch
// writes, less the columns that legitimately differ between runs (wall
// clock times are the test clock here, but ids and times are excluded as
// the contract says they may differ).
var crashTables = map[string]string{
	"outbox_rows":      `SELECT * EXCLUDE (batch_id) FROM outbox_rows`,
	"outbox_windows":   `SELECT * EXCLUDE (batch_id, emitted_at) FROM outbox_windows`,
	"dlq":              `SELECT * EXCLUDE (id, "at") FROM dlq`,
	"counters":         `SELECT * FROM engine_counters`,
	"cursor":           `SELECT * FROM engine_cursor`,
	"windows":          `SELECT * FROM windows`,
	"batches":          `SELECT batch_id, ranges, rows, window_rows, bytes FROM outbox_batches`,
	"rows_by_batch":    `SELECT batch_id, count(*) FROM outbox_rows GROUP BY ALL`,
	"windows_by_batch": `SELECT batch_id, count(*) FROM outbox_windows GROUP BY ALL`,
}

func dumpTables(t *testing.T, dir string) map[string][]string {
	t.Helper()
	db, err := sql.Open("duckdb", filepath.Join(dir, DBFile)+"?access_mode=READ_ONLY")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string][]string{}
	for name, q := range crashTables {
		out[name] = sorted(queryLines(t, db, withRows(t, db, dir, q)))
	}
	// No dedupe key without its row; the keys are compared as a table.
	out["dedupe keys"] = storedKeys(t, db, dir)
	checkKeysHaveRows(t, out["dedupe keys"], db, dir)
	return out
}

// TestCrashAtomicity runs the engine as a subprocess over a WAL and
// SIGKILLs it at random moments many times, restarting it each time; the
// outbox, windows and dead letters it ends with must equal, as multisets
// of rows, those of an uninterrupted run over a copy of the same WAL, and
// no dedupe key may exist without its row.
func TestCrashAtomicity(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: seconds of subprocesses")
	}
	kills := 50
	if s := os.Getenv("OFFLOAD_CRASH_KILLS"); s != "" {
		fmt.Sscan(s, &kills)
	}
	crashed, ref := t.TempDir(), t.TempDir()
	// A kill lets at most four micro-batches (~190 records each) commit,
	// about two on average: size the WAL so the wanted kills land before
	// the run finishes, with room to spare.
	crashWorkload(t, crashed, max(12000, 600*kills))
	copyDir(t, crashed, ref)

	// run runs the engine process over dir. With kill set, it SIGKILLs the
	// process at kill.at after start, or, with kill.after "open" or
	// "step", kill.at after the engine has opened or committed its
	// kill.steps-th micro-batch (so the kill lands among micro-batches,
	// and each kill lets a bounded number of them commit, whatever the
	// machine's load does to their pace).
	type killPlan struct {
		at    time.Duration
		after string
		steps int // with after "step": the micro-batch, from 1
	}
	run := func(dir string, kill *killPlan) (killed bool, steps int, d time.Duration) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		marks := map[string]chan struct{}{"open": make(chan struct{}), "step": make(chan struct{})}
		lines := make(chan int, 1)
		go func() {
			sc := bufio.NewScanner(stdout)
			n, open := 0, false
			for sc.Scan() {
				switch sc.Text() {
				case "open":
					if !open {
						open = true
						close(marks["open"])
					}
				case "step":
					n++
					if kill != nil && n == max(kill.steps, 1) {
						close(marks["step"])
					}
				}
			}
			lines <- n
		}()
		done := make(chan error, 1)
		go func() {
			n := <-lines
			err := cmd.Wait()
			steps = n
			done <- err
		}()
		var timer <-chan time.Time
		if kill != nil {
			if kill.after != "" {
				select {
				case <-marks[kill.after]:
				case err := <-done:
					if kill.after == "step" && err == nil {
						return false, steps, time.Since(start) // nothing was left to do
					}
					t.Fatalf("engine process ended before %s: %v\n%s", kill.after, err, stderr.String())
				}
			}
			timer = time.After(kill.at)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("engine process failed: %v\n%s", err, stderr.String())
			}
			return false, steps, time.Since(start)
		case <-timer:
			_ = cmd.Process.Kill()
			<-done
			return true, steps, time.Since(start)
		}
	}

	_, batches, full := run(ref, nil)
	_, _, startup := run(ref, nil) // nothing left to do: start-up and shutdown
	want := dumpTables(t, ref)
	if len(want["outbox_rows"]) < 4000 || len(want["dlq"]) < 100 || len(want["outbox_windows"]) < 100 || len(want["batches"]) < 5 {
		t.Fatalf("workload too small to mean much: %d rows, %d dead letters, %d windows, %d batches",
			len(want["outbox_rows"]), len(want["dlq"]), len(want["outbox_windows"]), len(want["batches"]))
	}
	perBatch := (full - startup) / time.Duration(max(batches, 1))
	t.Logf("uninterrupted run: %s for %d micro-batches; start-up and shutdown alone %s", full, batches, startup)

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	got, midRun := 0, 0
	for attempt := 0; got < kills && attempt < 10*kills; attempt++ {
		// One kill in five lands anywhere in start-up and recovery, one
		// within a micro-batch's time after the engine opened, three
		// within one after its first to third commit.
		plan := &killPlan{at: time.Duration(rng.Int64N(int64(startup) + 1))}
		switch rng.IntN(5) {
		case 1:
			plan = &killPlan{at: time.Duration(rng.Int64N(int64(perBatch) + 1)), after: "open"}
		case 2, 3, 4:
			plan = &killPlan{at: time.Duration(rng.Int64N(int64(perBatch) + 1)), after: "step", steps: 1 + rng.IntN(3)}
		}
		killed, steps, _ := run(crashed, plan)
		if !killed {
			break // it finished: nothing left to interrupt
		}
		got++
		if steps > 0 {
			midRun++
		}
	}
	run(crashed, nil)
	if got < kills {
		t.Fatalf("only %d kills landed before the run finished (of %d wanted): make the workload larger", got, kills)
	}
	if midRun < got/3 {
		t.Fatalf("only %d of %d kills landed after a micro-batch had committed", midRun, got)
	}
	have := dumpTables(t, crashed)
	for name := range want {
		if !reflect.DeepEqual(have[name], want[name]) {
			t.Errorf("%s differs after %d kills: %d rows, want %d\n%s", name, got, len(have[name]), len(want[name]), diffLines(have[name], want[name]))
		}
	}
	t.Logf("%d kills (%d after a commit of the same run); %d outbox rows, %d window rows, %d dead letters, %d batches", got, midRun,
		len(want["outbox_rows"]), len(want["outbox_windows"]), len(want["dlq"]), len(want["batches"]))
}

// diffLines shows the first lines only in a or only in b.
func diffLines(a, b []string) string {
	count := map[string]int{}
	for _, l := range a {
		count[l]++
	}
	for _, l := range b {
		count[l]--
	}
	var out []string
	for l, c := range count {
		switch {
		case c > 0:
			out = append(out, fmt.Sprintf("+%d %s", c, l))
		case c < 0:
			out = append(out, fmt.Sprintf("-%d %s", -c, l))
		}
	}
	if len(out) > 10 {
		out = append(out[:10], "...")
	}
	return strings.Join(sorted(out), "\n")
}
