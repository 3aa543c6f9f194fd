package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"testing"
	"time"

	"github.com/offload/offload/wal"
)

// TestRecreatedTopicIncarnations: the records of a topic deleted and
// created again under its name (the WAL's next incarnation, offsets from
// 0 again) are all kept beside the old topic's same offsets: the batch
// covers both ranges apart and its id differs from one over the old
// topic's offsets alone, the rows keep the topic's real name, and the
// cursor of each incarnation survives a reopen. Once the old incarnation
// is consumed, the WAL drops its state and the cursor forgets it.
func TestRecreatedTopicIncarnations(t *testing.T) {
	h := newHarness(t, nil)
	for i := range 4 {
		h.add("orders", 0, ev("old-"+string(rune('a'+i)), "s1", "10.00", at(time.Duration(i)*time.Second)))
	}
	if n := h.drain(); n != 4 {
		t.Fatalf("drained %d records of the first topic, want 4", n)
	}
	inc, err := h.w.Recreate("orders", [16]byte{0xb}, []int32{0})
	if err != nil || inc != 1 {
		t.Fatalf("Recreate: %d, %v", inc, err)
	}
	tp1 := wal.TopicPartition{Topic: "orders", Incarnation: 1, Partition: 0}
	appendTo := func(tp wal.TopicPartition, first int64, ids ...string) {
		t.Helper()
		recs := make([]wal.Record, len(ids))
		for i, id := range ids {
			recs[i] = wal.Record{Offset: first + int64(i), Timestamp: kafkaTime.UnixMilli(), Value: []byte(ev(id, "s2", "5.00", at(time.Minute)))}
		}
		if res, err := h.w.Append(tp, recs); err != nil || res.Appended != len(ids) {
			t.Fatalf("append to %s: %+v, %v", tp, res, err)
		}
	}
	appendTo(tp1, 0, "new-a", "new-b", "new-c")
	if n := h.drain(); n != 3 {
		t.Fatalf("drained %d records of the new topic, want 3", n)
	}
	b := h.sealOne()
	want := []Range{{Topic: "orders", Partition: 0, First: 0, Last: 3}, {Topic: "orders", Incarnation: 1, Partition: 0, First: 0, Last: 2}}
	if !reflect.DeepEqual(b.Ranges, want) || b.Rows != 7 {
		t.Fatalf("batch ranges %+v rows %d, want %+v and 7 rows", b.Ranges, b.Rows, want)
	}
	sum := sha256.Sum256([]byte(`[{"topic":"orders","partition":0,"first":0,"last":3},{"topic":"orders","incarnation":1,"partition":0,"first":0,"last":2}]`))
	if id := "test-1-" + hex.EncodeToString(sum[:8]); b.ID != id {
		t.Fatalf("batch id %s, want %s", b.ID, id)
	}
	rows := h.rows(`SELECT source_topic, source_partition, source_offset, event_id FROM outbox_rows ORDER BY event_id`)
	wantRows := []string{"orders 0 0 new-a", "orders 0 1 new-b", "orders 0 2 new-c", "orders 0 0 old-a", "orders 0 1 old-b", "orders 0 2 old-c", "orders 0 3 old-d"}
	if !reflect.DeepEqual(rows, wantRows) {
		t.Fatalf("rows %v, want %v", rows, wantRows)
	}
	// The old incarnation was consumed and truncated: the WAL dropped
	// its state; the next micro-batch drops it from the cursor.
	if _, held := h.w.TopicID(wpart("orders", 0)); held {
		t.Fatal("the WAL kept the consumed old incarnation's state")
	}
	h.reopen()
	appendTo(tp1, 3, "new-d")
	if n := h.drain(); n != 1 {
		t.Fatalf("drained %d records after a reopen, want the 1 new one", n)
	}
	if got := h.rows(`SELECT topic, "partition", next_offset FROM engine_cursor`); !reflect.DeepEqual(got, []string{"orders#1 0 4"}) {
		t.Fatalf("engine_cursor %v, want only the new incarnation's", got)
	}
	if n := h.count(`SELECT count(*) FROM outbox_rows`); n != 8 {
		t.Fatalf("%d rows in the outbox, want 8", n)
	}
}
