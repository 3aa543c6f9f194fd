package wal

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// repairDirs returns a data directory's WAL and quarantine paths on disk.
func repairDirs(t *testing.T) (walDir, quarantine string) {
	d := t.TempDir()
	return filepath.Join(d, "wal"), filepath.Join(d, "quarantine")
}

// mustRepair runs Repair and checks what every repair must leave: a WAL
// that verifies, and a quarantine folder holding the old WAL directory
// and a manifest that says what the report says.
func mustRepair(t *testing.T, dir, quarantine string) RepairReport {
	t.Helper()
	rep, err := Repair(dir, quarantine, testOptions(t, vfs.Default))
	if err != nil {
		t.Fatalf("repair: %v", err)
	}
	w, err := Open(dir, testOptions(t, vfs.Default))
	if err != nil {
		t.Fatalf("open after repair: %v", err)
	}
	defer mustClose(t, w)
	v, err := w.Verify()
	if err != nil || len(v.Corruptions) > 0 {
		t.Fatalf("verify after repair: %v %v", err, v.Corruptions)
	}
	if int64(v.Entries) != rep.KeptEntries || int64(v.Records) != rep.KeptRecords {
		t.Errorf("repair says it kept %d entries, %d records; the WAL holds %d, %d", rep.KeptEntries, rep.KeptRecords, v.Entries, v.Records)
	}
	if rep.Quarantine == "" {
		return rep
	}
	if m, _ := filepath.Glob(filepath.Join(rep.Quarantine, "wal", "MANIFEST-*")); len(m) == 0 {
		t.Errorf("the old WAL directory is not in the quarantine folder")
	}
	sum, err := ReadQuarantine(nil, quarantine)
	if err != nil || sum.Folders != 1 || sum.Entries != rep.Entries || sum.Records != rep.Records {
		t.Errorf("quarantine summary %+v (%v), want 1 folder, %d entries, %d records", sum, err, rep.Entries, rep.Records)
	}
	return rep
}

// TestRepairEntryDamage damages one entry (and adds a stray key) in
// several ways and repairs: every other entry is kept, the damaged one's
// raw bytes are in quarantine, the high water stays.
func TestRepairEntryDamage(t *testing.T) {
	tp, other := TopicPartition{Topic: "a", Partition: 0}, TopicPartition{Topic: "b", Partition: 0}
	cases := []struct {
		name    string
		damage  func(v []byte) []byte
		records int64 // moved records the report counts
	}{
		{"record body flipped", func(v []byte) []byte { return flip(v, dmgRecord(2)+recordHeaderLen+10) }, 5},
		{"header flipped", func(v []byte) []byte { return flip(v, 3) }, 5}, // count unknown: taken from the meta
		{"value truncated", func(v []byte) []byte { return v[:dmgRecord(3)+15] }, 5},
		{"trailing bytes", func(v []byte) []byte { return append(v, 1, 2, 3) }, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, quarantine := repairDirs(t)
			w := openThreeEntries(t, dir, tp)
			mustAppend(t, w, other, recs(0, 2))
			v, closer, err := w.db.Get(entryKey(tp, dmgFirst))
			if err != nil {
				t.Fatal(err)
			}
			damaged := c.damage(bytes.Clone(v))
			closer.Close()
			stray := []byte{prefixEntry, 'a'}
			for k, v := range map[string][]byte{string(entryKey(tp, dmgFirst)): damaged, string(stray): []byte("x")} {
				if err := w.db.Set([]byte(k), v, pebble.Sync); err != nil {
					t.Fatal(err)
				}
			}
			mustClose(t, w)

			rep := mustRepair(t, dir, quarantine)
			if rep.KeptEntries != 3 || rep.KeptRecords != 13 || rep.Entries != 1 || rep.Records != c.records {
				t.Errorf("report: kept %d entries %d records, moved %d entries %d records; want 3, 13, 1, %d",
					rep.KeptEntries, rep.KeptRecords, rep.Entries, rep.Records, c.records)
			}
			var entry, key *Moved
			for i, m := range rep.Moved {
				switch m.Kind {
				case MovedEntry:
					entry = &rep.Moved[i]
				case MovedKey:
					key = &rep.Moved[i]
				}
			}
			if entry == nil || entry.Topic != "a" || entry.Partition != 0 || entry.FirstOffset != dmgFirst || !strings.Contains(entry.Reason, "a/0 entry at offset 5") {
				t.Fatalf("moved entry: %+v in %+v", entry, rep.Moved)
			}
			if got, err := os.ReadFile(filepath.Join(rep.Quarantine, entry.ValueFile)); err != nil || !bytes.Equal(got, damaged) {
				t.Errorf("quarantined value differs from the damaged one (%v)", err)
			}
			if got, err := os.ReadFile(filepath.Join(rep.Quarantine, entry.KeyFile)); err != nil || !bytes.Equal(got, entryKey(tp, dmgFirst)) {
				t.Errorf("quarantined key differs (%v)", err)
			}
			if key == nil {
				t.Errorf("the stray key was not moved: %+v", rep.Moved)
			} else if got, _ := os.ReadFile(filepath.Join(rep.Quarantine, key.KeyFile)); !bytes.Equal(got, stray) {
				t.Errorf("quarantined stray key %q", got)
			}
			var man RepairReport
			if b, err := os.ReadFile(filepath.Join(rep.Quarantine, ManifestFile)); err != nil || json.Unmarshal(b, &man) != nil || len(man.Moved) != len(rep.Moved) {
				t.Errorf("manifest: %v %+v", err, man)
			}

			w, err = Open(dir, testOptions(t, vfs.Default))
			if err != nil {
				t.Fatal(err)
			}
			defer mustClose(t, w)
			wantRepaired(t, w, tp, append(span(0, 4), span(10, 14)...), other, span(0, 2), 14)
		})
	}
}

