package event

import (
	"bytes"
	"math/big"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const goodJSON = `{"event_id":"good-%d","event_type":"order_placed","store_id":"s-1","amount":"10.00","currency":"EUR","event_time":"2024-05-01T12:00:00Z"}`

func good(i int) []byte {
	return []byte(strings.Replace(goodJSON, "%d", string(rune('a'+i%26)), 1))
}

// rec builds a canonical JSON record with one field replaced (or removed
// when value is "").
func rec(key, value string) []byte {
	fields := [][2]string{
		{"event_id", `"e-1"`}, {"event_type", `"order_placed"`}, {"store_id", `"s-1"`},
		{"amount", `"10.00"`}, {"currency", `"EUR"`}, {"event_time", `"2024-05-01T12:00:00Z"`},
	}
	var b strings.Builder
	b.WriteByte('{')
	found := false
	for _, f := range fields {
		v := f[1]
		if f[0] == key {
			v, found = value, true
			if v == "" {
				continue
			}
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + f[0] + `":` + v)
	}
	if !found {
		b.WriteString(`,"` + key + `":` + value)
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// TestRejectTable decodes one record of each kind of bad record, each
// between two good ones: every kind gets its own reject code, together they
// cover every code, and the records around a bad one are still accepted.
func TestRejectTable(t *testing.T) {
	rates, err := ParseRates(strings.NewReader("currency,rate\nEUR,27000\n"), "rates", "VND")
	if err != nil {
		t.Fatal(err)
	}
	jsonCfg := testConfig()
	jsonCfg.MaxRecordBytes = 4096
	ratesCfg := testConfig()
	ratesCfg.Rates = rates
	csvCfg := testConfig()
	csvCfg.Format = FormatCSV
	csvCfg.Columns = []string{"event_id", "event_type", "store_id", "amount", "currency", "event_time"}
	extraCfg := testConfig()
	extraCfg.ExtraColumns = map[string]ExtraColumn{"qty_total": {Source: "n", Type: ExtraInt}}
	dec := map[string]*Decoder{}
	for name, c := range map[string]Config{"json": jsonCfg, "rates": ratesCfg, "csv": csvCfg, "extra": extraCfg} {
		d, err := NewDecoder(c)
		if err != nil {
			t.Fatal(err)
		}
		dec[name] = d
	}
	goodFor := map[string][]byte{
		"json": good(1), "rates": good(2), "extra": good(3),
		"csv": []byte("good-csv,order_placed,s-1,10.00,EUR,2024-05-01T12:00:00Z"),
	}
	cases := []struct {
		name    string
		decoder string
		raw     []byte
		code    string
		field   string
	}{
		{"empty record", "json", []byte(" \n"), CodeEmptyRecord, ""},
		{"oversized record", "json", append(append([]byte(`{"event_id":"`), bytes.Repeat([]byte("x"), 5000)...), `"}`...), CodeOversized, ""},
		{"invalid UTF-8", "json", []byte("{\"event_id\":\"e\xff\xfe\"}"), CodeInvalidUTF8, ""},
		{"broken JSON", "json", []byte(`{"event_id":"e-1","amount":`), CodeInvalidJSON, ""},
		{"JSON array, not an object", "json", []byte(`[{"event_id":"e-1"}]`), CodeNotAnObject, ""},
		{"same key twice", "json", []byte(`{"event_id":"a","event_id":"b"}`), CodeDuplicateField, "event_id"},
		{"unclosed CSV quote", "csv", []byte(`"e-1,order_placed,s-1,10,EUR,2024-05-01T12:00:00Z`), CodeCSVSyntax, ""},
		{"wrong CSV column count", "csv", []byte(`e-1,order_placed,s-1,10,EUR`), CodeCSVColumnCount, ""},
		{"missing event_id", "json", rec("event_id", ""), CodeMissingField, "event_id"},
		{"object where a scalar belongs", "json", rec("amount", `{"value":"10.00"}`), CodeWrongType, "amount"},
		{"id too long", "json", rec("store_id", `"`+strings.Repeat("s", 300)+`"`), CodeFieldTooLong, "store_id"},
		{"control character", "json", rec("store_id", `"s\u0007"`), CodeControlCharacter, "store_id"},
		{"unknown event type", "json", rec("event_type", `"teleported"`), CodeBadEventType, "event_type"},
		{"not an e-mail", "json", rec("customer_email", `"ann at example.org"`), CodeBadEmail, "customer_email"},
		{"amount abc", "json", rec("amount", `"abc"`), CodeBadAmount, "amount"},
		{"amount with 5 decimals", "json", rec("amount", `"1.23456"`), CodeAmountPrecision, "amount"},
		{"negative amount", "json", rec("amount", `-5`), CodeAmountOutOfRange, "amount"},
		{"unknown currency", "json", rec("currency", `"DOGE"`), CodeUnknownCurrency, "currency"},
		{"card number without digits", "json", rec("card_number", `"n/a"`), CodeBadCardNumber, "card_number"},
		{"unknown channel", "json", rec("channel", `"carrier pigeon"`), CodeBadChannel, "channel"},
		{"unknown country", "json", rec("country", `"ZZ"`), CodeBadCountry, "country"},
		{"item not an object", "json", rec("items", `["A"]`), CodeBadItems, "items"},
		{"quantity zero", "json", rec("items", `[{"sku":"A","qty":0,"unit_price":1}]`), CodeBadQuantity, "items.qty"},
		{"negative price", "json", rec("items", `[{"sku":"A","qty":1,"unit_price":"-1"}]`), CodeBadPrice, "items.unit_price"},
		{"garbage timestamp", "json", rec("event_time", `"next tuesday"`), CodeBadTimestamp, "event_time"},
		{"timestamp a year ahead", "json", rec("event_time", `"2025-06-01T12:00:00Z"`), CodeFutureTimestamp, "event_time"},
		{"timestamp in 1970", "json", rec("event_time", `0`), CodeAncientTimestamp, "event_time"},
		{"base amount overflow", "rates", rec("amount", `"999999999999"`), CodeBaseAmountOverflow, "amount"},
		{"extra int column given text", "extra", rec("n", `"twelve"`), CodeBadExtraColumn, "qty_total"},
		// The remaining kinds each produce a code already listed above.
		{"truncated record", "json", []byte(`{"event_id":"e-1"`), CodeInvalidJSON, ""},
		{"bare string record", "json", []byte(`"just a string"`), CodeNotAnObject, ""},
		{"nested array for event_id", "json", rec("event_id", `["e-1"]`), CodeWrongType, "event_id"},
		{"boolean currency", "json", rec("currency", `true`), CodeWrongType, "currency"},
		{"NaN amount", "json", rec("amount", `"NaN"`), CodeBadAmount, "amount"},
		{"currency symbol", "json", rec("amount", `"€12.50"`), CodeBadAmount, "amount"},
	}
	codes := map[string]string{}
	var ev Event
	for i, tc := range cases {
		d := dec[tc.decoder]
		if res := d.Decode(goodFor[tc.decoder], &ev); res.Verdict != Accepted {
			t.Fatalf("%s: good record before it: %v %+v", tc.name, res.Verdict, res.Reject)
		}
		res := d.Decode(tc.raw, &ev)
		if res.Verdict != Rejected || res.Reject.Code != tc.code || res.Reject.Field != tc.field {
			t.Errorf("%s: got %v %+v; want rejected %s field %q", tc.name, res.Verdict, res.Reject, tc.code, tc.field)
			continue
		}
		if res.Reject.Reason == "" || res.Rule != -1 {
			t.Errorf("%s: reject without a reason or with a rule: %+v", tc.name, res)
		}
		if prev, dup := codes[tc.code]; dup && i < 29 {
			t.Errorf("%s and %s share code %s", prev, tc.name, tc.code)
		}
		codes[tc.code] = tc.name
		res = d.Decode(goodFor[tc.decoder], &ev)
		if res.Verdict != Accepted || ev.EventID == "" || ev.Amount != 10*DecimalUnit {
			t.Fatalf("%s: good record after it: %v %+v %+v", tc.name, res.Verdict, res.Reject, ev)
		}
	}
	if len(codes) < 20 {
		t.Errorf("only %d distinct codes", len(codes))
	}
	for _, c := range Codes() {
		if _, ok := codes[c]; !ok {
			t.Errorf("code %s has no case", c)
		}
	}
	for c := range codes {
		if !regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*$`).MatchString(c) {
			t.Errorf("code %q is not snake_case", c)
		}
	}
}

// TestMasking checks that no output field of an accepted event contains
// the e-mail address or a full card number, whatever the card's layout and
// whichever field carries it, and that digit runs that are not card numbers
// are kept.
func TestMasking(t *testing.T) {
	d, err := NewDecoder(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	const email = "Ann.Lee+shop@Example.org"
	cards := []string{
		"4111111111111111",
		"4111 1111 1111 1111",
		"4111-1111-1111-1111",
		"5555 5555 5555 4444",
		"3782 822463 10005",   // Amex 4-6-5
		"30569309025904",      // Diners, 14 digits
		"6011000990139424009", // 19 digits
		"4222222222222",       // 13 digits
		"4012 - 8888 - 8888 - 1881",
	}
	for _, card := range cards {
		for _, where := range []string{"card_number", "payment_method", "order_id", "customer_id", "event_id", "store_id", "sku"} {
			fields := map[string]string{
				"event_id": "e-1", "order_id": "o-1", "store_id": "s-1",
				"customer_id": "c-1", "payment_method": "card", "card_number": "4242", "sku": "A",
			}
			fields[where] = "x " + card + " y"
			if where == "card_number" {
				fields[where] = card
			}
			raw := `{"event_id":"` + fields["event_id"] + `","order_id":"` + fields["order_id"] +
				`","event_type":"order_placed","store_id":"` + fields["store_id"] +
				`","customer_id":"` + fields["customer_id"] + `","customer_email":" ` + email +
				` ","amount":"1","currency":"USD","payment_method":"` + fields["payment_method"] +
				`","card_number":"` + fields["card_number"] + `","items":[{"sku":"` + fields["sku"] +
				`","qty":1,"unit_price":1}],"event_time":1714566600}`
			var ev Event
			res := d.Decode([]byte(raw), &ev)
			if res.Verdict != Accepted {
				t.Fatalf("%s in %s: %v %+v", card, where, res.Verdict, res.Reject)
			}
			digits := strings.NewReplacer(" ", "", "-", "").Replace(card)
			for name, s := range stringsOf(&ev) {
				if strings.Contains(strings.ToLower(s), strings.ToLower(email)) {
					t.Errorf("%s in %s: field %s keeps the e-mail: %q", card, where, name, s)
				}
				if strings.Contains(strings.NewReplacer(" ", "", "-", "").Replace(s), digits) {
					t.Errorf("%s in %s: field %s keeps the card number: %q", card, where, name, s)
				}
				if name != "CustomerEmailHash" && panIn(s) {
					t.Errorf("%s in %s: field %s holds something card-like: %q", card, where, name, s)
				}
			}
			last4 := digits[len(digits)-4:]
			if where == "card_number" && ev.CardLast4 != last4 {
				t.Errorf("%s: CardLast4 = %q, want %q", card, ev.CardLast4, last4)
			}
			if where == "payment_method" && ev.PaymentMethod != "x ****"+last4+" y" {
				t.Errorf("%s: PaymentMethod = %q", card, ev.PaymentMethod)
			}
			if len(ev.CustomerEmailHash) != 64 {
				t.Errorf("hash %q", ev.CustomerEmailHash)
			}
		}
	}

	// Digit runs that are not card numbers are kept as they are.
	for _, keep := range []string{
		"4111111111111112",              // fails Luhn
		"4111 1111 1111 1112",           // fails Luhn
		"411111111111",                  // 12 digits
		"12345678901234567890123",       // one group longer than 19 digits
		"+1 415-555-0123",               // phone number
		"2024-05-01 12:30:00",           // date
		"4111    1111 1111 1111",        // four spaces: not one run
		"order 00000000000000000000001", // long id
	} {
		var ev Event
		raw := rec("payment_method", `"`+keep+`"`)
		if res := d.Decode(raw, &ev); res.Verdict != Accepted || ev.PaymentMethod != keep {
			t.Errorf("%q: %v %+v, PaymentMethod %q", keep, res.Verdict, res.Reject, ev.PaymentMethod)
		}
	}

	// Keyed tokens in identifier fields: stable per card, distinct across
	// cards, and the ids around them stay apart.
	tok := func(id string) string {
		var ev Event
		if res := d.Decode(rec("event_id", `"`+id+`"`), &ev); res.Verdict != Accepted {
			t.Fatalf("%s: %+v", id, res.Reject)
		}
		return ev.EventID
	}
	a, b, c := tok("4111111111111111"), tok("4111-1111-1111-1111"), tok("4012888888881881")
	if a != b || a == c || !strings.HasPrefix(a, "****1111#") || !strings.HasPrefix(c, "****1881#") {
		t.Errorf("tokens: %q %q %q", a, b, c)
	}
	if x, y := tok("A-4111111111111111"), tok("B-4111111111111111"); x == y {
		t.Errorf("distinct ids collapsed: %q", x)
	}
	// Another key gives other tokens and hashes.
	cfg := testConfig()
	cfg.HashKey = []byte("another-key-0123456789")
	d2, err := NewDecoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ev1, ev2 Event
	raw := rec("customer_email", `"ann@example.org"`)
	d.Decode(raw, &ev1)
	d2.Decode(raw, &ev2)
	if ev1.CustomerEmailHash == ev2.CustomerEmailHash {
		t.Error("the hash does not depend on the key")
	}
}

// stringsOf returns every string of ev (items included) by field name.
func stringsOf(ev *Event) map[string]string {
	out := map[string]string{}
	v := reflect.ValueOf(ev).Elem()
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); f.Kind() == reflect.String {
			out[v.Type().Field(i).Name] = f.String()
		}
	}
	for i, it := range ev.Items {
		out["Items["+string(rune('0'+i%10))+"].SKU"] = it.SKU
	}
	return out
}

var (
	panRunRE   = regexp.MustCompile(`[0-9]+(?:[ -]{1,3}[0-9]+)*`)
	panGroupRE = regexp.MustCompile(`[0-9]+`)
	emailRE    = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z0-9-]+`)
)

// panIn is an independent statement of the card-number rule: a span of
// whole digit groups of one run, not starting with 0 or 1, 13 to 19
// digits, passing Luhn.
func panIn(s string) bool {
	for _, run := range panRunRE.FindAllString(s, -1) {
		groups := panGroupRE.FindAllString(run, -1)
		for i := range groups {
			if groups[i][0] == '0' || groups[i][0] == '1' {
				continue // no card number starts with 0 or 1 (see mask.go)
			}
			digits := ""
			for j := i; j < len(groups); j++ {
				digits += groups[j]
				if len(digits) > 19 {
					break
				}
				if len(digits) >= 13 && luhnString(digits) {
					return true
				}
			}
		}
	}
	return false
}

func luhnString(s string) bool {
	sum := 0
	for i := 0; i < len(s); i++ {
		d := int(s[len(s)-1-i] - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

func TestMaskRaw(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"card":"4111 1111 1111 1111","n":1}`, `{"card":"****1111","n":1}`},
		{`{"card":4111111111111111}`, `{"card":****1111}`},
		{`a,4111-1111-1111-1111,5555555555554444,b`, `a,****1111,****4444,b`},
		{`{"id":"4111111111111112"}`, `{"id":"4111111111111112"}`},
		{`{"ts":1714566600123,"phone":"+1 415 555 0123"}`, `{"ts":1714566600123,"phone":"+1 415 555 0123"}`},
		{``, ``},
		{`4111 1111 1111 1111 1111 1111 1111 111`, `****1111 1111 1111 1111 111`},
		{`{"ts":1714566600123,"us":1714566600123456}`, `{"ts":1714566600123,"us":1714566600123456}`},
		{`{"uatp":"1" , "n":"0000000000000000"}`, `{"uatp":"1" , "n":"0000000000000000"}`},
	} {
		in := []byte(tc.in)
		got := MaskRaw(in)
		if string(got) != tc.want {
			t.Errorf("MaskRaw(%s) = %s, want %s", tc.in, got, tc.want)
		}
		if string(in) != tc.in {
			t.Errorf("MaskRaw modified its input: %s", in)
		}
		if panIn(string(got)) {
			t.Errorf("MaskRaw(%s) still holds a card number: %s", tc.in, got)
		}
	}
	clean := []byte(`{"event_id":"e-1"}`)
	if out := MaskRaw(clean); &out[0] != &clean[0] {
		t.Error("MaskRaw copied a record with nothing to mask")
	}
}

