package wal

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestTopicIDDurable: a partition's topic ID, once recorded, survives a
// reopen, appends and truncations; recording it for a partition the WAL
// holds nothing of creates no state.
func TestTopicIDDurable(t *testing.T) {
	fs := vfs.NewMem()
	w := mustOpen(t, fs)
	tp := TopicPartition{Topic: "orders", Partition: 2}
	id := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	if err := w.SetTopicID(tp, id); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.TopicID(tp); ok {
		t.Fatal("SetTopicID created state for a partition without records")
	}
	mustAppend(t, w, tp, recs(0, 9))
	if got, ok := w.TopicID(tp); !ok || got != ([16]byte{}) {
		t.Fatalf("topic ID before SetTopicID: %x %v, want zero", got, ok)
	}
	if err := w.SetTopicID(tp, id); err != nil {
		t.Fatal(err)
	}
	w = reopen(t, w, fs)
	if got, _ := w.TopicID(tp); got != id {
		t.Fatalf("topic ID after reopen: %x, want %x", got, id)
	}
	mustAppend(t, w, tp, recs(10, 19))
	if _, err := w.Truncate(Cursor{tp: 15}); err != nil {
		t.Fatal(err)
	}
	w = reopen(t, w, fs)
	defer mustClose(t, w)
	if got, _ := w.TopicID(tp); got != id || w.HighWater(tp) != 19 {
		t.Fatalf("after an append and a truncation: topic ID %x, high water %d; want %x, 19", got, w.HighWater(tp), id)
	}
}

// TestMetaVersion1Upgrade: a WAL whose partition meta is version 1 (no
// topic ID, written before version 2) opens with its high water and
// counts, and is written as version 2 at the partition's next append.
func TestMetaVersion1Upgrade(t *testing.T) {
	fs := vfs.NewMem()
	w := mustOpen(t, fs)
	tp := TopicPartition{Topic: "orders", Partition: 0}
	mustAppend(t, w, tp, recs(0, 4))
	m := w.parts[tp].meta
	v1 := []byte{metaVersionV1}
	v1 = binary.BigEndian.AppendUint64(v1, uint64(m.highWater))
	v1 = binary.BigEndian.AppendUint64(v1, m.bytes)
	v1 = binary.BigEndian.AppendUint64(v1, m.entries)
	v1 = binary.BigEndian.AppendUint64(v1, m.records)
	v1 = binary.BigEndian.AppendUint32(v1, checksum(v1))
	if err := w.db.Set(metaKey(tp), v1, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	w = reopen(t, w, fs)
	defer func() { mustClose(t, w) }()
	if got, ok := w.TopicID(tp); !ok || got != ([16]byte{}) || w.HighWater(tp) != 4 {
		t.Fatalf("version 1 meta read as topic ID %x (%v), high water %d", got, ok, w.HighWater(tp))
	}
	if res := mustAppend(t, w, tp, recs(3, 7)); res.Appended != 3 || res.Duplicates != 2 {
		t.Fatalf("append over a version 1 meta: %+v", res)
	}
	v, closer, err := w.db.Get(metaKey(tp))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if len(v) != metaLen || v[0] != metaVersion {
		t.Fatalf("meta after the append: version %d, %d bytes; want version %d, %d bytes", v[0], len(v), metaVersion, metaLen)
	}
	if got, err := decodeMeta(tp, v); err != nil || got.highWater != 7 || got.records != 8 {
		t.Fatalf("upgraded meta %+v, %v", got, err)
	}
}

// TestMetaUnknownVersion: a meta of a version this WAL does not know is
// corruption naming the version.
func TestMetaUnknownVersion(t *testing.T) {
	tp := TopicPartition{Topic: "orders", Partition: 0}
	v := encodeMeta(partitionMeta{highWater: 3})
	v[0] = 3
	if _, err := decodeMeta(tp, v); err == nil || !strings.Contains(err.Error(), "unknown format version 3") {
		t.Fatalf("decodeMeta of version 3: %v", err)
	}
}
