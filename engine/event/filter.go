package event

import "bytes"

// Filtering: the configured rules that drop a record before it is cleaned.

// compiledRule is a Rule whose values are bytes, matched without
// allocating.
type compiledRule struct {
	field  field
	equals [][]byte
	prefix [][]byte
}

// compileRules compiles validated rules.
func compileRules(rules []Rule) []compiledRule {
	var out []compiledRule
	for _, r := range rules {
		f, _ := lookupField(r.Field)
		cr := compiledRule{field: f}
		for _, e := range r.Equals {
			cr.equals = append(cr.equals, []byte(e))
		}
		for _, p := range r.Prefix {
			cr.prefix = append(cr.prefix, []byte(p))
		}
		out = append(out, cr)
	}
	return out
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
