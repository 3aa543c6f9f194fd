package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// fixChecksums rewrites the header and record checksums of v wherever its
// lengths allow, so the fuzzer reaches the checks behind the checksums
// instead of stopping at the first one.
func fixChecksums(v []byte) {
	if len(v) < entryHeaderLen {
		return
	}
	binary.BigEndian.PutUint32(v[21:], checksum(v[:21]))
	for pos := entryHeaderLen; len(v)-pos >= recordHeaderLen; {
		l := int(binary.BigEndian.Uint32(v[pos:]))
		b := pos + recordHeaderLen
		if l > len(v)-b {
			return
		}
		binary.BigEndian.PutUint32(v[pos+4:], checksum(v[b:b+l]))
		pos = b + l
	}
}

// FuzzDecodeEntry checks that decodeEntry never panics, that a rejected
// value yields a *CorruptionError pointing inside it, that checking alone
// agrees with decoding, and that an accepted value re-encodes to exactly
// its own bytes (one encoding per entry).
//
//	go test ./wal -run '^$' -fuzz FuzzDecodeEntry -fuzztime 60s
func FuzzDecodeEntry(f *testing.F) {
	seeds := [][]Record{
		recs(0, 0),
		recs(5, 9),
		{{Offset: 7, Timestamp: -1, Key: nil, Value: nil}},
		{{Offset: 7, Key: []byte{}, Value: []byte("x")}, {Offset: 9, Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 200)}},
		{{Offset: 1 << 40, Key: bytes.Repeat([]byte("k"), 130), Value: []byte(`{"a":1}`)}},
	}
	for _, rs := range seeds {
		v := encodeEntry(nil, testNow.UnixNano(), rs)
		f.Add(v, rs[0].Offset, false)
		f.Add(v[:len(v)-1], rs[0].Offset, true)
		f.Add(append(append([]byte(nil), v...), 0), rs[0].Offset, true)
	}
	// A key length of 2 written in two bytes (0x83 0x00): well framed, but
	// not the one encoding encodeEntry writes.
	f.Add(rawEntry(5, 1, body(5, []byte{0x83, 0x00}, "k5", "v5")), int64(5), false)
	f.Add([]byte{}, int64(0), false)
	f.Add(make([]byte, entryHeaderLen), int64(0), true)

	tp := TopicPartition{Topic: "fuzz", Partition: 3}
	f.Fuzz(func(t *testing.T, v []byte, firstOffset int64, fix bool) {
		if fix {
			fixChecksums(v)
		}
		var recs []Record
		h, err := decodeEntry(tp, firstOffset, v, &recs)
		_, checkErr := decodeEntry(tp, firstOffset, v, nil)
		if (err == nil) != (checkErr == nil) || err != nil && err.Error() != checkErr.Error() {
			t.Fatalf("decoding says %v, checking alone says %v", err, checkErr)
		}
		if err != nil {
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *CorruptionError", err, err)
			}
			if ce.Topic != tp.Topic || ce.Partition != tp.Partition || ce.FirstOffset != firstOffset ||
				ce.Pos < 0 || ce.Pos > len(v) || ce.Record < -1 {
				t.Fatalf("corruption %+v does not point inside the %d-byte value", *ce, len(v))
			}
			return
		}
		if h.count != len(recs) || len(recs) == 0 || recs[0].Offset != firstOffset || recs[len(recs)-1].Offset != h.lastOffset {
			t.Fatalf("accepted header %+v does not match %d records", h, len(recs))
		}
		for i := 1; i < len(recs); i++ {
			if recs[i].Offset <= recs[i-1].Offset {
				t.Fatalf("accepted offsets out of order: %d then %d", recs[i-1].Offset, recs[i].Offset)
			}
		}
		if n := encodedLen(recs); n != len(v) {
			t.Fatalf("encodedLen %d, value is %d bytes", n, len(v))
		}
		if again := encodeEntry(nil, h.appendTime, recs); !bytes.Equal(again, v) {
			t.Fatalf("accepted value re-encodes differently:\n%x\n%x", v, again)
		}
	})
}