func TestDecimal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Decimal
		err  error
	}{
		{"0", 0, nil},
		{"-0", 0, nil},
		{"1", 10000, nil},
		{"12.5", 125000, nil},
		{"-12.5", -125000, nil},
		{"+0.0001", 1, nil},
		{"1.23450000", 12345, nil},
		{".5", 5000, nil},
		{"5.", 50000, nil},
		{"1e3", 10000000, nil},
		{"1.5E-2", 150, nil},
		{"0.00e-99", 0, nil},
		{"922337203685477.5807", 1<<63 - 1, nil},
		{"-922337203685477.5807", -(1<<63 - 1), nil},
		{"922337203685477.5808", 0, ErrDecimalRange},
		{"1e15", 0, ErrDecimalRange},
		{"1e99999999999", 0, ErrDecimalRange},
		{"0.00001", 0, ErrDecimalPrecision},
		{"1e-5", 0, ErrDecimalPrecision},
		{"1e-99999999999", 0, ErrDecimalPrecision},
		{"", 0, ErrDecimalSyntax},
		{".", 0, ErrDecimalSyntax},
		{"-", 0, ErrDecimalSyntax},
		{"1e", 0, ErrDecimalSyntax},
		{"1,000", 0, ErrDecimalSyntax},
		{" 1", 0, ErrDecimalSyntax},
		{"0x1", 0, ErrDecimalSyntax},
		{"Inf", 0, ErrDecimalSyntax},
	} {
		got, err := ParseDecimal(tc.in)
		if got != tc.want || err != tc.err {
			t.Errorf("ParseDecimal(%q) = %d, %v; want %d, %v", tc.in, int64(got), err, int64(tc.want), tc.err)
		}
	}
	for _, tc := range []struct {
		d    Decimal
		want string
	}{
		{0, "0"}, {1, "0.0001"}, {-1, "-0.0001"}, {10000, "1"}, {125000, "12.5"},
		{123456789, "12345.6789"}, {-(1 << 63), "-922337203685477.5808"}, {1<<63 - 1, "922337203685477.5807"},
	} {
		if got := tc.d.String(); got != tc.want {
			t.Errorf("Decimal(%d).String() = %q, want %q", int64(tc.d), got, tc.want)
		}
	}
	// Half-to-even rounding of conversions (rate units are 1e-10).
	for _, tc := range []struct {
		a    Decimal
		rate int64
		want Decimal
	}{
		{5, 1e10 / 2, 2},   // 0.00025 → 0.0002
		{15, 1e10 / 10, 2}, // 0.00015 → 0.0002
		{25, 1e10 / 10, 2}, // 0.00025 → 0.0002
		{35, 1e10 / 10, 4}, // 0.00035 → 0.0004
		{-35, 1e10 / 10, -4},
		{3, 3333333333, 1}, // 3 × 0.3333333333 = 0.99999… units → 1 unit
		{1<<63 - 1, 1e10, 1<<63 - 1},
	} {
		if got, ok := mulRate(tc.a, tc.rate); !ok || got != tc.want {
			t.Errorf("mulRate(%s, %d) = %s %v; want %s", tc.a, tc.rate, got, ok, tc.want)
		}
	}
	if _, ok := mulRate(1<<62, 3e10); ok {
		t.Error("overflow not detected")
	}
}