// TestRepairMetaDamage: a meta that cannot be decoded stops Open; repair
// rebuilds it from the entries and keeps them all.
func TestRepairMetaDamage(t *testing.T) {
	dir, quarantine := repairDirs(t)
	tp := TopicPartition{Topic: "a", Partition: 0}
	w, err := Open(dir, testOptions(t, vfs.Default))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w, tp, recs(0, 4))
	mustAppend(t, w, tp, recs(5, 9))
	if err := w.db.Set(metaKey(tp), flip(encodeMeta(w.parts[tp].meta), 10), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
	if _, err := Open(dir, testOptions(t, vfs.Default)); !errors.As(err, new(*CorruptionError)) {
		t.Fatalf("open with a damaged meta: %v", err)
	}
	rep := mustRepair(t, dir, quarantine)
	if rep.KeptRecords != 10 || rep.Entries != 0 || len(rep.Moved) != 1 || rep.Moved[0].Kind != MovedMeta {
		t.Fatalf("report: %+v", rep)
	}
	wantHighWater(t, dir, tp, 9)
}

// wantHighWater opens the WAL in dir and checks tp's high water.
func wantHighWater(t *testing.T, dir string, tp TopicPartition, want int64) {
	t.Helper()
	w, err := Open(dir, testOptions(t, vfs.Default))
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, w)
	if hw := w.HighWater(tp); hw != want {
		t.Errorf("high water %d after repair, want %d", hw, want)
	}
}

// TestRepairSoundWAL: a WAL without damage is left alone.
func TestRepairSoundWAL(t *testing.T) {
	dir, quarantine := repairDirs(t)
	w, err := Open(dir, testOptions(t, vfs.Default))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w, TopicPartition{Topic: "a", Partition: 0}, recs(0, 9))
	// Repair refuses while the WAL is open (the appliance holds the lock).
	if _, err := Repair(dir, quarantine, testOptions(t, vfs.Default)); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("repair of a WAL in use: %v", err)
	}
	mustClose(t, w)
	rep := mustRepair(t, dir, quarantine)
	if rep.Quarantine != "" || len(rep.Moved) != 0 || rep.KeptRecords != 10 {
		t.Fatalf("repair of a sound WAL: %+v", rep)
	}
	if _, err := os.Stat(quarantine); !os.IsNotExist(err) {
		t.Errorf("a quarantine folder was made for a sound WAL: %v", err)
	}
	if _, err := os.Stat(repairDir(dir)); !os.IsNotExist(err) {
		t.Errorf("the rebuild directory was left behind: %v", err)
	}
}

