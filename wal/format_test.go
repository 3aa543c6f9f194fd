package wal

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestValidTopic checks Kafka's topic name rule at its edges: the length
// limits, the names "." and "..", and characters outside a-z A-Z 0-9 . _ -.
func TestValidTopic(t *testing.T) {
	for _, tc := range []struct {
		name  string
		topic string
		want  bool
	}{
		{"empty", "", false},
		{"one char", "a", true},
		{"dot", ".", false},
		{"dot dot", "..", false},
		{"three dots", "...", true},
		{"leading dot", ".orders", true},
		{"all classes", "Shop_orders-EU.v2", true},
		{"249 chars", strings.Repeat("a", 249), true},
		{"250 chars", strings.Repeat("a", 250), false},
		{"slash", "orders/eu", false},
		{"space", "orders eu", false},
		{"colon", "orders:eu", false},
		{"NUL", "orders\x00", false},
		{"non-ASCII", "bestellungen-ä", false},
	} {
		if got := ValidTopic(tc.topic); got != tc.want {
			t.Errorf("%s: ValidTopic(%q) = %v, want %v", tc.name, tc.topic, got, tc.want)
		}
	}
}

// TestFormatLayout reads an encoded entry and meta at the byte positions
// doc.go gives as numbers, so a named position that drifts from the
// documented layout fails here.
func TestFormatLayout(t *testing.T) {
	be := binary.BigEndian
	v := encodeEntry(nil, 1234, []Record{{Offset: 7, Timestamp: 99, Key: []byte("k"), Value: []byte("value")}})
	if v[0] != 1 || be.Uint64(v[1:]) != 1234 || be.Uint64(v[9:]) != 7 || be.Uint32(v[17:]) != 1 ||
		be.Uint32(v[21:]) != checksum(v[:21]) {
		t.Fatalf("entry header does not match doc.go: % x", v[:25])
	}
	rec := v[25:]
	if l := be.Uint32(rec); int(l) != len(rec)-8 || be.Uint32(rec[4:]) != checksum(rec[8:]) {
		t.Fatalf("record header does not match doc.go: % x", rec[:8])
	}
	body := rec[8:]
	if be.Uint64(body) != 7 || be.Uint64(body[8:]) != 99 || body[16] != 2 || string(body[17:18]) != "k" || string(body[18:]) != "value" {
		t.Fatalf("record body does not match doc.go: % x", body)
	}
	var recs []Record
	h, err := decodeEntry(TopicPartition{Topic: "t"}, 7, v, &recs)
	if err != nil || h != (entryHeader{appendTime: 1234, lastOffset: 7, count: 1}) || len(recs) != 1 ||
		recs[0].Offset != 7 || recs[0].Timestamp != 99 || string(recs[0].Key) != "k" || string(recs[0].Value) != "value" {
		t.Fatalf("decodeEntry = %+v, %+v, %v", h, recs, err)
	}

	m := partitionMeta{highWater: 41, bytes: 500, entries: 3, records: 9, topicID: [16]byte{15: 0xab}}
	mv := encodeMeta(m)
	if len(mv) != 53 || mv[0] != 2 || be.Uint64(mv[1:]) != 41 || be.Uint64(mv[9:]) != 500 || be.Uint64(mv[17:]) != 3 ||
		be.Uint64(mv[25:]) != 9 || mv[48] != 0xab || be.Uint32(mv[49:]) != checksum(mv[:49]) {
		t.Fatalf("meta value does not match doc.go: % x", mv)
	}
	got, err := decodeMeta(TopicPartition{Topic: "t"}, mv)
	if err != nil || got != m {
		t.Fatalf("decodeMeta = %+v, %v; want %+v", got, err, m)
	}
	// Version 1: the CRC of bytes [0, 33) where version 2's topic ID starts.
	v1 := append([]byte{1}, mv[1:33]...)
	v1 = be.AppendUint32(v1, checksum(v1))
	m.topicID = [16]byte{}
	if got, err := decodeMeta(TopicPartition{Topic: "t"}, v1); err != nil || got != m {
		t.Fatalf("decodeMeta(version 1) = %+v, %v; want %+v", got, err, m)
	}
}

// TestDecodeHeader: the header alone is checked by its own checksum, so
// truncation reads an entry's last offset and count past damage in its
// records, and never past damage in its header.
func TestDecodeHeader(t *testing.T) {
	tp := TopicPartition{Topic: "t"}
	v := encodeEntry(nil, 1234, []Record{{Offset: 7, Value: []byte("a")}, {Offset: 9, Value: []byte("b")}})
	body := slices.Clone(v)
	body[len(body)-1] ^= 0xff
	if _, err := decodeEntry(tp, 7, body, nil); err == nil {
		t.Fatal("decodeEntry accepted a damaged record")
	}
	if h, err := decodeHeader(tp, 7, body); err != nil || h != (entryHeader{appendTime: 1234, lastOffset: 9, count: 2}) {
		t.Fatalf("decodeHeader of a damaged record's entry = %+v, %v", h, err)
	}
	for _, pos := range []int{entryAppendTimeAt, entryLastOffsetAt, entryCountAt, entryCRCAt} {
		head := slices.Clone(v)
		head[pos] ^= 0x01
		var ce *CorruptionError
		if _, err := decodeHeader(tp, 7, head); !errors.As(err, &ce) || ce.Record != -1 || ce.FirstOffset != 7 {
			t.Errorf("byte %d of the header flipped: err = %v, want a *CorruptionError of the header", pos, err)
		}
	}
	if _, err := decodeHeader(tp, 7, v[:entryHeaderLen-1]); err == nil {
		t.Error("decodeHeader accepted a short value")
	}
}

// TestDecodeEntryAllocatesOnce: decoding an entry makes its record slice
// in one allocation, sized by the header's count.
func TestDecodeEntryAllocatesOnce(t *testing.T) {
	tp := TopicPartition{Topic: "orders"}
	in := recs(0, 1999)
	v := encodeEntry(nil, 1234, in)
	var out []Record
	allocs := testing.AllocsPerRun(20, func() {
		out = nil
		if _, err := decodeEntry(tp, 0, v, &out); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 1 || len(out) != len(in) {
		t.Errorf("decoding %d records took %.0f allocations and gave %d records, want 1 and %d", len(in), allocs, len(out), len(in))
	}
}
