package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	crerrors "github.com/cockroachdb/errors"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// testNow is the append time every test WAL stamps, so encoded sizes and
// read-back entries are deterministic.
var testNow = time.Unix(1_700_000_000, 123_456_789)

// quietLogger drops Pebble's chatter; tests assert on returned values.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testOptions returns options for a WAL on fs whose Fatal fails the test.
func testOptions(t testing.TB, fs vfs.FS) Options {
	return Options{
		FS:     fs,
		Logger: quietLogger(),
		Now:    func() time.Time { return testNow },
		Fatal:  func(err error) { panic(fmt.Sprintf("%s: unexpected fatal WAL error: %v", t.Name(), err)) },
	}
}

func mustOpen(t testing.TB, fs vfs.FS) *WAL {
	t.Helper()
	w, err := Open("wal", testOptions(t, fs))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return w
}

func mustClose(t testing.TB, w *WAL) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// reopen closes w and opens the WAL again on the same file system.
func reopen(t testing.TB, w *WAL, fs vfs.FS) *WAL {
	t.Helper()
	mustClose(t, w)
	return mustOpen(t, fs)
}

// rec is the record the tests store at offset off: key "k<off>", value
// "v<off>", timestamp 1000+off.
func rec(off int64) Record {
	return Record{Offset: off, Timestamp: 1000 + off, Key: []byte(fmt.Sprintf("k%d", off)), Value: []byte(fmt.Sprintf("v%d", off))}
}

// recs returns rec(off) for each offset in [from, to].
func recs(from, to int64) []Record {
	out := make([]Record, 0, to-from+1)
	for off := from; off <= to; off++ {
		out = append(out, rec(off))
	}
	return out
}

func mustAppend(t testing.TB, w *WAL, tp TopicPartition, rs []Record) AppendResult {
	t.Helper()
	res, err := w.Append(tp, rs)
	if err != nil {
		t.Fatalf("append %s: %v", tp, err)
	}
	return res
}

