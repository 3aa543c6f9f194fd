package engine

import (
	"fmt"
	"testing"
	"time"
)

// TestParallelDecode runs one micro-batch large enough to be decoded by
// several goroutines (minParallelDecode), with items of every size and
// copies of ids across the goroutines' halves: every row keeps its own
// items, and every copy is a duplicate.
func TestParallelDecode(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.BatchRecords = 6000 })
	if len(h.e.decoders) < 2 {
		t.Skipf("%d decoding goroutine(s) on this machine: nothing runs in parallel", len(h.e.decoders))
	}
	var vals []string
	for i := range 5000 {
		id := fmt.Sprintf("e-%d", i%4000) // the last 1000 repeat the first
		items := make([]map[string]any, i%40+1)
		for j := range items {
			items[j] = map[string]any{"sku": fmt.Sprintf("S-%d-%d", i%4000, j), "qty": j + 1, "unit_price": "1.25"}
		}
		vals = append(vals, ev(id, "s-1", "3", at(time.Duration(i)*time.Millisecond), "items", items))
	}
	h.add("orders", 0, vals...)
	if n := h.step(); n != 5000 {
		t.Fatalf("one micro-batch consumed %d records, want 5000", n)
	}
	if c := h.count(`SELECT count(*) FROM outbox_rows`); c != 4000 {
		t.Fatalf("%d rows, want 4000", c)
	}
	if bad := h.count(`SELECT count(*) FROM outbox_rows WHERE
		json_array_length(items) <> (CAST(substr(event_id, 3) AS INT) % 40) + 1
		OR json_extract_string(items, '$[0].sku') <> 'S-' || substr(event_id, 3) || '-0'`); bad != 0 {
		t.Fatalf("%d rows with another row's items", bad)
	}
	if st := h.e.Stats(); st.Deduplicated != 1000 {
		t.Fatalf("%d duplicates, want 1000", st.Deduplicated)
	}
}
