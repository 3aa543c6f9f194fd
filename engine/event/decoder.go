package event

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"
)

// maxFieldBytes bounds a kept string field after trimming.
const maxFieldBytes = 256

// Quantity bounds of an item.
const (
	MinQty = 1
	MaxQty = 10000
)

// slabSize is the size of the blocks Event strings are carved from.
const slabSize = 16 << 10

// Decoder turns raw records into Events. It keeps scratch state between
// calls (a JSON parser, buffers, the HMAC), so it is used by one goroutine
// at a time; make one per goroutine.
type Decoder struct {
	cfg      Config
	m        *compiled
	rules    []compiledRule
	required []field
	rates    *Rates
	ref      *Reference

	parser    fastjson.Parser
	csv       csvSplitter
	slots     [numTop]rawVal
	itemSlots [3]rawVal
	num       []byte // number texts of the current record
	stampTop  []uint32
	stampItem []uint32
	gen       uint32
	walkErr   Reject
	scanned   [][3]rawVal // the item slots of scanItems
	noScan    bool        // tests: always parse with fastjson

	rej     Reject
	itemIdx int  // index of the item being cleaned, for reasons; -1 outside items
	curIdx  int  // currency table index of the current record
	hasAmt  bool // the current record has an amount
	slab    []byte
	scratch [2][]byte
	groups  []span
	mailBuf []byte
	amtBuf  []byte
	lower   []byte
	mac     hash.Hash
	sum     []byte
}

type valKind uint8

const (
	vAbsent valKind = iota
	vString
	vNumber
	vBool
	vObject
	vArray
)

var kindNames = [...]string{"absent", "string", "number", "boolean", "object", "array"}

// rawVal is one mapped source value before cleaning.
type rawVal struct {
	kind valKind
	b    []byte          // vString, vNumber: the text (JSON strings unescaped); vArray from the record scan: the array's text
	jv   *fastjson.Value // vArray from fastjson's parse
}

type compiledRule struct {
	field  field
	equals [][]byte
	prefix [][]byte
}

// NewDecoder validates cfg (after filling its defaults) and returns a
// Decoder for it. cfg.HashKey is copied.
func NewDecoder(cfg Config) (*Decoder, error) {
	cfg.EnsureDefaults()
	m, err := cfg.compile("")
	if len(cfg.HashKey) < MinHashKeyBytes {
		err = errors.Join(err, fmt.Errorf("event: hash key is %d bytes; it must be at least %d (give it as a file or environment variable)", len(cfg.HashKey), MinHashKeyBytes))
	}
	if err != nil {
		return nil, err
	}
	d := &Decoder{cfg: cfg, m: m, rates: cfg.Rates, ref: cfg.Reference}
	d.cfg.HashKey = append([]byte(nil), cfg.HashKey...)
	for _, r := range cfg.Filters {
		f, _ := lookupField(r.Field)
		cr := compiledRule{field: f}
		for _, e := range r.Equals {
			cr.equals = append(cr.equals, []byte(e))
		}
		for _, p := range r.Prefix {
			cr.prefix = append(cr.prefix, []byte(p))
		}
		d.rules = append(d.rules, cr)
	}
	for _, name := range cfg.Required {
		f, _ := lookupField(name)
		d.required = append(d.required, f)
	}
	if m.json {
		d.stampTop = make([]uint32, len(m.top.nodes))
		d.stampItem = make([]uint32, len(m.item.nodes))
	}
	d.mac = hmac.New(sha256.New, d.cfg.HashKey)
	return d, nil
}

// SetRates replaces the rates table (nil: no base amounts) for the records
// decoded after it.
func (d *Decoder) SetRates(r *Rates) { d.rates = r }

// SetReference replaces the reference table (nil: none) for the records
// decoded after it.
func (d *Decoder) SetReference(r *Reference) { d.ref = r }

