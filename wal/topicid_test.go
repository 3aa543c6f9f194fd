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

// TestIncarnations: a topic created again under its name (a new topic ID)
// gets the next incarnation; its records from offset 0 are kept beside the
// first incarnation's higher offsets, both are read in order under their
// own keys, the incarnation survives a reopen before its first append, and
// the first incarnation's state is dropped once it is consumed (and not
// before), the latest one's never.
func TestIncarnations(t *testing.T) {
	fs := vfs.NewMem()
	w := mustOpen(t, fs)
	old := TopicPartition{Topic: "orders", Partition: 0}
	idA := [16]byte{0xa}
	idB := [16]byte{0xb}
	mustAppend(t, w, old, recs(0, 9))
	if err := w.SetTopicID(old, idA); err != nil {
		t.Fatal(err)
	}
	if inc, id := w.Incarnation("orders"); inc != 0 || id != idA {
		t.Fatalf("Incarnation before the recreation: %d %x, want 0 %x", inc, id, idA)
	}
	inc, err := w.Recreate("orders", idB, []int32{0, 1})
	if err != nil || inc != 1 {
		t.Fatalf("Recreate: %d, %v; want 1", inc, err)
	}
	w = reopen(t, w, fs)
	if inc, id := w.Incarnation("orders"); inc != 1 || id != idB {
		t.Fatalf("Incarnation after a reopen: %d %x, want 1 %x", inc, id, idB)
	}
	if inc, id := w.Incarnation("payments"); inc != 0 || id != ([16]byte{}) {
		t.Fatalf("Incarnation of an unknown topic: %d %x, want 0 and no ID", inc, id)
	}
	cur := TopicPartition{Topic: "orders", Incarnation: 1, Partition: 0}
	if res := mustAppend(t, w, cur, recs(0, 4)); res.Appended != 5 || res.Duplicates != 0 {
		t.Fatalf("append of the new incarnation's offsets 0-4: %+v, want 5 appended, none dropped", res)
	}
	if res := mustAppend(t, w, cur, recs(3, 6)); res.Appended != 2 || res.Duplicates != 2 {
		t.Fatalf("re-fetch in the new incarnation: %+v, want 2 appended, 2 dropped", res)
	}
	entries, next := readAll(t, w, nil)
	if got := offsetsOf(entries, old); !equalOffsets(got, span(0, 9)) {
		t.Fatalf("first incarnation read %v, want 0-9", got)
	}
	if got := offsetsOf(entries, cur); !equalOffsets(got, span(0, 6)) {
		t.Fatalf("second incarnation read %v, want 0-6", got)
	}
	if len(entries) == 0 || entries[0].TopicPartition != old {
		t.Fatalf("the first incarnation is not read first: %+v", entries)
	}
	// Half consumed: the first incarnation keeps its state.
	if _, err := w.Truncate(Cursor{old: 5, cur: 7}); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.TopicID(old); !ok || w.HighWater(old) != 9 {
		t.Fatalf("the first incarnation lost its state before it was consumed: high water %d", w.HighWater(old))
	}
	if _, err := w.Truncate(next); err != nil {
		t.Fatal(err)
	}
	w = reopen(t, w, fs)
	defer mustClose(t, w)
	if _, ok := w.TopicID(old); ok {
		t.Fatal("the consumed first incarnation's state was kept")
	}
	if w.HighWater(cur) != 6 {
		t.Fatalf("latest incarnation's high water %d, want 6", w.HighWater(cur))
	}
	// Partition 1 was registered by Recreate and never appended to: it
	// stays, as the latest incarnation.
	if id, ok := w.TopicID(TopicPartition{Topic: "orders", Incarnation: 1, Partition: 1}); !ok || id != idB {
		t.Fatalf("registered partition of the latest incarnation: %x %v, want %x", id, ok, idB)
	}
	checkAccounting(t, w)
}

// TestTopicKey: keys of later incarnations round-trip through the key
// encoding and TopicKey, and sort after the first incarnation's keys of
// the same topic and before the next topic's.
func TestTopicKey(t *testing.T) {
	a0 := TopicPartition{Topic: "a", Partition: 7}
	a2 := TopicPartition{Topic: "a", Incarnation: 2, Partition: 1}
	ab := TopicPartition{Topic: "a-", Partition: 0}
	keys := [][]byte{entryKey(a0, 99), entryKey(a2, 0), entryKey(ab, 0)}
	for i, k := range keys {
		if i > 0 && string(keys[i-1]) >= string(k) {
			t.Fatalf("key %d does not sort after key %d", i, i-1)
		}
	}
	for _, tp := range []TopicPartition{a0, a2, ab} {
		prefix, got, off, ok := decodeKey(entryKey(tp, 42))
		if !ok || prefix != prefixEntry || got != tp || off != 42 {
			t.Fatalf("entry key of %s decodes to %v %s %d", tp, ok, got, off)
		}
		if _, got, _, ok := decodeKey(metaKey(tp)); !ok || got != tp {
			t.Fatalf("meta key of %s decodes to %v %s", tp, ok, got)
		}
		topic, inc, err := ParseTopicKey(tp.TopicKey())
		if err != nil || topic != tp.Topic || inc != tp.Incarnation {
			t.Fatalf("ParseTopicKey(%q) = %q %d %v", tp.TopicKey(), topic, inc, err)
		}
	}
	if a2.String() != "a#2/1" {
		t.Fatalf("String = %q", a2.String())
	}
	// Incarnation 0 has one spelling: the first layout.
	if _, _, _, ok := decodeKey(append(topicKeyPrefix("a"), 0, 0, 0, 0, 0, 0, 0, 1)); ok {
		t.Fatal("a key naming incarnation 0 after the incarnation terminator decoded")
	}
	for _, bad := range []string{"a#0", "a#x", "a#01", "a#"} {
		if _, _, err := ParseTopicKey(bad); err == nil {
			t.Fatalf("ParseTopicKey(%q) accepted", bad)
		}
	}
}

func topicKeyPrefix(topic string) []byte {
	return append(append([]byte{prefixMeta}, topic...), termIncarnation)
}
