package engine

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offload/offload/internal/memflush"
	"github.com/offload/offload/wal"
)

// liveKeys lists the keys db holds at or after horizon, as "hex µs",
// sorted: the key store's logical content.
func liveKeys(t testing.TB, db *pebble.DB, horizon int64) []string {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{keysPrefixKey}, UpperBound: []byte{keysPrefixKey + 1}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for it.First(); it.Valid(); it.Next() {
		if us := decodeUS(it.Value()); us >= horizon {
			out = append(out, fmt.Sprintf("%s %d", hex.EncodeToString(it.Key()[9:]), us))
		}
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// storedKeys reads the key store of a closed engine in dir: its live keys
// at the horizon the database records.
func storedKeys(t testing.TB, db *sql.DB, dir string) []string {
	t.Helper()
	var h sql.NullInt64
	if err := db.QueryRowContext(context.Background(), `SELECT max(dedupe_horizon_ns) FROM engine_state`).Scan(&h); err != nil {
		t.Fatal(err)
	}
	horizon := int64(math.MinInt64)
	if h.Valid {
		horizon = h.Int64
	}
	ks, err := pebble.Open(filepath.Join(dir, KeysDir), &pebble.Options{ReadOnly: true, Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	return liveKeys(t, ks, horizon)
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)         {}
func (quietPebble) Errorf(string, ...any)        {}
func (quietPebble) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }

// checkKeysHaveRows fails unless every live key is the key of an event id
// among the clean rows (contract 2: no key without its row).
func checkKeysHaveRows(t testing.TB, keys []string, db *sql.DB, dir string) {
	t.Helper()
	ids := queryLines(t, db, withRows(t, db, dir, `SELECT DISTINCT event_id FROM outbox_rows`))
	have := make(map[string]bool, len(ids))
	for _, id := range ids {
		k := keyOf(id)
		have[hex.EncodeToString(k[:])] = true
	}
	orphans := 0
	for _, k := range keys {
		if !have[k[:32]] {
			orphans++
		}
	}
	if orphans != 0 {
		t.Fatalf("%s: %d of %d dedupe keys without their outbox row", dir, orphans, len(keys))
	}
}

// failAt makes the engine's hook point fail with err (nil: no failure).
func (h *harness) failAt(point string, err error) {
	h.e.hook = func(_ context.Context, p string) error {
		if p == point {
			return err
		}
		return nil
	}
}

// keys returns the harness engine's live keys.
func (h *harness) keys() []string {
	h.t.Helper()
	return liveKeys(h.t, h.e.keys.db, h.e.keys.horizon)
}

// checkDedupe asserts the accepted and deduplicated counts, and that every
// live key has its row.
func (h *harness) checkDedupe(accepted, deduplicated int64) {
	h.t.Helper()
	if st := h.e.Stats(); st.Accepted != accepted || st.Deduplicated != deduplicated {
		h.t.Fatalf("%d accepted, %d deduplicated; want %d and %d", st.Accepted, st.Deduplicated, accepted, deduplicated)
	}
	h.checkDedupeKeysHaveRows()
}

// checkDedupeKeysHaveRows asserts that every live dedupe key is the hash
// of an event id in outbox_rows.
func (h *harness) checkDedupeKeysHaveRows() {
	h.t.Helper()
	checkKeysHaveRows(h.t, h.keys(), h.e.db, h.dir)
}

// TestBlockedBloom: a key added is always found, and at 16 bits a key the
// false positive rate is within what dedupeBitsPerKey promises.
func TestBlockedBloom(t *testing.T) {
	const n = 200_000
	f, err := newBlockedBloom(n * dedupeBitsPerKey / 8)
	if err != nil {
		t.Fatal(err)
	}
	defer f.free()
	for i := range n {
		f.add(keyOf(fmt.Sprint("in-", i)))
	}
	for i := range n {
		if !f.mayContain(keyOf(fmt.Sprint("in-", i))) {
			t.Fatalf("key %d added but not found", i)
		}
	}
	fp := 0
	for i := range n {
		if f.mayContain(keyOf(fmt.Sprint("out-", i))) {
			fp++
		}
	}
	if rate := float64(fp) / n; rate > 0.002 {
		t.Fatalf("false positive rate %.4f at %d bits a key, want <= 0.002", rate, dedupeBitsPerKey)
	}
}

// TestBlockedBloomHalved: a halved filter is, bit for bit, the filter
// its keys would fill at half the size.
func TestBlockedBloomHalved(t *testing.T) {
	const n, blocks = 20_000, 1000
	fill := func(blocks int64) *blockedBloom {
		f, err := newBlockedBloom(blocks * bloomBlockBytes)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			f.add(keyOf(fmt.Sprint("in-", i)))
		}
		return f
	}
	h, err := fill(2 * blocks).halved(n)
	if err != nil {
		t.Fatal(err)
	}
	defer h.free()
	want := fill(blocks)
	defer want.free()
	if !slices.Equal(h.words, want.words) {
		t.Fatal("a halved filter differs from one filled at its size")
	}
}

// TestKeyStoreFiltersSizedByRate: a slice's filter is sized by the
// fullest live slice (the first one, with nothing to go by, takes the
// smallest size), grows from the store when its keys outgrow it, four
// times here, and then turns fresh ids away as a filter filled at its
// size does; it keeps its size through a clean stop, and a scan rebuilds
// it at what a new slice's filter would take. Every key is found
// throughout: keys spread over their slice's whole span, to its last
// microsecond, with a neighbouring slice taking keys in the same hour
// buckets when slices are shorter than an hour (a 1h window: 15-minute
// slices).
func TestKeyStoreFiltersSizedByRate(t *testing.T) {
	for _, window := range []time.Duration{24 * time.Hour, time.Hour} {
		t.Run(window.String(), func(t *testing.T) { testFiltersSizedByRate(t, int64(window/time.Microsecond)) })
	}
}

// TestKeyStoreCommitWithoutFilterMemory: a commit whose slice's filter
// cannot be mapped fails before its keys are durable, so the store never
// holds keys that no filter answers for: its seq and keys stay as they
// were, on disk and after a reopen, and the same commit once the memory
// is there stores them. (The engine stops on the error; a reload after an
// abandoned micro-batch retries it.)
func TestKeyStoreCommitWithoutFilterMemory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), KeysDir)
	window := int64(24 * time.Hour / time.Microsecond)
	// A share of ~10 TiB: the smallest filter, 1/64 of it, is more than
	// the machine can map.
	s, err := openKeyStore(dir, window, 64<<40, time.Now, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if f, err := newBlockedBloom(s.newFilterBytes()); err == nil {
		f.free()
		_ = s.close()
		t.Skipf("this kernel maps a filter of %d bytes (memory overcommitted): the failure cannot be provoked", s.newFilterBytes())
	}
	kt := keyTime{keyOf("its-row-is-committed"), testNow.UnixMicro()}
	if err := s.commit([]keyTime{kt}, math.MinInt64, 7); err == nil || !strings.Contains(err.Error(), "cannot map") {
		t.Fatalf("commit with no memory for the slice's filter: %v, want the mapping's error", err)
	}
	if found, err := s.bucketContains(s.buckets.start(kt.us), kt.k, math.MinInt64); err != nil || found || s.seq != 0 {
		t.Fatalf("after the failed commit: key on disk %v (%v), seq %d; want neither written", found, err, s.seq)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if s, err = openKeyStore(dir, window, minDedupeMemory, time.Now, quietLogger()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.close() }()
	if found, err := s.contains(kt.k, kt.us, math.MinInt64); err != nil || found || s.seq != 0 {
		t.Fatalf("reopened: key found %v (%v), seq %d; want neither", found, err, s.seq)
	}
	if err := s.commit([]keyTime{kt}, math.MinInt64, 7); err != nil {
		t.Fatal(err)
	}
	if found, err := s.contains(kt.k, kt.us, math.MinInt64); err != nil || !found || s.seq != 7 {
		t.Fatalf("committed again: key found %v (%v), seq %d; want found, seq 7", found, err, s.seq)
	}
}

// TestOpenReleasesTheDatabaseWhenTheKeyStoreFails: an Open that fails on
// a damaged key store closes the DuckDB database it had opened (no file
// descriptor of the process names it), and the same process opens the
// engine once the store is moved aside.
func TestOpenReleasesTheDatabaseWhenTheKeyStoreFails(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.e.Close(); err != nil {
		t.Fatal(err)
	}
	h.e = nil
	keys := filepath.Join(h.dir, KeysDir)
	setInStore(t, keys, keysMetaSeq, []byte{1, 2, 3})
	if _, err := Open(h.options()); err == nil || !strings.Contains(err.Error(), "seq of 3 bytes") {
		t.Fatalf("Open over a key store with a damaged seq: %v, want its error", err)
	}
	if fds := openFilesOf(t, filepath.Join(h.dir, DBFile)); len(fds) > 0 {
		t.Fatalf("the failed Open left the database open: %v", fds)
	}
	if err := os.RemoveAll(keys); err != nil {
		t.Fatal(err)
	}
	var err error
	if h.e, err = Open(h.options()); err != nil {
		t.Fatalf("Open after the key store was moved aside: %v", err)
	}
}

// openTestKeyStore opens the key store in dir with a quiet log, failing
// t if it cannot.
func openTestKeyStore(t testing.TB, dir string, window, memory int64) *keyStore {
	t.Helper()
	s, err := openKeyStore(dir, window, memory, time.Now, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// setInStore writes key → val, synced, into the Pebble database in dir,
// created if missing.
func setInStore(t *testing.T, dir string, key, val []byte) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(key, val, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// openFilesOf lists the process's file descriptors open on path.
func openFilesOf(t *testing.T, path string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	var fds []string
	for _, ent := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", ent.Name())); err == nil && target == path {
			fds = append(fds, ent.Name())
		}
	}
	return fds
}

// TestKeyStoreFilterThatCannotGrow damages the table that holds a
// slice's keys, so that the growth of its filter cannot read them: the
// filter keeps its size and every key, the commit goes on, the log says
// why once (the slice does not try again at every key after), and the
// next commit fails on the damage Pebble reported, which stops the
// engine.
func TestKeyStoreFilterThatCannotGrow(t *testing.T) {
	dir := filepath.Join(t.TempDir(), KeysDir)
	var logged bytes.Buffer
	// A share of 1 MiB: its smallest filter, 16 KiB, holds 8,192 keys at
	// 16 bits.
	s, err := openKeyStore(dir, int64(24*time.Hour/time.Microsecond), 6<<20, time.Now, textLogger(&logged))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	start := s.sliceOf(testNow.UnixMicro())
	var keys []keyTime
	add := func(n int) error {
		batch := make([]keyTime, n)
		for i := range batch {
			batch[i] = keyTime{keyOf(fmt.Sprint("cannot-grow/", len(keys)+i)), start + int64(len(keys)+i)}
		}
		keys = append(keys, batch...)
		return s.commit(batch, math.MinInt64, s.seq+1)
	}
	if err := add(6000); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	damaged := 0
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if filepath.Ext(ent.Name()) != ".sst" {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, ent.Name()), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		// The first data blocks: the keys' bytes, which a growth reads.
		if _, err := f.WriteAt(bytes.Repeat([]byte{0xff}, 4096), 1024); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		damaged++
	}
	if damaged == 0 {
		t.Fatal("the flush left no table to damage")
	}
	sl := s.slices[0]
	size := sl.filter.bytes()
	// Past 8,192 keys the filter would grow, at each key of the 3,000 if
	// it did not stop trying.
	if err := add(3000); err != nil {
		t.Fatalf("the commit whose growth could not read the store failed: %v", err)
	}
	if !sl.stuck || sl.filter.bytes() != size {
		t.Fatalf("after a growth that could not read the store: stuck %v, %d bytes, want stuck at %d", sl.stuck, sl.filter.bytes(), size)
	}
	if n := strings.Count(logged.String(), "could not grow"); n != 1 {
		t.Fatalf("the log says %d times that the filter could not grow, want once:\n%s", n, logged.String())
	}
	for i, kt := range keys {
		if !sl.filter.mayContain(kt.k) {
			t.Fatalf("key %d of %d is not in the filter that could not grow", i, len(keys))
		}
	}
	if sl.keys != int64(len(keys)) {
		t.Fatalf("the slice counts %d keys, want %d", sl.keys, len(keys))
	}
	if err := add(10); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("the commit after Pebble met the damage returned %v, want the damage", err)
	}
}