// Decode decodes, filters, cleans, validates, masks and enriches one raw
// record into ev, reusing ev.Items' storage. ev is complete only when the
// verdict is Accepted.
func (d *Decoder) Decode(raw []byte, ev *Event) Result {
	*ev = Event{Items: ev.Items[:0], RawSize: len(raw)}
	d.rej = Reject{}
	d.hasAmt, d.curIdx, d.itemIdx = false, 0, -1
	if !d.decode(raw) {
		return Result{Verdict: Rejected, Rule: -1, Reject: d.rej}
	}
	if rule := d.filter(); rule >= 0 {
		return Result{Verdict: Filtered, Rule: rule}
	}
	if !d.clean(ev) {
		return Result{Verdict: Rejected, Rule: -1, Reject: d.rej}
	}
	return Result{Verdict: Accepted, Rule: -1}
}

// decode parses raw and fills d.slots with the mapped source values.
func (d *Decoder) decode(raw []byte) bool {
	if len(raw) > d.cfg.MaxRecordBytes {
		return d.failRecord(CodeOversized, "record is %d bytes; the limit is %d (max_record_bytes)", len(raw), d.cfg.MaxRecordBytes)
	}
	blank := true
	for _, c := range raw {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			blank = false
			break
		}
	}
	if blank {
		return d.failRecord(CodeEmptyRecord, "record is empty")
	}
	if !utf8.Valid(raw) {
		return d.failRecord(CodeInvalidUTF8, "record is not valid UTF-8 (first bad byte at offset %d)", firstInvalidUTF8(raw))
	}
	d.slots = [numTop]rawVal{}
	if !d.m.json {
		return d.decodeCSV(raw)
	}
	if !d.noScan && d.scanRecord(raw) {
		return true
	}
	d.slots = [numTop]rawVal{} // what the scan filled before it gave up
	v, err := d.parser.ParseBytes(raw)
	if err != nil {
		return d.failRecord(CodeInvalidJSON, "%s", sanitizeText([]byte(err.Error()), 300))
	}
	if t := v.Type(); t != fastjson.TypeObject {
		return d.failRecord(CodeNotAnObject, "record is a JSON %s; an event is a JSON object", t)
	}
	o, _ := v.Object()
	if cap(d.num) < len(raw) {
		d.num = make([]byte, 0, len(raw))
	}
	d.num = d.num[:0]
	d.nextGen()
	d.walkErr = Reject{}
	d.walk(&d.m.top, d.stampTop, 0, o, d.slots[:], 0)
	if d.walkErr.Code != "" {
		d.rej = d.walkErr
		return false
	}
	return true
}

func (d *Decoder) decodeCSV(raw []byte) bool {
	cells, err := d.csv.split(raw, d.m.delim)
	if err != nil {
		return d.failRecord(CodeCSVSyntax, "%v", err)
	}
	if len(cells) != d.m.ncols {
		return d.failRecord(CodeCSVColumnCount, "record has %d columns; the mapping names %d", len(cells), d.m.ncols)
	}
	for f := field(0); f < numTop; f++ {
		if c := d.m.cols[f]; c >= 0 {
			d.slots[f] = rawVal{kind: vString, b: cells[c]}
		}
	}
	return true
}

func (d *Decoder) nextGen() {
	d.gen++
	if d.gen == 0 { // wrapped: old stamps could collide
		clear(d.stampTop)
		clear(d.stampItem)
		d.gen = 1
	}
}

// walk visits the keys of object o, which is node n of tree t, and stores
// the values of leaf keys in slots (indexed by field - base).
func (d *Decoder) walk(t *pathTree, stamps []uint32, n int32, o *fastjson.Object, slots []rawVal, base field) {
	o.Visit(func(k []byte, v *fastjson.Value) {
		if d.walkErr.Code != "" {
			return
		}
		c := t.child(n, k)
		if c < 0 {
			return
		}
		node := &t.nodes[c]
		if stamps[c] == d.gen {
			f := t.firstFieldUnder(c)
			d.walkErr = Reject{Code: CodeDuplicateField, Field: fieldNames[f],
				Reason: fmt.Sprintf("key %q appears twice in one object; the record is ambiguous", node.path)}
			return
		}
		stamps[c] = d.gen
		if len(node.children) > 0 {
			switch v.Type() {
			case fastjson.TypeNull:
			case fastjson.TypeObject:
				obj, _ := v.Object()
				d.walk(t, stamps, c, obj, slots, base)
			default:
				f := t.firstFieldUnder(c)
				d.walkErr = Reject{Code: CodeWrongType, Field: fieldNames[f],
					Reason: fmt.Sprintf("%q is a %s; the mapping reads %q inside it, so it must be an object", node.path, v.Type(), t.nodes[t.leafUnder(c)].path)}
			}
			return
		}
		if len(node.fields) == 1 {
			slots[node.fields[0]-base] = d.classify(v)
			return
		}
		rv := d.classify(v)
		for _, f := range node.fields {
			slots[f-base] = rv
		}
	})
}

