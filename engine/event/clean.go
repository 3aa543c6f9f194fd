package event

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/valyala/fastjson"
)

// Cleaning and validation: each mapped source value checked and normalised
// into its Event field.

// maxFieldBytes bounds a kept string field after trimming.
const maxFieldBytes = 256

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
	if !d.email(ev) || !d.amount(ev) || !d.currency(ev) {
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
	if !d.country(ev) || !d.items(ev) || !d.eventTime(ev) {
		return false
	}
	if d.hasAmt && ev.Currency == "" {
		return d.fail(CodeMissingField, fCurrency, "absent, but the record has an amount")
	}
	if !d.unmappedFields(ev) {
		return false
	}
	return d.enrich(ev)
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

// text returns the trimmed text of a string or number value: empty for an
// absent or empty value, ok false (the record rejected) for another JSON
// type.
func (d *Decoder) text(f field, rv rawVal) (b []byte, ok bool) {
	switch rv.kind {
	case vAbsent:
		return nil, true
	case vString, vNumber:
		return bytes.TrimSpace(rv.b), true
	}
	return nil, d.wrongType(f, rv)
}

// str cleans a kept string field: trimmed, bounded, no control characters,
// e-mail addresses and card numbers masked. ident marks identifier fields,
// whose card numbers get a keyed token so the ids stay distinct.
func (d *Decoder) str(f field, rv rawVal, ident bool) (string, bool) {
	b, ok := d.text(f, rv)
	if !ok || len(b) == 0 {
		return "", ok
	}
	if len(b) > maxFieldBytes {
		return "", d.fail(CodeFieldTooLong, f, "%d bytes; the limit is %d", len(b), maxFieldBytes)
	}
	digits, at, ctl := scanText(b)
	if ctl {
		return "", d.fail(CodeControlCharacter, f, "%s contains a control character", sanitize(b, 64))
	}
	b = d.maskScanned(b, digits, at, ident)
	return d.intern(b), true
}

// alias cleans an event type or channel through its alias table.
func (d *Decoder) alias(f field, table map[string]string, code, allowed string) (string, bool) {
	b, ok := d.text(f, d.slots[f])
	if !ok || len(b) == 0 {
		return "", ok
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
	i, ok := d.isoCode(fCurrency, currencyOf, CodeUnknownCurrency, "ISO 4217 currency")
	if i > 0 {
		ev.Currency = currencyCode[i-1]
	}
	d.curIdx = i
	return ok
}

func (d *Decoder) country(ev *Event) bool {
	i, ok := d.isoCode(fCountry, countryOf, CodeBadCountry, "ISO 3166-1 alpha-2 country")
	if i > 0 {
		ev.Country = countryCode[i-1]
	}
	return ok
}

// isoCode looks the value of field f up in an ISO code table: i is its
// 1-based index there, 0 for an absent or empty value or a rejected one.
func (d *Decoder) isoCode(f field, lookup func([]byte) int, code, table string) (i int, ok bool) {
	b, ok := d.text(f, d.slots[f])
	if !ok || len(b) == 0 {
		return 0, ok
	}
	if i = lookup(b); i == 0 {
		return 0, d.fail(code, f, "%s is not an %s code", sanitize(b, 64), table)
	}
	return i, true
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

// Quantity bounds of an item.
const (
	MinQty = 1
	MaxQty = 10000
)