func testFiltersSizedByRate(t *testing.T, window int64) {
	dir := filepath.Join(t.TempDir(), KeysDir)
	var logged bytes.Buffer
	open := func() *keyStore {
		t.Helper()
		// A share of 1 MiB: its smallest filter, 16 KiB, holds 8,192 keys
		// at 16 bits.
		s, err := openKeyStore(dir, window, 6<<20, time.Now, textLogger(&logged))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var keys []keyTime
	// add commits n keys spread over the slice starting at start, the
	// last at its last microsecond.
	add := func(s *keyStore, start int64, n int) {
		t.Helper()
		batch := make([]keyTime, n)
		for i := range batch {
			us := start + (s.sliceLen-1)*int64(i+1)/int64(n)
			batch[i] = keyTime{keyOf(fmt.Sprint(start, "/", len(keys), "/", i)), us}
		}
		keys = append(keys, batch...)
		if err := s.commit(batch, math.MinInt64, s.seq+1); err != nil {
			t.Fatal(err)
		}
	}
	sizes := func(s *keyStore) []int64 {
		t.Helper()
		var got []int64
		for _, sl := range s.slices {
			got = append(got, sl.filter.bytes())
		}
		for i, kt := range keys {
			if found, err := s.contains(kt.k, kt.us, math.MinInt64); err != nil || !found {
				t.Fatalf("key %d at %s not found (%v)", i, time.UnixMicro(kt.us).UTC(), err)
			}
		}
		return got
	}
	s := open()
	top := s.filterTopBytes()
	b := s.sliceOf(testNow.UnixMicro())
	a, c := b-s.sliceLen, b+s.sliceLen
	add(s, a, 3000)
	add(s, b, 10)
	if got := sizes(s); !slices.Equal(got, []int64{top / 64, top / 64}) {
		t.Fatalf("filters of %v bytes, want the first slice's and the second's, sized for its 3,000 keys: %d", got, top/64)
	}
	for range 8 {
		add(s, b, 10_000)
		add(s, c, 100)
	}
	// 80,010 keys: grown at 8,192, 16,384, 32,768 and 65,536; the third
	// slice, sized by the second as it was then, holds 800.
	if got := sizes(s); len(got) != 3 || got[0] != top/64 || got[1] != top/4 {
		t.Fatalf("filters of %v bytes after 80,010 keys in the second slice, want %d and %d (grown 4 times) first", got, top/64, top/4)
	}
	if n := strings.Count(logged.String(), "a dedupe filter grew with its keys"); n != 4 {
		t.Fatalf("the log names %d growths, want 4:\n%s", n, logged.String())
	}
	fp := 0
	for i := range 100_000 {
		if s.slices[1].filter.mayContain(keyOf(fmt.Sprint("fresh-", i))) {
			fp++
		}
	}
	if rate := float64(fp) / 100_000; rate > 0.002 {
		t.Fatalf("the grown filter takes %.4f of fresh ids for held ones, want <= 0.002 as at its size", rate)
	}
	saved := sizes(s)
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	if got := sizes(s); !slices.Equal(got, saved) {
		t.Fatalf("filters read from their files: %v bytes, want %v", got, saved)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, keyFiltersDir)); err != nil {
		t.Fatal(err)
	}
	s = open()
	// All as a new slice's filter would be, sized by the fullest: 80,010
	// keys need 320 KB at twice their number, so 512 KiB.
	if got := sizes(s); !slices.Equal(got, []int64{top / 2, top / 2, top / 2}) {
		t.Fatalf("filters rebuilt by a scan: %v bytes, want %d for all three", got, top/2)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}

// TestKeyFilterFileSizes: a filter file of the whole share in blocks (the
// one size before filters were sized by their keys; not a multiple of 64
// blocks here) is read; a file of a size no slice's filter takes is not
// used, and its slice is scanned.
func TestKeyFilterFileSizes(t *testing.T) {
	for _, c := range []struct {
		name string
		size func(s *keyStore) int64
		read bool
	}{
		{"whole-share", (*keyStore).shareBytes, true},
		{"three-quarters", func(s *keyStore) int64 { return s.filterTopBytes() / 4 * 3 }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), KeysDir)
			window := int64(24 * time.Hour / time.Microsecond)
			s, err := openKeyStore(dir, window, minDedupeMemory, time.Now, quietLogger())
			if err != nil {
				t.Fatal(err)
			}
			size := c.size(s)
			if size == s.filterTopBytes() {
				t.Fatalf("a file of %d bytes is the top size: pick another memory", size)
			}
			f, err := newBlockedBloom(size)
			if err != nil {
				t.Fatal(err)
			}
			start := s.sliceOf(testNow.UnixMicro())
			if err := s.insertSlice(&keySlice{start: start, maxUS: math.MinInt64, filter: f}); err != nil {
				t.Fatal(err)
			}
			k := keyTime{keyOf("sized"), testNow.UnixMicro()}
			if err := s.commit([]keyTime{k}, math.MinInt64, 1); err != nil {
				t.Fatal(err)
			}
			if err := s.close(); err != nil {
				t.Fatal(err)
			}
			if s, err = openKeyStore(dir, window, minDedupeMemory, time.Now, quietLogger()); err != nil {
				t.Fatal(err)
			}
			defer s.close()
			if len(s.slices) != 1 {
				t.Fatalf("after a restart %d slices, want 1", len(s.slices))
			}
			if got := s.slices[0].filter.bytes(); (got == size) != c.read {
				t.Fatalf("after a restart a filter of %d bytes from a file of %d; want the file read: %v", got, size, c.read)
			}
			if found, err := s.contains(k.k, k.us, math.MinInt64); err != nil || !found {
				t.Fatalf("the key is not found (%v)", err)
			}
		})
	}
}