func (t *pathTree) leafUnder(n int32) int32 {
	for len(t.nodes[n].fields) == 0 {
		n = t.nodes[n].children[0]
	}
	return n
}

func (d *Decoder) classify(v *fastjson.Value) rawVal {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return rawVal{kind: vString, b: b}
	case fastjson.TypeNumber:
		s := len(d.num)
		d.num = v.MarshalTo(d.num)
		return rawVal{kind: vNumber, b: d.num[s:len(d.num):len(d.num)]}
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return rawVal{kind: vBool}
	case fastjson.TypeObject:
		return rawVal{kind: vObject}
	case fastjson.TypeArray:
		return rawVal{kind: vArray, jv: v}
	}
	return rawVal{}
}

// filter returns the index of the first rule that matches, or -1.
func (d *Decoder) filter() int {
	for i := range d.rules {
		r := &d.rules[i]
		rv := d.slots[r.field]
		if rv.kind != vString && rv.kind != vNumber {
			continue
		}
		v := bytes.TrimSpace(rv.b)
		for _, e := range r.equals {
			if len(v) == len(e) && bytes.EqualFold(v, e) {
				return i
			}
		}
		for _, p := range r.prefix {
			if len(v) >= len(p) && bytes.EqualFold(v[:len(p)], p) {
				return i
			}
		}
	}
	return -1
}

// present reports whether a mapped value counts as given.
func present(rv rawVal) bool {
	switch rv.kind {
	case vAbsent:
		return false
	case vString:
		return len(bytes.TrimSpace(rv.b)) > 0
	}
	return true
}

// clean checks, cleans and masks every field into ev, then enriches it.
func (d *Decoder) clean(ev *Event) bool {
	for _, f := range d.required {
		if !present(d.slots[f]) {
			return d.fail(CodeMissingField, f, "required but absent, null or empty")
		}
	}
	var ok bool
	if ev.EventID, ok = d.str(fEventID, d.slots[fEventID], true); !ok {
		return false
	}
	if ev.OrderID, ok = d.str(fOrderID, d.slots[fOrderID], true); !ok {
		return false
	}
	if ev.EventType, ok = d.alias(fEventType, eventTypeAliases, CodeBadEventType,
		"order_placed, payment_captured, refund, cancel or an alias"); !ok {
		return false
	}
	if ev.StoreID, ok = d.str(fStoreID, d.slots[fStoreID], true); !ok {
		return false
	}
	if ev.CustomerID, ok = d.str(fCustomerID, d.slots[fCustomerID], true); !ok {
		return false
	}
	if !d.email(ev) {
		return false
	}
	if !d.amount(ev) {
		return false
	}
	if !d.currency(ev) {
		return false
	}
	if ev.PaymentMethod, ok = d.str(fPaymentMethod, d.slots[fPaymentMethod], false); !ok {
		return false
	}
	if !d.card(ev) {
		return false
	}
	if ev.Channel, ok = d.alias(fChannel, channelAliases, CodeBadChannel, "web, app, pos or an alias"); !ok {
		return false
	}
	if !d.country(ev) {
		return false
	}
	if !d.items(ev) {
		return false
	}
	if !d.eventTime(ev) {
		return false
	}
	if d.hasAmt && ev.Currency == "" {
		return d.fail(CodeMissingField, fCurrency, "absent, but the record has an amount")
	}
	return d.enrich(ev)
}

