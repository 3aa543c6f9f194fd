package wal

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"strconv"
	"strings"
)

const (
	prefixEntry byte = 0x01
	prefixMeta  byte = 0x02

	// formatVersion is the entry value's version byte.
	formatVersion byte = 1
	// metaVersion is the version byte written in meta values: 2 added the
	// topic ID. Meta values of version 1 are still read (and written as
	// version 2 at the partition's next append or truncation).
	metaVersion   byte = 2
	metaVersionV1 byte = 1

	// crcLen is the width of every CRC32-Castagnoli in the format.
	crcLen = 4
)

// Entry header fields: byte positions inside an entry value (doc.go,
// "Entry value").
const (
	entryVersionAt    = 0
	entryAppendTimeAt = 1
	entryLastOffsetAt = 9
	entryCountAt      = 17
	entryCRCAt        = 21 // covers bytes [0, entryCRCAt)
	entryHeaderLen    = entryCRCAt + crcLen
)

// Record fields: byte positions inside a record's header, then inside its
// body (doc.go, "Entry value").
const (
	recordLenAt     = 0
	recordCRCAt     = 4 // covers the body
	recordHeaderLen = recordCRCAt + crcLen

	bodyOffsetAt    = 0
	bodyTimestampAt = 8
	bodyKeyLenAt    = 16
	// bodyMinLen is a body with a null key and an empty value: the
	// fixed fields and a one-byte key length.
	bodyMinLen = bodyKeyLenAt + 1
)

