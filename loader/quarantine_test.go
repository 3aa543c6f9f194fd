package loader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/offload/offload/engine"
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
	}{{x.RowsFile, rows}, {x.WindowsFile, windows}} {
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
	files := []string{x.RowsFile}
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
// files land in quarantine as they were, counted; only files that match
// their checksum are handed to the warehouse, and it holds every row of
// every batch once, with the exported content and control totals.
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
		st.Loaded != 4 || st.Parked != 0 || st.Retries != 2 || st.Circuit != CircuitClosed {
		t.Fatalf("status %+v; %d files in quarantine", st, n)
	}
	checkWarehouse(t, w, want, 4)
	checkRowContent(t, w, clean)
	t.Logf("%d exported files damaged, all in quarantine; %d verified files loaded", n, len(sink.files(t)))
}

// TestEveryExportDamaged: when each export of a batch is damaged, the
// batch is never loaded, nor parked: it is retried as a local failure
// (the circuit stays closed) and every damaged file is in quarantine.
func TestEveryExportDamaged(t *testing.T) {
	w := newWarehouse(t)
	e := testOutbox(t, 1, 40)
	ob := newFlippingOutbox(e, 9, func(string, int) (bool, bool) { return true, false })
	sink := &recordingSink{Sink: w.sink(t, AuthPassword)}
	opts := fastOptions(ob, sink, t.TempDir())
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	// Paused, the loader finishes the attempt in flight: its damaged
	// files are in quarantine when it stops.
	runUntil(t, l, func() bool {
		if l.Status().Retries >= 4 {
			l.Pause()
		}
		return l.Status().State == StatePaused
	})
	if got := sink.files(t); len(got) != 0 {
		t.Fatalf("%d files handed to the warehouse", len(got))
	}
	st := l.Status()
	if st.Loaded != 0 || st.Parked != 0 || st.Circuit != CircuitClosed || !strings.Contains(st.LastError, "damaged twice") {
		t.Fatalf("status %+v", st)
	}
	bs, _ := e.SealedBatches()
	if len(bs) != 1 || bs[0].State != engine.BatchSealed {
		t.Fatalf("outbox: %+v", bs)
	}
	damaged := ob.damage(t)
	if n := checkQuarantine(t, opts.QuarantineDir, damaged, ids(bs)); st.Quarantined != int64(n) || n < 8 {
		t.Fatalf("status counts %d quarantined files, %d in quarantine, want 2 per attempt", st.Quarantined, n)
	}
	for _, table := range []string{"OFFLOAD_TRANSACTIONS", "OFFLOAD_LOAD_LEDGER"} {
		if n := w.query(t, `SELECT count(*) FROM PUBLIC.`+table); n[0] != "0" {
			t.Fatalf("%s holds %s rows", table, n[0])
		}
	}
}

// checkRowContent asserts that the warehouse's transactions table holds
// exactly the rows of the clean exports, every column.
func checkRowContent(t *testing.T, w *warehouse, clean []engine.Export) {
	t.Helper()
	var files []string
	for _, x := range clean {
		files = append(files, "'"+sqlString(x.RowsFile)+"'")
	}
	cols := names(transactionColumns, "")
	src := fmt.Sprintf("(SELECT %s FROM read_parquet([%s]))", cols, strings.Join(files, ", "))
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
		o.err = os.Remove(x.RowsFile)
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
// missing one only logged; the batch loads from its third export.
func TestMissingOrShortExportFile(t *testing.T) {
	e := testOutbox(t, 1, 40)
	ob := &cuttingOutbox{Engine: e}
	sink := newScriptSink()
	opts := fastOptions(ob, sink, t.TempDir())
	l := shipAll(t, e, opts)
	if ob.err != nil {
		t.Fatal(ob.err)
	}
	st := l.Status()
	if ob.exports != 3 || st.Loaded != 1 || st.Retries != 1 || st.Quarantined != 1 || len(sink.loaded()) != 1 {
		t.Fatalf("%d exports, status %+v", ob.exports, st)
	}
	if b, err := os.ReadFile(st.LastQuarantined); err != nil || string(b) != string(ob.cut) {
		t.Fatalf("quarantined %s: %v, not the cut windows file", st.LastQuarantined, err)
	}
	if !strings.Contains(st.LastQuarantined, ".windows.") || filepath.Dir(st.LastQuarantined) != opts.QuarantineDir {
		t.Fatalf("quarantined as %s", st.LastQuarantined)
	}
}
