package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Layout of the entry the corruption table damages: records 5..9 from
// rec(), each with a 2-byte key and a 2-byte value, so a 21-byte body and
// a 29-byte record.
const (
	dmgFirst   = 5
	dmgRecLen  = recordHeaderLen + 21
	dmgEntries = 5
)

// dmgRecord is the position of record i's header in the damaged entry;
// its body starts recordHeaderLen later.
func dmgRecord(i int) int { return entryHeaderLen + i*dmgRecLen }

// rawEntry builds an entry value from record bodies with correct lengths
// and checksums, so a test can store a well-framed but wrong entry.
func rawEntry(lastOffset int64, count uint32, bodies ...[]byte) []byte {
	v := []byte{formatVersion}
	v = binary.BigEndian.AppendUint64(v, uint64(testNow.UnixNano()))
	v = binary.BigEndian.AppendUint64(v, uint64(lastOffset))
	v = binary.BigEndian.AppendUint32(v, count)
	v = binary.BigEndian.AppendUint32(v, checksum(v))
	for _, b := range bodies {
		v = binary.BigEndian.AppendUint32(v, uint32(len(b)))
		v = binary.BigEndian.AppendUint32(v, checksum(b))
		v = append(v, b...)
	}
	return v
}

// body encodes one record body with the key field written as given.
func body(off int64, keyField []byte, key, value string) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(off))
	b = binary.BigEndian.AppendUint64(b, uint64(1000+off))
	b = append(b, keyField...)
	b = append(b, key...)
	return append(b, value...)
}

// fixHeader recomputes the header checksum after a header field changed.
func fixHeader(v []byte) []byte {
	binary.BigEndian.PutUint32(v[21:], checksum(v[:21]))
	return v
}

func flip(v []byte, i int) []byte {
	v[i] ^= 0x5a
	return v
}

