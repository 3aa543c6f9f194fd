package wal

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/offload/offload/internal/memflush"
)

// TestSlowWritesKeepMemtablesSmall: a WAL appended to slowly flushes its
// memtable every memflush.Interval, so Pebble does not grow it, where the
// same appends within one interval double it at each flush.
func TestSlowWritesKeepMemtablesSmall(t *testing.T) {
	const entries = 40
	memtables := func(slow bool) (reserved uint64, flushes int64) {
		var mu sync.Mutex
		now := testNow
		opts := testOptions(t, vfs.NewMem())
		opts.MemTableSize = 4 << 20
		opts.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		w, err := Open("wal", opts)
		if err != nil {
			t.Fatal(err)
		}
		defer mustClose(t, w)
		tp := TopicPartition{Topic: "t", Partition: 0}
		for off := range int64(entries) {
			// ~40 KB an entry: under half of Pebble's first memtable (256 KiB).
			mustAppend(t, w, tp, []Record{{Offset: off, Value: bytes.Repeat([]byte{'x'}, 40_000)}})
			if slow {
				mu.Lock()
				now = now.Add(memflush.Interval)
				mu.Unlock()
			}
		}
		// The flushes run on Pebble's goroutines: wait for them, and in
		// the slow WAL for the last one asked for to begin (until then its
		// memtable waits in the queue, counted, with no flush in progress).
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			m := w.db.Metrics()
			if m.Flush.NumInProgress == 0 && (!slow || m.MemTable.Count == 1) || time.Now().After(deadline) {
				return m.MemTable.Size, m.Flush.Count
			}
		}
	}
	slowSize, slowFlushes := memtables(true)
	fastSize, fastFlushes := memtables(false)
	t.Logf("slow: %d flushes, memtables %d bytes; fast: %d flushes, memtables %d bytes", slowFlushes, slowSize, fastFlushes, fastSize)
	if slowFlushes == 0 {
		t.Errorf("appended slowly: no flush") // Pebble flushes memtables queued together in one
	}
	if slowSize > 2*256<<10 {
		t.Errorf("appended slowly: memtables of %d bytes, want at most two of Pebble's first size (256 KiB)", slowSize)
	}
	if fastSize <= 2*slowSize {
		t.Errorf("appended fast: memtables of %d bytes, want them grown past twice the slow WAL's %d", fastSize, slowSize)
	}
}
