package loader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/internal/testenv"
)

// flippingOutbox is the engine's outbox on a disk that damages files:
// after ExportBatch returns, it flips random bits (seeded) in the files
// that plan picks for the n-th export of a batch (n from 0), and keeps a
// copy of each damaged file.
type flippingOutbox struct {
	*engine.Engine
	plan func(id string, n int) (rows, windows bool)

	mu      sync.Mutex
	rng     *rand.Rand
	exports map[string]int    // batch → exports so far
	damaged map[string][]byte // SHA-256 → damaged content
	err     error             // a failure to damage a file
}

func newFlippingOutbox(e *engine.Engine, seed uint64, plan func(id string, n int) (rows, windows bool)) *flippingOutbox {
	return &flippingOutbox{Engine: e, plan: plan, rng: rand.New(rand.NewPCG(seed, 0xb17f)),
		exports: map[string]int{}, damaged: map[string][]byte{}}
}

func (o *flippingOutbox) ExportBatch(ctx context.Context, id, dir string) (engine.Export, error) {
	x, err := o.Engine.ExportBatch(ctx, id, dir)
	if err != nil {
		return x, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	rows, windows := o.plan(id, o.exports[id])
	o.exports[id]++
	for _, f := range []struct {
		path string
		flip bool
	}{{x.RowsFiles[0], rows}, {x.WindowsFile, windows}} {
		if f.flip && o.err == nil {
			o.err = o.flipBits(f.path)
		}
	}
	return x, nil
}

// flipBits flips 1 to 8 distinct random bits of the file at path.
func (o *flippingOutbox) flipBits(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	bits := map[int]bool{}
	for n := 1 + o.rng.IntN(8); len(bits) < n; {
		bits[o.rng.IntN(len(b)*8)] = true
	}
	for bit := range bits {
		b[bit/8] ^= 1 << (bit % 8)
	}
	if err := os.WriteFile(path, b, 0o640); err != nil {
		return err
	}
	o.damaged[sha256Hex(b)] = b
	return nil
}

// damage returns the damaged files' contents by SHA-256.
func (o *flippingOutbox) damage(t *testing.T) map[string][]byte {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		t.Fatalf("damaging an exported file: %v", o.err)
	}
	return o.damaged
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// recordingSink is a sink that notes the SHA-256 of each file it is handed
// to PUT, read from disk as the PUT reads it.
type recordingSink struct {
	Sink
	mu     sync.Mutex
	handed []string
	err    error
}

func (s *recordingSink) Load(ctx context.Context, x engine.Export) error {
	s.mu.Lock()
	files := slices.Clone(x.RowsFiles)
	if x.WindowRows > 0 { // the sink PUTs no empty windows file
		files = append(files, x.WindowsFile)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil && s.err == nil {
			s.err = err
		}
		s.handed = append(s.handed, sha256Hex(b))
	}
	s.mu.Unlock()
	return s.Sink.Load(ctx, x)
}

func (s *recordingSink) files(t *testing.T) []string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.handed
}