func TestCorruptionTable(t *testing.T) {
	tp := TopicPartition{Topic: "a", Partition: 0}
	other := TopicPartition{Topic: "b", Partition: 0}
	good := func(first, last int64) []byte { return encodeEntry(nil, testNow.UnixNano(), recs(first, last)) }

	entryCases := []struct {
		name   string
		damage func(v []byte) []byte
		record int    // want CorruptionError.Record
		pos    int    // want CorruptionError.Pos
		reason string // want in CorruptionError.Reason
	}{
		{"header checksum over a flipped field", func(v []byte) []byte { return flip(v, 3) }, -1, 21, "header checksum mismatch"},
		{"header checksum flipped", func(v []byte) []byte { return flip(v, 22) }, -1, 21, "header checksum mismatch"},
		{"record body flipped", func(v []byte) []byte { return flip(v, dmgRecord(2)+recordHeaderLen+10) }, 2, dmgRecord(2) + recordHeaderLen, "record checksum mismatch"},
		{"record checksum flipped", func(v []byte) []byte { return flip(v, dmgRecord(3)+5) }, 3, dmgRecord(3) + recordHeaderLen, "record checksum mismatch"},
		{"last byte flipped", func(v []byte) []byte { return flip(v, len(v)-1) }, 4, dmgRecord(4) + recordHeaderLen, "record checksum mismatch"},
		{"value truncated in a body", func(v []byte) []byte { return v[:dmgRecord(3)+15] }, 3, dmgRecord(3), "does not fit"},
		{"value truncated in a record header", func(v []byte) []byte { return v[:dmgRecord(4)+3] }, 4, dmgRecord(4), "ends inside the header of record 4"},
		{"value truncated in the entry header", func(v []byte) []byte { return v[:20] }, -1, 0, "shorter than its 25-byte header"},
		{"empty value", func(v []byte) []byte { return nil }, -1, 0, "shorter than"},
		{"length too large", func(v []byte) []byte {
			binary.BigEndian.PutUint32(v[dmgRecord(1):], 0xffffff00)
			return v
		}, 1, dmgRecord(1), "does not fit"},
		{"length too small", func(v []byte) []byte {
			binary.BigEndian.PutUint32(v[dmgRecord(1):], 5)
			return v
		}, 1, dmgRecord(1), "record length 5"},
		{"length one too long", func(v []byte) []byte {
			binary.BigEndian.PutUint32(v[dmgRecord(1):], 22)
			return v
		}, 1, dmgRecord(1) + recordHeaderLen, "record checksum mismatch"},
		{"offset disorder", func([]byte) []byte {
			return encodeEntry(nil, 0, []Record{rec(5), rec(6), rec(8), rec(7), rec(9)})
		}, 3, dmgRecord(3) + recordHeaderLen, "offset 7 does not follow 8"},
		{"repeated offset", func([]byte) []byte {
			return encodeEntry(nil, 0, []Record{rec(5), rec(6), rec(6), rec(8), rec(9)})
		}, 2, dmgRecord(2) + recordHeaderLen, "offset 6 does not follow 6"},
		{"first offset is not the key's", func([]byte) []byte { return good(6, 9) }, 0, entryHeaderLen + recordHeaderLen, "first record has offset 6, key says 5"},
		{"header last offset wrong", func(v []byte) []byte {
			binary.BigEndian.PutUint64(v[9:], 10)
			return fixHeader(v)
		}, -1, 9, "header says last offset 10, records end at 9"},
		{"no records", func(v []byte) []byte {
			binary.BigEndian.PutUint32(v[17:], 0)
			return fixHeader(v)
		}, -1, 17, "no records"},
		{"count too high", func(v []byte) []byte {
			binary.BigEndian.PutUint32(v[17:], 6)
			return fixHeader(v)
		}, 5, dmgRecord(5), "ends inside the header of record 5 of 6"},
		{"count too low", func(v []byte) []byte {
			binary.BigEndian.PutUint32(v[17:], 4)
			return fixHeader(v)
		}, -1, 9, "records end at 8"},
		{"unknown version", func(v []byte) []byte {
			v[0] = 2
			return fixHeader(v)
		}, -1, 0, "unknown format version 2"},
		{"trailing bytes", func(v []byte) []byte { return append(v, 1, 2, 3) }, dmgEntries, dmgRecord(dmgEntries), "3 unexpected bytes"},
		{"key length past the body", func([]byte) []byte {
			return rawEntry(9, 5, body(5, []byte{3}, "k5", "v5"), body(6, []byte{3}, "k6", "v6"),
				body(7, []byte{0x7f}, "k7", "v7"), body(8, []byte{3}, "k8", "v8"), body(9, []byte{3}, "k9", "v9"))
		}, 2, dmgRecord(2) + recordHeaderLen + 16, "bad key length"},
		{"key length not minimally encoded", func([]byte) []byte {
			return rawEntry(9, 5, body(5, []byte{3}, "k5", "v5"), body(6, []byte{3}, "k6", "v6"),
				body(7, []byte{0x83, 0x00}, "k7", "v7"), body(8, []byte{3}, "k8", "v8"), body(9, []byte{3}, "k9", "v9"))
		}, 2, dmgRecord(2) + recordHeaderLen + 16, "bad key length"},
		{"key length varint overflows", func([]byte) []byte {
			return rawEntry(9, 5, body(5, []byte{3}, "k5", "v5"), body(6, []byte{3}, "k6", "v6"),
				body(7, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "", ""), body(8, []byte{3}, "k8", "v8"), body(9, []byte{3}, "k9", "v9"))
		}, 2, dmgRecord(2) + recordHeaderLen + 16, "bad key length"},
	}

	// setup writes three entries of a/0 (0..4, 5..9, 10..14) and one of b/0,
	// and returns the WAL and the stored value of the middle entry.
	setup := func(t *testing.T) (*WAL, vfs.FS, []byte) {
		fs := vfs.NewMem()
		w := mustOpen(t, fs)
		mustAppend(t, w, tp, recs(0, 4))
		mustAppend(t, w, tp, recs(5, 9))
		mustAppend(t, w, tp, recs(10, 14))
		mustAppend(t, w, other, recs(0, 2))
		v, closer, err := w.db.Get(entryKey(tp, dmgFirst))
		if err != nil {
			t.Fatal(err)
		}
		defer closer.Close()
		if want := good(5, 9); string(v) != string(want) || len(v) != dmgRecord(dmgEntries) {
			t.Fatalf("stored entry is not laid out as the test assumes")
		}
		return w, fs, append([]byte(nil), v...)
	}
	put := func(t *testing.T, w *WAL, key, val []byte) {
		t.Helper()
		if err := w.db.Set(key, val, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	checkErr := func(t *testing.T, what string, err error, record, pos int, reason string) {
		t.Helper()
		var ce *CorruptionError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: %v (%T), want a *CorruptionError", what, err, err)
		}
		if ce.Topic != tp.Topic || ce.Partition != tp.Partition || ce.FirstOffset != dmgFirst || ce.Record != record || ce.Pos != pos || !strings.Contains(ce.Reason, reason) {
			t.Errorf("%s: got %+v\nwant topic %s partition %d first offset %d record %d pos %d reason containing %q",
				what, *ce, tp.Topic, tp.Partition, dmgFirst, record, pos, reason)
		}
		if !strings.Contains(ce.Error(), "a/0 entry at offset 5") {
			t.Errorf("%s: message %q does not say where", what, ce.Error())
		}
	}

	for _, c := range entryCases {
		t.Run(c.name, func(t *testing.T) {
			w, fs, v := setup(t)
			damaged := c.damage(v)
			put(t, w, entryKey(tp, dmgFirst), damaged)
			if c.pos > len(damaged) {
				t.Fatalf("bad case: position %d past the %d-byte value", c.pos, len(damaged))
			}

			// decodeEntry itself.
			_, err := decodeEntry(tp, dmgFirst, damaged, nil)
			checkErr(t, "decodeEntry", err, c.record, c.pos, c.reason)

			for round := 0; round < 2; round++ {
				// Verify finds exactly this damage.
				rep, err := w.Verify()
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Corruptions) != 1 {
					t.Fatalf("verify reports %d corruptions, want 1: %v", len(rep.Corruptions), rep.Corruptions)
				}
				checkErr(t, "verify", rep.Corruptions[0], c.record, c.pos, c.reason)

				// Read stops at it with the same typed error, after passing
				// what comes before.
				var passed []int64
				_, err = w.Read(nil, 1000, func(e Entry) error {
					for _, r := range e.Records {
						passed = append(passed, r.Offset)
					}
					return nil
				})
				checkErr(t, "read", err, c.record, c.pos, c.reason)
				if !equalOffsets(passed, span(0, 4)) {
					t.Errorf("read passed %v before the damage, want 0..4", passed)
				}
				// A cursor inside the damaged entry reaches it too.
				_, err = w.Read(Cursor{tp: 9, other: 3}, 1000, func(Entry) error { return nil })
				checkErr(t, "read from inside", err, c.record, c.pos, c.reason)
				// A cursor past it reads on.
				entries, _ := readAll(t, w, Cursor{tp: 10})
				if got := offsetsOf(entries, tp); !equalOffsets(got, span(10, 14)) {
					t.Errorf("read past the damage: %v", got)
				}
				if got := offsetsOf(entries, other); !equalOffsets(got, span(0, 2)) {
					t.Errorf("read of the other partition: %v", got)
				}

				// The damage survives a reopen, which does not fail on it.
				w = reopen(t, w, fs)
			}
			mustClose(t, w)
		})
	}

	metaCases := []struct {
		name   string
		damage func(t *testing.T, w *WAL)
		reason []string // one corruption per reason, in order
		open   bool     // Open fails with a *CorruptionError
	}{
		{"meta entry count wrong", func(t *testing.T, w *WAL) {
			m := w.parts[tp].meta
			m.entries++
			put(t, w, metaKey(tp), encodeMeta(m))
		}, []string{"partition meta (entries 4, records 15"}, false},
		{"meta record count wrong", func(t *testing.T, w *WAL) {
			m := w.parts[tp].meta
			m.records--
			put(t, w, metaKey(tp), encodeMeta(m))
		}, []string{"records 14"}, false},
		{"meta bytes wrong", func(t *testing.T, w *WAL) {
			m := w.parts[tp].meta
			m.bytes += 7
			put(t, w, metaKey(tp), encodeMeta(m))
		}, []string{"disagrees with the entries"}, false},
		{"meta high water below the entries", func(t *testing.T, w *WAL) {
			m := w.parts[tp].meta
			m.highWater = 12
			put(t, w, metaKey(tp), encodeMeta(m))
		}, []string{"high water 12) disagrees"}, false},
		{"meta checksum", func(t *testing.T, w *WAL) {
			put(t, w, metaKey(tp), flip(encodeMeta(w.parts[tp].meta), 10))
		}, []string{"partition meta: checksum mismatch"}, true},
		{"meta truncated", func(t *testing.T, w *WAL) {
			put(t, w, metaKey(tp), encodeMeta(w.parts[tp].meta)[:20])
		}, []string{"partition meta: value is 20 bytes"}, true},
		{"meta missing", func(t *testing.T, w *WAL) {
			if err := w.db.Delete(metaKey(tp), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}, []string{"entries without partition meta"}, false},
		{"overlapping entry", func(t *testing.T, w *WAL) {
			put(t, w, entryKey(tp, 7), good(7, 8))
		}, []string{"entry overlaps the previous one, which ends at offset 9", "partition meta (entries 3"}, false},
		{"malformed key", func(t *testing.T, w *WAL) {
			put(t, w, []byte{prefixEntry, 'a'}, good(0, 1))
		}, []string{"malformed key"}, false},
	}
	for _, c := range metaCases {
		t.Run(c.name, func(t *testing.T) {
			w, fs, _ := setup(t)
			c.damage(t, w)
			rep, err := w.Verify()
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Corruptions) != len(c.reason) {
				t.Fatalf("verify reports %v, want %d corruptions", rep.Corruptions, len(c.reason))
			}
			for i, r := range c.reason {
				ce := rep.Corruptions[i]
				if !strings.Contains(ce.Error(), r) {
					t.Errorf("corruption %d: %v, want %q", i, ce, r)
				}
				if r != "malformed key" && (ce.Topic != tp.Topic || ce.Partition != tp.Partition) {
					t.Errorf("corruption %d names %s/%d, want %s", i, ce.Topic, ce.Partition, tp)
				}
			}
			mustClose(t, w)
			w, err = Open("wal", testOptions(t, fs))
			if c.open {
				var ce *CorruptionError
				if !errors.As(err, &ce) || !strings.Contains(ce.Reason, "partition meta") || ce.Topic != tp.Topic {
					t.Fatalf("open with a damaged meta: %v, want a *CorruptionError naming it", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			mustClose(t, w)
		})
	}
}

// TestCorruptionInSSTable flips one byte in the middle of an sstable on a
// real disk. Pebble's block checksum must catch it and the WAL must report
// it as a *CorruptionError (wrapping Pebble's error, naming the file) from
// Open, Verify or Read, never succeed silently or panic.
func TestCorruptionInSSTable(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, vfs.Default)
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	tp := TopicPartition{Topic: "a", Partition: 0}
	appendOrders(t, w, tp, 2000, smallEntry)
	if err := w.db.Flush(); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)

	sst := largestSST(t, dir)
	flipMiddleBit(t, sst)

	check := func(what string, err error) {
		t.Helper()
		var ce *CorruptionError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: %v (%T), want a *CorruptionError", what, err, err)
		}
		if ce.Partition != -1 || !pebble.IsCorruptionError(ce.Err) || ce.File != sst {
			t.Errorf("%s: %+v, want Pebble's corruption in %s", what, ce, sst)
		}
	}
	w, err = Open(dir, opts)
	if err != nil {
		check("open", err)
		return
	}
	defer mustClose(t, w)
	rep, err := w.Verify()
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(rep.Corruptions) == 0 {
		t.Fatalf("verify found nothing wrong after a byte flip in %s", sst)
	}
	check("verify", rep.Corruptions[0])
	if msg := rep.Corruptions[0].Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "checksum mismatch") {
		t.Errorf("message %q: want one line with Pebble's reason", msg)
	}
	_, err = w.Read(nil, 1<<20, func(Entry) error { return nil })
	check("read", err)
	// The WAL stays usable for appends: damage to old data is reported, not
	// fatal.
	mustAppend(t, w, TopicPartition{Topic: "b", Partition: 0}, recs(0, 3))
}

