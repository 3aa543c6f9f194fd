package event

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"unsafe"

	"github.com/valyala/fastjson"
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

	unmapped   []unmappedVal // the current record's keys no field reads
	attrParser fastjson.Parser
	attrBuf    []byte
	extraBuf   []byte
	numBuf     []byte
	names      []string // slab of Event.UnmappedFields
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
	d.rules = compileRules(cfg.Filters)
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
	d.unmapped = d.unmapped[:0]
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

func (d *Decoder) wrongType(f field, rv rawVal) bool {
	want := "a string or number"
	if f == fItems {
		want = "an array of objects or a sku:qty:unit_price|... string"
	}
	return d.fail(CodeWrongType, f, "is a JSON %s; want %s", kindNames[rv.kind], want)
}
