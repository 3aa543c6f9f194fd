package event

import "bytes"

// The record scan is the decoder's fast path for JSON: one pass over the
// raw bytes that fills the mapped slots directly, with no parse tree, no
// copy of the record and no unescaping. It takes only records whose
// meaning it can tell without help (no backslash anywhere, no duplicate
// mapped key, every mapped object where the mapping expects one) and
// leaves everything else to fastjson's parse and walk, which define the
// behaviour: a record the scan takes yields exactly the slots the walk
// would (FuzzDecodeJSON and FuzzMapping check the two against each other).
// Its grammar is fastjson's, not RFC 8259's where they differ: a number is
// any run of digits, '.', '-', '+', 'e' and 'E' but a lone sign, and raw
// control characters are allowed in strings.

// maxScanDepth is the deepest nesting the scan follows; deeper records go
// to fastjson (which allows 300).
const maxScanDepth = 64

// scanRecord fills d.slots from raw, a JSON object, and reports whether it
// could; when it could not, the caller clears the slots and parses.
func (d *Decoder) scanRecord(raw []byte) bool {
	if bytes.IndexByte(raw, '\\') >= 0 {
		return false
	}
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return false
	}
	d.nextGen()
	i, ok := d.scanObject(raw, i+1, &d.m.top, d.stampTop, 0, d.slots[:], 0, 1)
	return ok && skipSpace(raw, i) == len(raw)
}

// scanObject scans the members of an object from raw[i] (just past its
// '{'), which is node n of tree t, storing its leaves' values in slots
// (indexed by field - base) as walk does. It returns the index just past
// the object's '}'.
func (d *Decoder) scanObject(raw []byte, i int, t *pathTree, stamps []uint32, n int32, slots []rawVal, base field, depth int) (int, bool) {
	if depth > maxScanDepth {
		return i, false
	}
	i = skipSpace(raw, i)
	if i < len(raw) && raw[i] == '}' {
		return i + 1, true
	}
	for {
		k, next, ok := scanKey(raw, i)
		if !ok || next >= len(raw) {
			return i, false
		}
		i = next
		c := t.child(n, k)
		switch {
		case c < 0:
			start := i
			if i, ok = skipValue(raw, i, depth); ok && t == &d.m.top {
				d.keepUnmapped(n, k, raw[start:i], nil)
			}
		case stamps[c] == d.gen:
			return i, false // a duplicate key: the walk words the reject
		case len(t.nodes[c].children) > 0:
			stamps[c] = d.gen
			switch {
			case raw[i] == '{':
				i, ok = d.scanObject(raw, i+1, t, stamps, c, slots, base, depth+1)
			case hasLiteral(raw, i, "null"):
				i += len("null")
			default:
				return i, false // not an object: the walk words the reject
			}
		default:
			stamps[c] = d.gen
			var rv rawVal
			i, rv, ok = scanLeaf(raw, i, depth)
			for _, f := range t.nodes[c].fields {
				slots[f-base] = rv
			}
		}
		if !ok {
			return i, false
		}
		i = skipSpace(raw, i)
		if i >= len(raw) {
			return i, false
		}
		switch raw[i] {
		case ',':
			i++
		case '}':
			return i + 1, true
		default:
			return i, false
		}
	}
}

// scanLeaf scans the value at raw[i] as classify sees it. An array's
// rawVal holds its text and no fastjson value: scanItems reads it.
func scanLeaf(raw []byte, i, depth int) (int, rawVal, bool) {
	switch raw[i] {
	case '"':
		s, next, ok := scanString(raw, i+1)
		return next, rawVal{kind: vString, b: s}, ok
	case '{':
		next, ok := skipValue(raw, i, depth)
		return next, rawVal{kind: vObject}, ok
	case '[':
		next, ok := skipValue(raw, i, depth)
		return next, rawVal{kind: vArray, b: raw[i:next:next]}, ok
	case 't':
		return i + len("true"), rawVal{kind: vBool}, hasLiteral(raw, i, "true")
	case 'f':
		return i + len("false"), rawVal{kind: vBool}, hasLiteral(raw, i, "false")
	case 'n':
		return i + len("null"), rawVal{}, hasLiteral(raw, i, "null")
	}
	next, ok := scanNumber(raw, i)
	return next, rawVal{kind: vNumber, b: raw[i:next:next]}, ok
}