// TestRepairFlippedSSTableByte flips one byte in the middle of an sstable:
// Pebble's block checksum fails for one block. Repair must keep every
// entry outside that block, move the block's run of offsets, keep the
// damaged file byte for byte in quarantine and keep the high water.
func TestRepairFlippedSSTableByte(t *testing.T) {
	dir, quarantine := repairDirs(t)
	opts := testOptions(t, vfs.Default)
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	tp := TopicPartition{Topic: "a", Partition: 0}
	const n = 2000
	appendOrders(t, w, tp, n, smallEntry)
	mustAppend(t, w, TopicPartition{Topic: "b", Partition: 0}, recs(0, 9))
	if err := w.db.Flush(); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
	sst := largestSST(t, dir)
	data := flipMiddleBit(t, sst)

	rep := mustRepair(t, dir, quarantine)
	if rep.Quarantine == "" || len(rep.Damage) == 0 {
		t.Fatalf("repair found nothing: %+v", rep)
	}
	var ranges []Moved
	for _, m := range rep.Moved {
		if m.Kind != MovedRange || m.Topic != "a" || m.PebbleFile != sst {
			t.Errorf("unexpected moved item %+v", m)
			continue
		}
		ranges = append(ranges, m)
	}
	if len(ranges) == 0 {
		t.Fatalf("no unreadable run reported: %+v", rep.Moved)
	}
	// Kept and moved records add up to what was appended.
	if rep.KeptRecords+rep.Records != n+10 || rep.KeptRecords <= 10 || rep.Records == 0 {
		t.Errorf("kept %d + moved %d records, want %d in all with some of a/0 kept", rep.KeptRecords, rep.Records, n+10)
	}
	moved, err := os.ReadFile(filepath.Join(rep.Quarantine, "wal", filepath.Base(sst)))
	if err != nil || !bytes.Equal(moved, data) {
		t.Errorf("the damaged sstable is not kept as it was in quarantine (%v)", err)
	}

	w, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, w)
	entries, _ := readAll(t, w, nil)
	got := offsetsOf(entries, tp)
	if int64(len(got)) != rep.KeptRecords-10 {
		t.Errorf("a/0 holds %d records, the report says %d kept", len(got), rep.KeptRecords-10)
	}
	// Every missing offset lies in a reported run.
	for off := int64(0); off < n; off++ {
		if _, ok := slices.BinarySearch(got, off); ok {
			continue
		}
		in := false
		for _, r := range ranges {
			in = in || off >= r.FirstOffset && (off <= r.LastOffset || r.LastOffset < 0)
		}
		if !in {
			t.Fatalf("offset %d is neither kept nor in a reported run %+v", off, ranges)
		}
	}
	if hw := w.HighWater(tp); hw != n-1 {
		t.Errorf("high water %d after repair, want %d", hw, n-1)
	}
	t.Logf("kept %d of %d records of a/0; moved %+v", len(got), n, ranges)
}

func largestSST(t *testing.T, dir string) string {
	t.Helper()
	sst, size := largestFile(dir, "*.sst")
	if size < 64<<10 {
		t.Fatalf("largest sstable is %d bytes, too small for the test", size)
	}
	return sst
}

// appendOrders appends to tp the records 0..n-1 in entries of perEntry
// records each, whose values are 300-byte JSON orders: enough data for
// Pebble files with many blocks. Entries of smallEntry records stay in the
// sstables; entries of bigEntry records go to blob files (their values
// are at least valueSeparationMinimum bytes).
func appendOrders(t *testing.T, w *WAL, tp TopicPartition, n, perEntry int64) {
	t.Helper()
	for first := int64(0); first < n; first += perEntry {
		batch := make([]Record, min(perEntry, n-first))
		for j := range batch {
			off := first + int64(j)
			batch[j] = Record{Offset: off, Timestamp: off, Key: []byte("order"), Value: jsonish(off, 300)}
		}
		mustAppend(t, w, tp, batch)
	}
}

// Records per entry for appendOrders.
const (
	smallEntry = 2  // ~690-byte values: kept in the sstables
	bigEntry   = 50 // ~17 KB values: moved to blob files
)

// largestFile returns the largest file in dir matching pattern, and its size.
func largestFile(dir, pattern string) (string, int64) {
	files, _ := filepath.Glob(filepath.Join(dir, pattern))
	var largest string
	var size int64
	for _, p := range files {
		if fi, err := os.Stat(p); err == nil && fi.Size() > size {
			largest, size = p, fi.Size()
		}
	}
	return largest, size
}

