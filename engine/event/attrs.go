package event

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"
)

// Unmapped source fields and extra columns (docs/CONFIG.md, "Unmapped
// fields and extra columns"): a JSON record's keys that no canonical field
// reads are kept as the canonical JSON text of Event.Attributes, unless the
// topic sets keep_unmapped: false, and the ones an extra column promotes
// are typed into Event.Extras instead.

// ExtraColumn promotes a source field of a JSON topic to a typed column of
// its own in the warehouse's transactions table.
type ExtraColumn struct {
	// Source is a top-level key of the record, or a key inside an object
	// the mapping reads ("customer.tier" when customer.id is mapped).
	Source string `yaml:"source"`
	// Type is one of ExtraTypes.
	Type string `yaml:"type"`
}

// Extra column types: the ones every sink maps (docs/LOADER.md).
const (
	ExtraString    = "string"
	ExtraInt       = "int"
	ExtraDecimal   = "decimal"
	ExtraTimestamp = "timestamp"
	ExtraBool      = "bool"
)

// ExtraTypes lists the types an extra column may have.
func ExtraTypes() []string {
	return []string{ExtraString, ExtraInt, ExtraDecimal, ExtraTimestamp, ExtraBool}
}

// StoredColumns are the columns of a clean row in the outbox and the
// warehouse (docs/ARCHITECTURE.md, "Canonical event"): names an extra
// column cannot take.
var StoredColumns = []string{
	"event_id", "order_id", "event_type", "store_id", "customer_id", "customer_email_hash", "amount",
	"currency", "payment_method", "card_last4", "channel", "country", "items", "event_time", "base_amount",
	"region", "timezone", "source_topic", "source_partition", "source_offset", "kafka_time", "ingest_time",
	"attributes", "extras", "batch_id",
}

// extraNameRE is an extra column's name: a lower-case identifier every
// warehouse takes unquoted.
var extraNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// IsExtraColumnName tells whether name may name an extra column: a
// lower-case identifier every warehouse takes unquoted, not one of
// StoredColumns.
func IsExtraColumnName(name string) bool {
	return extraNameRE.MatchString(name) && !slices.Contains(StoredColumns, name)
}

// keepUnmapped tells whether unmapped fields are kept (the default).
func (m *Mapping) keepUnmapped() bool { return m.KeepUnmapped == nil || *m.KeepUnmapped }

// compiledExtra is an extra column ready for the decoder.
type compiledExtra struct {
	name, source, typ string
}