// readAll reads everything from cursor on in one call and returns the
// entries and the next cursor.
func readAll(t testing.TB, w *WAL, cursor Cursor) ([]Entry, Cursor) {
	t.Helper()
	var out []Entry
	next, err := w.Read(cursor, 1<<30, func(e Entry) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return out, next
}

// offsetsOf returns the offsets of tp's records in entries.
func offsetsOf(entries []Entry, tp TopicPartition) []int64 {
	var out []int64
	for _, e := range entries {
		if e.TopicPartition != tp {
			continue
		}
		for _, r := range e.Records {
			out = append(out, r.Offset)
		}
	}
	return out
}

func span(from, to int64) []int64 {
	var out []int64
	for off := from; off <= to; off++ {
		out = append(out, off)
	}
	return out
}

func equalOffsets(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sameRecord compares two records including the nil/empty key distinction.
func sameRecord(a, b Record) bool {
	return a.Offset == b.Offset && a.Timestamp == b.Timestamp &&
		(a.Key == nil) == (b.Key == nil) && bytes.Equal(a.Key, b.Key) &&
		bytes.Equal(a.Value, b.Value)
}

func fmtRecord(r Record) string {
	k := "nil"
	if r.Key != nil {
		k = fmt.Sprintf("%q", r.Key)
	}
	return fmt.Sprintf("{off %d ts %d key %s value %q}", r.Offset, r.Timestamp, k, r.Value)
}

// checkAccounting asserts that Bytes, Stats and Verify agree with each
// other and with what a full read returns.
func checkAccounting(t testing.TB, w *WAL) {
	t.Helper()
	entries, _ := readAll(t, w, nil)
	type count struct{ entries, records uint64 }
	seen := map[TopicPartition]*count{}
	for _, e := range entries {
		c := seen[e.TopicPartition]
		if c == nil {
			c = &count{}
			seen[e.TopicPartition] = c
		}
		c.entries++
		c.records += uint64(len(e.Records))
	}
	var sum uint64
	for _, s := range w.Stats() {
		sum += s.Bytes
		c := seen[s.TopicPartition]
		if c == nil {
			c = &count{}
		}
		if s.Entries != c.entries || s.Records != c.records {
			t.Errorf("%s: stats say %d entries %d records, read returns %d, %d", s.TopicPartition, s.Entries, s.Records, c.entries, c.records)
		}
		if (s.Entries == 0) != (s.Bytes == 0) || (s.Entries == 0) != (s.FirstOffset == -1) {
			t.Errorf("%s: inconsistent stats %+v", s.TopicPartition, s)
		}
	}
	if int64(sum) != w.Bytes() {
		t.Errorf("Bytes() = %d, stats sum to %d", w.Bytes(), sum)
	}
	rep, err := w.Verify()
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	for _, c := range rep.Corruptions {
		t.Errorf("verify: %v", c)
	}
	if rep.Bytes != w.Bytes() {
		t.Errorf("verify counts %d bytes, Bytes() = %d", rep.Bytes, w.Bytes())
	}
}

func TestAppendReadRoundTrip(t *testing.T) {
	fs := vfs.NewMem()
	w := mustOpen(t, fs)
	a0 := TopicPartition{Topic: "orders", Partition: 0}
	a1 := TopicPartition{Topic: "orders", Partition: 1}
	b7 := TopicPartition{Topic: "pay.ments_v2-eu", Partition: 7}
	want := map[TopicPartition][]Record{
		a0: {
			{Offset: 0, Timestamp: 1_700_000_000_000, Key: nil, Value: []byte(`{"id":1}`)},
			{Offset: 1, Timestamp: -1, Key: []byte{}, Value: []byte(`{"id":2}`)},
			{Offset: 5, Timestamp: 0, Key: []byte("order-7"), Value: nil},
			{Offset: 6, Timestamp: 1<<62 + 3, Key: []byte{0, 0xff, 0}, Value: bytes.Repeat([]byte{0x80}, 300)},
		},
		a1: {{Offset: 1 << 40, Timestamp: 42, Key: bytes.Repeat([]byte("k"), 200), Value: []byte("x")}},
		b7: recs(100, 149),
	}
	// Appended interleaved, and a0 in two batches.
	mustAppend(t, w, a0, want[a0][:2])
	mustAppend(t, w, b7, want[b7])
	mustAppend(t, w, a1, want[a1])
	mustAppend(t, w, a0, want[a0][2:])

	check := func(w *WAL) {
		t.Helper()
		entries, next := readAll(t, w, nil)
		got := map[TopicPartition][]Record{}
		lastTP := TopicPartition{}
		for i, e := range entries {
			if !e.AppendTime.Equal(testNow) {
				t.Errorf("entry %d append time %v, want %v", i, e.AppendTime, testNow)
			}
			// Partitions come one after the other, sorted.
			if i > 0 && e.TopicPartition != lastTP && (e.Topic < lastTP.Topic || e.Topic == lastTP.Topic && e.Partition < lastTP.Partition) {
				t.Errorf("entry %d of %s after %s", i, e.TopicPartition, lastTP)
			}
			lastTP = e.TopicPartition
			got[e.TopicPartition] = append(got[e.TopicPartition], e.Records...)
		}
		if len(entries) != 4 {
			t.Errorf("read %d entries, want 4 (one per append)", len(entries))
		}
		for tp, wr := range want {
			gr := got[tp]
			if len(gr) != len(wr) {
				t.Fatalf("%s: read %d records, want %d", tp, len(gr), len(wr))
			}
			for i := range wr {
				if !sameRecord(gr[i], wr[i]) {
					t.Errorf("%s record %d: got %s, want %s", tp, i, fmtRecord(gr[i]), fmtRecord(wr[i]))
				}
			}
			if next[tp] != wr[len(wr)-1].Offset+1 {
				t.Errorf("%s: next cursor %d, want %d", tp, next[tp], wr[len(wr)-1].Offset+1)
			}
		}
		if w.HighWater(a0) != 6 || w.HighWater(a1) != 1<<40 || w.HighWater(b7) != 149 {
			t.Errorf("high waters %d %d %d", w.HighWater(a0), w.HighWater(a1), w.HighWater(b7))
		}
		if hw := w.HighWater(TopicPartition{Topic: "orders", Partition: 2}); hw != -1 {
			t.Errorf("unknown partition high water %d, want -1", hw)
		}
		checkAccounting(t, w)
	}
	check(w)
	w = reopen(t, w, fs)
	check(w)
	mustClose(t, w)
}

// TestReadOwnsRecords checks that records handed to fn stay valid after
// later reads and appends (the doc says they are owned by the caller).
func TestReadOwnsRecords(t *testing.T) {
	w := mustOpen(t, vfs.NewMem())
	defer mustClose(t, w)
	tp := TopicPartition{Topic: "a", Partition: 0}
	mustAppend(t, w, tp, recs(0, 9))
	first, _ := readAll(t, w, nil)
	mustAppend(t, w, tp, recs(10, 19))
	readAll(t, w, nil)
	for i, r := range first[0].Records {
		if !sameRecord(r, rec(int64(i))) {
			t.Fatalf("record %d changed to %s", i, fmtRecord(r))
		}
	}
}

func TestReadCursor(t *testing.T) {
	fs := vfs.NewMem()
	w := mustOpen(t, fs)
	defer func() { mustClose(t, w) }()
	tp := TopicPartition{Topic: "a", Partition: 0}
	mustAppend(t, w, tp, recs(0, 9))
	mustAppend(t, w, tp, recs(10, 19))
	mustAppend(t, w, tp, recs(20, 29))
	// A compacted topic leaves gaps: 40, 42, 44 then 50.
	mustAppend(t, w, tp, []Record{rec(40), rec(42), rec(44)})
	mustAppend(t, w, tp, []Record{rec(50)})

	cases := []struct {
		name   string
		cursor int64
		want   []int64
		next   int64
	}{
		{"start", 0, append(append(span(0, 29), 40, 42, 44), 50), 51},
		{"negative reads from the start", -5, append(append(span(0, 29), 40, 42, 44), 50), 51},
		{"inside an entry", 15, append(append(span(15, 29), 40, 42, 44), 50), 51},
		{"last record of an entry", 9, append(append(span(9, 29), 40, 42, 44), 50), 51},
		{"first record of an entry", 10, append(append(span(10, 29), 40, 42, 44), 50), 51},
		{"in a gap between entries", 33, []int64{40, 42, 44, 50}, 51},
		{"in a gap inside an entry", 41, []int64{42, 44, 50}, 51},
		{"at the high water", 50, []int64{50}, 51},
		{"past the end", 51, nil, 51},
		{"far past the end", 1000, nil, 1000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			entries, next := readAll(t, w, Cursor{tp: c.cursor})
			if got := offsetsOf(entries, tp); !equalOffsets(got, c.want) {
				t.Errorf("read from %d: got %v, want %v", c.cursor, got, c.want)
			}
			if next[tp] != c.next {
				t.Errorf("next cursor %d, want %d", next[tp], c.next)
			}
			for _, e := range entries {
				for _, r := range e.Records {
					if !sameRecord(r, rec(r.Offset)) {
						t.Errorf("record %s", fmtRecord(r))
					}
				}
			}
		})
	}

	t.Run("absent partition reads from the start", func(t *testing.T) {
		entries, next := readAll(t, w, Cursor{{Topic: "other", Partition: 3}: 7})
		if got := offsetsOf(entries, tp); len(got) != 34 || got[0] != 0 {
			t.Errorf("got %v", got)
		}
		if next[TopicPartition{Topic: "other", Partition: 3}] != 7 {
			t.Errorf("cursor of an unknown partition changed: %v", next)
		}
	})

	t.Run("cursor is not modified", func(t *testing.T) {
		c := Cursor{tp: 5}
		readAll(t, w, c)
		if c[tp] != 5 {
			t.Errorf("Read changed its argument: %v", c)
		}
	})

	t.Run("before the first held entry", func(t *testing.T) {
		if _, err := w.Truncate(Cursor{tp: 20}); err != nil {
			t.Fatal(err)
		}
		for _, from := range []int64{0, 3, 19} {
			entries, _ := readAll(t, w, Cursor{tp: from})
			if got := offsetsOf(entries, tp); len(got) == 0 || got[0] != 20 {
				t.Errorf("read from %d after truncating below 20: got %v", from, got)
			}
		}
		w = reopen(t, w, fs)
		entries, _ := readAll(t, w, Cursor{tp: 3})
		if got := offsetsOf(entries, tp); len(got) == 0 || got[0] != 20 {
			t.Errorf("after reopen: got %v", got)
		}
	})

	t.Run("fn error stops the read", func(t *testing.T) {
		boom := errors.New("boom")
		calls := 0
		_, err := w.Read(nil, 1000, func(Entry) error { calls++; return boom })
		if !errors.Is(err, boom) || calls != 1 {
			t.Errorf("err %v after %d calls, want boom after 1", err, calls)
		}
	})
}

func TestReadFairShare(t *testing.T) {
	w := mustOpen(t, vfs.NewMem())
	defer mustClose(t, w)
	parts := []TopicPartition{{Topic: "a", Partition: 0}, {Topic: "a", Partition: 1}, {Topic: "b", Partition: 0}}
	for _, tp := range parts {
		for i := int64(0); i < 10; i++ {
			mustAppend(t, w, tp, recs(i*10, i*10+9)) // 10 entries of 10 records
		}
	}
	small := TopicPartition{Topic: "c", Partition: 0}
	mustAppend(t, w, small, recs(0, 2)) // 1 entry of 3 records

	read := func(cursor Cursor, max int) (map[TopicPartition][]int64, Cursor) {
		t.Helper()
		got := map[TopicPartition][]int64{}
		next, err := w.Read(cursor, max, func(e Entry) error {
			for _, r := range e.Records {
				got[e.TopicPartition] = append(got[e.TopicPartition], r.Offset)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got, next
	}

	// 4 partitions pending, max 80: a share of 20 each, that is two whole
	// entries of each big partition and all of the small one.
	got, next := read(nil, 80)
	for _, tp := range parts {
		if !equalOffsets(got[tp], span(0, 19)) {
			t.Errorf("%s: got %v, want 0..19", tp, got[tp])
		}
		if next[tp] != 20 {
			t.Errorf("%s: next %d", tp, next[tp])
		}
	}
	if !equalOffsets(got[small], span(0, 2)) {
		t.Errorf("small partition: got %v", got[small])
	}

	// The small partition is done, so 3 are pending: max 30 gives one
	// entry each.
	got, next = read(next, 30)
	for _, tp := range parts {
		if !equalOffsets(got[tp], span(20, 29)) {
			t.Errorf("%s: got %v, want 20..29", tp, got[tp])
		}
	}
	if len(got[small]) != 0 {
		t.Errorf("small partition read again: %v", got[small])
	}

	// A share smaller than an entry still passes one whole entry, so a
	// tiny max makes progress on every partition.
	got, next = read(next, 1)
	for _, tp := range parts {
		if !equalOffsets(got[tp], span(30, 39)) {
			t.Errorf("%s: got %v, want 30..39", tp, got[tp])
		}
	}

	// A cursor inside an entry counts only the records passed: share 10,
	// 5 passed from the first entry, so the next whole entry follows.
	inside := next.Clone()
	inside[parts[0]] = 45
	got, _ = read(inside, 30)
	if !equalOffsets(got[parts[0]], span(45, 59)) {
		t.Errorf("cursor inside an entry: got %v, want 45..59", got[parts[0]])
	}

	// Reading on with the returned cursors covers everything exactly once.
	all := map[TopicPartition][]int64{}
	cur := Cursor(nil)
	for i := 0; i < 100; i++ {
		got, n := read(cur, 7)
		if len(got) == 0 {
			break
		}
		for tp, offs := range got {
			all[tp] = append(all[tp], offs...)
		}
		cur = n
	}
	for _, tp := range parts {
		if !equalOffsets(all[tp], span(0, 99)) {
			t.Errorf("%s: paged read got %v", tp, all[tp])
		}
	}
	if !equalOffsets(all[small], span(0, 2)) {
		t.Errorf("small: paged read got %v", all[small])
	}
}

// TestTruncate runs with point deletions (the common case) and with range
// deletions (truncations of more than maxPointDeletes entries).
func TestTruncate(t *testing.T) {
	for _, limit := range []int{maxPointDeletes, 0} {
		t.Run(fmt.Sprintf("maxPointDeletes=%d", limit), func(t *testing.T) {
			defer func(old int) { maxPointDeletes = old }(maxPointDeletes)
			maxPointDeletes = limit
			testTruncate(t)
		})
	}
}

func testTruncate(t *testing.T) {
	fs := vfs.NewMem()
	w := mustOpen(t, fs)
	tp := TopicPartition{Topic: "a", Partition: 0}
	other := TopicPartition{Topic: "b", Partition: 0}
	var sizes []int
	for _, r := range [][2]int64{{0, 9}, {10, 19}, {20, 29}} {
		sizes = append(sizes, mustAppend(t, w, tp, recs(r[0], r[1])).Bytes)
	}
	mustAppend(t, w, other, recs(0, 4))
	otherBytes := w.Stats()[1].Bytes

	stat := func(tp TopicPartition) PartitionStats {
		t.Helper()
		for _, s := range w.Stats() {
			if s.TopicPartition == tp {
				return s
			}
		}
		t.Fatalf("no stats for %s", tp)
		return PartitionStats{}
	}
	truncate := func(c Cursor, wantFreed int) {
		t.Helper()
		freed, err := w.Truncate(c)
		if err != nil {
			t.Fatal(err)
		}
		if freed != int64(wantFreed) {
			t.Errorf("truncate %v freed %d, want %d", c, freed, wantFreed)
		}
	}

	// Below the first held offset or unknown partitions: nothing happens.
	truncate(Cursor{tp: 0}, 0)
	truncate(Cursor{{Topic: "nope", Partition: 0}: 100}, 0)
	// 15 is inside the second entry: only the first goes.
	truncate(Cursor{tp: 15}, sizes[0])
	s := stat(tp)
	if s.FirstOffset != 10 || s.HighWater != 29 || s.Entries != 2 || s.Records != 20 || s.Bytes != uint64(sizes[1]+sizes[2]) {
		t.Errorf("after truncate below 15: %+v", s)
	}
	entries, _ := readAll(t, w, nil)
	if got := offsetsOf(entries, tp); !equalOffsets(got, span(10, 29)) {
		t.Errorf("after truncate below 15: read %v", got)
	}
	// Again at the same place: nothing more.
	truncate(Cursor{tp: 15}, 0)
	// 20 is the first offset of the third entry: the second goes.
	truncate(Cursor{tp: 20}, sizes[1])
	// The other partition is untouched.
	if s := stat(other); s.Entries != 1 || s.Bytes != otherBytes {
		t.Errorf("other partition changed: %+v", s)
	}
	checkAccounting(t, w)

	w = reopen(t, w, fs)
	if s := stat(tp); s.FirstOffset != 20 || s.HighWater != 29 || s.Entries != 1 || s.Records != 10 {
		t.Errorf("after reopen: %+v", s)
	}
	// Past the high water: everything goes, the high water stays.
	truncate(Cursor{tp: 1000, other: 5}, sizes[2]+int(otherBytes))
	if s := stat(tp); s.FirstOffset != -1 || s.HighWater != 29 || s.Entries != 0 || s.Records != 0 || s.Bytes != 0 {
		t.Errorf("after truncating everything: %+v", s)
	}
	if w.Bytes() != 0 {
		t.Errorf("Bytes() = %d after truncating everything", w.Bytes())
	}
	w = reopen(t, w, fs)
	if hw := w.HighWater(tp); hw != 29 {
		t.Errorf("high water after truncating everything and reopening: %d", hw)
	}
	// A re-fetch of what was consumed and truncated is still dropped.
	res := mustAppend(t, w, tp, recs(25, 34))
	if res.Appended != 5 || res.Duplicates != 5 {
		t.Errorf("re-fetch after truncation: %+v", res)
	}
	entries, _ = readAll(t, w, nil)
	if got := offsetsOf(entries, tp); !equalOffsets(got, span(30, 34)) {
		t.Errorf("after re-fetch: read %v", got)
	}
	checkAccounting(t, w)
	mustClose(t, w)
}

func TestBytesAndStatsSurviveReopen(t *testing.T) {
	fs := vfs.NewMem()
	w := mustOpen(t, fs)
	var total int64
	for p := int32(0); p < 4; p++ {
		tp := TopicPartition{Topic: "t", Partition: p}
		for i := int64(0); i < 5; i++ {
			total += int64(mustAppend(t, w, tp, recs(i*7, i*7+6)).Bytes)
		}
	}
	freed, err := w.Truncate(Cursor{{Topic: "t", Partition: 1}: 14, {Topic: "t", Partition: 3}: 100})
	if err != nil {
		t.Fatal(err)
	}
	if w.Bytes() != total-freed {
		t.Errorf("Bytes() = %d, appended %d freed %d", w.Bytes(), total, freed)
	}
	before, bytesBefore := w.Stats(), w.Bytes()
	checkAccounting(t, w)
	w = reopen(t, w, fs)
	after := w.Stats()
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("stats changed over reopen:\n%v\n%v", before, after)
	}
	if w.Bytes() != bytesBefore {
		t.Errorf("Bytes() %d after reopen, %d before", w.Bytes(), bytesBefore)
	}
	checkAccounting(t, w)
	if w.DiskUsage() == 0 {
		t.Errorf("DiskUsage() = 0 with data held")
	}
	mustClose(t, w)
	if w.DiskUsage() != 0 {
		t.Errorf("DiskUsage() after close = %d", w.DiskUsage())
	}
}

func TestDuplicatesDropped(t *testing.T) {
	tp := TopicPartition{Topic: "a", Partition: 0}
	type step struct {
		from, to  int64
		appended  int
		duplicate int
	}
	cases := []struct {
		name  string
		steps []step
		want  []int64
	}{
		{"overlap cut at another boundary", []step{{0, 99, 100, 0}, {50, 149, 50, 50}}, span(0, 149)},
		{"same batch twice", []step{{0, 99, 100, 0}, {0, 99, 0, 100}}, span(0, 99)},
		{"subset", []step{{0, 99, 100, 0}, {90, 95, 0, 6}}, span(0, 99)},
		{"one past", []step{{0, 99, 100, 0}, {99, 100, 1, 1}}, span(0, 100)},
		{"re-fetch in small pieces", []step{{0, 99, 100, 0}, {0, 29, 0, 30}, {30, 79, 0, 50}, {80, 120, 21, 20}, {121, 130, 10, 0}}, span(0, 130)},
		{"re-fetch across several entries", []step{{0, 9, 10, 0}, {10, 19, 10, 0}, {20, 29, 10, 0}, {5, 34, 5, 25}}, span(0, 34)},
		{"first batch not at zero", []step{{500, 509, 10, 0}, {495, 512, 3, 15}}, span(500, 512)},
	}
	for _, c := range cases {
		for _, reopenBetween := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reopen=%v", c.name, reopenBetween), func(t *testing.T) {
				fs := vfs.NewMem()
				w := mustOpen(t, fs)
				for i, s := range c.steps {
					before := w.Bytes()
					res := mustAppend(t, w, tp, recs(s.from, s.to))
					if res.Appended != s.appended || res.Duplicates != s.duplicate {
						t.Errorf("step %d [%d..%d]: %+v, want appended %d duplicates %d", i, s.from, s.to, res, s.appended, s.duplicate)
					}
					if (res.Appended == 0) != (res.Bytes == 0) || w.Bytes() != before+int64(res.Bytes) {
						t.Errorf("step %d: bytes %d, Bytes() %d -> %d", i, res.Bytes, before, w.Bytes())
					}
					if reopenBetween {
						w = reopen(t, w, fs)
					}
				}
				entries, _ := readAll(t, w, nil)
				if got := offsetsOf(entries, tp); !equalOffsets(got, c.want) {
					t.Errorf("read %v, want %v", got, c.want)
				}
				for _, e := range entries {
					for _, r := range e.Records {
						if !sameRecord(r, rec(r.Offset)) {
							t.Errorf("record %s", fmtRecord(r))
						}
					}
				}
				checkAccounting(t, w)
				mustClose(t, w)
			})
		}
	}
}