// scanText reports a text's digit count, whether it has an '@' and whether
// it has a control character.
func scanText(b []byte) (digits int, at, ctl bool) {
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '@':
			at = true
		case c < 0x20 || c == 0x7f:
			ctl = true
		}
	}
	return
}

// str cleans a kept string field: trimmed, bounded, no control characters,
// e-mail addresses and card numbers masked. ident marks identifier fields,
// whose card numbers get a keyed token so the ids stay distinct.
func (d *Decoder) str(f field, rv rawVal, ident bool) (string, bool) {
	switch rv.kind {
	case vAbsent:
		return "", true
	case vString, vNumber:
	default:
		return "", d.wrongType(f, rv)
	}
	b := bytes.TrimSpace(rv.b)
	if len(b) == 0 {
		return "", true
	}
	if len(b) > maxFieldBytes {
		return "", d.fail(CodeFieldTooLong, f, "%d bytes; the limit is %d", len(b), maxFieldBytes)
	}
	digits, at, ctl := scanText(b)
	if ctl {
		return "", d.fail(CodeControlCharacter, f, "%s contains a control character", sanitize(b, 64))
	}
	if at {
		b = d.maskEmails(b)
		digits = panMinDigits // the hashes may hold digits: let maskPANs look
	}
	if digits >= panMinDigits {
		if ident {
			b, _ = maskPANs(b, &d.scratch, &d.groups, d.panToken)
		} else {
			b, _ = maskPANs(b, &d.scratch, &d.groups, nil)
		}
	}
	return d.intern(b), true
}

// alias cleans an event type or channel through its alias table.
func (d *Decoder) alias(f field, table map[string]string, code, allowed string) (string, bool) {
	rv := d.slots[f]
	switch rv.kind {
	case vAbsent:
		return "", true
	case vString, vNumber:
	default:
		return "", d.wrongType(f, rv)
	}
	b := bytes.TrimSpace(rv.b)
	if len(b) == 0 {
		return "", true
	}
	if v, ok := table[string(b)]; ok && v == string(b) {
		return v, true // already canonical: the common case
	}
	v, ok := lookupAlias(table, b)
	if !ok {
		return "", d.fail(code, f, "%s is not one of %s", sanitize(b, 64), allowed)
	}
	return v, true
}

func (d *Decoder) email(ev *Event) bool {
	rv := d.slots[fCustomerEmail]
	switch rv.kind {
	case vAbsent:
		return true
	case vString, vNumber:
	default:
		return d.wrongType(fCustomerEmail, rv)
	}
	b := bytes.TrimSpace(rv.b)
	if len(b) == 0 {
		return true
	}
	if !validEmail(b) {
		// The value is personal data: never echoed.
		return d.fail(CodeBadEmail, fCustomerEmail, "not an e-mail address (local@domain, at most 254 bytes)")
	}
	d.mailBuf = d.hashEmail(d.mailBuf[:0], b)
	ev.CustomerEmailHash = d.intern(d.mailBuf)
	return true
}

// hashEmail appends the lower-case hex HMAC-SHA256 of the lower-cased
// address to dst.
func (d *Decoder) hashEmail(dst, addr []byte) []byte {
	low := addr
	for _, c := range addr {
		if c >= 'A' && c <= 'Z' || c >= 0x80 {
			low = d.lowerCase(addr)
			break
		}
	}
	d.mac.Reset()
	d.mac.Write(low)
	d.sum = d.mac.Sum(d.sum[:0])
	n := len(dst)
	dst = append(dst, make([]byte, 2*len(d.sum))...) // no allocation: make is folded into append
	hex.Encode(dst[n:], d.sum)
	return dst
}

// lowerCase returns addr lower-cased in d.lower.
func (d *Decoder) lowerCase(addr []byte) []byte {
	for _, c := range addr {
		if c >= 0x80 {
			d.lower = append(d.lower[:0], bytes.ToLower(addr)...)
			return d.lower
		}
	}
	if cap(d.lower) < len(addr) {
		d.lower = make([]byte, len(addr), 2*len(addr))
	}
	low := d.lower[:len(addr)]
	for i, c := range addr {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		low[i] = c
	}
	return low
}