// Meta fields: byte positions inside a meta value (doc.go, "Meta value").
// Version 1 ends with its CRC where version 2's topic ID starts.
const (
	metaVersionAt   = 0
	metaHighWaterAt = 1
	metaBytesAt     = 9
	metaEntriesAt   = 17
	metaRecordsAt   = 25
	metaTopicIDAt   = 33
	metaCRCAt       = 49 // covers bytes [0, metaCRCAt)
	metaLen         = metaCRCAt + crcLen

	metaCRCAtV1 = metaTopicIDAt // covers bytes [0, metaCRCAtV1)
	metaLenV1   = metaCRCAtV1 + crcLen
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// TopicPartition names one Kafka partition of one incarnation of its
// topic.
type TopicPartition struct {
	Topic string
	// Incarnation tells apart the topics that had the same name: 0 for
	// the first the WAL held, one more for each topic deleted and created
	// again under that name (a new Kafka topic ID). Each incarnation has
	// its own entries, high water and cursor (doc.go, "Incarnations").
	Incarnation uint32
	Partition   int32
}

// String returns "topic/partition", or "topic#incarnation/partition"
// past the first incarnation.
func (tp TopicPartition) String() string {
	return fmt.Sprintf("%s/%d", tp.TopicKey(), tp.Partition)
}

// incarnationSep separates a topic from its incarnation in TopicKey: not a
// character of Kafka topic names, so a key never reads as another topic.
const incarnationSep = "#"

// TopicKey returns the topic and its incarnation as one string: the topic
// itself for incarnation 0, "topic#N" for incarnation N. ParseTopicKey
// reverses it.
func (tp TopicPartition) TopicKey() string {
	if tp.Incarnation == 0 {
		return tp.Topic
	}
	return tp.Topic + incarnationSep + strconv.FormatUint(uint64(tp.Incarnation), 10)
}

// ParseTopicKey splits a string made by TopicKey into the topic and the
// incarnation.
func ParseTopicKey(s string) (topic string, incarnation uint32, err error) {
	topic, n, ok := strings.Cut(s, incarnationSep)
	if !ok {
		return s, 0, nil
	}
	v, err := strconv.ParseUint(n, 10, 32)
	if err != nil || v == 0 || strconv.FormatUint(v, 10) != n {
		return "", 0, fmt.Errorf("wal: cannot parse the topic key %q: the incarnation after %q is not a number from 1", s, incarnationSep)
	}
	return topic, uint32(v), nil
}

// Compare orders partitions by topic, incarnation, then partition number
// (the WAL's key order): negative if tp sorts before o, zero if equal,
// positive after.
func (tp TopicPartition) Compare(o TopicPartition) int {
	if c := strings.Compare(tp.Topic, o.Topic); c != 0 {
		return c
	}
	if c := cmp.Compare(tp.Incarnation, o.Incarnation); c != 0 {
		return c
	}
	return cmp.Compare(tp.Partition, o.Partition)
}

// Record is one Kafka record as held by the WAL.
type Record struct {
	Offset    int64
	Timestamp int64 // Kafka timestamp, Unix milliseconds
	Key       []byte
	Value     []byte
}

// CorruptionError reports damaged WAL data and where it is. Partition is -1
// and Topic empty when the damage was found below the entry level (Pebble's
// own block checksums).
type CorruptionError struct {
	// Topic is the topic key (TopicPartition.TopicKey): "topic#N" for
	// incarnation N of a recreated topic.
	Topic       string
	Partition   int32
	FirstOffset int64 // first offset of the damaged entry (its key)
	Record      int   // index of the damaged record in the entry, -1 for the header
	Pos         int   // byte position inside the entry value
	Reason      string
	// File is the Pebble file holding the damage when Pebble found it: an
	// sstable, or the blob file holding an entry's value (then Topic,
	// Partition and FirstOffset name the entry, whose key still reads).
	// Repair keeps it in quarantine with the whole damaged WAL directory.
	File string
	Err  error // underlying Pebble error, if any
}

func (e *CorruptionError) Error() string {
	// Pebble joins a detail carrier to its corruption errors, which
	// prints as a second line; the first says it all.
	var pebbleMsg string
	if e.Err != nil {
		pebbleMsg, _, _ = strings.Cut(e.Err.Error(), "\n")
	}
	if e.Partition < 0 {
		if e.Err == nil {
			return "wal: corruption: " + e.Reason
		}
		return fmt.Sprintf("wal: corruption: %s: %s", e.Reason, pebbleMsg)
	}
	if e.Err != nil && e.FirstOffset >= 0 {
		// An entry whose key reads and whose value Pebble cannot read.
		return fmt.Sprintf("wal: corruption in %s/%d entry at offset %d: %s: %s",
			e.Topic, e.Partition, e.FirstOffset, e.Reason, pebbleMsg)
	}
	if e.FirstOffset < 0 {
		// Damage of the partition as a whole (its meta), not of an entry.
		return fmt.Sprintf("wal: corruption in %s/%d: %s", e.Topic, e.Partition, e.Reason)
	}
	rec := "header"
	if e.Record >= 0 {
		rec = fmt.Sprintf("record %d", e.Record)
	}
	return fmt.Sprintf("wal: corruption in %s/%d entry at offset %d, %s, byte %d: %s",
		e.Topic, e.Partition, e.FirstOffset, rec, e.Pos, e.Reason)
}

func (e *CorruptionError) Unwrap() error { return e.Err }

// Topic terminators in keys (doc.go, "Keys"): the first incarnation's
// keys keep the layout written before incarnations; later ones carry the
// incarnation after termIncarnation.
const (
	termFirst       byte = 0x00
	termIncarnation byte = 0x01
)

func partitionPrefix(prefix byte, tp TopicPartition) []byte {
	k := make([]byte, 0, 1+len(tp.Topic)+1+4+4+8)
	k = append(k, prefix)
	k = append(k, tp.Topic...)
	if tp.Incarnation == 0 {
		k = append(k, termFirst)
	} else {
		k = append(k, termIncarnation)
		k = binary.BigEndian.AppendUint32(k, tp.Incarnation)
	}
	return binary.BigEndian.AppendUint32(k, uint32(tp.Partition))
}

func entryKey(tp TopicPartition, firstOffset int64) []byte {
	return binary.BigEndian.AppendUint64(partitionPrefix(prefixEntry, tp), uint64(firstOffset))
}

func metaKey(tp TopicPartition) []byte {
	return partitionPrefix(prefixMeta, tp)
}

// decodeKey splits an entry or meta key. For meta keys firstOffset is 0.
func decodeKey(k []byte) (prefix byte, tp TopicPartition, firstOffset int64, ok bool) {
	if len(k) < 1+1+4 {
		return 0, tp, 0, false
	}
	prefix = k[0]
	rest := k[1:]
	i := strings.IndexFunc(string(rest), func(r rune) bool { return r == rune(termFirst) || r == rune(termIncarnation) })
	if i <= 0 {
		return 0, tp, 0, false
	}
	tp.Topic = string(rest[:i])
	term := rest[i]
	rest = rest[i+1:]
	if term == termIncarnation {
		if len(rest) < 4 {
			return 0, tp, 0, false
		}
		// Incarnation 0 has the other terminator: one key per position.
		if tp.Incarnation = binary.BigEndian.Uint32(rest); tp.Incarnation == 0 {
			return 0, tp, 0, false
		}
		rest = rest[4:]
	}
	switch {
	case prefix == prefixEntry && len(rest) == 12:
		tp.Partition = int32(binary.BigEndian.Uint32(rest))
		firstOffset = int64(binary.BigEndian.Uint64(rest[4:]))
	case prefix == prefixMeta && len(rest) == 4:
		tp.Partition = int32(binary.BigEndian.Uint32(rest))
	default:
		return 0, tp, 0, false
	}
	return prefix, tp, firstOffset, true
}

// ValidTopic reports whether t is a legal Kafka topic name: 1-249
// characters of a-z A-Z 0-9 . _ - and not "." or "..", Kafka's own rule.
// Only such names can be part of a WAL key; ingest checks its topics and
// group instance id (which Kafka validates by the same rule) with it.
func ValidTopic(t string) bool {
	if t == "" || len(t) > 249 || t == "." || t == ".." {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// encodedLen returns the value length of an entry holding recs.
func encodedLen(recs []Record) int {
	n := entryHeaderLen
	for i := range recs {
		n += recordHeaderLen + bodyLen(&recs[i])
	}
	return n
}

func keyField(r *Record) uint64 {
	if r.Key == nil {
		return 0
	}
	return uint64(len(r.Key)) + 1
}

func bodyLen(r *Record) int {
	return bodyKeyLenAt + uvarintLen(keyField(r)) + len(r.Key) + len(r.Value)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// encodeEntry appends the value of an entry holding recs to dst.
func encodeEntry(dst []byte, appendTime int64, recs []Record) []byte {
	h := len(dst)
	dst = append(dst, formatVersion)
	dst = binary.BigEndian.AppendUint64(dst, uint64(appendTime))
	dst = binary.BigEndian.AppendUint64(dst, uint64(recs[len(recs)-1].Offset))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(recs)))
	dst = binary.BigEndian.AppendUint32(dst, checksum(dst[h:]))
	for i := range recs {
		r := &recs[i]
		dst = binary.BigEndian.AppendUint32(dst, uint32(bodyLen(r)))
		c := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		b := len(dst)
		dst = binary.BigEndian.AppendUint64(dst, uint64(r.Offset))
		dst = binary.BigEndian.AppendUint64(dst, uint64(r.Timestamp))
		dst = binary.AppendUvarint(dst, keyField(r))
		dst = append(dst, r.Key...)
		dst = append(dst, r.Value...)
		binary.BigEndian.PutUint32(dst[c:], checksum(dst[b:]))
	}
	return dst
}

// entryHeader is the decoded fixed part of an entry value.
type entryHeader struct {
	appendTime int64
	lastOffset int64
	count      int
}

// parseHeader reads the fixed header fields of an entry value of at least
// entryHeaderLen bytes, without checking them.
func parseHeader(v []byte) entryHeader {
	return entryHeader{
		appendTime: int64(binary.BigEndian.Uint64(v[entryAppendTimeAt:])),
		lastOffset: int64(binary.BigEndian.Uint64(v[entryLastOffsetAt:])),
		count:      int(binary.BigEndian.Uint32(v[entryCountAt:])),
	}
}

// decodeEntry checks and decodes an entry value. Record keys and values
// alias v. When recs is nil only the checks run and nothing is allocated.
// The returned error is a *CorruptionError with Topic, Partition and
// FirstOffset taken from the key.
func decodeEntry(tp TopicPartition, firstOffset int64, v []byte, recs *[]Record) (entryHeader, error) {
	h, err := decodeHeader(tp, firstOffset, v)
	if err != nil {
		return h, err
	}
	fail := func(rec, pos int, format string, args ...any) (entryHeader, error) {
		return entryHeader{}, corruption(tp, firstOffset, rec, pos, format, args...)
	}
	if recs != nil {
		// One allocation instead of a doubling per append; a damaged count
		// cannot ask for more records than the value's bytes can hold.
		*recs = slices.Grow(*recs, min(h.count, len(v)/(recordHeaderLen+bodyMinLen)))
	}
	pos := entryHeaderLen
	prev := int64(-1)
	for i := 0; i < h.count; i++ {
		if len(v)-pos < recordHeaderLen {
			return fail(i, pos, "value ends inside the header of record %d of %d", i, h.count)
		}
		l := int(binary.BigEndian.Uint32(v[pos+recordLenAt:]))
		sum := binary.BigEndian.Uint32(v[pos+recordCRCAt:])
		bpos := pos + recordHeaderLen
		if l < bodyMinLen || l > len(v)-bpos {
			return fail(i, pos, "record length %d does not fit the %d bytes left", l, len(v)-bpos)
		}
		body := v[bpos : bpos+l]
		if got := checksum(body); got != sum {
			return fail(i, bpos, "record checksum mismatch (stored %08x, computed %08x)", sum, got)
		}
		off := int64(binary.BigEndian.Uint64(body[bodyOffsetAt:]))
		switch {
		case i == 0 && off != firstOffset:
			return fail(i, bpos, "first record has offset %d, key says %d", off, firstOffset)
		case i > 0 && off <= prev:
			return fail(i, bpos, "offset %d does not follow %d", off, prev)
		}
		prev = off
		kf, n := binary.Uvarint(body[bodyKeyLenAt:])
		// n must be the minimal encoding's length: the format has one
		// encoding per entry, so an accepted value re-encodes to itself.
		if n <= 0 || n != uvarintLen(kf) || kf > uint64(l-bodyKeyLenAt-n+1) {
			return fail(i, bpos+bodyKeyLenAt, "bad key length")
		}
		if recs != nil {
			r := Record{Offset: off, Timestamp: int64(binary.BigEndian.Uint64(body[bodyTimestampAt:]))}
			kstart := bodyKeyLenAt + n
			vstart := kstart
			if kf > 0 {
				vstart += int(kf - 1)
				r.Key = body[kstart:vstart:vstart]
			}
			r.Value = body[vstart:]
			*recs = append(*recs, r)
		}
		pos = bpos + l
	}
	if prev != h.lastOffset {
		return fail(-1, entryLastOffsetAt, "header says last offset %d, records end at %d", h.lastOffset, prev)
	}
	if pos != len(v) {
		return fail(h.count, pos, "%d unexpected bytes after the last record", len(v)-pos)
	}
	return h, nil
}

// decodeHeader checks and decodes an entry value's header alone: what
// truncation needs (the entry's last offset and record count, which the
// header's checksum covers) of entries the engine has read and checked
// whole already.
func decodeHeader(tp TopicPartition, firstOffset int64, v []byte) (entryHeader, error) {
	if len(v) < entryHeaderLen {
		return entryHeader{}, corruption(tp, firstOffset, -1, 0, "entry value is %d bytes, shorter than its %d-byte header", len(v), entryHeaderLen)
	}
	if got, want := checksum(v[:entryCRCAt]), binary.BigEndian.Uint32(v[entryCRCAt:]); got != want {
		return entryHeader{}, corruption(tp, firstOffset, -1, entryCRCAt, "header checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	if v[entryVersionAt] != formatVersion {
		return entryHeader{}, corruption(tp, firstOffset, -1, entryVersionAt, "unknown format version %d", v[entryVersionAt])
	}
	h := parseHeader(v)
	if h.count == 0 {
		return entryHeader{}, corruption(tp, firstOffset, -1, entryCountAt, "entry holds no records")
	}
	return h, nil
}

// corruption is the *CorruptionError of entry (tp, firstOffset): its
// record rec (-1: the header) at byte pos.
func corruption(tp TopicPartition, firstOffset int64, rec, pos int, format string, args ...any) *CorruptionError {
	return &CorruptionError{Topic: tp.TopicKey(), Partition: tp.Partition,
		FirstOffset: firstOffset, Record: rec, Pos: pos, Reason: fmt.Sprintf(format, args...)}
}

// partitionMeta is the per-partition state kept under the meta key.
type partitionMeta struct {
	highWater int64
	bytes     uint64
	entries   uint64
	records   uint64
	// topicID is the Kafka topic ID the partition's records came from;
	// zero when not known (a version 1 meta, or none recorded yet).
	topicID [16]byte
}

func encodeMeta(m partitionMeta) []byte {
	b := make([]byte, 0, metaLen)
	b = append(b, metaVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(m.highWater))
	b = binary.BigEndian.AppendUint64(b, m.bytes)
	b = binary.BigEndian.AppendUint64(b, m.entries)
	b = binary.BigEndian.AppendUint64(b, m.records)
	b = append(b, m.topicID[:]...)
	return binary.BigEndian.AppendUint32(b, checksum(b))
}

func decodeMeta(tp TopicPartition, v []byte) (partitionMeta, error) {
	fail := func(pos int, reason string) (partitionMeta, error) {
		return partitionMeta{}, &CorruptionError{Topic: tp.TopicKey(), Partition: tp.Partition,
			FirstOffset: -1, Record: -1, Pos: pos, Reason: "partition meta: " + reason}
	}
	if len(v) == 0 {
		return fail(0, "value is empty")
	}
	var want int
	switch v[metaVersionAt] {
	case metaVersion:
		want = metaLen
	case metaVersionV1:
		want = metaLenV1
	default:
		return fail(metaVersionAt, fmt.Sprintf("unknown format version %d", v[metaVersionAt]))
	}
	if len(v) != want {
		return fail(0, fmt.Sprintf("value is %d bytes, want %d", len(v), want))
	}
	crcAt := want - crcLen
	if checksum(v[:crcAt]) != binary.BigEndian.Uint32(v[crcAt:]) {
		return fail(crcAt, "checksum mismatch")
	}
	m := partitionMeta{
		highWater: int64(binary.BigEndian.Uint64(v[metaHighWaterAt:])),
		bytes:     binary.BigEndian.Uint64(v[metaBytesAt:]),
		entries:   binary.BigEndian.Uint64(v[metaEntriesAt:]),
		records:   binary.BigEndian.Uint64(v[metaRecordsAt:]),
	}
	if v[metaVersionAt] == metaVersion {
		copy(m.topicID[:], v[metaTopicIDAt:metaCRCAt])
	}
	return m, nil
}
