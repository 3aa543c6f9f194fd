package event

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"gopkg.in/yaml.v3"

	"github.com/offload/offload/internal/testenv"
)

// testNow is the clock of every test decoder.
var testNow = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)

// testKey is the HashKey of every test decoder.
var testKey = []byte("test-hash-key-0123456789")

func testConfig() Config {
	return Config{HashKey: testKey, Now: func() time.Time { return testNow }}
}

// TestDataDriven runs the files in testdata/ (see the commands below).
// Regenerate the expected output with -rewrite.
//
//	config [rates=FILE base=CUR] [reference=FILE]
//	  YAML of a Config (mapping options inline); prints "ok" or the errors.
//	decode
//	  one raw record; prints the verdict and the event or the reject.
//	template
//	  a raw record with one "$" placeholder for each.
//	each [show=FIELD]
//	  one value per line substituted for "$"; prints one line per value:
//	  the field's cleaned value, "filtered RULE" or "rejected CODE".
func TestDataDriven(t *testing.T) {
	testenv.RunFiles(t, "testdata/*.txt", func(t *testing.T, path string) {
		cfg := testConfig()
		dec, err := NewDecoder(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var tmpl string
		var ev Event
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			switch td.Cmd {
			case "config":
				cfg = testConfig()
				if err := yaml.Unmarshal([]byte(td.Input), &cfg); err != nil {
					return "yaml: " + err.Error() + "\n"
				}
				if td.HasArg("rates") {
					var file, base string
					td.ScanArgs(t, "rates", &file)
					td.ScanArgs(t, "base", &base)
					r, err := LoadRates(filepath.Join("testdata", file), base)
					if err != nil {
						return err.Error() + "\n"
					}
					cfg.Rates = r
				}
				if td.HasArg("reference") {
					var file string
					td.ScanArgs(t, "reference", &file)
					r, err := LoadReference(filepath.Join("testdata", file))
					if err != nil {
						return err.Error() + "\n"
					}
					cfg.Reference = r
				}
				d, err := NewDecoder(cfg)
				if err != nil {
					return err.Error() + "\n"
				}
				dec = d
				return "ok\n"
			case "decode":
				res := dec.Decode([]byte(td.Input), &ev)
				return formatResult(res, &ev, cfg)
			case "template":
				tmpl = td.Input
				return ""
			case "each":
				show := ""
				if td.HasArg("show") {
					td.ScanArgs(t, "show", &show)
				}
				var b strings.Builder
				for _, line := range strings.Split(td.Input, "\n") {
					rec := strings.Replace(tmpl, "$", line, 1)
					res := dec.Decode([]byte(rec), &ev)
					fmt.Fprintf(&b, "%s → %s\n", line, summary(res, &ev, cfg, show))
				}
				return b.String()
			}
			t.Fatalf("unknown command %q", td.Cmd)
			return ""
		})
	})
}

func summary(res Result, ev *Event, cfg Config, show string) string {
	switch res.Verdict {
	case Filtered:
		return "filtered " + cfg.Filters[res.Rule].Name
	case Rejected:
		return "rejected " + res.Reject.Code
	}
	lines := eventLines(ev)
	for _, l := range lines {
		if k, v, _ := strings.Cut(l, ": "); k == show {
			return v
		}
	}
	if show == "" {
		return "accepted"
	}
	return "(" + show + " unset)"
}

func formatResult(res Result, ev *Event, cfg Config) string {
	switch res.Verdict {
	case Filtered:
		return fmt.Sprintf("filtered rule=%s\n", cfg.Filters[res.Rule].Name)
	case Rejected:
		return fmt.Sprintf("rejected %s field=%s\nreason: %s\n", res.Reject.Code, res.Reject.Field, res.Reject.Reason)
	case Accepted:
		return "accepted\n" + strings.Join(eventLines(ev), "\n") + "\n"
	}
	return fmt.Sprintf("BUG: verdict %d\n", res.Verdict)
}

// eventLines prints the set fields of ev, one "name: value" per line.
func eventLines(ev *Event) []string {
	var out []string
	str := func(k, v string) {
		if v != "" {
			out = append(out, fmt.Sprintf("%s: %q", k, v))
		}
	}
	str("event_id", ev.EventID)
	str("order_id", ev.OrderID)
	str("event_type", ev.EventType)
	str("store_id", ev.StoreID)
	str("customer_id", ev.CustomerID)
	str("customer_email_hash", ev.CustomerEmailHash)
	out = append(out, "amount: "+ev.Amount.String())
	str("currency", ev.Currency)
	str("payment_method", ev.PaymentMethod)
	str("card_last4", ev.CardLast4)
	str("channel", ev.Channel)
	str("country", ev.Country)
	for i, it := range ev.Items {
		out = append(out, fmt.Sprintf("items[%d]: sku=%q qty=%d unit_price=%s", i, it.SKU, it.Qty, it.UnitPrice))
	}
	if !ev.EventTime.IsZero() {
		out = append(out, "event_time: "+ev.EventTime.Format(time.RFC3339Nano))
	}
	if ev.HasBaseAmount {
		out = append(out, "base_amount: "+ev.BaseAmount.String())
	}
	if ev.HasReference {
		out = append(out, fmt.Sprintf("reference: region=%q timezone=%q", ev.Region, ev.Timezone))
	}
	str("attributes", ev.Attributes)
	str("extras", ev.Extras)
	if len(ev.UnmappedFields) > 0 {
		out = append(out, "unmapped: "+strings.Join(ev.UnmappedFields, " "))
	}
	return out
}