// TestKeysStoredAfterCommitFailure fails the key store's write after the
// micro-batch's DuckDB commit: the engine stops, and the next Open stores
// the keys from the committed part, so the result equals an undisturbed
// run's and the ids stay remembered.
func TestKeysStoredAfterCommitFailure(t *testing.T) {
	recs := []string{ev("a", "s1", "1", at(0)), ev("b", "s2", "2", at(time.Minute))}
	ref := newHarness(t, nil)
	ref.add("orders", 0, recs...)
	ref.drain()
	want := ref.keys()

	h := newHarness(t, nil)
	h.add("orders", 0, recs...)
	injected := errors.New("injected failure")
	h.failAt("keys", injected)
	if _, err := h.e.Step(context.Background()); !errors.Is(err, injected) {
		t.Fatalf("step returned %v", err)
	}
	if _, err := h.e.Step(context.Background()); !errors.Is(err, injected) {
		t.Fatalf("a stopped engine's next step returned %v", err)
	}
	if got := len(h.keys()); got != 0 {
		t.Fatalf("%d keys stored by the failed write", got)
	}
	h.reopen()
	if got := h.keys(); !reflect.DeepEqual(got, want) {
		t.Fatalf("keys after reopening: %v, want %v", got, want)
	}
	h.add("orders", 1, recs...)
	h.drain()
	h.checkDedupe(2, 2)
}