// TestRepairInterruptedSwap: a repair that stopped between moving the
// damaged WAL away and moving the rebuilt one in leaves only the rebuilt
// directory. Open refuses it (starting on an empty WAL would lose what the
// rebuilt one holds); Repair run again finishes the swap. A rebuild left
// beside an untouched WAL is discarded.
func TestRepairInterruptedSwap(t *testing.T) {
	dir, quarantine := repairDirs(t)
	tp := TopicPartition{Topic: "a", Partition: 0}
	w, err := Open(dir, testOptions(t, vfs.Default))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w, tp, recs(0, 9))
	mustClose(t, w)
	if err := os.Rename(dir, repairDir(dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, testOptions(t, vfs.Default)); !errors.Is(err, ErrRepairInterrupted) {
		t.Fatalf("open during an interrupted swap: %v", err)
	}
	if rep := mustRepair(t, dir, quarantine); rep.KeptRecords != 10 || rep.Quarantine != "" {
		t.Fatalf("repair finishing the swap: %+v", rep)
	}

	if err := os.MkdirAll(filepath.Join(repairDir(dir), "leftover"), 0o755); err != nil {
		t.Fatal(err)
	}
	if rep := mustRepair(t, dir, quarantine); rep.KeptRecords != 10 {
		t.Fatalf("repair beside a leftover rebuild: %+v", rep)
	}
	if _, err := os.Stat(repairDir(dir)); !os.IsNotExist(err) {
		t.Errorf("the leftover rebuild is still there: %v", err)
	}
}

// TestRepairUnreadableSSTable damages an sstable's footer: Pebble cannot
// open the file at all. a/0 lives only in it; b/0 was appended after the
// flush and lives in Pebble's log, but its keys fall inside the file's key
// range, and Pebble reads no key in that range while the file is
// unreadable. Repair must account for both partitions (kept, or reported
// as moved and counted), report the file, and keep it in quarantine.
func TestRepairUnreadableSSTable(t *testing.T) {
	dir, quarantine := repairDirs(t)
	opts := testOptions(t, vfs.Default)
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	a, b := TopicPartition{Topic: "a", Partition: 0}, TopicPartition{Topic: "b", Partition: 0}
	appendOrders(t, w, a, 2000, smallEntry)
	if err := w.db.Flush(); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w, b, recs(0, 9))
	mustClose(t, w)
	sst := largestSST(t, dir)
	data, err := os.ReadFile(sst)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-60] ^= 0x01 // in the footer
	if err := os.WriteFile(sst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, opts); !errors.As(err, new(*CorruptionError)) {
		t.Fatalf("open: %v, want a *CorruptionError", err)
	}

	rep := mustRepair(t, dir, quarantine)
	reported := map[string]bool{}
	var file bool
	for _, m := range rep.Moved {
		if m.PebbleFile != sst {
			t.Errorf("moved item %+v does not name %s", m, sst)
		}
		file = file || m.Kind == MovedFile
		if m.Kind == MovedRange && m.FirstOffset == 0 {
			reported[m.Topic] = true
		}
	}
	if !file || !reported["a"] {
		t.Errorf("the file or a/0's unreadable run is not reported: %+v", rep.Moved)
	}
	w, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, w)
	entries, _ := readAll(t, w, nil)
	if got := offsetsOf(entries, b); !reported["b"] && !equalOffsets(got, span(0, 9)) {
		t.Errorf("b/0 is neither kept whole nor reported: %v", got)
	}
	if want := int64(1 + len(reported)); rep.Entries < want {
		t.Errorf("%d entries counted as moved, want at least %d (the file and each partition's run): %+v", rep.Entries, want, rep.Moved)
	}
	if moved, err := os.ReadFile(filepath.Join(rep.Quarantine, "wal", filepath.Base(sst))); err != nil || !bytes.Equal(moved, data) {
		t.Errorf("the unreadable sstable is not kept as it was in quarantine (%v)", err)
	}
	t.Logf("kept %d records; moved %d entries: %+v", rep.KeptRecords, rep.Entries, rep.Moved)
}

// openThreeEntries opens a new WAL in dir holding tp's offsets 0..14 as
// three entries: 0..4, 5..9 and 10..14.
func openThreeEntries(t *testing.T, dir string, tp TopicPartition) *WAL {
	t.Helper()
	w, err := Open(dir, testOptions(t, vfs.Default))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w, tp, recs(0, 4))
	mustAppend(t, w, tp, recs(5, 9))
	mustAppend(t, w, tp, recs(10, 14))
	return w
}

// damagedWAL writes a/0 as three entries, offsets 0..4, 5..9 and 10..14,
// and damages a record body of the middle one: a repair moves it.
func damagedWAL(t *testing.T, dir string) TopicPartition {
	t.Helper()
	tp := TopicPartition{Topic: "a", Partition: 0}
	w := openThreeEntries(t, dir, tp)
	damageEntry(t, w, tp, dmgFirst, func(v []byte) []byte { return flip(v, dmgRecord(2)+recordHeaderLen+10) })
	mustClose(t, w)
	return tp
}