// checkQuarantine asserts that dir holds exactly the damaged files, byte
// for byte, each named after its batch, and returns how many.
func checkQuarantine(t *testing.T, dir string, damaged map[string][]byte, batches []string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, ent := range entries {
		b, err := os.ReadFile(filepath.Join(dir, ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256Hex(b)
		if want, ok := damaged[sum]; !ok || string(want) != string(b) || seen[sum] {
			t.Errorf("quarantined %s is not one of the damaged files (or is there twice)", ent.Name())
		}
		seen[sum] = true
		if !strings.HasSuffix(ent.Name(), ".parquet") || !hasBatchPrefix(ent.Name(), batches) {
			t.Errorf("quarantined %s is not named <batch>.<kind>.<time>.parquet", ent.Name())
		}
	}
	if len(seen) != len(damaged) {
		t.Errorf("%d damaged files, %d in quarantine", len(damaged), len(seen))
	}
	return len(entries)
}

func hasBatchPrefix(name string, batches []string) bool {
	for _, id := range batches {
		if strings.HasPrefix(name, id+".rows.") || strings.HasPrefix(name, id+".windows.") {
			return true
		}
	}
	return false
}

// TestDamagedExportsAreQuarantined: random bit flips in the exported
// files of every batch (several positions, rows or windows file or both,
// sometimes in the re-export too) are caught before the PUT; the damaged
// files land in quarantine as they were, counted; a batch whose re-export
// is damaged too is parked, and loads once the operator retries it; only
// files that match their checksum are handed to the warehouse, and it
// holds every row of every batch once, with the exported content and
// control totals.
func TestDamagedExportsAreQuarantined(t *testing.T) {
	w := newWarehouse(t)
	e := testOutbox(t, 4, 40)
	sealed, _ := e.SealedBatches()
	want := outboxEventIDs(t, e)
	clean := exportAll(t, e)
	index := map[string]int{}
	for i, b := range sealed {
		index[b.ID] = i
	}
	choice := rand.New(rand.NewPCG(42, 7))
	ob := newFlippingOutbox(e, 8, func(id string, n int) (bool, bool) {
		switch {
		case n == 0: // rows, windows or both
			k := choice.IntN(3)
			return k != 1, k != 0
		case n == 1 && index[id]%2 == 1: // the re-export is damaged too
			return true, false
		}
		return false, false
	})
	sink := &recordingSink{Sink: w.sink(t, AuthPassword)}
	opts := fastOptions(ob, sink, t.TempDir())
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	// The batches damaged twice in a row are parked; the others load.
	runUntil(t, l, func() bool { return l.Status().Loaded == 2 && l.Status().Parked == 2 })
	bs, _ := e.SealedBatches()
	for _, b := range bs {
		if b.State != engine.BatchParked || index[b.ID]%2 != 1 || !strings.Contains(b.Error, "damaged twice in a row") {
			t.Fatalf("outbox after the first pass: %+v", bs)
		}
		// The operator checked the disk: the third export is clean.
		if err := l.RetryParked(b.ID); err != nil {
			t.Fatal(err)
		}
	}
	runUntil(t, l, outboxEmpty(e))

	damaged := ob.damage(t)
	if len(damaged) < 6 {
		t.Fatalf("only %d files damaged: the test proves little", len(damaged))
	}
	n := checkQuarantine(t, opts.QuarantineDir, damaged, ids(sealed))
	for _, sum := range sink.files(t) {
		if damaged[sum] != nil {
			t.Errorf("a damaged file (sha256 %s) was handed to the warehouse", sum)
		}
	}
	st := l.Status()
	if st.Quarantined != int64(n) || !strings.HasPrefix(st.LastQuarantined, opts.QuarantineDir) ||
		st.Loaded != 4 || st.Parked != 2 || st.Retries != 0 || st.Circuit != CircuitClosed {
		t.Fatalf("status %+v; %d files in quarantine", st, n)
	}
	checkWarehouse(t, w, want, 4)
	checkRowContent(t, w, clean)
	t.Logf("%d exported files damaged, all in quarantine; %d verified files loaded", n, len(sink.files(t)))
}

// TestEveryExportDamaged: when each export of a batch is damaged, the
// batch is never loaded: after its re-export is damaged too it is parked
// (not retried: the circuit stays closed), naming the checksum failures
// and the disk or memory, and the batches behind it load. Each attempt
// puts exactly two files in quarantine (the export and the re-export),
// also when the operator retries the batch before the disk is fixed.
func TestEveryExportDamaged(t *testing.T) {
	w := newWarehouse(t)
	e := testOutbox(t, 3, 40)
	sealed, _ := e.SealedBatches()
	bad := sealed[0].ID // the oldest: shipped first
	ob := newFlippingOutbox(e, 9, func(id string, _ int) (bool, bool) { return id == bad, false })
	sink := &recordingSink{Sink: w.sink(t, AuthPassword)}
	opts := fastOptions(ob, sink, t.TempDir())
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	parked := func(attempts int) {
		t.Helper()
		runUntil(t, l, func() bool { return l.Status().Loaded == 2 && l.Status().Parked == int64(attempts) })
		// Give a loader that would retry it the time to do so.
		runUntil(t, l, func() bool { time.Sleep(50 * time.Millisecond); return true })
		st := l.Status()
		// (LastError is cleared by the loads behind the parked batch; the
		// reason is in the outbox.)
		if st.Loaded != 2 || st.Parked != int64(attempts) || st.Retries != 0 || st.Circuit != CircuitClosed {
			t.Fatalf("status %+v", st)
		}
		ob.mu.Lock()
		exports := ob.exports[bad]
		ob.mu.Unlock()
		if exports != 2*attempts {
			t.Fatalf("batch exported %d times in %d attempts, want 2 per attempt", exports, attempts)
		}
		bs, _ := e.SealedBatches()
		if len(bs) != 1 || bs[0].ID != bad || bs[0].State != engine.BatchParked ||
			!strings.Contains(bs[0].Error, "damaged twice in a row") || strings.Count(bs[0].Error, "sha256") != 2 ||
			!strings.Contains(bs[0].Error, "disk or memory") {
			t.Fatalf("outbox: %+v", bs)
		}
		damaged := ob.damage(t)
		if n := checkQuarantine(t, opts.QuarantineDir, damaged, []string{bad}); st.Quarantined != int64(n) || n != 2*attempts {
			t.Fatalf("status counts %d quarantined files, %d in quarantine, want 2 per attempt (%d attempts)", st.Quarantined, n, attempts)
		}
		for _, sum := range sink.files(t) {
			if damaged[sum] != nil {
				t.Fatalf("a damaged file (sha256 %s) was handed to the warehouse", sum)
			}
		}
	}
	parked(1)
	// Retried before the disk is fixed: parked again after two more files.
	if err := l.RetryParked(bad); err != nil {
		t.Fatal(err)
	}
	parked(2)
	// The batches behind it are in the warehouse, all of their rows once;
	// nothing of the damaged one is.
	for q, want := range map[string]string{
		`SELECT count(*) FROM PUBLIC.OFFLOAD_LOAD_LEDGER`:                                 "2",
		`SELECT count(*) FROM PUBLIC.OFFLOAD_LOAD_LEDGER WHERE BATCH_ID = '` + bad + `'`:  "0",
		`SELECT count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS WHERE BATCH_ID = '` + bad + `'`: "0",
		`SELECT count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS`:                                "80",
		`SELECT count(DISTINCT EVENT_ID) FROM PUBLIC.OFFLOAD_TRANSACTIONS`:                "80",
	} {
		if got := w.query(t, q); got[0] != want {
			t.Errorf("%s: %s, want %s", q, got[0], want)
		}
	}
}

// checkRowContent asserts that the warehouse's transactions table holds
// exactly the rows of the clean exports, every column.
func checkRowContent(t *testing.T, w *warehouse, clean []engine.Export) {
	t.Helper()
	var exported []string
	// The test server's DuckDB reads the files: its JSON for PARSE_JSON.
	rows := snowflakeRows(nil)
	rows.parse = func(e string) string { return "CAST(" + e + " AS JSON)" }
	for _, x := range clean {
		var files []string
		for _, f := range x.RowsFiles {
			files = append(files, "'"+sqlString(f)+"'")
		}
		exported = append(exported, fmt.Sprintf("SELECT %s FROM read_parquet([%s])", rows.values("", batchLiteral(x.ID)), strings.Join(files, ", ")))
	}
	cols := names(transactionColumns, "")
	src := "(" + strings.Join(exported, " UNION ALL ") + ")"
	dst := fmt.Sprintf("(SELECT %s FROM PUBLIC.OFFLOAD_TRANSACTIONS)", cols)
	diff := w.query(t, fmt.Sprintf("SELECT * FROM (%s EXCEPT ALL %s) UNION ALL SELECT * FROM (%s EXCEPT ALL %s)", src, dst, dst, src))
	if len(diff) != 0 {
		t.Fatalf("%d rows differ between the outbox and the warehouse:\n%s", len(diff), strings.Join(diff, "\n"))
	}
}

// cuttingOutbox is the engine's outbox on a disk that loses the rows file
// of the first export and cuts the windows file of the second in half.
type cuttingOutbox struct {
	*engine.Engine
	mu      sync.Mutex
	exports int
	cut     []byte // the windows file as cut
	err     error
}

func (o *cuttingOutbox) ExportBatch(ctx context.Context, id, dir string) (engine.Export, error) {
	x, err := o.Engine.ExportBatch(ctx, id, dir)
	if err != nil {
		return x, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.exports++
	switch o.exports {
	case 1:
		o.err = os.Remove(x.RowsFiles[0])
	case 2:
		b, err := os.ReadFile(x.WindowsFile)
		if err == nil {
			o.cut = b[:len(b)/2]
			err = os.WriteFile(x.WindowsFile, o.cut, 0o640)
		}
		o.err = err
	}
	return x, nil
}

// TestMissingOrShortExportFile: a missing file and a short one fail the
// check like a changed one; the short one is quarantined as it was, the
// missing one only logged. Damaged on two exports in a row, the batch is
// parked; retried by the operator, it loads from its third export.
func TestMissingOrShortExportFile(t *testing.T) {
	e := testOutbox(t, 1, 40)
	ob := &cuttingOutbox{Engine: e}
	sink := newScriptSink()
	opts := fastOptions(ob, sink, t.TempDir())
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, l, func() bool { return l.Status().Parked == 1 })
	bs, _ := e.SealedBatches()
	if len(bs) != 1 || bs[0].State != engine.BatchParked || !strings.Contains(bs[0].Error, "damaged twice in a row") {
		t.Fatalf("outbox: %+v", bs)
	}
	if err := l.RetryParked(bs[0].ID); err != nil {
		t.Fatal(err)
	}
	runUntil(t, l, outboxEmpty(e))
	if ob.err != nil {
		t.Fatal(ob.err)
	}
	st := l.Status()
	if ob.exports != 3 || st.Loaded != 1 || st.Retries != 0 || st.Parked != 1 || st.Quarantined != 1 || len(sink.loaded()) != 1 {
		t.Fatalf("%d exports, status %+v", ob.exports, st)
	}
	if b, err := os.ReadFile(st.LastQuarantined); err != nil || string(b) != string(ob.cut) {
		t.Fatalf("quarantined %s: %v, not the cut windows file", st.LastQuarantined, err)
	}
	if !strings.Contains(st.LastQuarantined, ".windows.") || filepath.Dir(st.LastQuarantined) != opts.QuarantineDir {
		t.Fatalf("quarantined as %s", st.LastQuarantined)
	}
}

// TestDamagedFileThatCannotBeMoved: when damaged files (here both of a
// batch's) cannot be moved to the quarantine directory (a file is in the
// way of the directory), they are left where they are, byte for byte,
// logged with their paths and not deleted by the cleanup after the
// attempt; the batch is parked (so no re-export writes over them) and the
// batches behind it load.
func TestDamagedFileThatCannotBeMoved(t *testing.T) {
	e := testOutbox(t, 2, 40)
	sealed, _ := e.SealedBatches()
	bad := sealed[0].ID
	ob := newFlippingOutbox(e, 10, func(id string, _ int) (bool, bool) { return id == bad, id == bad })
	sink := newScriptSink()
	opts := fastOptions(ob, sink, t.TempDir())
	if err := os.WriteFile(opts.QuarantineDir, []byte("in the way"), 0o640); err != nil {
		t.Fatal(err)
	}
	var logs testenv.SyncBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, l, func() bool { return l.Status().Parked == 1 && l.Status().Loaded == 1 })

	damaged := ob.damage(t)
	if len(damaged) != 2 {
		t.Fatalf("%d files damaged, want 2", len(damaged))
	}
	rowsFiles, err := filepath.Glob(filepath.Join(opts.Dir, bad+".rows.*.parquet"))
	if err != nil || len(rowsFiles) != 1 {
		t.Fatalf("rows files left: %v %v", rowsFiles, err)
	}
	kept := []string{rowsFiles[0], filepath.Join(opts.Dir, bad+".windows.parquet")}
	for _, f := range kept {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("the damaged file is gone: %v", err)
		}
		if damaged[sha256Hex(b)] == nil {
			t.Fatalf("%s is not a damaged file", f)
		}
	}
	ob.mu.Lock()
	exports := ob.exports[bad]
	ob.mu.Unlock()
	st := l.Status()
	if exports != 1 || st.Quarantined != 0 || st.Retries != 0 {
		t.Fatalf("%d exports, status %+v", exports, st)
	}
	bs, _ := e.SealedBatches()
	if len(bs) != 1 || bs[0].ID != bad || bs[0].State != engine.BatchParked ||
		!strings.Contains(bs[0].Error, kept[0]) || !strings.Contains(bs[0].Error, kept[1]) {
		t.Fatalf("outbox: %+v", bs)
	}
	if got := sink.loaded(); len(got) != 1 || got[0] != sealed[1].ID {
		t.Fatalf("loaded %v, want the batch behind the damaged one", got)
	}
	if log := logs.String(); strings.Count(log, "cannot be quarantined; left in place") != 2 ||
		!strings.Contains(log, "file="+kept[0]) || !strings.Contains(log, "file="+kept[1]) {
		t.Fatalf("log does not name the file left in place:\n%s", log)
	}
}