// TestKeyStoreAheadIsRefused: a key store that holds the keys of parts the
// database does not know (a database moved aside or restored under it)
// would hold keys without their rows; Open refuses it and names it.
func TestKeyStoreAheadIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.add("orders", 0, ev("a", "s1", "1", at(0)))
	h.drain()
	h.close()
	for _, f := range []string{DBFile, DBFile + ".wal"} {
		if err := os.RemoveAll(filepath.Join(h.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	w, err := wal.Open(filepath.Join(h.dir, "wal"), wal.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	o := h.options()
	o.WAL = w
	e, err := Open(o)
	if err == nil {
		_ = e.Close()
	}
	if err == nil || !strings.Contains(err.Error(), filepath.Join(h.dir, KeysDir)) || !strings.Contains(err.Error(), "aside") {
		t.Fatalf("Open over a key store ahead of the database: %v", err)
	}
}

// TestDuplicateAtOtherEventTime: a copy of an id carrying another event
// time than its original (another key store bucket of the same slice,
// another slice) is still a duplicate once the original's key is on disk:
// a filter hit reads every bucket of the slice, not only the copy's.
func TestDuplicateAtOtherEventTime(t *testing.T) {
	h := newHarness(t, nil) // a 24h window: 6-hour slices, 3-hour buckets
	h.add("orders", 0, ev("a", "s1", "1", at(0)), ev("b", "s1", "1", at(time.Minute)), ev("c", "s1", "1", at(2*time.Minute)))
	h.drain()
	h.add("orders", 0,
		ev("a", "s1", "1", at(4*time.Hour)),  // another bucket, same slice
		ev("b", "s1", "1", at(7*time.Hour)),  // another slice
		ev("c", "s1", "1", at(-3*time.Hour)), // an older slice, before the original
		ev("d", "s1", "1", at(3*time.Minute)))
	h.drain()
	h.checkDedupe(4, 3)
	h.reopen()
	h.add("orders", 1, ev("a", "s1", "1", at(5*time.Hour)), ev("d", "s1", "1", at(20*time.Hour)))
	h.drain()
	h.checkDedupe(4, 5)
}

// TestKeyStoreConvertsSliceLayout: a key store written in the layout
// before the keys were ordered by time ('k' | slice start | key) is
// converted at Open: the same live keys, none left in the old layout, and
// its ids still caught as duplicates.
func TestKeyStoreConvertsSliceLayout(t *testing.T) {
	recs := []string{ev("a", "s1", "1", at(0)), ev("b", "s2", "2", at(time.Hour)), ev("c", "s2", "2", at(7*time.Hour))}
	h := newHarness(t, nil)
	h.add("orders", 0, recs...)
	h.drain()
	want := h.keys()
	sliceLen := h.e.keys.sliceLen
	h.close()

	// Rewrite the store in the slice layout.
	db, err := pebble.Open(filepath.Join(h.dir, KeysDir), &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{keysPrefixKey}, UpperBound: []byte{keysPrefixKey + 1}})
	if err != nil {
		t.Fatal(err)
	}
	wb := db.NewBatch()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		old := make([]byte, keysKeyLen)
		old[0] = keysPrefixSliceKey
		encodeUS(old[1:9], floorDiv(decodeUS(it.Value()), sliceLen)*sliceLen)
		copy(old[9:], it.Key()[9:])
		if err := wb.Set(old, it.Value(), nil); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if n != len(recs) {
		t.Fatalf("%d keys in the store, want %d", n, len(recs))
	}
	if err := wb.DeleteRange([]byte{keysPrefixKey}, []byte{keysPrefixKey + 1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := wb.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	h.open()
	if got := h.keys(); !reflect.DeepEqual(got, want) {
		t.Fatalf("keys after the conversion: %v, want %v", got, want)
	}
	it, err = h.e.keys.db.NewIter(&pebble.IterOptions{LowerBound: []byte{keysPrefixSliceKey}, UpperBound: []byte{keysPrefixSliceKey + 1}})
	if err != nil {
		t.Fatal(err)
	}
	if it.First() {
		t.Fatalf("key %x of the slice layout left after the conversion", it.Key())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	h.add("orders", 1, recs...)
	h.drain()
	h.checkDedupe(3, 3)
}

// TestKeyStoreBucketLength: a new store records half a slice as its
// bucket length and keeps it when opened with another window; a store
// that records none was written with one-hour buckets, and its keys are
// found in them; a damaged length fails Open, naming it.
func TestKeyStoreBucketLength(t *testing.T) {
	day := int64(24 * time.Hour / time.Microsecond)
	hour := int64(time.Hour / time.Microsecond)
	// Its one-hour bucket starts at 01:00, its three-hour one at 00:00.
	us := time.Date(2026, 12, 6, 1, 30, 0, 0, time.UTC).UnixMicro()
	kt := keyTime{keyOf("found-in-its-bucket"), us}
	check := func(t *testing.T, s *keyStore, buckets keyBuckets) {
		t.Helper()
		if s.buckets != buckets {
			t.Fatalf("buckets of %v, want %v", time.Duration(s.buckets)*time.Microsecond, time.Duration(buckets)*time.Microsecond)
		}
		if found, err := s.contains(kt.k, kt.us, math.MinInt64); err != nil || !found {
			t.Fatalf("key found %v (%v), want found", found, err)
		}
		if found, err := s.bucketContains(buckets.start(kt.us), kt.k, math.MinInt64); err != nil || !found {
			t.Fatalf("key in its bucket %v (%v), want found", found, err)
		}
	}
	t.Run("new", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), KeysDir)
		s := openTestKeyStore(t, dir, day, minDedupeMemory)
		if want := keyBuckets(3 * hour); s.buckets != want {
			t.Fatalf("a new store over 24h: buckets of %v, want 3h", time.Duration(s.buckets)*time.Microsecond)
		}
		if err := s.commit([]keyTime{kt}, math.MinInt64, 1); err != nil {
			t.Fatal(err)
		}
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
		s = openTestKeyStore(t, dir, hour, minDedupeMemory)
		defer func() { _ = s.close() }()
		check(t, s, keyBuckets(3*hour))
	})
	t.Run("written before the length was recorded", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), KeysDir)
		val := make([]byte, 8)
		encodeUS(val, kt.us)
		setInStore(t, dir, keysBucketKey(make([]byte, keysKeyLen), keysLegacyBuckets.start(kt.us), kt.k), val)
		setInStore(t, dir, keysMetaSeq, binary.BigEndian.AppendUint64(nil, 1))
		s := openTestKeyStore(t, dir, day, minDedupeMemory)
		defer func() { _ = s.close() }()
		check(t, s, keysLegacyBuckets)
	})
	t.Run("damaged", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), KeysDir)
		setInStore(t, dir, keysMetaBuckets, []byte{1, 2, 3})
		if _, err := openKeyStore(dir, day, minDedupeMemory, time.Now, quietLogger()); err == nil || !strings.Contains(err.Error(), "bucket length of 3 bytes") || !strings.Contains(err.Error(), dir) {
			t.Fatalf("Open over a damaged bucket length: %v, want an error naming it and the store", err)
		}
	})
}