// compileExtras checks m.ExtraColumns against the record tree (built
// already) and sets c.extras, sorted by name.
func (c *compiled) compileExtras(m *Mapping, errs *mappingErrors) {
	c.keep = c.json && m.keepUnmapped()
	if len(m.ExtraColumns) == 0 {
		return
	}
	if !c.json {
		errs.add("extra_columns", "apply to json topics only: a csv topic's columns are all named by its mapping")
		return
	}
	sources := map[string]string{}
	for _, name := range slices.Sorted(mapKeys(m.ExtraColumns)) {
		x := m.ExtraColumns[name]
		opt := "extra_columns." + name
		switch {
		case !extraNameRE.MatchString(name):
			errs.add(opt, "%q is not a column name; use a lower-case letter then up to 62 lower-case letters, digits or '_'", name)
		case slices.Contains(StoredColumns, name):
			errs.add(opt, "%q is a column of every row already; choose another name", name)
		}
		if !slices.Contains(ExtraTypes(), x.Type) {
			errs.add(opt+".type", "%q is not allowed; use one of %s", x.Type, strings.Join(ExtraTypes(), ", "))
		}
		if msg := c.checkExtraSource(x.Source); msg != "" {
			errs.add(opt+".source", "%s", msg)
		} else if other, dup := sources[x.Source]; dup {
			errs.add(opt+".source", "%q is also the source of extra_columns.%s", x.Source, other)
		}
		sources[x.Source] = name
		c.extras = append(c.extras, compiledExtra{name: name, source: x.Source, typ: x.Type})
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// checkExtraSource returns why src cannot be an extra column's source, or
// "". The decoder sees the keys no field reads: top-level keys and keys
// inside the objects the mapping reads into.
func (c *compiled) checkExtraSource(src string) string {
	segs := strings.Split(src, ".")
	for _, s := range segs {
		if s == "" || strings.TrimSpace(s) != s {
			return fmt.Sprintf("%q is not a key or dotted path (non-empty segments without surrounding spaces)", src)
		}
	}
	n := int32(0)
	for i, s := range segs {
		k := c.top.childByName(n, s)
		last := i == len(segs)-1
		switch {
		case k < 0 && last:
			return ""
		case k < 0:
			return fmt.Sprintf("%q is not an object the mapping reads, so %q is kept whole in attributes; use a top-level key, or map a field inside %q", strings.Join(segs[:i+1], "."), src, strings.Join(segs[:i+1], "."))
		case len(c.top.nodes[k].fields) > 0:
			return fmt.Sprintf("%q is the source of %s already", c.top.nodes[k].path, c.top.nodes[k].fields[0])
		case last:
			return fmt.Sprintf("%q is an object the mapping reads into; promote a key inside it", src)
		}
		n = k
	}
	return ""
}

// childByName returns the index of n's child named k, or -1; it works
// before index.
func (t *pathTree) childByName(n int32, k string) int32 {
	for _, c := range t.nodes[n].children {
		if t.nodes[c].key == k {
			return c
		}
	}
	return -1
}

// unmappedVal is a key of the record that no field reads.
type unmappedVal struct {
	node int32 // the object holding it: a node of the record tree, 0 for the record
	key  []byte
	raw  []byte          // from the record scan: the value's text
	jv   *fastjson.Value // from fastjson's parse
	path string
	used bool // promoted to an extra column, or repeated later
}

// keepUnmapped records key k of node n, unmapped, during the scan (raw) or
// the walk (jv).
func (d *Decoder) keepUnmapped(n int32, k, raw []byte, jv *fastjson.Value) {
	d.unmapped = append(d.unmapped, unmappedVal{node: n, key: k, raw: raw, jv: jv})
}

// value returns u's parsed value. Values from the scan are parsed with
// attrParser, which invalidates the previous one.
func (d *Decoder) value(u *unmappedVal) (*fastjson.Value, error) {
	if u.jv != nil {
		return u.jv, nil
	}
	return d.attrParser.ParseBytes(u.raw)
}

// unmappedFields sets ev.Extras, ev.Attributes and ev.UnmappedFields from
// the record's unmapped keys. It fails the record on an extra column's
// value that its type cannot take.
func (d *Decoder) unmappedFields(ev *Event) bool {
	if len(d.unmapped) == 0 {
		return true
	}
	for i := range d.unmapped {
		u := &d.unmapped[i]
		if u.node == 0 {
			u.path = d.intern(u.key)
		} else {
			u.path = d.m.top.nodes[u.node].path + "." + string(u.key)
		}
	}
	// A key repeated in one object keeps its last value, as in JavaScript.
	sort.SliceStable(d.unmapped, func(i, j int) bool { return d.unmapped[i].path < d.unmapped[j].path })
	for i := 0; i+1 < len(d.unmapped); i++ {
		if d.unmapped[i].path == d.unmapped[i+1].path {
			d.unmapped[i].used = true
		}
	}
	if !d.extraColumns(ev) {
		return false
	}
	// The names are carved from a slab that is never written again, as
	// the strings of intern.
	if cap(d.names)-len(d.names) < len(d.unmapped) {
		d.names = make([]string, 0, max(1024, len(d.unmapped)))
	}
	start := len(d.names)
	buf := append(d.attrBuf[:0], '{')
	for i := range d.unmapped {
		u := &d.unmapped[i]
		if u.used {
			continue
		}
		d.names = append(d.names, u.path)
		if !d.m.keep {
			continue
		}
		v, err := d.value(u)
		if err != nil {
			return d.failRecord(CodeInvalidJSON, "%s: %s", sanitize([]byte(u.path), 64), sanitizeText([]byte(err.Error()), 300))
		}
		if len(buf) > 1 {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, []byte(u.path))
		buf = append(buf, ':')
		buf = d.appendCanonical(buf, v)
	}
	d.attrBuf = buf
	ev.UnmappedFields = d.names[start:len(d.names):len(d.names)]
	if len(buf) > 1 {
		ev.Attributes = string(append(buf, '}'))
	}
	return true
}

// extraColumns sets ev.Extras: a JSON object of the extra columns the
// record has, by name, each value in its type's form (docs/LOADER.md).
func (d *Decoder) extraColumns(ev *Event) bool {
	if len(d.m.extras) == 0 {
		return true
	}
	buf := append(d.extraBuf[:0], '{')
	for _, x := range d.m.extras {
		i := sort.Search(len(d.unmapped), func(i int) bool { return d.unmapped[i].path >= x.source })
		for i+1 < len(d.unmapped) && d.unmapped[i+1].path == x.source {
			i++ // the last of a repeated key
		}
		if i == len(d.unmapped) || d.unmapped[i].path != x.source {
			continue
		}
		u := &d.unmapped[i]
		u.used = true
		v, err := d.value(u)
		if err != nil {
			return d.failExtra(x, "cannot parse: %s", sanitizeText([]byte(err.Error()), 300))
		}
		if v.Type() == fastjson.TypeNull {
			continue
		}
		mark := len(buf)
		if len(buf) > 1 {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, []byte(x.name))
		buf = append(buf, ':')
		var ok, null bool
		if buf, ok, null = d.appendExtra(buf, x, v); !ok {
			return false
		}
		if null {
			buf = buf[:mark]
		}
	}
	d.extraBuf = buf
	if len(buf) > 1 {
		ev.Extras = string(append(buf, '}'))
	}
	return true
}

// appendExtra appends v converted to x's type. An empty string is NULL
// (null set), as for canonical fields.
func (d *Decoder) appendExtra(buf []byte, x compiledExtra, v *fastjson.Value) (out []byte, ok, null bool) {
	var text []byte
	switch v.Type() {
	case fastjson.TypeString:
		text, _ = v.StringBytes()
		text = bytes.TrimSpace(text)
		if len(text) == 0 {
			return buf, true, true
		}
	case fastjson.TypeNumber:
		text = v.MarshalTo(d.numBuf[:0])
		d.numBuf = text
	case fastjson.TypeTrue, fastjson.TypeFalse:
		switch x.typ {
		case ExtraBool:
			return strconv.AppendBool(buf, v.Type() == fastjson.TypeTrue), true, false
		case ExtraString:
			return strconv.AppendQuote(buf, strconv.FormatBool(v.Type() == fastjson.TypeTrue)), true, false
		}
		return buf, d.failExtra(x, "is a JSON boolean; a %s column takes a string or number", x.typ), false
	default:
		return buf, d.failExtra(x, "is a JSON %s; a %s column takes a string, number or boolean", v.Type(), x.typ), false
	}
	switch x.typ {
	case ExtraString:
		if len(text) > maxFieldBytes {
			return buf, d.failExtra(x, "%d bytes; the limit is %d", len(text), maxFieldBytes), false
		}
		if _, _, ctl := scanText(text); ctl {
			return buf, d.failExtra(x, "%s contains a control character", sanitize(text, 64)), false
		}
		return appendJSONString(buf, d.maskText(text, false)), true, false
	case ExtraInt:
		n, err := strconv.ParseInt(string(text), 10, 64)
		if err != nil {
			return buf, d.failExtra(x, "%s is not a whole number in the int64 range", sanitize(text, 64)), false
		}
		return strconv.AppendInt(buf, n, 10), true, false
	case ExtraDecimal:
		n, err := parseFixed(text, DecimalPlaces)
		if err != nil || Decimal(n) > MaxStoredAmount || Decimal(n) < -MaxStoredAmount {
			return buf, d.failExtra(x, "%s is not a decimal of at most 14 integer digits and 4 places (DECIMAL(18,4))", sanitize(text, 64)), false
		}
		buf = append(buf, '"')
		return append(Decimal(n).Append(buf), '"'), true, false
	case ExtraTimestamp:
		var t time.Time
		ok := false
		if isEpochText(text) {
			t, ok = parseEpoch(text)
		} else if v.Type() == fastjson.TypeString {
			t, ok = parseISO(text)
		}
		if !ok {
			return buf, d.failExtra(x, "%s is not an ISO 8601 date-time or epoch seconds/milliseconds", sanitize(text, 64)), false
		}
		buf = append(buf, '"')
		return append(t.UTC().AppendFormat(buf, time.RFC3339Nano), '"'), true, false
	case ExtraBool:
		switch strings.ToLower(string(text)) {
		case "true":
			return append(buf, "true"...), true, false
		case "false":
			return append(buf, "false"...), true, false
		}
		return buf, d.failExtra(x, "%s is not true or false", sanitize(text, 64)), false
	}
	panic("BUG: event: extra column type " + x.typ)
}

func (d *Decoder) failExtra(x compiledExtra, format string, args ...any) bool {
	d.rej = Reject{Code: CodeBadExtraColumn, Field: x.name,
		Reason: maskReason("extra column " + x.name + " (source " + strconv.Quote(x.source) + "): " + fmt.Sprintf(format, args...))}
	return false
}

// appendCanonical appends v as canonical JSON: no white space, object keys
// sorted (a repeated key keeps its last value), numbers as written, and
// strings with their e-mail addresses hashed and card numbers masked as
// in a kept text field. A number that is a card number becomes the string
// of its mask.
func (d *Decoder) appendCanonical(dst []byte, v *fastjson.Value) []byte {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		type member struct {
			k string
			v *fastjson.Value
		}
		var ms []member
		o.Visit(func(k []byte, v *fastjson.Value) { ms = append(ms, member{string(k), v}) })
		sort.SliceStable(ms, func(i, j int) bool { return ms[i].k < ms[j].k })
		dst = append(dst, '{')
		first := true
		for i, m := range ms {
			if i+1 < len(ms) && ms[i+1].k == m.k {
				continue
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendJSONString(dst, []byte(m.k))
			dst = append(dst, ':')
			dst = d.appendCanonical(dst, m.v)
		}
		return append(dst, '}')
	case fastjson.TypeArray:
		a, _ := v.Array()
		dst = append(dst, '[')
		for i, e := range a {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = d.appendCanonical(dst, e)
		}
		return append(dst, ']')
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return appendJSONString(dst, d.maskText(b, false))
	case fastjson.TypeNumber:
		d.numBuf = v.MarshalTo(d.numBuf[:0])
		if masked, changed := maskPANs(d.numBuf, &d.scratch, &d.groups, nil); changed {
			return appendJSONString(dst, masked)
		}
		if !isJSONNumber(d.numBuf) {
			// fastjson's lax grammar took it ("1.2.3", NaN): keep its
			// text as a string, so attributes stay valid JSON.
			return appendJSONString(dst, d.numBuf)
		}
		return append(dst, d.numBuf...)
	}
	return v.MarshalTo(dst) // true, false, null
}

// maskText hashes the e-mail addresses of b and masks its card numbers,
// with a keyed token in identifier fields (ident). The result may live in
// scratch space: use it before the next call.
func (d *Decoder) maskText(b []byte, ident bool) []byte {
	digits, at, _ := scanText(b)
	return d.maskScanned(b, digits, at, ident)
}

// maskScanned is maskText for b that scanText has seen already.
func (d *Decoder) maskScanned(b []byte, digits int, at, ident bool) []byte {
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
	return b
}

// isJSONNumber tells whether b is a number in RFC 8259's grammar.
func isJSONNumber(b []byte) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

// appendJSONString appends s (valid UTF-8) as a JSON string.
func appendJSONString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