// TestCorruptionInLogFile flips one byte in the middle of Pebble's log
// file, where the appended entries live until a memtable flush. That is
// not a torn tail: acknowledged entries follow the damage. Open must
// report it as a *CorruptionError, or else every acknowledged record
// must still be readable; silently dropping what follows the damage
// would lose acknowledged data.
func TestCorruptionInLogFile(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, vfs.Default)
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	tp := TopicPartition{Topic: "a", Partition: 0}
	appendOrders(t, w, tp, 2000, bigEntry)
	mustClose(t, w)
	log, size := largestFile(dir, "*.log")
	if size < 256<<10 {
		t.Fatalf("largest log file is %d bytes: the appends were flushed, the test needs them in the log", size)
	}
	flipMiddleBit(t, log)
	w, err = Open(dir, opts)
	if err != nil {
		var ce *CorruptionError
		if !errors.As(err, &ce) || !pebble.IsCorruptionError(ce.Err) {
			t.Fatalf("open: %v (%T), want a *CorruptionError", err, err)
		}
		t.Logf("open reports: %v", err)
		return
	}
	defer mustClose(t, w)
	entries, _ := readAll(t, w, nil)
	if got := offsetsOf(entries, tp); !equalOffsets(got, span(0, 1999)) {
		t.Errorf("open succeeded after damage in the middle of the log but holds %d of 2000 acknowledged records (high water %d)", len(got), w.HighWater(tp))
	}
}