// maskEmails replaces each e-mail-shaped token of b with its hash (the same
// value CustomerEmailHash would hold), so that an id that is an address
// still joins.
func (d *Decoder) maskEmails(b []byte) []byte {
	s, ok := nextEmail(b, 0)
	if !ok {
		return b
	}
	out := d.mailBuf[:0]
	pos := 0
	for ok {
		out = append(out, b[pos:s.start]...)
		out = d.hashEmail(out, b[s.start:s.end])
		pos = s.end
		s, ok = nextEmail(b, pos)
	}
	out = append(out, b[pos:]...)
	d.mailBuf = out
	return out
}

// panToken writes the replacement of a card number found in an identifier
// field: "****", the last four digits, '#', and 24 letters a-p encoding 96
// bits of the HMAC-SHA256 of its digits. Two different ids stay different
// and one id always maps to the same value, so dedupe and joins still work;
// the letters hold no digits that could look like a card number again.
func (d *Decoder) panToken(dst, b []byte, s span) []byte {
	dst = append(dst, "****"...)
	dst = last4(dst, b, s)
	dst = append(dst, '#')
	d.lower = digitsOf(d.lower[:0], b, s)
	d.mac.Reset()
	d.mac.Write(d.lower)
	d.sum = d.mac.Sum(d.sum[:0])
	for _, c := range d.sum[:12] {
		dst = append(dst, 'a'+c>>4, 'a'+c&15)
	}
	return dst
}

func (d *Decoder) amount(ev *Event) bool {
	v, ok, present := d.decimal(fAmount, d.slots[fAmount], CodeBadAmount, CodeAmountPrecision, CodeAmountOutOfRange)
	if !ok || !present {
		return ok
	}
	if v < d.cfg.MinAmount || v > d.cfg.MaxAmount {
		why := ""
		if v < 0 && d.cfg.MinAmount >= 0 {
			why = "; refunds carry a positive amount (event_type gives the sign)"
		}
		return d.fail(CodeAmountOutOfRange, fAmount, "%s is outside [%s, %s] (min_amount, max_amount)%s", v, d.cfg.MinAmount, d.cfg.MaxAmount, why)
	}
	ev.Amount = v
	d.hasAmt = true
	return true
}

// decimal parses an amount-like value: JSON numbers plainly, text with
// thousands separators allowed. present is false for an absent value.
func (d *Decoder) decimal(f field, rv rawVal, syntax, precision, rng string) (v Decimal, ok, present bool) {
	var err error
	switch rv.kind {
	case vAbsent:
		return 0, true, false
	case vNumber:
		var u int64
		u, err = parseFixed(rv.b, DecimalPlaces)
		v = Decimal(u)
	case vString:
		b := bytes.TrimSpace(rv.b)
		if len(b) == 0 {
			return 0, true, false
		}
		v, err = parseAmountText(b, d.amtBuf[:0])
	default:
		return 0, d.wrongType(f, rv), false
	}
	switch {
	case err == nil:
		return v, true, true
	case errors.Is(err, ErrDecimalPrecision):
		return 0, d.fail(precision, f, "%s has more than %d decimal places", sanitize(bytes.TrimSpace(rv.b), 64), DecimalPlaces), false
	case errors.Is(err, ErrDecimalRange):
		return 0, d.fail(rng, f, "%s is too large", sanitize(bytes.TrimSpace(rv.b), 64)), false
	}
	return 0, d.fail(syntax, f, "%s is not a decimal number (digits, optional '.', comma thousands separators in groups of three; no currency symbols)", sanitize(bytes.TrimSpace(rv.b), 64)), false
}

func (d *Decoder) currency(ev *Event) bool {
	d.curIdx = 0
	rv := d.slots[fCurrency]
	switch rv.kind {
	case vAbsent:
		return true
	case vString, vNumber:
	default:
		return d.wrongType(fCurrency, rv)
	}
	b := bytes.TrimSpace(rv.b)
	if len(b) == 0 {
		return true
	}
	i := currencyOf(b)
	if i == 0 {
		return d.fail(CodeUnknownCurrency, fCurrency, "%s is not an ISO 4217 currency code", sanitize(b, 64))
	}
	ev.Currency = currencyCode[i-1]
	d.curIdx = i
	return true
}