// TestDecimalExact checks ParseDecimal against math/big on generated
// inputs: whatever it accepts is exactly the rational the text denotes.
func TestDecimalExact(t *testing.T) {
	for _, s := range []string{"1.1", "0.3", "123456.7891", "1e4", "9.9999", "0.1e1", "33.33e-2"} {
		checkDecimalExact(t, s)
	}
}

func checkDecimalExact(t testing.TB, s string) {
	d, err := ParseDecimal(s)
	if err != nil {
		return
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		if d == 0 && strings.ContainsAny(s, "eE") {
			return // zero with an exponent too large for big.Rat
		}
		t.Fatalf("ParseDecimal accepted %q, which big.Rat rejects", s)
	}
	want := new(big.Rat).SetFrac(big.NewInt(int64(d)), big.NewInt(int64(DecimalUnit)))
	if r.Cmp(want) != 0 {
		t.Fatalf("ParseDecimal(%q) = %s, want %s", s, d, r.FloatString(6))
	}
	back, err := ParseDecimal(d.String())
	if err != nil || back != d {
		t.Fatalf("round trip of %q: %s → %v %v", s, d, back, err)
	}
}

// TestStringsSurviveReuse checks that an Event's strings stay valid when
// the Decoder and the Event are reused, while Items is documented reuse.
func TestStringsSurviveReuse(t *testing.T) {
	d, err := NewDecoder(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	var ev Event
	d.Decode(rec("items", `[{"sku":"first","qty":1,"unit_price":1}]`), &ev)
	id, sku := ev.EventID, ev.Items[0].SKU
	for i := 0; i < 5000; i++ {
		if res := d.Decode(rec("event_id", `"other-`+strings.Repeat("z", i%200)+`"`), &ev); res.Verdict != Accepted {
			t.Fatal(res.Reject)
		}
	}
	if id != "e-1" || sku != "first" {
		t.Errorf("strings changed under reuse: %q %q", id, sku)
	}
}

// TestConfigYAML checks the YAML form of Config: decimals, durations and
// the inline mapping.
func TestConfigYAML(t *testing.T) {
	var c Config
	err := yaml.Unmarshal([]byte(`
format: csv
header_line: "id,kind,store,total,cur,ts"
fields: {event_id: id, event_type: kind, store_id: store, amount: total, currency: cur, event_time: ts}
min_amount: 0.01
max_amount: "25000"
max_future_skew: 2h
filters:
  - {name: tests, field: order_id, prefix: [TEST-]}
`), &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Format != "csv" || c.MinAmount != 100 || c.MaxAmount != 25000*DecimalUnit ||
		c.MaxFutureSkew != 2*time.Hour || len(c.Filters) != 1 || c.Fields["amount"] != "total" {
		t.Fatalf("decoded %+v", c)
	}
	c.HashKey = testKey
	c.EnsureDefaults()
	if err := c.Validate("topics.orders"); err != nil {
		t.Fatal(err)
	}
	c.Fields["amount"] = "price"
	err = c.Validate("topics.orders")
	if err == nil || !strings.Contains(err.Error(), `topics.orders.fields.amount: column "price" is not among the header_line`) {
		t.Fatalf("error does not name the option: %v", err)
	}
	m := Mapping{Format: "json", Fields: map[string]string{"amount": "a..b"}}
	if err := m.Validate("topics.shop"); err == nil || !strings.HasPrefix(err.Error(), "topics.shop.fields.amount: ") {
		t.Fatalf("Mapping.Validate: %v", err)
	}
	var nokey Config
	nokey.EnsureDefaults()
	if _, err := NewDecoder(nokey); err == nil || !strings.Contains(err.Error(), "hash key is 0 bytes") {
		t.Fatalf("empty hash key: %v", err)
	}
}

// TestCodeTables checks the embedded lists.
func TestCodeTables(t *testing.T) {
	if n := len(Currencies()); n < 170 {
		t.Errorf("%d currencies", n)
	}
	for _, c := range []string{"USD", "EUR", "JPY", "GBP", "CHF", "CNY", "INR", "BRL"} {
		if !IsCurrency(c) {
			t.Errorf("%s missing", c)
		}
	}
	for _, c := range []string{"usd", "XTS", "XXX", "ABC", "US", ""} {
		if IsCurrency(c) {
			t.Errorf("%q accepted", c)
		}
	}
	for _, c := range []string{"US", "DE", "GB", "FR", "JP", "AQ"} {
		if !IsCountry(c) {
			t.Errorf("%s missing", c)
		}
	}
	for _, c := range []string{"UK", "us", "XX", "USA", ""} {
		if IsCountry(c) {
			t.Errorf("%q accepted", c)
		}
	}
}

// TestEnrichAPI covers the tables' own API and swapping them on a live
// Decoder (how the engine reloads them).
func TestEnrichAPI(t *testing.T) {
	r, err := LoadRates("testdata/rates.csv", "USD")
	if err != nil {
		t.Fatal(err)
	}
	if r.Base() != "USD" || r.Len() != 4 {
		t.Fatalf("base %s len %d", r.Base(), r.Len())
	}
	if v, ok, of := r.Convert(MustParseDecimal("100"), "EUR"); !ok || of || v.String() != "108.42" {
		t.Errorf("Convert EUR: %s %v %v", v, ok, of)
	}
	if v, ok, _ := r.Convert(MustParseDecimal("3.5"), "USD"); !ok || v != MustParseDecimal("3.5") {
		t.Errorf("Convert base: %s %v", v, ok)
	}
	if _, ok, of := r.Convert(1, "SEK"); ok || of {
		t.Error("SEK has no rate")
	}
	ref, err := LoadReference("testdata/stores.csv")
	if err != nil {
		t.Fatal(err)
	}
	if ref.Key() != "store_id" || ref.Len() != 3 || len(ref.Columns()) != 4 {
		t.Fatalf("reference %s %d %v", ref.Key(), ref.Len(), ref.Columns())
	}
	if row, ok := ref.Lookup("s-2"); !ok || row[3] != "Fifth Avenue, NYC" {
		t.Errorf("Lookup: %q %v", row, ok)
	}

	d, err := NewDecoder(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	var ev Event
	d.Decode(good(0), &ev)
	if ev.HasBaseAmount || ev.HasReference {
		t.Fatal("enriched without tables")
	}
	d.SetRates(r)
	d.SetReference(ref)
	if res := d.Decode(rec("store_id", `"s-1"`), &ev); res.Verdict != Accepted || !ev.HasBaseAmount ||
		ev.BaseAmount.String() != "10.842" || ev.Region != "eu-west" || ev.Timezone != "Europe/Paris" {
		t.Fatalf("%+v %+v", res, ev)
	}
	d.SetRates(nil)
	if d.Decode(good(0), &ev); ev.HasBaseAmount {
		t.Fatal("rates not dropped")
	}
}

// TestAmountBoundsFitTheOutbox refuses amount bounds the outbox's
// DECIMAL(18,4) columns cannot hold, naming the option.
func TestAmountBoundsFitTheOutbox(t *testing.T) {
	for _, tc := range []struct {
		min, max Decimal
		want     string
	}{
		{0, MaxStoredAmount + 1, "topics.orders.max_amount: 100000000000000 is above 99999999999999.9999"},
		{-MaxStoredAmount - 1, 0, "topics.orders.min_amount: -100000000000000 is below -99999999999999.9999"},
		{-MaxStoredAmount, MaxStoredAmount, ""},
	} {
		c := Config{HashKey: testKey, MinAmount: tc.min, MaxAmount: tc.max}
		c.EnsureDefaults()
		err := c.Validate("topics.orders")
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("min %s max %s: got %v, want %q", tc.min, tc.max, err, tc.want)
		}
	}
}