// flipMiddleBit flips the low bit of the middle byte of file and returns
// the damaged content.
func flipMiddleBit(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// blobWAL writes, on the real disk in dir, a/0's offsets 0..1999 in
// entries of bigEntry records, whose values go to a blob file at the
// flush, and b/0's offsets 0..9 in one small entry that stays in the
// sstable. It returns the path of the one blob file.
func blobWAL(t *testing.T, dir string) string {
	t.Helper()
	w, err := Open(dir, testOptions(t, vfs.Default))
	if err != nil {
		t.Fatal(err)
	}
	appendOrders(t, w, TopicPartition{Topic: "a", Partition: 0}, 2000, bigEntry)
	mustAppend(t, w, TopicPartition{Topic: "b", Partition: 0}, recs(0, 9))
	if err := w.db.Flush(); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
	blobs, _ := filepath.Glob(filepath.Join(dir, "*.blob"))
	if len(blobs) != 1 {
		t.Fatalf("the flush wrote %d blob files (%v), the test needs one", len(blobs), blobs)
	}
	if _, size := largestFile(dir, "*.sst"); size > 16<<10 {
		t.Fatalf("the sstable is %d bytes: the entries' values were not separated", size)
	}
	return blobs[0]
}

// checkBlobDamage checks that err is a *CorruptionError naming the
// damaged blob file and an entry of a/0 whose value it holds.
func checkBlobDamage(t *testing.T, what string, err error, blob string) *CorruptionError {
	t.Helper()
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("%s: %v (%T), want a *CorruptionError", what, err, err)
	}
	if ce.File != blob || ce.Topic != "a" || ce.Partition != 0 || ce.FirstOffset < 0 || ce.FirstOffset%bigEntry != 0 {
		t.Errorf("%s: %+v, want an entry of a/0 and the file %s", what, ce, blob)
	}
	if msg := ce.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, blob) || !strings.Contains(msg, fmt.Sprintf("a/0 entry at offset %d", ce.FirstOffset)) {
		t.Errorf("%s: message %q: want one line naming the entry and %s", what, msg, blob)
	}
	return ce
}

