package event

import (
	"strings"
	"testing"
)

// TestScanTakesTheCommonRecords checks that the record scan, not
// fastjson, decodes the events of the benchmarks (canonical and renamed
// fields, items as objects) and that it agrees with fastjson on them.
func TestScanTakesTheCommonRecords(t *testing.T) {
	for _, renamed := range []bool{false, true} {
		cfg := fuzzConfig(t)
		if renamed {
			cfg.Fields = renamedFields
		}
		d, parsed := decoderPair(t, cfg)
		var ev, want Event
		for _, raw := range benchRecords(50, renamed) {
			if !d.scanRecord(raw) {
				t.Fatalf("renamed=%v: the record scan gives up on %s", renamed, raw)
			}
			res := d.Decode(raw, &ev)
			if res.Verdict != Accepted || len(ev.Items) != 1 || len(d.scanned) != 1 {
				t.Fatalf("renamed=%v: %s: %+v, items %v, scanned %d", renamed, raw, res, ev.Items, len(d.scanned))
			}
			checkSameDecode(t, raw, res, &ev, parsed.Decode(raw, &want), &want)
		}
	}
}

// TestScanGivesUp lists records the scan leaves to fastjson, each
// decoded as fastjson's path decodes it.
func TestScanGivesUp(t *testing.T) {
	d, parsed := decoderPair(t, fuzzConfig(t))
	base := `"event_type":"order_placed","store_id":"s-1","amount":"1.00","currency":"EUR","event_time":"2024-05-01T12:00:00Z"`
	for _, raw := range []string{
		`{"event_id":"e\"1",` + base + `}`,             // a backslash
		`{"event_id":"e","event_id":"f",` + base + `}`, // a duplicate key
		`{"event_id":"e",` + base + `,"x":-}`,          // a lone sign
		`{"event_id":"e",` + base + `,"x":-inf}`,       // fastjson's infinity
		`{"event_id":"e",` + base + `,"x":nan}`,
		`{"event_id":"e",` + base + `,}`,            // a trailing comma
		`{"event_id":"e",` + base + `} x`,           // a tail
		`{"event_id":"e",` + base + `,"items":[1]}`, // an item that is not an object
		`{"event_id":"e",` + base + `,"items":[{"sku":"a","sku":"b"}]}`,
		`[{"event_id":"e"}]`,
		`{"event_id":"e",` + base + `,"x":` + deep(70) + `}`,
	} {
		if d.scanRecord([]byte(raw)) && !strings.Contains(raw, "items") {
			t.Errorf("the record scan takes %s", raw)
		}
		var ev, want Event
		checkSameDecode(t, []byte(raw), d.Decode([]byte(raw), &ev), &ev, parsed.Decode([]byte(raw), &want), &want)
	}
}

func deep(n int) string {
	return strings.Repeat("[", n) + strings.Repeat("]", n)
}