func (d *Decoder) card(ev *Event) bool {
	rv := d.slots[fCardNumber]
	switch rv.kind {
	case vAbsent:
		return true
	case vString, vNumber:
	default:
		return d.wrongType(fCardNumber, rv)
	}
	b := bytes.TrimSpace(rv.b)
	if len(b) == 0 {
		return true
	}
	digits, _, _ := scanText(b)
	if digits == 0 || digits > panMaxDigits {
		// Never echoed: it may be a card number in another layout.
		return d.fail(CodeBadCardNumber, fCardNumber, "has %d digits; a card number or its masked form has 1 to %d", digits, panMaxDigits)
	}
	var l4 [4]byte
	ev.CardLast4 = d.intern(last4(l4[:0], b, span{0, len(b)}))
	return true
}

func (d *Decoder) country(ev *Event) bool {
	rv := d.slots[fCountry]
	switch rv.kind {
	case vAbsent:
		return true
	case vString, vNumber:
	default:
		return d.wrongType(fCountry, rv)
	}
	b := bytes.TrimSpace(rv.b)
	if len(b) == 0 {
		return true
	}
	i := countryOf(b)
	if i == 0 {
		return d.fail(CodeBadCountry, fCountry, "%s is not an ISO 3166-1 alpha-2 country code", sanitize(b, 64))
	}
	ev.Country = countryCode[i-1]
	return true
}

func (d *Decoder) items(ev *Event) bool {
	rv := d.slots[fItems]
	switch rv.kind {
	case vAbsent:
		return true
	case vString:
		return d.compactItems(ev, bytes.TrimSpace(rv.b))
	case vArray:
		if rv.jv == nil { // the record scan's text
			if ok, done := d.scanItems(ev, rv.b); done {
				return ok
			}
			v, err := d.parser.ParseBytes(rv.b)
			if err != nil {
				panic(fmt.Sprintf("BUG: event: items the record scan checked do not parse: %v", err))
			}
			rv.jv = v
		}
	default:
		return d.wrongType(fItems, rv)
	}
	arr, _ := rv.jv.Array()
	if len(arr) > d.cfg.MaxItems {
		return d.fail(CodeBadItems, fItems, "%d items; the limit is %d (max_items)", len(arr), d.cfg.MaxItems)
	}
	for i, it := range arr {
		if it.Type() != fastjson.TypeObject {
			return d.fail(CodeBadItems, fItems, "items[%d] is a %s; an item is an object", i, it.Type())
		}
		o, _ := it.Object()
		d.nextGen()
		d.itemSlots = [3]rawVal{}
		d.walkErr = Reject{}
		d.walk(&d.m.item, d.stampItem, 0, o, d.itemSlots[:], numTop)
		if d.walkErr.Code != "" {
			d.rej = d.walkErr
			d.rej.Reason = fmt.Sprintf("items[%d]: %s", i, d.rej.Reason)
			return false
		}
		if !d.item(ev, i, d.itemSlots[0], d.itemSlots[1], d.itemSlots[2]) {
			return false
		}
	}
	return true
}

// compactItems parses the text form of items: "sku:qty:unit_price" entries
// separated by '|'; "" is no items.
func (d *Decoder) compactItems(ev *Event, b []byte) bool {
	if len(b) == 0 {
		return true
	}
	if n := bytes.Count(b, []byte{'|'}) + 1; n > d.cfg.MaxItems {
		return d.fail(CodeBadItems, fItems, "%d items; the limit is %d (max_items)", n, d.cfg.MaxItems)
	}
	for i := 0; len(b) > 0 || i == 0; i++ {
		entry := b
		if k := bytes.IndexByte(b, '|'); k >= 0 {
			entry, b = b[:k], b[k+1:]
			if len(b) == 0 {
				return d.fail(CodeBadItems, fItems, "items end with '|'; the form is sku:qty:unit_price|sku:qty:unit_price")
			}
		} else {
			b = nil
		}
		c1 := bytes.IndexByte(entry, ':')
		c2 := -1
		if c1 >= 0 {
			if k := bytes.IndexByte(entry[c1+1:], ':'); k >= 0 {
				c2 = c1 + 1 + k
			}
		}
		if c1 < 0 || c2 < 0 || bytes.IndexByte(entry[c2+1:], ':') >= 0 {
			return d.fail(CodeBadItems, fItems, "item %d is not sku:qty:unit_price", i)
		}
		if !d.item(ev, i,
			rawVal{kind: vString, b: entry[:c1]},
			rawVal{kind: vString, b: entry[c1+1 : c2]},
			rawVal{kind: vString, b: entry[c2+1:]}) {
			return false
		}
	}
	return true
}