// TestKeyStoreConvertsSliceKeysBesideFilterFiles: keys of the slice
// layout found in a store that also has stamps and filter files (written
// by a build of the slice layout after a newer build had run: the filter
// files do not hold them) are converted and found, also after a crash
// of the Open that converted them: a conversion removes the filter files
// and makes Open scan every slice.
func TestKeyStoreConvertsSliceKeysBesideFilterFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), KeysDir)
	window := int64(24 * time.Hour / time.Microsecond)
	s, err := openKeyStore(dir, window, minDedupeMemory, time.Now, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	us := testNow.UnixMicro()
	if err := s.commit([]keyTime{{keyOf("in-the-filter-file"), us}}, math.MinInt64, 1); err != nil {
		t.Fatal(err)
	}
	sliceStart := s.sliceOf(us)
	if err := s.close(); err != nil { // writes the slice's filter file
		t.Fatal(err)
	}
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	var late []keyTime
	for i := range 50 {
		kt := keyTime{keyOf(fmt.Sprint("slice-layout/", i)), us + int64(i)}
		old := make([]byte, keysKeyLen)
		old[0] = keysPrefixSliceKey
		encodeUS(old[1:9], sliceStart)
		copy(old[9:], kt.k[:])
		val := make([]byte, 8)
		encodeUS(val, kt.us)
		if err := db.Set(old, val, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		late = append(late, kt)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The Open that converts, and one after it crashed (no filter file
	// written).
	for _, crash := range []bool{true, false} {
		if s, err = openKeyStore(dir, window, minDedupeMemory, time.Now, quietLogger()); err != nil {
			t.Fatal(err)
		}
		for _, kt := range append(late, keyTime{keyOf("in-the-filter-file"), us}) {
			if found, err := s.contains(kt.k, kt.us, math.MinInt64); err != nil || !found {
				t.Fatalf("a converted key not found (%v; after a crash: %v)", err, !crash)
			}
		}
		if crash {
			s.freeFilters()
			if err := s.db.Close(); err != nil {
				t.Fatal(err)
			}
		} else if err := s.close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKeyFiltersPersisted: Close writes the slices' filters, and Open
// loads them instead of scanning the store; a damaged file, a file older
// than its slice's last change (a crash after keys were added) and a
// change of slice length each cost a scan instead, and every key stays
// found.
func TestKeyFiltersPersisted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), KeysDir)
	window := int64(24 * time.Hour / time.Microsecond)
	open := func(window int64) *keyStore { return openTestKeyStore(t, dir, window, minDedupeMemory) }
	var keys []keyTime
	add := func(s *keyStore, from time.Time, n int) {
		t.Helper()
		var batch []keyTime
		for i := range n {
			kt := keyTime{keyOf(fmt.Sprint(from, i)), from.Add(time.Duration(i) * time.Minute).UnixMicro()}
			batch = append(batch, kt)
			keys = append(keys, kt)
		}
		if err := s.commit(batch, math.MinInt64, s.seq+1); err != nil {
			t.Fatal(err)
		}
	}
	check := func(s *keyStore, wantSaved map[int64]bool) {
		t.Helper()
		for _, kt := range keys {
			if found, err := s.contains(kt.k, kt.us, math.MinInt64); err != nil || !found {
				t.Fatalf("key at %s not found (%v)", time.UnixMicro(kt.us).UTC(), err)
			}
		}
		if s.held != int64(len(keys)) {
			t.Fatalf("%d keys held, want %d", s.held, len(keys))
		}
		for _, sl := range s.slices {
			if (sl.saved != 0) != wantSaved[sl.start] {
				t.Fatalf("slice %s read from its file: %v, want %v", time.UnixMicro(sl.start).UTC(), sl.saved != 0, wantSaved[sl.start])
			}
		}
	}
	s := open(window)
	add(s, t0, 400)                   // slices 12:00 and 18:00
	add(s, t0.Add(-3*time.Hour), 100) // slice 06:00
	starts := map[int64]bool{}
	for _, sl := range s.slices {
		starts[sl.start] = true
	}
	if len(starts) != 3 {
		t.Fatalf("%d slices, want 3", len(starts))
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}

	// A clean start reads every filter from its file.
	s = open(window)
	check(s, starts)

	// A crash after keys were added to the 12:00 slice: its file is
	// older than its stamp.
	add(s, t0.Add(time.Hour), 10)
	for _, sl := range s.slices {
		sl.filter.free()
	}
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(window)
	stale := s.sliceOf(t0.UnixMicro())
	check(s, map[int64]bool{stale - s.sliceLen: true, stale + s.sliceLen: true})
	if err := s.close(); err != nil {
		t.Fatal(err)
	}

	// A damaged file.
	s = open(window)
	check(s, starts)
	path := s.filterPath(stale)
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s = open(window)
	check(s, map[int64]bool{stale - s.sliceLen: true, stale + s.sliceLen: true})
	if err := s.close(); err != nil {
		t.Fatal(err)
	}

	// Another window: other slices, all scanned.
	s = open(window / 2)
	check(s, nil)
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}

// TestKeyStoreSlowCommitsKeepMemtablesSmall: a key store given keys
// slowly flushes its memtable every memflush.Interval, so Pebble does not
// grow it, where the same commits within one interval double it; every
// key stays found either way.
func TestKeyStoreSlowCommitsKeepMemtablesSmall(t *testing.T) {
	const commits, perCommit = 40, 500
	window := int64(24 * time.Hour / time.Microsecond)
	memtables := func(slow bool) uint64 {
		now := testNow
		s, err := openKeyStore(filepath.Join(t.TempDir(), KeysDir), window, minDedupeMemory, func() time.Time { return now }, quietLogger())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.close() }()
		var keys []keyTime
		for c := range commits {
			batch := make([]keyTime, perCommit)
			for i := range batch {
				batch[i] = keyTime{keyOf(fmt.Sprint(c, "/", i)), testNow.Add(time.Duration(c) * time.Second).UnixMicro()}
			}
			keys = append(keys, batch...)
			if err := s.commit(batch, math.MinInt64, s.seq+1); err != nil {
				t.Fatal(err)
			}
			if slow {
				now = now.Add(memflush.Interval)
			}
		}
		for deadline := time.Now().Add(10 * time.Second); s.db.Metrics().Flush.NumInProgress > 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		for _, kt := range keys {
			if found, err := s.contains(kt.k, kt.us, math.MinInt64); err != nil || !found {
				t.Fatalf("a committed key not found (%v)", err)
			}
		}
		return s.db.Metrics().MemTable.Size
	}
	slow, fast := memtables(true), memtables(false)
	t.Logf("memtables: %d bytes committed slowly, %d fast", slow, fast)
	if slow > 2*256<<10 {
		t.Errorf("committed slowly: memtables of %d bytes, want at most two of Pebble's first size (256 KiB)", slow)
	}
	if fast <= 2*slow {
		t.Errorf("committed fast: memtables of %d bytes, want them grown past twice the slow store's %d", fast, slow)
	}
}

// TestFiltersPreferHugePagesWhenDense: a slice's filter asks for huge
// pages once it holds a key per small page, not before (a filter with a few
// keys stays a few small pages), whether it is filled by commits, read
// from its file or rebuilt by a scan of the store.
func TestFiltersPreferHugePagesWhenDense(t *testing.T) {
	window := int64(24 * time.Hour / time.Microsecond)
	dir := filepath.Join(t.TempDir(), KeysDir)
	// A share of 4 MiB: even its smallest filters are 16 pages.
	open := func() *keyStore { return openTestKeyStore(t, dir, window, 24<<20) }
	s := open()
	dense := s.newFilterBytes() / smallPage // the first slice's filter: the smallest size
	sparseAt, denseAt := testNow.Add(-12*time.Hour).UnixMicro(), testNow.UnixMicro()
	add := func(n int64, us int64) {
		batch := make([]keyTime, n)
		for i := range batch {
			batch[i] = keyTime{keyOf(fmt.Sprint(us, "/", s.seq, "/", i)), us}
		}
		if err := s.commit(batch, math.MinInt64, s.seq+1); err != nil {
			t.Fatal(err)
		}
	}
	huge := func(us int64) bool {
		sl, err := s.slice(s.sliceOf(us), s.newFilterBytes)
		if err != nil {
			t.Fatal(err)
		}
		return sl.filter.huge
	}
	add(dense-1, denseAt)
	add(5, sparseAt)
	if huge(denseAt) || huge(sparseAt) {
		t.Fatalf("huge pages asked for with %d and 5 keys, below %d", dense-1, dense)
	}
	add(1, denseAt)
	if !huge(denseAt) || huge(sparseAt) {
		t.Fatalf("with %d and 5 keys: huge pages %v and %v, want true and false", dense, huge(denseAt), huge(sparseAt))
	}
	for _, rebuild := range []bool{false, true} {
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
		if rebuild {
			if err := os.RemoveAll(filepath.Join(dir, keyFiltersDir)); err != nil {
				t.Fatal(err)
			}
		}
		s = open()
		if !huge(denseAt) || huge(sparseAt) {
			t.Fatalf("reopened (rebuilt by a scan: %v): huge pages %v and %v, want true and false", rebuild, huge(denseAt), huge(sparseAt))
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}
