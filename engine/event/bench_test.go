package event

import (
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// benchRecords returns n distinct ~300-byte events in the canonical
// mapping or in a shop's own names.
func benchRecords(n int, renamed bool) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		if renamed {
			out[i] = []byte(fmt.Sprintf(`{"id":"evt_%08d","orderId":"ORD-%07d","type":"orders/create","shop":{"id":"store-%03d"},"customer":{"id":"cust-%06d","email":"user%d@example.com"},"total_price":"%d.%02d","currency_code":"eur","source_name":"web","line_items":[{"sku":"SKU-%04d","quantity":%d,"price":"%d.50"}],"created_at":"2024-05-01T12:%02d:%02d.123Z"}`,
				i, i/2, i%500, i%100000, i%100000, 10+i%90, i%100, i%5000, 1+i%3, 5+i%20, i/60%60, i%60))
		} else {
			out[i] = []byte(fmt.Sprintf(`{"event_id":"evt_%08d","order_id":"ORD-%07d","event_type":"order_placed","store_id":"store-%03d","customer_id":"cust-%06d","customer_email":"user%d@example.com","amount":"%d.%02d","currency":"EUR","channel":"web","items":[{"sku":"SKU-%04d","qty":%d,"unit_price":"%d.50"}],"event_time":"2024-05-01T12:%02d:%02d.123Z"}`,
				i, i/2, i%500, i%100000, i%100000, 10+i%90, i%100, i%5000, 1+i%3, 5+i%20, i/60%60, i%60))
		}
	}
	return out
}

var renamedFields = map[string]string{
	"event_id": "id", "order_id": "orderId", "event_type": "type", "store_id": "shop.id",
	"customer_id": "customer.id", "customer_email": "customer.email", "amount": "total_price",
	"currency": "currency_code", "channel": "source_name", "items": "line_items",
	"items.qty": "quantity", "items.unit_price": "price", "event_time": "created_at",
}

// BenchmarkDecode measures Decode on ~300-byte JSON events (decode, filter,
// clean, validate, mask incl. one HMAC-SHA256 per event, enrich), one
// goroutine.
//
//	CGO_ENABLED=0 go test ./engine/event -run '^$' -bench BenchmarkDecode -benchmem
func BenchmarkDecode(b *testing.B) {
	rates, err := ParseRates(strings.NewReader("currency,rate\nEUR,1.0842\n"), "rates", "USD")
	if err != nil {
		b.Fatal(err)
	}
	var stores strings.Builder
	stores.WriteString("store_id,region,timezone\n")
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&stores, "store-%03d,eu-west,Europe/Paris\n", i)
	}
	ref, err := ParseReference(strings.NewReader(stores.String()), "stores")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name    string
		renamed bool
		csv     bool
	}{{"canonical", false, false}, {"renamed", true, false}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := testConfig()
			cfg.Rates, cfg.Reference = rates, ref
			cfg.Filters = []Rule{{Name: "tests", Field: "order_id", Prefix: []string{"TEST-"}}}
			if bc.renamed {
				cfg.Fields = renamedFields
			}
			d, err := NewDecoder(cfg)
			if err != nil {
				b.Fatal(err)
			}
			recs := benchRecords(4096, bc.renamed)
			size := 0
			for _, r := range recs {
				size += len(r)
			}
			var ev Event
			if res := d.Decode(recs[0], &ev); res.Verdict != Accepted || !ev.HasBaseAmount || !ev.HasReference || ev.CustomerEmailHash == "" || len(ev.Items) != 1 {
				b.Fatalf("%v %+v %+v", res.Verdict, res.Reject, ev)
			}
			b.SetBytes(int64(size / len(recs)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if res := d.Decode(recs[i&4095], &ev); res.Verdict != Accepted {
					b.Fatal(res.Reject)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkParseBaseline is fastjson's parse alone on the same records: the
// floor under BenchmarkDecode/canonical on the same machine.
func BenchmarkParseBaseline(b *testing.B) {
	recs := benchRecords(4096, false)
	var p fastjson.Parser
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := p.ParseBytes(recs[i&4095]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