// TestQuarantineCountedAtStart: the files earlier runs quarantined are
// counted when the loader starts, so the status (and the metric) say what
// the directory holds after a restart; a file quarantined since adds one.
func TestQuarantineCountedAtStart(t *testing.T) {
	e := testOutbox(t, 1, 40)
	ob := newFlippingOutbox(e, 11, func(_ string, n int) (bool, bool) { return n == 0, false })
	sink := newScriptSink()
	opts := fastOptions(ob, sink, t.TempDir())
	if err := os.MkdirAll(filepath.Join(opts.QuarantineDir, "not-a-file"), 0o750); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	var newest string
	for i, name := range []string{"lt-a.rows.20261127T080000.000000000Z.parquet", "lt-b.windows.20261127T090000.000000000Z.parquet", "lt-c.rows.20261127T070000.000000000Z.parquet"} {
		path := filepath.Join(opts.QuarantineDir, name)
		if err := os.WriteFile(path, []byte("damaged"), 0o640); err != nil {
			t.Fatal(err)
		}
		at := old.Add(time.Duration(i%2) * time.Minute) // the second is the newest
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			newest = path
		}
	}
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if st := l.Status(); st.Quarantined != 3 || st.LastQuarantined != newest {
		t.Fatalf("at start: status %+v, want 3 quarantined files, the latest %s", st, newest)
	}
	runUntil(t, l, outboxEmpty(e))
	if st := l.Status(); st.Quarantined != 4 || st.Loaded != 1 || filepath.Dir(st.LastQuarantined) != opts.QuarantineDir || st.LastQuarantined == newest {
		t.Fatalf("after a damaged export: status %+v, want 4 quarantined files", st)
	}
	// Without a quarantine directory, nothing is counted.
	opts.QuarantineDir = filepath.Join(t.TempDir(), "none")
	if l, err := New(opts); err != nil || l.Status().Quarantined != 0 || l.Status().LastQuarantined != "" {
		t.Fatalf("no directory: %v, status %+v", err, l.Status())
	}
}
