package event

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Fuzz targets. Each never panics and checks that an accepted event
// satisfies the validation invariants (checkAccepted). Seeds are below and
// in testdata/fuzz/<target>/. Run one with, e.g.:
//
//	CGO_ENABLED=0 go test ./engine/event -run '^$' -fuzz '^FuzzDecodeJSON$' -fuzztime 20s

var jsonSeeds = []string{
	`{"event_id":"e-1","order_id":"o-1","event_type":"order_placed","store_id":"s-1","customer_id":"c-1","customer_email":"Jane.Doe@Example.com","amount":"12.50","currency":"usd","payment_method":"card 4111 1111 1111 1111","card_number":"4111-1111-1111-1111","channel":"web","country":"us","items":[{"sku":"A-1","qty":2,"unit_price":"5.00"}],"event_time":"2024-05-01T12:30:00Z"}`,
	`{"event_id":123,"event_type":"REFUND","store_id":"qa-1","amount":1e2,"currency":"JPY","event_time":1714566600123,"items":"A:1:1|B:2:2.5"}`,
	`{"event_type":"heartbeat"}`,
	`{"event_id":"e","event_id":"f"}`,
	`{"event_id":"e","event_type":"order_placed","store_id":"s","amount":"1,234.56","currency":"EUR","event_time":"2024-05-01 12:30:00.123 +02:00","channel":"iOS"}`,
	`{"event_id":"4111111111111111","event_type":"cancel","store_id":"5555 5555 5555 4444","amount":0,"currency":"GBP","event_time":"1714566600.5","customer_id":"x@y.io"}`,
	`[1,2,3]`,
	`{"amount":{"v":1}}`,
	"{\"event_id\":\"\\u0000\"}",
	`{"event_id":"e","event_type":"order_placed","store_id":"s","amount":"1","currency":"USD","event_time":"2024-06-02T12:00:00Z","items":[{"sku":"A","qty":10000,"unit_price":"999999999999.9999"}]}`,
}

var csvSeeds = []string{
	"e-1,order_placed,s-1,12.50,usd,2024-05-01T12:30:00Z,web,A-1:2:5.00|B-2:1:2.50,ann@example.org,4111 1111 1111 1111,US",
	"\"e-2\",\"Order Placed\",s-1,\"1,234.50\",EUR,1714566600,,,,,\n",
	"e-3,refund,\"s \"\"q\"\"\",1,USD,\"2024-05-01 12:30:00\",pos,,,,",
	"e-4,heartbeat,,,,,,,,,",
	"\"unclosed,a,b",
	"a,b",
	"",
}

func fuzzConfig(t testing.TB) Config {
	rates, err := ParseRates(strings.NewReader("currency,rate\nEUR,1.0842\nJPY,0.0066891234\nGBP,1.265\n"), "rates", "USD")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := ParseReference(strings.NewReader("store_id,region,timezone\ns-1,eu,Europe/Paris\n"), "stores")
	if err != nil {
		t.Fatal(err)
	}
	c := testConfig()
	c.Rates, c.Reference = rates, ref
	c.Filters = []Rule{
		{Name: "heartbeats", Field: "event_type", Equals: []string{"heartbeat"}},
		{Name: "qa", Field: "store_id", Prefix: []string{"qa-"}},
	}
	return c
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	cfg := fuzzConfig(f)
	d, parsed := decoderPair(f, cfg)
	var ev, want Event
	f.Fuzz(func(t *testing.T, raw []byte) {
		res := d.Decode(raw, &ev)
		checkResult(t, res, &ev, cfg, raw)
		checkSameDecode(t, raw, res, &ev, parsed.Decode(raw, &want), &want)
	})
}

func FuzzDecodeCSV(f *testing.F) {
	for _, s := range csvSeeds {
		f.Add([]byte(s))
	}
	cfg := fuzzConfig(f)
	cfg.Format = FormatCSV
	cfg.Columns = []string{"event_id", "event_type", "store_id", "amount", "currency", "event_time", "channel", "items", "customer_email", "card_number", "country"}
	d, err := NewDecoder(cfg)
	if err != nil {
		f.Fatal(err)
	}
	var ev Event
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkResult(t, d.Decode(raw, &ev), &ev, cfg, raw)
	})
}