// damageEntry rewrites the entry of tp at first through damage.
func damageEntry(t *testing.T, w *WAL, tp TopicPartition, first int64, damage func([]byte) []byte) {
	t.Helper()
	v, closer, err := w.db.Get(entryKey(tp, first))
	if err != nil {
		t.Fatal(err)
	}
	damaged := damage(bytes.Clone(v))
	closer.Close()
	if err := w.db.Set(entryKey(tp, first), damaged, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// renameFailFS fails the renames fail picks, as a full disk, a permission
// or a crash at that point would stop a repair.
type renameFailFS struct {
	vfs.FS
	fail func(oldname, newname string) bool
}

func (fs renameFailFS) Rename(oldname, newname string) error {
	if fs.fail(oldname, newname) {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: errors.New("injected failure")}
	}
	return fs.FS.Rename(oldname, newname)
}

// TestRepairWhileAnotherRepairs: a repair started while another one holds
// the repair lock fails before it touches anything, and the other's
// rebuild in progress stays.
func TestRepairWhileAnotherRepairs(t *testing.T) {
	dir, quarantine := repairDirs(t)
	damagedWAL(t, dir)
	lock, err := vfs.Default.Lock(repairLock(dir))
	if err != nil {
		t.Fatal(err)
	}
	inProgress := filepath.Join(repairDir(dir), "000002.log")
	if err := os.MkdirAll(repairDir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inProgress, []byte("rebuilding"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Repair(dir, quarantine, testOptions(t, vfs.Default)); err == nil || !strings.Contains(err.Error(), "another `offload wal repair`") {
		t.Errorf("repair beside a running repair: %v", err)
	}
	if _, err := os.Stat(inProgress); err != nil {
		t.Fatalf("the other repair's rebuild was touched: %v", err)
	}
	if err := lock.Close(); err != nil {
		t.Fatal(err)
	}
	// Once the other is gone its unfinished rebuild is discarded.
	if rep := mustRepair(t, dir, quarantine); rep.Entries != 1 || rep.KeptRecords != 10 {
		t.Errorf("repair: %+v", rep)
	}
}

// TestRepairCompleteRebuildKept: a repair that moved the damaged WAL away
// but failed to move the rebuilt one in leaves the only copy of the
// repaired WAL in the rebuild directory. Should something create the WAL
// directory again, Open refuses, and the next repair refuses too, naming
// both directories, instead of discarding the rebuild. Once the stray
// directory is moved aside the repair finishes the swap and the quarantine
// counts the moved entry once.
func TestRepairCompleteRebuildKept(t *testing.T) {
	dir, quarantine := repairDirs(t)
	tp := damagedWAL(t, dir)
	fs := renameFailFS{FS: vfs.Default, fail: func(old, _ string) bool { return old == repairDir(dir) }}
	first, err := Repair(dir, quarantine, testOptions(t, fs))
	if err == nil || !strings.Contains(err.Error(), "run the repair again") {
		t.Fatalf("repair with the second rename failing: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the damaged WAL was not moved away: %v", err)
	}
	if sum, err := ReadQuarantine(nil, quarantine); err != nil || sum.Folders != 0 || len(sum.Incomplete) != 1 {
		t.Errorf("quarantine before the swap finished: %+v %v, want one incomplete folder and nothing counted", sum, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stray"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, testOptions(t, vfs.Default)); !errors.Is(err, ErrRepairInterrupted) {
		t.Errorf("open beside a complete rebuild: %v", err)
	}
	_, err = Repair(dir, quarantine, testOptions(t, vfs.Default))
	if !errors.Is(err, ErrRepairInterrupted) || !strings.Contains(err.Error(), "move "+dir+" aside") ||
		!strings.Contains(err.Error(), repairDir(dir)+" holds the complete repaired WAL") {
		t.Errorf("repair beside a complete rebuild: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(repairDir(dir), "MANIFEST-*")); len(m) == 0 {
		t.Fatalf("the complete rebuild was discarded")
	}
	if err := os.Rename(dir, dir+".stray"); err != nil {
		t.Fatal(err)
	}
	rep := mustRepair(t, dir, quarantine)
	if rep.Quarantine != "" || rep.KeptRecords != 10 {
		t.Errorf("repair finishing the swap: %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(dir, completeFile)); !os.IsNotExist(err) {
		t.Errorf("the marker is left in the WAL: %v", err)
	}
	sum, err := ReadQuarantine(nil, quarantine)
	if err != nil || sum.Folders != 1 || sum.Entries != first.Entries || sum.Records != first.Records || len(sum.Incomplete) != 0 {
		t.Errorf("quarantine %+v (%v), want the first repair's %d entries, %d records", sum, err, first.Entries, first.Records)
	}
	wantHighWater(t, dir, tp, 14)
}

// TestRepairManifestAfterSwap: a repair whose manifest could not be put
// in place after the swap leaves its folder uncounted (and listed); the
// next repair puts it in place.
func TestRepairManifestAfterSwap(t *testing.T) {
	dir, quarantine := repairDirs(t)
	damagedWAL(t, dir)
	fs := renameFailFS{FS: vfs.Default, fail: func(old, _ string) bool { return filepath.Base(old) == manifestPending }}
	first, err := Repair(dir, quarantine, testOptions(t, fs))
	if err == nil || !strings.Contains(err.Error(), "manifest") {
		t.Fatalf("repair with the manifest rename failing: %v", err)
	}
	if sum, err := ReadQuarantine(nil, quarantine); err != nil || sum.Folders != 0 || !slices.Equal(sum.Incomplete, []string{first.Quarantine}) {
		t.Errorf("quarantine: %+v %v, want %s listed as incomplete", sum, err, first.Quarantine)
	}
	mustRepair(t, dir, quarantine) // checks one folder counting first's entries
}

// TestRepairFirstRenameFails: a repair that cannot move the damaged WAL
// into quarantine changes nothing and leaves no manifest behind, so the
// repair that succeeds later is the only one counted.
func TestRepairFirstRenameFails(t *testing.T) {
	dir, quarantine := repairDirs(t)
	damagedWAL(t, dir)
	opts := testOptions(t, renameFailFS{FS: vfs.Default, fail: func(old, _ string) bool { return old == dir }})
	opts.Now = func() time.Time { return testNow.Add(-time.Hour) } // an earlier run: its own folder
	if _, err := Repair(dir, quarantine, opts); err == nil || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("repair with the first rename failing: %v", err)
	}
	if _, err := os.Stat(repairDir(dir)); !os.IsNotExist(err) {
		t.Errorf("the rebuild is left: %v", err)
	}
	if sum, err := ReadQuarantine(nil, quarantine); err != nil || sum.Folders != 0 || sum.Entries != 0 {
		t.Errorf("quarantine after a failed repair: %+v %v", sum, err)
	}
	mustRepair(t, dir, quarantine) // checks one folder, counting this repair's entries
}

// TestReadQuarantineIncomplete: a folder left without a manifest (a
// repair stopped while writing it) is listed and skipped; the others are
// still counted.
func TestReadQuarantineIncomplete(t *testing.T) {
	q := t.TempDir()
	good := filepath.Join(q, "wal-20261127T100000.000Z")
	bad := filepath.Join(q, "wal-20261127T110000.000Z")
	for _, d := range []string{good, filepath.Join(bad, "raw")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	man, _ := json.Marshal(RepairReport{Entries: 2, Records: 80})
	if err := os.WriteFile(filepath.Join(good, ManifestFile), man, 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := ReadQuarantine(nil, q)
	if err != nil || sum.Folders != 1 || sum.Entries != 2 || sum.Records != 80 || !slices.Equal(sum.Incomplete, []string{bad}) {
		t.Errorf("summary %+v (%v), want 1 folder, 2 entries, 80 records and %s incomplete", sum, err, bad)
	}
}

// TestRepairHighWaterWithoutMeta: with the partition meta unreadable the
// high water is rebuilt from the entries. A damaged last entry whose
// header checks still gives its last offset; where nothing tells the last
// offset (its header damaged too, or no entry left) the report says the
// high water may be lower.
func TestRepairHighWaterWithoutMeta(t *testing.T) {
	tp := TopicPartition{Topic: "a", Partition: 0}
	cases := []struct {
		name      string
		damage    func(w *WAL)
		hw        int64
		uncertain bool
	}{
		{"last entry's record damaged", func(w *WAL) {
			damageEntry(t, w, tp, 10, func(v []byte) []byte { return flip(v, dmgRecord(2)+recordHeaderLen+10) })
		}, 14, false},
		{"last entry's header damaged", func(w *WAL) {
			damageEntry(t, w, tp, 10, func(v []byte) []byte { return flip(v, 10) })
		}, 10, true},
		{"every entry truncated", func(w *WAL) {
			if _, err := w.Truncate(Cursor{tp: 15}); err != nil {
				t.Fatal(err)
			}
		}, -1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, quarantine := repairDirs(t)
			w := openThreeEntries(t, dir, tp)
			c.damage(w)
			if err := w.db.Set(metaKey(tp), flip(encodeMeta(w.parts[tp].meta), 10), pebble.Sync); err != nil {
				t.Fatal(err)
			}
			mustClose(t, w)
			rep := mustRepair(t, dir, quarantine)
			if got := len(rep.HighWater) == 1; got != c.uncertain {
				t.Errorf("high water reported uncertain: %+v, want %v", rep.HighWater, c.uncertain)
			} else if got && (rep.HighWater[0].Topic != "a" || rep.HighWater[0].HighWater != c.hw) {
				t.Errorf("high water report %+v, want a/0 at %d", rep.HighWater[0], c.hw)
			}
			var man RepairReport
			if b, err := os.ReadFile(filepath.Join(rep.Quarantine, ManifestFile)); err != nil || json.Unmarshal(b, &man) != nil || len(man.HighWater) != len(rep.HighWater) {
				t.Errorf("manifest high water: %v %+v", err, man.HighWater)
			}
			wantHighWater(t, dir, tp, c.hw)
		})
	}
}

// TestRepairMalformedKeyInPartition: a malformed key sorting inside a
// partition's keys is met by both scans; it is moved and reported once.
func TestRepairMalformedKeyInPartition(t *testing.T) {
	dir, quarantine := repairDirs(t)
	tp := TopicPartition{Topic: "a", Partition: 0}
	w := openThreeEntries(t, dir, tp)
	bad := append(partitionPrefix(prefixEntry, tp), 0, 0, 0) // before the first entry
	if err := w.db.Set(bad, []byte("x"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
	rep := mustRepair(t, dir, quarantine)
	var n int
	for _, d := range rep.Damage {
		if strings.Contains(d, "malformed key") {
			n++
		}
	}
	if n != 1 || len(rep.Moved) != 1 || rep.KeptRecords != 15 {
		t.Errorf("malformed key reported %d times, moved %+v, kept %d records; want once, one key, 15", n, rep.Moved, rep.KeptRecords)
	}
}

// TestRepairKeepsIncarnations: a repair of a WAL holding two incarnations
// of a topic keeps each one's entries, high water and topic ID apart, and
// the later one's partition registered without records.
func TestRepairKeepsIncarnations(t *testing.T) {
	dir, quarantine := repairDirs(t)
	w, err := Open(dir, testOptions(t, vfs.Default))
	if err != nil {
		t.Fatal(err)
	}
	old := TopicPartition{Topic: "a", Partition: 0}
	mustAppend(t, w, old, recs(0, 9))
	if err := w.SetTopicID(old, [16]byte{0xa}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recreate("a", [16]byte{0xb}, []int32{0, 1}); err != nil {
		t.Fatal(err)
	}
	cur := TopicPartition{Topic: "a", Incarnation: 1, Partition: 0}
	mustAppend(t, w, cur, recs(0, 4))
	if err := w.db.Set(metaKey(old), flip(encodeMeta(w.parts[old].meta), 10), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
	rep := mustRepair(t, dir, quarantine)
	if rep.KeptRecords != 15 {
		t.Fatalf("report: %+v", rep)
	}
	w, err = Open(dir, testOptions(t, vfs.Default))
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, w)
	if w.HighWater(old) != 9 || w.HighWater(cur) != 4 {
		t.Fatalf("high waters %d, %d after repair; want 9, 4", w.HighWater(old), w.HighWater(cur))
	}
	if inc, id := w.Incarnation("a"); inc != 1 || id != ([16]byte{0xb}) {
		t.Fatalf("Incarnation after repair: %d %x", inc, id)
	}
	if id, ok := w.TopicID(TopicPartition{Topic: "a", Incarnation: 1, Partition: 1}); !ok || id != ([16]byte{0xb}) {
		t.Fatalf("registered partition after repair: %x %v", id, ok)
	}
}

// checkBlobRepair checks a repair of blobWAL's WAL whose blob file was
// damaged: every moved item is one unreadable entry of a/0, bounded by
// the entries' offsets and naming the blob file; kept and moved records
// add up; the blob file is kept in quarantine as it was; the repaired WAL
// reads everything else and keeps a/0's high water. It returns the moved
// entries' first offsets.
func checkBlobRepair(t *testing.T, dir string, rep RepairReport, blob string, data []byte) map[int64]bool {
	t.Helper()
	a, b := TopicPartition{Topic: "a", Partition: 0}, TopicPartition{Topic: "b", Partition: 0}
	if rep.Quarantine == "" || len(rep.Damage) == 0 || len(rep.Moved) == 0 {
		t.Fatalf("repair found nothing: %+v", rep)
	}
	moved := map[int64]bool{}
	for _, m := range rep.Moved {
		if m.Kind != MovedRange || m.Topic != "a" || m.PebbleFile != blob || m.FirstOffset%bigEntry != 0 ||
			m.LastOffset != m.FirstOffset+bigEntry-1 || !strings.Contains(m.Reason, blob) {
			t.Errorf("moved %+v, want one entry of a/0 with its offsets and %s", m, blob)
		}
		moved[m.FirstOffset] = true
	}
	if len(moved) != len(rep.Moved) || rep.Entries != int64(len(moved)) || rep.Records != int64(len(moved))*bigEntry ||
		rep.KeptRecords+rep.Records != 2010 {
		t.Errorf("moved %d entries, %d records, kept %d records; want each entry once, %d records each, 2010 in all",
			rep.Entries, rep.Records, rep.KeptRecords, bigEntry)
	}
	if got, err := os.ReadFile(filepath.Join(rep.Quarantine, "wal", filepath.Base(blob))); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the damaged blob file is not kept as it was in quarantine (%v)", err)
	}
	var man RepairReport
	if b, err := os.ReadFile(filepath.Join(rep.Quarantine, ManifestFile)); err != nil || json.Unmarshal(b, &man) != nil || len(man.Moved) != len(rep.Moved) {
		t.Errorf("manifest: %v %+v", err, man)
	}

	w, err := Open(dir, testOptions(t, vfs.Default))
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, w)
	var want []int64
	for first := int64(0); first < 2000; first += bigEntry {
		if !moved[first] {
			want = append(want, span(first, first+bigEntry-1)...)
		}
	}
	wantRepaired(t, w, a, want, b, span(0, 9), 1999)
	return moved
}

// wantRepaired checks what the repaired WAL w holds: the offsets want of
// tp and otherWant of other, tp's high water hw, and that a re-fetch of
// the ten records up to it is dropped while the two after it are kept.
func wantRepaired(t *testing.T, w *WAL, tp TopicPartition, want []int64, other TopicPartition, otherWant []int64, hw int64) {
	t.Helper()
	entries, _ := readAll(t, w, nil)
	if got := offsetsOf(entries, tp); !equalOffsets(got, want) {
		t.Errorf("%s after repair holds %d records, want %d: %v", tp, len(got), len(want), got)
	}
	if got := offsetsOf(entries, other); !equalOffsets(got, otherWant) {
		t.Errorf("%s after repair: %v", other, got)
	}
	if got := w.HighWater(tp); got != hw {
		t.Errorf("high water %d after repair, want %d", got, hw)
	}
	// The moved records are not admitted again by a re-fetch.
	if res := mustAppend(t, w, tp, recs(hw-9, hw+2)); res.Duplicates != 10 || res.Appended != 2 {
		t.Errorf("re-fetch after repair: %+v", res)
	}
}

// TestRepairFlippedBlobByte flips one byte in the middle of the blob file
// holding the entries' values: the entries whose values lie in the
// damaged block are moved, one range per entry (their keys still read),
// and everything else is kept.
func TestRepairFlippedBlobByte(t *testing.T) {
	dir, quarantine := repairDirs(t)
	blob := blobWAL(t, dir)
	data := flipMiddleBit(t, blob)
	rep := mustRepair(t, dir, quarantine)
	if moved := checkBlobRepair(t, dir, rep, blob, data); len(moved) >= 40 {
		t.Errorf("every entry was moved for one flipped byte: %+v", rep.Moved)
	}
	t.Logf("moved %+v", rep.Moved)
}

// TestRepairUnreadableBlobFile: a blob file that cannot be opened takes
// every entry whose value it holds; repair moves them, one range per
// entry, keeps the file in quarantine, and leaves a WAL that opens.
func TestRepairUnreadableBlobFile(t *testing.T) {
	for _, name := range []string{"truncated", "zeroed"} {
		t.Run(name, func(t *testing.T) {
			dir, quarantine := repairDirs(t)
			blob := blobWAL(t, dir)
			data, err := os.ReadFile(blob)
			if err != nil {
				t.Fatal(err)
			}
			if name == "truncated" {
				data = data[:len(data)/2]
			} else {
				data = make([]byte, len(data))
			}
			if err := os.WriteFile(blob, data, 0o644); err != nil {
				t.Fatal(err)
			}
			rep := mustRepair(t, dir, quarantine)
			if moved := checkBlobRepair(t, dir, rep, blob, data); len(moved) != 40 {
				t.Errorf("moved %d entries, want all 40 of a/0", len(moved))
			}
		})
	}
}
