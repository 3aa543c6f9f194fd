package event

import (
	"fmt"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Decoding: parsing a raw record (JSON or CSV) into the mapped source values
// of Decoder.slots, before any cleaning.

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
	d.unmapped = d.unmapped[:0]
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
			if t == &d.m.top {
				d.keepUnmapped(n, k, nil, v)
			}
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