// TestCorruptionInBlobFile flips one byte in the middle of the blob file
// that holds the entries' values. The entries' keys still read; verify
// and read name the entry and the blob file's path, verify goes on past
// it, and a read from past it reads on.
func TestCorruptionInBlobFile(t *testing.T) {
	dir := t.TempDir()
	blob := blobWAL(t, dir)
	flipMiddleBit(t, blob)
	a, b := TopicPartition{Topic: "a", Partition: 0}, TopicPartition{Topic: "b", Partition: 0}

	w, err := Open(dir, testOptions(t, vfs.Default))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer mustClose(t, w)
	rep, err := w.Verify()
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(rep.Corruptions) == 0 {
		t.Fatalf("verify found nothing wrong after a byte flip in %s", blob)
	}
	damaged := map[int64]bool{}
	for i, ce := range rep.Corruptions {
		checkBlobDamage(t, fmt.Sprintf("verify %d", i), ce, blob)
		damaged[ce.FirstOffset] = true
		if !strings.Contains(ce.Error(), "checksum mismatch") {
			t.Errorf("verify %d: %q does not give Pebble's reason", i, ce.Error())
		}
	}
	// Every other entry was read: the damaged ones are all a/0's 40 miss.
	if want := 40 + 1 - len(damaged); rep.Entries != want || len(damaged) != len(rep.Corruptions) {
		t.Errorf("verify read %d entries and reports %v; want %d entries and each damaged one once", rep.Entries, rep.Corruptions, want)
	}

	first := rep.Corruptions[0].FirstOffset
	var passed []int64
	_, err = w.Read(nil, 1<<20, func(e Entry) error {
		for _, r := range e.Records {
			if e.TopicPartition == a {
				passed = append(passed, r.Offset)
			}
		}
		return nil
	})
	if ce := checkBlobDamage(t, "read", err, blob); ce.FirstOffset != first {
		t.Errorf("read stops at the entry at %d, verify's first is at %d", ce.FirstOffset, first)
	}
	if !equalOffsets(passed, span(0, first-1)) {
		t.Errorf("read passed %d records of a/0 before the damage at %d", len(passed), first)
	}
	// A cursor past the damaged entries reads on.
	last := int64(0)
	for off := range damaged {
		last = max(last, off)
	}
	entries, _ := readAll(t, w, Cursor{a: last + bigEntry})
	if got := offsetsOf(entries, a); !equalOffsets(got, span(last+bigEntry, 1999)) {
		t.Errorf("read past the damage: %d records", len(got))
	}
	if got := offsetsOf(entries, b); !equalOffsets(got, span(0, 9)) {
		t.Errorf("read of the other partition: %v", got)
	}
	// Damage to old data is reported, not fatal: appends go on.
	mustAppend(t, w, b, recs(10, 12))
}

