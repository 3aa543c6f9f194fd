package engine

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/offload/offload/engine/event"
)

// badRecords are records of every kind the engine must dead-letter, each
// with the reject code it must get. Each differs from a good record in one
// way only.
var badRecords = []struct {
	name  string
	topic string
	raw   string
	code  string
	stage string
}{
	{"broken JSON", "orders", `{"event_id":"x1","amount":"1"`, event.CodeInvalidJSON, StageDecode},
	{"invalid UTF-8", "orders", "{\"event_id\":\"x2\xff\xfe\"}", event.CodeInvalidUTF8, StageDecode},
	{"empty record", "orders", "  \n", event.CodeEmptyRecord, StageDecode},
	{"oversized", "orders", ev("x4", "s1", "1", at(0), "payment_method", strings.Repeat("p", 5000)), event.CodeOversized, StageDecode},
	{"array, not an object", "orders", `[{"event_id":"x5"}]`, event.CodeNotAnObject, StageDecode},
	{"duplicate key", "orders", `{"event_id":"x6","event_id":"x6b","event_type":"order_placed","store_id":"s1","amount":"1","currency":"EUR","event_time":"2024-05-01T12:00:00Z"}`, event.CodeDuplicateField, StageDecode},
	{"CSV column count", "orders_csv", `x7,order_placed,s1,1,EUR`, event.CodeCSVColumnCount, StageDecode},
	{"CSV quoting", "orders_csv", `x8,"order_placed,s1,1,EUR,1714564800`, event.CodeCSVSyntax, StageDecode},
	{"missing event_id", "orders", ev("x9", "s1", "1", at(0), "event_id", nil), event.CodeMissingField, StageValidate},
	{"nested object where a scalar belongs", "orders", ev("x10", "s1", "1", at(0), "store_id", map[string]any{"id": "s1"}), event.CodeWrongType, StageValidate},
	{"field too long", "orders", ev(strings.Repeat("x", 300), "s1", "1", at(0)), event.CodeFieldTooLong, StageValidate},
	{"control character", "orders", ev("x12", "s\x01", "1", at(0)), event.CodeControlCharacter, StageValidate},
	{"unknown event type", "orders", ev("x13", "s1", "1", at(0), "event_type", "teleport"), event.CodeBadEventType, StageValidate},
	{"bad e-mail", "orders", ev("x14", "s1", "1", at(0), "customer_email", "not-an-address"), event.CodeBadEmail, StageValidate},
	{`amount "abc" (with a card number to mask)`, "orders", ev("x15", "s1", "abc", at(0), "card_number", "4111 1111 1111 1111"), event.CodeBadAmount, StageValidate},
	{"amount too precise", "orders", ev("x16", "s1", "1.23456", at(0)), event.CodeAmountPrecision, StageValidate},
	{"negative amount", "orders", ev("x17", "s1", "-5", at(0)), event.CodeAmountOutOfRange, StageValidate},
	{"unknown currency", "orders", ev("x18", "s1", "1", at(0), "currency", "XYZ"), event.CodeUnknownCurrency, StageValidate},
	{"card number without digits", "orders", ev("x19", "s1", "1", at(0), "card_number", "n/a"), event.CodeBadCardNumber, StageValidate},
	{"unknown channel", "orders", ev("x20", "s1", "1", at(0), "channel", "carrier-pigeon"), event.CodeBadChannel, StageValidate},
	{"unknown country", "orders", ev("x21", "s1", "1", at(0), "country", "ZZ"), event.CodeBadCountry, StageValidate},
	{"items not objects", "orders", ev("x22", "s1", "1", at(0), "items", []any{1, 2}), event.CodeBadItems, StageValidate},
	{"item quantity zero", "orders", ev("x23", "s1", "1", at(0), "items", []any{map[string]any{"sku": "A", "qty": 0, "unit_price": "1"}}), event.CodeBadQuantity, StageValidate},
	{"item price garbage", "orders", ev("x24", "s1", "1", at(0), "items", []any{map[string]any{"sku": "A", "qty": 1, "unit_price": "one"}}), event.CodeBadPrice, StageValidate},
	{"garbage timestamp", "orders", ev("x25", "s1", "1", at(0), "event_time", "yesterday-ish"), event.CodeBadTimestamp, StageValidate},
	{"timestamp in the future", "orders", ev("x26", "s1", "1", testNow.Add(48*time.Hour)), event.CodeFutureTimestamp, StageValidate},
	{"timestamp before 2000", "orders", ev("x27", "s1", "1", time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC)), event.CodeAncientTimestamp, StageValidate},
	{"base amount overflows", "orders", ev("x28", "s1", "1000000000000", at(0), "currency", "JPY"), event.CodeBaseAmountOverflow, StageEnrich},
	{"topic without a mapping", "refunds", ev("x29", "s1", "1", at(0)), CodeUnknownTopic, StageRoute},
}

