package wal

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// writeUnseparated writes tp's offsets 0..n-1 in entries of bigEntry
// records into a new WAL in dir the way offload wrote it before value
// separation: the same entries and metas, Pebble's options without a
// value separation policy. The first half is flushed to an sstable, the
// rest stays in Pebble's log.
func writeUnseparated(t *testing.T, dir string, tp TopicPartition, n int64) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{FS: vfs.Default, FormatMajorVersion: pebble.FormatNewest,
		Logger: pebbleLogger{&WAL{opts: testOptions(t, vfs.Default)}}})
	if err != nil {
		t.Fatal(err)
	}
	m := partitionMeta{highWater: -1}
	for first := int64(0); first < n; first += bigEntry {
		rs := make([]Record, bigEntry)
		for j := range rs {
			off := first + int64(j)
			rs[j] = Record{Offset: off, Timestamp: off, Key: []byte("order"), Value: jsonish(off, 300)}
		}
		k, v := entryKey(tp, first), encodeEntry(nil, testNow.UnixNano(), rs)
		m.highWater = rs[len(rs)-1].Offset
		m.bytes += uint64(len(k) + len(v))
		m.entries++
		m.records += uint64(len(rs))
		b := db.NewBatch()
		_ = b.Set(k, v, nil)
		_ = b.Set(metaKey(tp), encodeMeta(m), nil)
		if err := db.Apply(b, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if first+bigEntry == n/2 {
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenWrittenWithoutSeparation: a WAL written before value
// separation, its values in an sstable and in Pebble's log, opens with it,
// reads and verifies every entry, and keeps working beside new entries
// whose values go to blob files, through a compaction, a truncation and a
// reopen. (The old values stay in the sstables until they are consumed.)
func TestOpenWrittenWithoutSeparation(t *testing.T) {
	dir := t.TempDir()
	tp := TopicPartition{Topic: "a", Partition: 0}
	writeUnseparated(t, dir, tp, 2000)
	if blobs, _ := filepath.Glob(filepath.Join(dir, "*.blob")); len(blobs) != 0 {
		t.Fatalf("the WAL written without separation has blob files: %v", blobs)
	}
	w, err := Open(dir, testOptions(t, vfs.Default))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer func() { mustClose(t, w) }()
	check := func(what string, from, to int64) {
		t.Helper()
		v, err := w.Verify()
		if err != nil || len(v.Corruptions) > 0 || int64(v.Records) != to-from+1 {
			t.Fatalf("%s: verify: %d records, %v %v; want %d", what, v.Records, err, v.Corruptions, to-from+1)
		}
		entries, _ := readAll(t, w, nil)
		if got := offsetsOf(entries, tp); !equalOffsets(got, span(from, to)) {
			t.Fatalf("%s: read %d records, want %d..%d", what, len(got), from, to)
		}
		if hw := w.HighWater(tp); hw != to {
			t.Fatalf("%s: high water %d, want %d", what, hw, to)
		}
	}
	check("reopened", 0, 1999)

	appendOrders(t, w, tp, 4000, bigEntry) // 0..1999 are dropped as a re-fetch
	if err := w.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if blobs, _ := filepath.Glob(filepath.Join(dir, "*.blob")); len(blobs) == 0 {
		t.Fatalf("new entries were not separated into blob files")
	}
	check("appended", 0, 3999)
	if err := w.db.Compact(context.Background(), []byte{prefixEntry}, []byte{prefixMeta + 1}, false); err != nil {
		t.Fatal(err)
	}
	check("compacted", 0, 3999)
	if _, err := w.Truncate(Cursor{tp: 3000}); err != nil {
		t.Fatal(err)
	}
	w = reopenDir(t, w, dir)
	check("truncated and reopened", 3000, 3999)
}

// reopenDir closes w and opens the WAL in dir on the real disk again.
func reopenDir(t *testing.T, w *WAL, dir string) *WAL {
	t.Helper()
	mustClose(t, w)
	w, err := Open(dir, testOptions(t, vfs.Default))
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	return w
}

// TestBlobGarbageBounded appends and consumes (reads and truncates, as
// the engine does) far more than the WAL holds at any time, with a small
// memtable so that Pebble flushes and compacts throughout: the files'
// bytes follow what the WAL holds, not what it ever held, because a blob
// file goes once compactions have dropped every key referencing it.
// (Measured: blob files at most ~6.7 MB, the directory at most ~23 MB,
// ~26 MB without value separation, for ~127 MB written and ~2 MB held.)
func TestBlobGarbageBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 128 MB")
	}
	fs := vfs.NewMem()
	opts := testOptions(t, fs)
	opts.MemTableSize = 4 << 20
	w, err := Open("wal", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, w)
	const (
		partitions = 8
		rounds     = 480 // of one 100-record entry (~33 KB) per partition: ~128 MB
		lag        = 8   // rounds appended and not consumed yet: ~2 MB held
	)
	cur := Cursor{}
	var written int64
	var peakDisk, peakBlob uint64
	for r := int64(0); r < rounds; r++ {
		for p := int32(0); p < partitions; p++ {
			res := mustAppend(t, w, TopicPartition{Topic: "orders", Partition: p}, benchBatch(r*100, 100))
			written += int64(res.Bytes)
		}
		if r < lag {
			continue
		}
		next, err := w.Read(cur, partitions*100, func(Entry) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Truncate(next); err != nil {
			t.Fatal(err)
		}
		cur = next
		peakDisk = max(peakDisk, w.DiskUsage())
		peakBlob = max(peakBlob, w.db.Metrics().BlobFiles.Local.LiveSize)
	}
	if held := w.Bytes(); held > 3<<20 || written < 120<<20 {
		t.Fatalf("the WAL holds %d bytes after %d written: the test did not consume as it should", held, written)
	}
	if peakBlob == 0 {
		t.Fatalf("no blob file was ever written")
	}
	end := w.DiskUsage()
	t.Logf("written %d bytes, held %d; blob files at most %d bytes; directory at most %d bytes, %d at the end",
		written, w.Bytes(), peakBlob, peakDisk, end)
	if limit := 4 * opts.MemTableSize; peakBlob > limit {
		t.Errorf("blob files held %d bytes, more than %d: their garbage is not reclaimed", peakBlob, limit)
	}
	if peakDisk > 48<<20 || end > 32<<20 {
		t.Errorf("the directory reached %d bytes and ends at %d for ~2 MB held: garbage is not reclaimed", peakDisk, end)
	}
}

// TestBlobRewritesWaitForVerify: Pebble may rewrite blob files only
// while no damage is known: not before a Verify found none, and not after
// a read met damage in a blob file (valueSeparationPolicy).
func TestBlobRewritesWaitForVerify(t *testing.T) {
	dir := t.TempDir()
	blob := blobWAL(t, dir)
	w, err := Open(dir, testOptions(t, vfs.Default))
	if err != nil {
		t.Fatal(err)
	}
	rewrites := func(what string, want bool) {
		t.Helper()
		if got := w.valueSeparationPolicy().TargetGarbageRatio < 1; got != want {
			t.Errorf("%s: blob file rewrites allowed %v, want %v", what, got, want)
		}
	}
	rewrites("opened", false)
	if v, err := w.Verify(); err != nil || len(v.Corruptions) > 0 {
		t.Fatalf("verify: %v %v", err, v.Corruptions)
	}
	rewrites("verified", true)
	mustClose(t, w)

	flipMiddleBit(t, blob)
	if w, err = Open(dir, testOptions(t, vfs.Default)); err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, w)
	if v, err := w.Verify(); err != nil || len(v.Corruptions) == 0 {
		t.Fatalf("verify of a damaged blob file: %v %v", err, v.Corruptions)
	}
	rewrites("damage verified", false)
	w.blobRewrites.Store(true) // as if the damage came after a clean verify
	if _, err := w.Read(nil, 1<<20, func(Entry) error { return nil }); err == nil {
		t.Fatal("read of a damaged blob file succeeded")
	}
	rewrites("damage read", false)
}