func TestAppendInvalid(t *testing.T) {
	w := mustOpen(t, vfs.NewMem())
	tp := TopicPartition{Topic: "a", Partition: 0}
	mustAppend(t, w, tp, recs(0, 4))
	cases := []struct {
		name string
		tp   TopicPartition
		recs []Record
		want string
	}{
		{"equal offsets", tp, []Record{rec(10), rec(11), rec(11)}, "offset 11 follows 11"},
		{"decreasing offsets", tp, []Record{rec(10), rec(9)}, "offset 9 follows 10"},
		{"decreasing within duplicates", tp, []Record{rec(3), rec(2), rec(12)}, "offset 2 follows 3"},
		{"negative offset", TopicPartition{Topic: "a", Partition: 1}, []Record{rec(-3), rec(-1), rec(2)}, "negative offset -3"},
		{"empty topic", TopicPartition{Topic: "", Partition: 0}, recs(0, 1), "invalid topic"},
		{"topic with slash", TopicPartition{Topic: "a/b", Partition: 0}, recs(0, 1), "invalid topic"},
		{"topic with NUL", TopicPartition{Topic: "a\x00b", Partition: 0}, recs(0, 1), "invalid topic"},
		{"topic with space", TopicPartition{Topic: "a b", Partition: 0}, recs(0, 1), "invalid topic"},
		{"topic too long", TopicPartition{Topic: strings.Repeat("t", 250), Partition: 0}, recs(0, 1), "invalid topic"},
		{"negative partition", TopicPartition{Topic: "a", Partition: -1}, recs(0, 1), "invalid topic or partition"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := w.Stats()
			res, err := w.Append(c.tp, c.recs)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "wal: ") {
				t.Errorf("got %+v, %v; want an error containing %q", res, err, c.want)
			}
			if res.Appended != 0 || res.Bytes != 0 {
				t.Errorf("result %+v on error", res)
			}
			if after := w.Stats(); fmt.Sprint(before) != fmt.Sprint(after) {
				t.Errorf("stats changed:\n%v\n%v", before, after)
			}
		})
	}
	// The longest valid topic works.
	mustAppend(t, w, TopicPartition{Topic: strings.Repeat("t", 249), Partition: 0}, recs(0, 0))

	// An empty append writes nothing and creates no partition.
	before := w.Stats()
	if res, err := w.Append(TopicPartition{Topic: "fresh", Partition: 0}, nil); err != nil || res != (AppendResult{}) {
		t.Errorf("empty append: %+v, %v", res, err)
	}
	if after := w.Stats(); fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("empty append changed stats:\n%v\n%v", before, after)
	}
	checkAccounting(t, w)

	mustClose(t, w)
	if err := w.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := w.Append(tp, recs(5, 6)); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v", err)
	}
	if _, err := w.Read(nil, 10, func(Entry) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	if _, err := w.Truncate(Cursor{tp: 3}); !errors.Is(err, ErrClosed) {
		t.Errorf("truncate after close: %v", err)
	}
	if _, err := w.Verify(); !errors.Is(err, ErrClosed) {
		t.Errorf("verify after close: %v", err)
	}
}