// FuzzMapping fuzzes the mapping configuration together with a record:
// fields is "canonical=source;..." and columns a CSV header line. Invalid
// configurations must be refused with an error, never a panic; valid ones
// must decode safely.
func FuzzMapping(f *testing.F) {
	f.Add("json", "order_id=orderId;amount=total_price;customer_email=customer.email;items=line_items;items.sku=variant.sku;items.qty=quantity", "", ",",
		[]byte(`{"event_id":"e","orderId":"o","event_type":"sale","store_id":"s","total_price":"9.90","currency":"EUR","event_time":1714566600,"customer":{"email":"a@b.co"},"line_items":[{"variant":{"sku":"A"},"quantity":1,"unit_price":1}]}`))
	f.Add("json", "customer_id=customer;customer_email=customer.email", "", ",", []byte(`{}`))
	f.Add("json", "store_id=a.b.c.d.e.f.g.h.i;channel=-", "", ",", []byte(`{"a":{"b":{}}}`))
	f.Add("csv", "event_id=id;amount=total", "id;event_type;store_id;total;currency;event_time", ";",
		[]byte("e;refund;s;1,5;EUR;2024-05-01T00:00:00Z"))
	f.Add("csv", "", "event_id,event_id", ",", []byte("a,b"))
	f.Add("xml", "", "", "", []byte("<x/>"))
	f.Fuzz(func(t *testing.T, format, fields, header, delim string, raw []byte) {
		cfg := fuzzConfig(t)
		cfg.Format = format
		cfg.Delimiter = delim
		if format == FormatCSV {
			cfg.HeaderLine = header
		}
		cfg.Required = []string{"event_id"}
		cfg.Fields = map[string]string{}
		for _, kv := range strings.Split(fields, ";") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				cfg.Fields[k] = v
			}
		}
		verr := cfg.Mapping.Validate("topics.t")
		d, err := NewDecoder(cfg)
		if (verr == nil) != (err == nil) && !strings.Contains(errString(err), "required") {
			t.Fatalf("Mapping.Validate %v but NewDecoder %v", verr, err)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		var ev, want Event
		res := d.Decode(raw, &ev)
		checkResult(t, res, &ev, cfg, raw)
		parsed, _ := NewDecoder(cfg)
		parsed.noScan = true
		checkSameDecode(t, raw, res, &ev, parsed.Decode(raw, &want), &want)
		checkResult(t, d.Decode(raw, &ev), &ev, cfg, raw) // reused state
	})
}

// decoderPair returns two decoders for cfg: d with the record scan and
// parsed with fastjson's path alone, to compare them.
func decoderPair(t testing.TB, cfg Config) (d, parsed *Decoder) {
	t.Helper()
	d, err := NewDecoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if parsed, err = NewDecoder(cfg); err != nil {
		t.Fatal(err)
	}
	parsed.noScan = true
	return d, parsed
}

