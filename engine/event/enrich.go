package event

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Rates converts amounts to one base currency. It is immutable once loaded:
// the engine reloads by loading a new one and handing it to
// Decoder.SetRates.
type Rates struct {
	base  string
	rates []int64 // by currency table index (1-based, so [0] unused); units of 10^-10; 0 = missing
	n     int
}

// LoadRates reads a rates table from a CSV file: a header "currency,rate",
// then one line per currency giving how many units of base one unit of that
// currency is worth ("EUR,1.0842"), with up to 10 decimal places. Lines
// starting with '#' are comments. Errors name the file and line.
func LoadRates(path, base string) (*Rates, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("event: cannot read rates: %w", err)
	}
	defer f.Close()
	return ParseRates(f, path, base)
}

// ParseRates is LoadRates over a reader; name labels errors.
func ParseRates(r io.Reader, name, base string) (*Rates, error) {
	bi := currencyOf([]byte(base))
	if bi == 0 || strings.ToUpper(base) != base {
		return nil, fmt.Errorf("event: rates %s: base currency %q is not an upper-case ISO 4217 code", name, base)
	}
	rt := &Rates{base: base, rates: make([]int64, len(currencyCode)+1)}
	rt.rates[bi] = int64(pow10[rateDecimals])
	seenBase := false
	err := readTable(r, name, func(line int, rec []string) error {
		if line == 1 {
			if len(rec) != 2 || !strings.EqualFold(strings.TrimSpace(rec[0]), "currency") || !strings.EqualFold(strings.TrimSpace(rec[1]), "rate") {
				return fmt.Errorf("header must be \"currency,rate\", got %q", strings.Join(rec, ","))
			}
			return nil
		}
		if len(rec) != 2 {
			return fmt.Errorf("%d fields; want currency,rate", len(rec))
		}
		code, text := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
		ci := currencyOf([]byte(code))
		if ci == 0 {
			return fmt.Errorf("currency %q is not an ISO 4217 code", code)
		}
		v, err := parseFixed(text, rateDecimals)
		switch {
		case errors.Is(err, ErrDecimalPrecision):
			return fmt.Errorf("rate %q has more than %d decimal places", text, rateDecimals)
		case errors.Is(err, ErrDecimalRange):
			return fmt.Errorf("rate %q is too large", text)
		case err != nil:
			return fmt.Errorf("rate %q is not a decimal number", text)
		}
		if v <= 0 {
			return fmt.Errorf("rate %q must be positive", text)
		}
		if ci == bi {
			if v != int64(pow10[rateDecimals]) {
				return fmt.Errorf("the base currency %s must have rate 1, not %s", base, text)
			}
			if seenBase {
				return fmt.Errorf("currency %s is listed twice", currencyCode[ci-1])
			}
			seenBase = true
			return nil
		}
		if rt.rates[ci] != 0 {
			return fmt.Errorf("currency %s is listed twice", currencyCode[ci-1])
		}
		rt.rates[ci] = v
		rt.n++
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rt, nil
}

// Base returns the base currency.
func (r *Rates) Base() string { return r.base }

// Len returns how many currencies besides the base have a rate.
func (r *Rates) Len() int {
	if r == nil {
		return 0
	}
	return r.n
}

// Convert returns amount in currency converted to the base currency,
// rounded half to even to 4 places. ok is false when the table has no rate
// for currency, or when the result does not fit a Decimal or passes
// MaxStoredAmount (then overflow is true).
func (r *Rates) Convert(amount Decimal, currency string) (v Decimal, ok, overflow bool) {
	return r.convert(amount, currencyOf([]byte(currency)))
}

func (r *Rates) convert(amount Decimal, ci int) (Decimal, bool, bool) {
	if ci <= 0 || ci >= len(r.rates) || r.rates[ci] == 0 {
		return 0, false, false
	}
	v, ok := mulRate(amount, r.rates[ci])
	if ok && (v > MaxStoredAmount || v < -MaxStoredAmount) {
		ok = false
	}
	return v, ok, !ok
}

// Reference is a reference-data table keyed by its first column, e.g.
// store_id → region, timezone. It is immutable once loaded.
type Reference struct {
	name     string
	columns  []string
	rows     map[string][]string
	key      field
	region   int // column index or -1
	timezone int
}

// LoadReference reads a reference table from a CSV file with a header
// line. The first column's name is the canonical field joined on (usually
// store_id); columns named "region" and "timezone" fill Event.Region and
// Event.Timezone; other columns are available through Lookup. Lines
// starting with '#' are comments. Errors name the file and line.
func LoadReference(path string) (*Reference, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("event: cannot read reference data: %w", err)
	}
	defer f.Close()
	return ParseReference(f, path)
}

// ParseReference is LoadReference over a reader; name labels errors.
func ParseReference(r io.Reader, name string) (*Reference, error) {
	ref := &Reference{name: name, rows: map[string][]string{}, region: -1, timezone: -1}
	err := readTable(r, name, func(line int, rec []string) error {
		if line == 1 {
			seen := map[string]bool{}
			for i, col := range rec {
				col = strings.TrimSpace(col)
				if col == "" {
					return fmt.Errorf("column %d of the header has no name", i+1)
				}
				if seen[col] {
					return fmt.Errorf("column %q appears twice in the header", col)
				}
				seen[col] = true
				ref.columns = append(ref.columns, col)
				switch col {
				case "region":
					ref.region = i
				case "timezone":
					ref.timezone = i
				}
			}
			f, ok := lookupField(ref.columns[0])
			if !ok || f >= numTop || f == fItems || f == fCustomerEmail || f == fCardNumber {
				return fmt.Errorf("the first column %q must name the canonical field to join on (e.g. store_id)", ref.columns[0])
			}
			ref.key = f
			return nil
		}
		if len(rec) != len(ref.columns) {
			return fmt.Errorf("%d fields; the header has %d", len(rec), len(ref.columns))
		}
		for i := range rec {
			rec[i] = strings.TrimSpace(rec[i])
		}
		if rec[0] == "" {
			return errors.New("empty key")
		}
		if _, dup := ref.rows[rec[0]]; dup {
			return fmt.Errorf("key %q is listed twice", rec[0])
		}
		ref.rows[rec[0]] = rec
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ref, nil
}

// Key returns the name of the key column (a canonical field).
func (r *Reference) Key() string { return r.columns[0] }

// Columns returns the header.
func (r *Reference) Columns() []string { return append([]string(nil), r.columns...) }

// Len returns the number of rows.
func (r *Reference) Len() int {
	if r == nil {
		return 0
	}
	return len(r.rows)
}

// Lookup returns the row for key, in header order. The row must not be
// modified.
func (r *Reference) Lookup(key string) ([]string, bool) {
	row, ok := r.rows[key]
	return row, ok
}

// readTable reads a CSV table, calling fn with 1-based line numbers; an
// error from fn or the reader is returned naming name and the line.
func readTable(r io.Reader, name string, fn func(line int, rec []string) error) error {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	first := true
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			if first {
				return fmt.Errorf("event: %s: empty file; it needs a header line", name)
			}
			return nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return fmt.Errorf("event: %s:%d: %v", name, pe.Line, pe.Err)
			}
			return fmt.Errorf("event: cannot read %s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		n := line
		if first {
			n = 1 // the header is line 1 for fn, whatever comments precede it
		}
		if err := fn(n, rec); err != nil {
			return fmt.Errorf("event: %s:%d: %v", name, line, err)
		}
		first = false
	}
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