// skipValue checks the value at raw[i] and returns the index just past it.
func skipValue(raw []byte, i, depth int) (int, bool) {
	if i >= len(raw) {
		return i, false
	}
	switch raw[i] {
	case '"':
		_, next, ok := scanString(raw, i+1)
		return next, ok
	case '{', '[':
		if depth >= maxScanDepth {
			return i, false
		}
		end := byte('}')
		if raw[i] == '[' {
			end = ']'
		}
		i = skipSpace(raw, i+1)
		if i < len(raw) && raw[i] == end {
			return i + 1, true
		}
		for {
			i = skipSpace(raw, i)
			if end == '}' {
				_, next, ok := scanKey(raw, i)
				if !ok {
					return i, false
				}
				i = next
			}
			next, ok := skipValue(raw, i, depth+1)
			if !ok {
				return i, false
			}
			i = skipSpace(raw, next)
			if i >= len(raw) {
				return i, false
			}
			switch raw[i] {
			case ',':
				i++
			case end:
				return i + 1, true
			default:
				return i, false
			}
		}
	case 't':
		return i + len("true"), hasLiteral(raw, i, "true")
	case 'f':
		return i + len("false"), hasLiteral(raw, i, "false")
	case 'n':
		return i + len("null"), hasLiteral(raw, i, "null")
	}
	return scanNumber(raw, i)
}

// scanKey scans an object member's key and colon from raw[i] (white
// space before either allowed) and returns the key and the index of the
// value's first byte.
func scanKey(raw []byte, i int) ([]byte, int, bool) {
	i = skipSpace(raw, i)
	if i >= len(raw) || raw[i] != '"' {
		return nil, i, false
	}
	k, next, ok := scanString(raw, i+1)
	if !ok {
		return nil, i, false
	}
	i = skipSpace(raw, next)
	if i >= len(raw) || raw[i] != ':' {
		return nil, i, false
	}
	return k, skipSpace(raw, i+1), true
}

// scanString returns the string whose text starts at raw[i] (just past
// its opening quote) and the index past its closing quote. The record has
// no backslash, so the first quote closes it.
func scanString(raw []byte, i int) ([]byte, int, bool) {
	n := bytes.IndexByte(raw[i:], '"')
	if n < 0 {
		return nil, i, false
	}
	return raw[i : i+n : i+n], i + n + 1, true
}

// scanNumber returns the index past the number at raw[i]: fastjson's run
// of number characters, at least one and not a lone sign (fastjson reads
// "-inf" and "nan" there, which the scan leaves to it).
func scanNumber(raw []byte, i int) (int, bool) {
	j := i
	for j < len(raw) && isNumberByte(raw[j]) {
		j++
	}
	if j == i || j == i+1 && (raw[i] == '-' || raw[i] == '+') {
		return i, false
	}
	return j, true
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E'
}

func hasLiteral(raw []byte, i int, lit string) bool {
	return len(raw)-i >= len(lit) && string(raw[i:i+len(lit)]) == lit
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\n' || raw[i] == '\t' || raw[i] == '\r') {
		i++
	}
	return i
}

// scanItems decodes the items of an array the record scan kept as text
// (b, already checked), as items does with fastjson's. done is false when
// the scan cannot tell (an element that is not an object, too many, a
// duplicate or mistyped key): nothing has been added to ev then, and the
// caller parses the text.
func (d *Decoder) scanItems(ev *Event, b []byte) (ok, done bool) {
	d.scanned = d.scanned[:0]
	i := skipSpace(b, 1)
	if b[i] != ']' {
		for {
			i = skipSpace(b, i)
			if b[i] != '{' || len(d.scanned) == d.cfg.MaxItems {
				return false, false
			}
			d.nextGen()
			var slots [3]rawVal
			if i, ok = d.scanObject(b, i+1, &d.m.item, d.stampItem, 0, slots[:], numTop, 2); !ok {
				return false, false
			}
			d.scanned = append(d.scanned, slots)
			if i = skipSpace(b, i); b[i] == ']' {
				break
			}
			i++ // the ',' the record scan checked
		}
	}
	for j, s := range d.scanned {
		if !d.item(ev, j, s[0], s[1], s[2]) {
			return false, true
		}
	}
	return true, true
}
