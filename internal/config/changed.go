package config

import (
	"reflect"
	"sort"
	"strings"
)

// Changed returns the names of the options whose values differ between a
// and b, sorted: "engine.rates_file", "topics.orders.filters" (a topic's
// filter rules), "topics.orders" (any other setting of the topic).
func Changed(a, b *Config) []string {
	var out []string
	diffStruct(reflect.ValueOf(*a), reflect.ValueOf(*b), "", &out)
	names := map[string]bool{}
	for n := range a.Topics {
		names[n] = true
	}
	for n := range b.Topics {
		names[n] = true
	}
	for n := range names {
		ta, tb := a.Topics[n], b.Topics[n]
		if !reflect.DeepEqual(ta.Filters, tb.Filters) {
			out = append(out, "topics."+n+".filters")
		}
		ta.Filters, tb.Filters = nil, nil
		if !reflect.DeepEqual(ta, tb) {
			out = append(out, "topics."+n)
		}
	}
	sort.Strings(out)
	return out
}

// diffStruct compares the yaml-tagged fields of two structs of one type,
// recursing into nested structs; maps other than Topics compare whole.
func diffStruct(a, b reflect.Value, prefix string, out *[]string) {
	t := a.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" || (prefix == "" && tag == "topics") {
			continue
		}
		fa, fb := a.Field(i), b.Field(i)
		if fa.Kind() == reflect.Struct {
			diffStruct(fa, fb, prefix+tag+".", out)
			continue
		}
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			*out = append(*out, prefix+tag)
		}
	}
}
