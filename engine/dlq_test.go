package engine

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/offload/offload/engine/event"
)

// TestDLQReplayAfterConfigFix: a shop's records dead-lettered by a wrong
// mapping are replayed after the fix; they move to the outbox (and
// windows), are marked replayed and stay in the DLQ table.
func TestDLQReplayAfterConfigFix(t *testing.T) {
	shop := func(id, amount string, sec int) string {
		b, _ := json.Marshal(map[string]any{"id": id, "type": "orders/create", "shop": map[string]any{"id": "s9"},
			"total_price": amount, "currency_code": "usd", "created_at": at(time.Duration(sec) * time.Second).Format(time.RFC3339)})
		return string(b)
	}
	fields := map[string]string{"event_id": "id", "event_type": "type", "store_id": "shop.id",
		"amount":   "total", // wrong: the shop sends total_price
		"currency": "currency_code", "event_time": "created_at"}
	mapping := func(f map[string]string) func(*Options) {
		return func(o *Options) {
			o.Topics["shop"] = event.Config{Mapping: event.Mapping{Fields: f}, HashKey: testKey, Now: func() time.Time { return testNow }}
		}
	}
	h := newHarness(t, mapping(fields))
	h.add("shop", 0, shop("s-1", "10", 1), shop("s-2", "20", 2), shop("s-1", "10", 1), `{"id":"s-3","broken`)
	h.add("orders", 0, ev("o-1", "s1", "1", at(0)))
	h.drain()
	if got := h.count(`SELECT count(*) FROM dlq WHERE topic = 'shop' AND code = 'missing_field'`); got != 3 {
		t.Fatalf("%d shop records dead-lettered as missing_field, want 3", got)
	}

	// Export before the replay.
	var buf bytes.Buffer
	n, err := h.e.DLQExport(&buf, DLQFilter{Topic: "shop"})
	if err != nil || n != 4 {
		t.Fatalf("export: %d, %v", n, err)
	}
	sc := bufio.NewScanner(&buf)
	var lines []dlqJSON
	for sc.Scan() {
		var j dlqJSON
		if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		lines = append(lines, j)
	}
	if len(lines) != 4 {
		t.Fatalf("%d export lines", len(lines))
	}
	raw, err := base64.StdEncoding.DecodeString(lines[0].Raw)
	if err != nil || string(raw) != shop("s-1", "10", 1) || lines[0].Preview != string(raw) || lines[0].Code != "missing_field" || lines[0].Offset != 0 {
		t.Fatalf("export line %+v (raw %q, %v)", lines[0], raw, err)
	}

	// Replaying with the wrong mapping changes nothing but notes the attempt.
	res, err := h.e.DLQReplay(DLQFilter{Topic: "shop"})
	if err != nil || res.Attempted != 4 || res.StillRejected != 4 || res.Accepted != 0 {
		t.Fatalf("replay before the fix: %+v %v", res, err)
	}

	// Fix the mapping (a restart with the new configuration) and replay.
	fixed := map[string]string{}
	for k, v := range fields {
		fixed[k] = v
	}
	fixed["amount"] = "total_price"
	h.close()
	h.mutate = mapping(fixed)
	h.open()
	res, err = h.e.DLQReplay(DLQFilter{Topic: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	want := ReplayResult{Attempted: 4, Accepted: 2, Duplicates: 1, StillRejected: 1, StillRejectedByCode: map[string]int{"invalid_json": 1}}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("replay: %+v, want %+v", res, want)
	}
	got := h.rows(`SELECT event_id, amount, currency, store_id, source_topic, source_partition, source_offset FROM outbox_rows WHERE source_topic = 'shop' ORDER BY event_id`)
	if !reflect.DeepEqual(got, []string{"s-1 10 USD s9 shop 0 0", "s-2 20 USD s9 shop 0 1"}) {
		t.Fatalf("replayed rows: %v", got)
	}
	// Every row stays in the DLQ; the replayed ones are marked.
	got = h.rows(`SELECT "offset", code, replayed_at IS NOT NULL, last_replay_code FROM dlq WHERE topic = 'shop' ORDER BY "offset"`)
	wantDLQ := []string{"0 missing_field true accepted", "1 missing_field true accepted", "2 missing_field true duplicate", "3 invalid_json false invalid_json"}
	if !reflect.DeepEqual(got, wantDLQ) {
		t.Fatalf("dlq after replay:\n%v\nwant\n%v", got, wantDLQ)
	}
	// The windows saw the replayed events.
	if got := h.count(`SELECT sum(count) FROM windows WHERE store_id = 's9'`); got != 2 {
		t.Fatalf("windows of s9 count %d events, want 2", got)
	}
	// A second replay finds nothing pending but the still-broken record.
	res, err = h.e.DLQReplay(DLQFilter{Topic: "shop"})
	if err != nil || res.Attempted != 1 || res.StillRejected != 1 {
		t.Fatalf("second replay: %+v %v", res, err)
	}
	h.checkDedupeKeysHaveRows()
	st := h.e.Stats()
	if st.DLQReplayed != 3 || st.Accepted != 3 {
		t.Fatalf("stats: replayed %d accepted %d", st.DLQReplayed, st.Accepted)
	}
	// Sealing covers the replayed dead-letter ids in the batch's ranges.
	if err := h.e.SealNow(); err != nil {
		t.Fatal(err)
	}
	bs, err := h.e.SealedBatches()
	if err != nil || len(bs) != 1 {
		t.Fatalf("batches %+v %v", bs, err)
	}
	var dlqRange *Range
	for i := range bs[0].Ranges {
		if bs[0].Ranges[i].Topic == dlqReplayTopic {
			dlqRange = &bs[0].Ranges[i]
		}
	}
	if dlqRange == nil || dlqRange.First != 1 || dlqRange.Last != 4 {
		t.Fatalf("batch ranges %+v", bs[0].Ranges)
	}

	// List filters and paging.
	l, err := h.e.DLQList(DLQFilter{Code: "invalid_json"})
	if err != nil || len(l) != 1 || l[0].LastReplayCode != "invalid_json" || !l[0].ReplayedAt.IsZero() {
		t.Fatalf("list by code: %+v %v", l, err)
	}
	l, err = h.e.DLQList(DLQFilter{Topic: "shop", AfterID: 2, Limit: 1})
	if err != nil || len(l) != 1 || l[0].ID != 3 {
		t.Fatalf("paging: %+v %v", l, err)
	}
	l, err = h.e.DLQList(DLQFilter{Pending: true})
	if err != nil || len(l) != 1 || l[0].Offset != 3 {
		t.Fatalf("pending: %+v %v", l, err)
	}
}

func TestPreview(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain", "plain"},
		{"bad \xff byte", "bad \uFFFD byte"},
		{strings.Repeat("é", 300), strings.Repeat("é", 256) + "…"},
	} {
		if got := Preview([]byte(c.in)); got != c.want {
			t.Errorf("Preview(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