// TestCorruptionUnreadableBlobFile makes the blob file unreadable as a
// whole. Pebble panics when it cannot open a blob file, so the WAL checks
// them at open: a read-write open refuses, naming the file; a read-only
// open (verify, repair) reports every entry whose value is in it and
// reads the rest.
func TestCorruptionUnreadableBlobFile(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, blob string)
	}{
		{"truncated", func(t *testing.T, blob string) {
			fi, err := os.Stat(blob)
			if err == nil {
				err = os.Truncate(blob, fi.Size()/2)
			}
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"zeroed", func(t *testing.T, blob string) {
			data, err := os.ReadFile(blob)
			if err == nil {
				err = os.WriteFile(blob, make([]byte, len(data)), 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"footer flipped", func(t *testing.T, blob string) {
			data, err := os.ReadFile(blob)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)-10] ^= 0x01
			if err := os.WriteFile(blob, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"missing", func(t *testing.T, blob string) {
			if err := os.Remove(blob); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			blob := blobWAL(t, dir)
			c.damage(t, blob)

			_, err := Open(dir, testOptions(t, vfs.Default))
			var ce *CorruptionError
			if !errors.As(err, &ce) || ce.File != blob || !strings.Contains(err.Error(), blob) {
				t.Fatalf("open: %v, want a *CorruptionError naming %s", err, blob)
			}

			opts := testOptions(t, vfs.Default)
			opts.ReadOnly = true
			w, err := Open(dir, opts)
			if err != nil {
				t.Fatalf("read-only open: %v", err)
			}
			defer mustClose(t, w)
			rep, err := w.Verify()
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if len(rep.Corruptions) != 40 || rep.Entries != 1 || rep.Records != 10 {
				t.Fatalf("verify: %d entries, %d records, %d damaged; want b/0's 1 entry of 10 records and a/0's 40 entries damaged",
					rep.Entries, rep.Records, len(rep.Corruptions))
			}
			for i, ce := range rep.Corruptions {
				if checkBlobDamage(t, fmt.Sprintf("verify %d", i), ce, blob); ce.FirstOffset != int64(i)*bigEntry {
					t.Errorf("verify %d names the entry at %d, want %d", i, ce.FirstOffset, i*bigEntry)
				}
			}
			_, err = w.Read(nil, 1<<20, func(Entry) error { return nil })
			checkBlobDamage(t, "read", err, blob)
			entries, _ := readAll(t, w, Cursor{{Topic: "a", Partition: 0}: 2000})
			if got := offsetsOf(entries, TopicPartition{Topic: "b", Partition: 0}); !equalOffsets(got, span(0, 9)) {
				t.Errorf("read of the other partition: %v", got)
			}
		})
	}
}