// TestBadRecordsAreDeadLettered appends every kind of bad record between
// good ones: each lands in the DLQ with its own code, its coordinates and
// its (masked) raw bytes, and every good record around it is in the
// outbox.
func TestBadRecordsAreDeadLettered(t *testing.T) {
	if len(badRecords) < 20 {
		t.Fatalf("only %d kinds of bad record", len(badRecords))
	}
	rates, err := event.ParseRates(strings.NewReader("currency,rate\nJPY,1000000\nEUR,1.1\n"), "rates", "USD")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(o *Options) {
		o.BatchRecords = 7 // many micro-batches, cut inside runs of good and bad records
		for _, name := range []string{"orders", "orders_csv"} {
			c := o.Topics[name]
			c.MaxRecordBytes = 4096
			c.Rates = rates
			o.Topics[name] = c
		}
	})
	codes := map[string]bool{}
	type where struct {
		topic  string
		offset int64
	}
	bad := map[where]int{}
	var goodIDs []string
	good := func(topic string, i int) {
		id := fmt.Sprintf("good-%03d", i)
		goodIDs = append(goodIDs, id)
		if topic == "orders_csv" {
			h.add(topic, 0, id+",order_placed,s1,1.5,EUR,1714564800")
		} else {
			h.add(topic, 0, ev(id, "s1", "1.5", at(time.Duration(i)*time.Second)))
		}
	}
	for i, br := range badRecords {
		if codes[br.code] {
			t.Fatalf("code %s is used twice in the table", br.code)
		}
		codes[br.code] = true
		topic := br.topic
		if topic == "refunds" {
			topic = "orders"
		}
		good(topic, 2*i)
		bad[where{br.topic, h.add(br.topic, 0, br.raw)}] = i
		good(topic, 2*i+1)
	}
	h.drain()

	dl, err := h.e.DLQList(DLQFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != len(badRecords) {
		t.Fatalf("%d dead letters, want %d", len(dl), len(badRecords))
	}
	for _, d := range dl {
		i, ok := bad[where{d.Topic, d.Offset}]
		if !ok {
			t.Errorf("dead letter at %s/%d/%d is not a bad record: %s %s", d.Topic, d.Partition, d.Offset, d.Code, d.Reason)
			continue
		}
		br := badRecords[i]
		if d.Code != br.code || d.Stage != br.stage || d.Partition != 0 || d.Reason == "" || !d.KafkaTime.Equal(kafkaTime) {
			t.Errorf("%s: got code %s stage %s partition %d kafka time %s reason %q; want code %s stage %s",
				br.name, d.Code, d.Stage, d.Partition, d.KafkaTime, d.Reason, br.code, br.stage)
		}
		if want := event.MaskRaw([]byte(br.raw)); !bytes.Equal(d.Raw, want) {
			t.Errorf("%s: raw %q, want %q", br.name, d.Raw, want)
		}
		if bytes.Contains(d.Raw, []byte("4111 1111 1111 1111")) {
			t.Errorf("%s: full card number kept in the dead-letter table", br.name)
		}
		if br.code == event.CodeBadAmount && !bytes.Contains(d.Raw, []byte("****1111")) {
			t.Errorf("%s: raw %q lacks the masked card number", br.name, d.Raw)
		}
		delete(bad, where{d.Topic, d.Offset})
	}
	for w, i := range bad {
		t.Errorf("%s (%s/%d) is not in the DLQ", badRecords[i].name, w.topic, w.offset)
	}
	got := h.rows(`SELECT event_id FROM outbox_rows ORDER BY event_id`)
	if len(got) != len(goodIDs) {
		t.Fatalf("%d outbox rows, want the %d good records", len(got), len(goodIDs))
	}
	for i, id := range sorted(goodIDs) {
		if got[i] != id {
			t.Fatalf("outbox row %d is %s, want %s", i, got[i], id)
		}
	}
	st := h.e.Stats()
	if st.Rejected != int64(len(badRecords)) || st.DLQRows != int64(len(badRecords)) || st.Accepted != int64(len(goodIDs)) {
		t.Fatalf("stats: rejected %d dlq %d accepted %d", st.Rejected, st.DLQRows, st.Accepted)
	}
	for _, br := range badRecords {
		if st.RejectedByCode[br.code] != 1 {
			t.Errorf("rejected.%s = %d, want 1", br.code, st.RejectedByCode[br.code])
		}
	}
	// Filtered records are counted, not stored.
	h.add("orders", 0, ev("t1", "s1", "1", at(0), "order_id", "TEST-1"), ev("hb", "s1", "1", at(0), "event_type", "heartbeat"))
	h.drain()
	st = h.e.Stats()
	if st.Filtered != 2 || st.FilteredByRule["test_orders"] != 1 || st.FilteredByRule["heartbeats"] != 1 {
		t.Fatalf("filtered %d by rule %v", st.Filtered, st.FilteredByRule)
	}
	if n := h.count(`SELECT count(*) FROM outbox_rows WHERE event_id IN ('t1', 'hb')`) + h.count(`SELECT count(*) FROM dlq WHERE topic = 'orders' AND "offset" >= ?`, h.next[wpart("orders", 0)]-2); n != 0 {
		t.Fatalf("filtered records stored (%d)", n)
	}
}