// checkSameDecode fails unless the record scan's decoding of raw (res, ev)
// is the fastjson path's (wantRes, want): the same verdict, reason and
// event, field by field.
func checkSameDecode(t *testing.T, raw []byte, res Result, ev *Event, wantRes Result, want *Event) {
	t.Helper()
	if res != wantRes {
		t.Fatalf("%q: record scan gives %+v, fastjson's parse %+v", raw, res, wantRes)
	}
	if res.Verdict != Accepted {
		return
	}
	a, b := *ev, *want
	a.Items, b.Items = nil, nil
	if !reflect.DeepEqual(a, b) || !slices.Equal(ev.Items, want.Items) {
		t.Fatalf("%q: record scan gives\n%+v\nfastjson's parse\n%+v", raw, *ev, *want)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// FuzzDecimal checks ParseDecimal against math/big: whatever it accepts is
// exactly the number the text denotes, and String round-trips.
func FuzzDecimal(f *testing.F) {
	for _, s := range []string{"0", "12.50", "-1.2345", "1e3", "1.5E-2", ".5", "922337203685477.5807", "1.23450"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkDecimalExact(t, s)
	})
}

func checkResult(t *testing.T, res Result, ev *Event, cfg Config, raw []byte) {
	t.Helper()
	switch res.Verdict {
	case Rejected:
		r := res.Reject
		if r.Code == "" || r.Reason == "" {
			t.Fatalf("reject without code or reason: %+v", r)
		}
		known := false
		for _, c := range Codes() {
			known = known || c == r.Code
		}
		if !known {
			t.Fatalf("unknown code %q", r.Code)
		}
		if panIn(r.Reason) || emailRE.MatchString(r.Reason) {
			t.Fatalf("reason carries personal data: %q", r.Reason)
		}
		return
	case Filtered:
		if res.Rule < 0 || res.Rule >= len(cfg.Filters) {
			t.Fatalf("filtered by rule %d", res.Rule)
		}
		return
	case Accepted:
	default:
		t.Fatalf("verdict %d", res.Verdict)
	}
	checkAccepted(t, ev, cfg, raw)
}

// checkAccepted asserts the validation invariants of an accepted event.
func checkAccepted(t *testing.T, ev *Event, cfg Config, raw []byte) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("accepted %q: "+format, append([]any{raw}, args...)...)
	}
	cfg.EnsureDefaults()
	for name, js := range map[string]string{"attributes": ev.Attributes, "extras": ev.Extras} {
		if js != "" && (!json.Valid([]byte(js)) || js[0] != '{') {
			fail("%s %q is not a JSON object", name, js)
		}
	}
	if ev.Currency != "" && !IsCurrency(ev.Currency) {
		fail("currency %q", ev.Currency)
	}
	if ev.Country != "" && !IsCountry(ev.Country) {
		fail("country %q", ev.Country)
	}
	switch ev.EventType {
	case "", EventOrderPlaced, EventPaymentCaptured, EventRefund, EventCancel:
	default:
		fail("event type %q", ev.EventType)
	}
	switch ev.Channel {
	case "", ChannelWeb, ChannelApp, ChannelPOS:
	default:
		fail("channel %q", ev.Channel)
	}
	if !ev.EventTime.IsZero() {
		if ev.EventTime.Location() != time.UTC {
			fail("event time not UTC: %v", ev.EventTime)
		}
		if ev.EventTime.Before(MinEventTime) || ev.EventTime.After(testNow.Add(cfg.MaxFutureSkew)) {
			fail("event time %v out of bounds", ev.EventTime)
		}
	}
	if ev.Amount < cfg.MinAmount || ev.Amount > cfg.MaxAmount {
		fail("amount %s", ev.Amount)
	}
	if ev.Amount != 0 && ev.Currency == "" {
		fail("amount without currency")
	}
	if len(ev.Items) > cfg.MaxItems {
		fail("%d items", len(ev.Items))
	}
	for _, it := range ev.Items {
		if it.SKU == "" || it.Qty < MinQty || it.Qty > MaxQty || it.UnitPrice < 0 || it.UnitPrice > cfg.MaxAmount {
			fail("item %+v", it)
		}
	}
	if len(ev.CardLast4) > 4 || strings.Trim(ev.CardLast4, "0123456789") != "" {
		fail("card last4 %q", ev.CardLast4)
	}
	if h := ev.CustomerEmailHash; h != "" && (len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "") {
		fail("e-mail hash %q", h)
	}
	for name, s := range stringsOf(ev) {
		if name == "CustomerEmailHash" {
			continue
		}
		if panIn(s) {
			fail("field %s holds a card number: %q", name, s)
		}
		if emailRE.MatchString(s) {
			fail("field %s holds an e-mail address: %q", name, s)
		}
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] == 0x7f {
				fail("field %s has a control character: %q", name, s)
			}
		}
		if s != strings.TrimSpace(s) {
			fail("field %s is not trimmed: %q", name, s)
		}
	}
	if ev.RawSize != len(raw) {
		fail("raw size %d", ev.RawSize)
	}
}