func (d *Decoder) item(ev *Event, i int, sku, qty, price rawVal) bool {
	d.itemIdx = i
	s, ok := d.str(fItemSku, sku, true)
	if !ok {
		return false
	}
	if s == "" {
		return d.fail(CodeBadItems, fItemSku, "absent; every item needs a sku")
	}
	var q int64
	switch qty.kind {
	case vAbsent:
		return d.fail(CodeBadQuantity, fItemQty, "absent; every item needs a qty")
	case vString, vNumber:
		var err error
		q, err = parseFixed(bytes.TrimSpace(qty.b), 0)
		if err != nil || q < MinQty || q > MaxQty {
			return d.fail(CodeBadQuantity, fItemQty, "%s is not a whole number from %d to %d", sanitize(bytes.TrimSpace(qty.b), 32), MinQty, MaxQty)
		}
	default:
		return d.wrongType(fItemQty, qty)
	}
	p, ok, present := d.decimal(fItemUnitPrice, price, CodeBadPrice, CodeBadPrice, CodeBadPrice)
	if !ok {
		return false
	}
	if !present {
		return d.fail(CodeBadPrice, fItemUnitPrice, "absent; every item needs a unit_price")
	}
	if p < 0 || p > d.cfg.MaxAmount {
		return d.fail(CodeBadPrice, fItemUnitPrice, "%s is outside [0, %s] (max_amount)", p, d.cfg.MaxAmount)
	}
	ev.Items = append(ev.Items, Item{SKU: s, Qty: int(q), UnitPrice: p})
	d.itemIdx = -1
	return true
}

func (d *Decoder) eventTime(ev *Event) bool {
	rv := d.slots[fEventTime]
	var t time.Time
	var ok bool
	var b []byte
	switch rv.kind {
	case vAbsent:
		return true
	case vNumber:
		b = rv.b
		ok = isEpochText(b)
		if ok {
			t, ok = parseEpoch(b)
		}
	case vString:
		b = bytes.TrimSpace(rv.b)
		if len(b) == 0 {
			return true
		}
		if isEpochText(b) {
			t, ok = parseEpoch(b)
		} else {
			t, ok = parseISO(b)
		}
	default:
		return d.wrongType(fEventTime, rv)
	}
	if !ok {
		return d.fail(CodeBadTimestamp, fEventTime, "%s is not an ISO 8601 date-time or epoch seconds/milliseconds", sanitize(b, 64))
	}
	if t.Before(MinEventTime) {
		return d.fail(CodeAncientTimestamp, fEventTime, "%s is before %s", t.Format(time.RFC3339Nano), MinEventTime.Format(time.RFC3339))
	}
	if limit := d.cfg.Now().Add(d.cfg.MaxFutureSkew); t.After(limit) {
		return d.fail(CodeFutureTimestamp, fEventTime, "%s is more than %s in the future (max_future_skew)", t.Format(time.RFC3339Nano), d.cfg.MaxFutureSkew)
	}
	ev.EventTime = t
	return true
}