// TestCloseWhileAppending checks that Close waits for appends in flight
// and later ones get ErrClosed, instead of reaching the closed Pebble DB
// (which panics), and that every acknowledged append is there afterwards.
func TestCloseWhileAppending(t *testing.T) {
	fs := vfs.NewMem()
	w := mustOpen(t, fs)
	var wg sync.WaitGroup
	acked := make([]int64, 4) // per partition: next offset to append
	for p := range acked {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tp := TopicPartition{Topic: "a", Partition: int32(p)}
			for i := int64(0); ; i++ {
				_, err := w.Append(tp, recs(i*5, i*5+4))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				acked[p] = i*5 + 5
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	mustClose(t, w)
	wg.Wait()
	w = mustOpen(t, fs)
	defer mustClose(t, w)
	entries, _ := readAll(t, w, nil)
	for p, n := range acked {
		tp := TopicPartition{Topic: "a", Partition: int32(p)}
		if n == 0 {
			t.Errorf("%s: no append succeeded before close", tp)
		}
		if got := offsetsOf(entries, tp); !equalOffsets(got, span(0, n-1)) {
			t.Errorf("%s: read %d records, want 0..%d", tp, len(got), n-1)
		}
	}
}

// TestVerifyWhileAppending checks that Verify on a live WAL does not report
// the meta of appends running concurrently as a disagreement.
func TestVerifyWhileAppending(t *testing.T) {
	w := mustOpen(t, vfs.NewMem())
	defer mustClose(t, w)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := 0; p < 3; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tp := TopicPartition{Topic: "a", Partition: int32(p)}
			for i := int64(0); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := w.Append(tp, recs(i*3, i*3+2)); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		}()
	}
	// Wait for appends to flow, then verify while they keep flowing.
	for deadline := time.Now().Add(10 * time.Second); entriesHeld(w) < 10 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	before := entriesHeld(w)
	// At least 30 verifies, and on until appends have run alongside them
	// (a busy machine may not schedule the appenders at once), bounded.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 30 || entriesHeld(w)-before < 30 && time.Now().Before(deadline); i++ {
		rep, err := w.Verify()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range rep.Corruptions {
			t.Errorf("verify during appends: %v", c)
		}
	}
	during := entriesHeld(w) - before
	close(stop)
	wg.Wait()
	if during == 0 {
		t.Errorf("no append ran while Verify did: the test proves nothing")
	}
}