func (d *Decoder) enrich(ev *Event) bool {
	if d.rates != nil && d.hasAmt && d.curIdx > 0 {
		v, ok, overflow := d.rates.convert(ev.Amount, d.curIdx)
		if overflow {
			return d.fail(CodeBaseAmountOverflow, fAmount, "%s %s overflows in base currency %s (above %s)", ev.Amount, ev.Currency, d.rates.base, MaxStoredAmount)
		}
		ev.BaseAmount, ev.HasBaseAmount = v, ok
	}
	if d.ref != nil {
		if key := ev.stringOf(d.ref.key); key != "" {
			if row, ok := d.ref.rows[key]; ok {
				ev.HasReference = true
				if d.ref.region >= 0 {
					ev.Region = row[d.ref.region]
				}
				if d.ref.timezone >= 0 {
					ev.Timezone = row[d.ref.timezone]
				}
			}
		}
	}
	return true
}

// intern copies b into the current slab and returns it as a string. Slab
// bytes are never written again, so the string is immutable.
func (d *Decoder) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > slabSize/8 {
		return string(b)
	}
	if cap(d.slab)-len(d.slab) < len(b) {
		d.slab = make([]byte, 0, slabSize)
	}
	s := len(d.slab)
	d.slab = append(d.slab, b...)
	return unsafe.String(&d.slab[s], len(b))
}

// label names a field in a reason, with its source when renamed.
func (d *Decoder) label(f field) string {
	name := fieldNames[f]
	if f >= numTop && d.itemIdx >= 0 {
		name = "items[" + strconv.Itoa(d.itemIdx) + "]." + itemKeys[f-numTop]
	}
	src := d.m.source[f]
	if src != name && !(f >= numTop && src == itemKeys[f-numTop]) {
		return name + " (source " + strconv.Quote(src) + ")"
	}
	return name
}

// fail rejects the record for field f. The reason is masked as a whole:
// values are sanitized where they are quoted, but a number the decoder
// parsed (an amount that is really a card number) is printed as parsed.
func (d *Decoder) fail(code string, f field, format string, args ...any) bool {
	d.rej = Reject{Code: code, Field: fieldNames[f], Reason: maskReason(d.label(f) + ": " + fmt.Sprintf(format, args...))}
	return false
}

func (d *Decoder) failRecord(code, format string, args ...any) bool {
	d.rej = Reject{Code: code, Reason: maskReason(fmt.Sprintf(format, args...))}
	return false
}

// maskReason masks card numbers and e-mail addresses in a reason.
func maskReason(reason string) string {
	s, _ := clip([]byte(reason), 2*len(reason)+64) // never cut: masks are not much longer
	return s
}

func (d *Decoder) wrongType(f field, rv rawVal) bool {
	want := "a string or number"
	if f == fItems {
		want = "an array of objects or a sku:qty:unit_price|... string"
	}
	return d.fail(CodeWrongType, f, "is a JSON %s; want %s", kindNames[rv.kind], want)
}

// sanitize quotes a value for a reason: at most max bytes (cut on a rune
// boundary), card numbers reduced to their last four digits and e-mail
// addresses replaced, so reasons never carry personal data.
func sanitize(b []byte, max int) string {
	s, cut := clip(b, max)
	// Quoting can turn bytes into text ("\x00@a.b" into `\x00@a.b`): mask
	// the quoted form again.
	q, _ := clip([]byte(strconv.Quote(s)), 1<<20)
	if cut {
		q += "..."
	}
	return q
}

// sanitizeText is sanitize without the quotes, for parser messages.
func sanitizeText(b []byte, max int) string {
	s, cut := clip(b, max)
	if cut {
		s += "..."
	}
	return s
}

// clip masks b, then cuts it to max bytes: masking first, so that a cut
// cannot leave an unmasked part of a card number or address behind.
func clip(b []byte, max int) (string, bool) {
	var scratch [2][]byte
	var groups []span
	b, _ = maskPANs(b, &scratch, &groups, nil)
	if s, ok := nextEmail(b, 0); ok {
		var out []byte
		pos := 0
		for ok {
			out = append(out, b[pos:s.start]...)
			out = append(out, "<e-mail>"...)
			pos = s.end
			s, ok = nextEmail(b, pos)
		}
		b = append(out, b[pos:]...)
	}
	if len(b) <= max {
		return string(b), false
	}
	n := max
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return string(b[:n]), true
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}