func entriesHeld(w *WAL) (n uint64) {
	for _, s := range w.Stats() {
		n += s.Entries
	}
	return n
}

// TestAsCorruptionSeesPebbleMarks checks that a Pebble corruption error,
// which carries a cockroachdb/errors mark the standard errors.Is cannot
// see, becomes a *CorruptionError.
func TestAsCorruptionSeesPebbleMarks(t *testing.T) {
	perr := fmt.Errorf("reading block: %w", pebbleCorruption())
	var ce *CorruptionError
	if !errors.As(asCorruption(perr), &ce) {
		t.Fatalf("asCorruption(%v) is not a *CorruptionError", perr)
	}
	if ce.Partition != -1 || !pebble.IsCorruptionError(ce.Err) || !pebble.IsCorruptionError(ce) {
		t.Errorf("got %+v", ce)
	}
	if err := errors.New("disk on fire"); asCorruption(err) != err {
		t.Errorf("a plain error was changed")
	}
	if asCorruption(nil) != nil {
		t.Errorf("nil changed")
	}
	if again := asCorruption(ce); again != error(ce) {
		t.Errorf("a *CorruptionError was wrapped again: %v", again)
	}
}

// pebbleCorruption returns an error marked the way Pebble marks corruption.
func pebbleCorruption() error {
	return crerrors.Mark(errors.New("block checksum mismatch"), pebble.ErrCorruption)
}
