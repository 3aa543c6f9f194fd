package event

import (
	"errors"
	"math"
	"math/bits"
	"strconv"
)

// Decimal is an exact fixed-point number: int64 units of 1/10000, so four
// decimal places and a range of about ±922 trillion. Decimal(12500) is 1.25.
// Amounts never pass through float64: parsing works on the digits and the
// warehouse column is NUMBER(18,4).
type Decimal int64

// DecimalPlaces is the number of decimal places a Decimal keeps.
const DecimalPlaces = 4

// DecimalUnit is the Decimal for 1.
const DecimalUnit Decimal = 10000

// Errors from ParseDecimal. Each is one reject code: ErrDecimalSyntax is
// bad_amount, ErrDecimalPrecision is amount_precision, ErrDecimalRange is
// amount_out_of_range.
var (
	ErrDecimalSyntax    = errors.New("not a decimal number")
	ErrDecimalPrecision = errors.New("more than 4 decimal places")
	ErrDecimalRange     = errors.New("too large for 4-decimal fixed point")
)

// ParseDecimal parses a plain decimal number: an optional sign, digits with
// an optional '.' and fraction (".5" and "5." are accepted), and an
// optional exponent ("1.25e2"). More than four decimal places are accepted
// only when the extra ones are zeros ("1.23450"). Thousands separators,
// spaces and currency symbols are not accepted here.
func ParseDecimal(s string) (Decimal, error) {
	u, err := parseFixed(s, DecimalPlaces)
	return Decimal(u), err
}

// MustParseDecimal is ParseDecimal for constants; it panics on error.
func MustParseDecimal(s string) Decimal {
	d, err := ParseDecimal(s)
	if err != nil {
		panic("event: MustParseDecimal(" + strconv.Quote(s) + "): " + err.Error())
	}
	return d
}

// String returns the shortest exact text: "12.5", "3", "-0.0001".
func (d Decimal) String() string {
	var buf [24]byte
	return string(d.Append(buf[:0]))
}

// Append appends d's String form to b.
func (d Decimal) Append(b []byte) []byte {
	return appendFixed(b, int64(d), DecimalPlaces)
}

// MarshalText implements encoding.TextMarshaler.
func (d Decimal) MarshalText() ([]byte, error) { return d.Append(nil), nil }

// UnmarshalText implements encoding.TextUnmarshaler, so YAML configuration
// can say `max_amount: 1000000` or `min_amount: "0.01"`.
func (d *Decimal) UnmarshalText(b []byte) error {
	v, err := parseFixed(b, DecimalPlaces)
	if err != nil {
		return err
	}
	*d = Decimal(v)
	return nil
}

var pow10 = [...]uint64{
	1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000,
	1000000000, 10000000000, 100000000000, 1000000000000, 10000000000000,
	100000000000000, 1000000000000000, 10000000000000000,
	100000000000000000, 1000000000000000000, 10000000000000000000,
}

// parseFixed parses s (see ParseDecimal) into units of 10^-places.
func parseFixed[T string | []byte](s T, places int) (int64, error) {
	i, n := 0, len(s)
	neg := false
	if i < n && (s[i] == '-' || s[i] == '+') {
		neg = s[i] == '-'
		i++
	}
	intStart := i
	for i < n && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	intEnd := i
	fracStart, fracEnd := i, i
	if i < n && s[i] == '.' {
		i++
		fracStart = i
		for i < n && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		fracEnd = i
	}
	if intEnd == intStart && fracEnd == fracStart {
		return 0, ErrDecimalSyntax
	}
	exp := 0
	if i < n && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < n && (s[i] == '-' || s[i] == '+') {
			eneg = s[i] == '-'
			i++
		}
		if i == n {
			return 0, ErrDecimalSyntax
		}
		for ; i < n && s[i] >= '0' && s[i] <= '9'; i++ {
			if exp < 100000 { // saturate: anything this large is out of range or zero
				exp = exp*10 + int(s[i]-'0')
			}
		}
		if eneg {
			exp = -exp
		}
	}
	if i != n {
		return 0, ErrDecimalSyntax
	}
	// The value is D × 10^shift units, D being the integer and fraction
	// digits read as one integer.
	shift := exp - (fracEnd - fracStart) + places
	// Digits of D, skipping leading zeros, as two ranges of s.
	digit := func(k int) byte { // k-th digit of D, 0-based over both ranges
		if k < intEnd-intStart {
			return s[intStart+k]
		}
		return s[fracStart+k-(intEnd-intStart)]
	}
	total := (intEnd - intStart) + (fracEnd - fracStart)
	first := 0
	for first < total && digit(first) == '0' {
		first++
	}
	if first == total {
		return 0, nil // zero, whatever the exponent
	}
	last := total // digits [first, last) are used; the rest must be zeros
	if shift < 0 {
		drop := -shift
		for k := total - 1; k >= first && drop > 0; k-- {
			if digit(k) != '0' {
				return 0, ErrDecimalPrecision
			}
			last--
			drop--
		}
		if last == first {
			return 0, nil
		}
		if drop > 0 {
			// Every significant digit was below the last place.
			return 0, ErrDecimalPrecision
		}
		shift = 0
	}
	if last-first+shift > 19 {
		return 0, ErrDecimalRange
	}
	var u uint64
	for k := first; k < last; k++ {
		u = u*10 + uint64(digit(k)-'0')
	}
	hi, lo := bits.Mul64(u, pow10[shift])
	if hi != 0 || lo > math.MaxInt64 {
		return 0, ErrDecimalRange
	}
	if neg {
		return -int64(lo), nil
	}
	return int64(lo), nil
}

func appendFixed(b []byte, v int64, places int) []byte {
	u := uint64(v)
	if v < 0 {
		b = append(b, '-')
		u = -u
	}
	unit := pow10[places]
	b = strconv.AppendUint(b, u/unit, 10)
	frac := u % unit
	if frac == 0 {
		return b
	}
	b = append(b, '.')
	for p := unit / 10; p > 0 && frac > 0; p /= 10 {
		b = append(b, byte('0'+frac/p))
		frac %= p
	}
	return b
}

// parseAmountText parses an amount given as text: ParseDecimal's syntax
// plus comma thousands separators in strict groups of three ("1,234.50",
// "1,234,567"). A comma anywhere else ("12,50", "1,23,456") is a syntax
// error: a decimal comma would otherwise be misread by a factor of 1000.
// buf is scratch space.
func parseAmountText(b []byte, buf []byte) (Decimal, error) {
	comma := -1
	for i, c := range b {
		if c == ',' {
			comma = i
			break
		}
	}
	if comma < 0 {
		u, err := parseFixed(b, DecimalPlaces)
		return Decimal(u), err
	}
	// Integer part: [sign] 1-3 digits (,ddd)+ ; then optional fraction.
	i := 0
	if i < len(b) && (b[i] == '-' || b[i] == '+') {
		i++
	}
	lead := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
		lead++
	}
	if lead < 1 || lead > 3 || i >= len(b) || b[i] != ',' {
		return 0, ErrDecimalSyntax
	}
	buf = append(buf[:0], b[:i]...)
	for i < len(b) && b[i] == ',' {
		if i+4 > len(b) {
			return 0, ErrDecimalSyntax
		}
		for k := 1; k <= 3; k++ {
			if c := b[i+k]; c < '0' || c > '9' {
				return 0, ErrDecimalSyntax
			}
		}
		buf = append(buf, b[i+1:i+4]...)
		i += 4
	}
	if i < len(b) && b[i] != '.' {
		return 0, ErrDecimalSyntax // "1,2345" or "1,234e5"
	}
	for k := i; k < len(b); k++ {
		if b[k] == ',' || b[k] == 'e' || b[k] == 'E' {
			return 0, ErrDecimalSyntax
		}
	}
	buf = append(buf, b[i:]...)
	u, err := parseFixed(buf, DecimalPlaces)
	return Decimal(u), err
}

// mulRate multiplies an amount by a rate in units of 10^-rateDecimals and
// rounds half to even to 4 places. ok is false on overflow.
func mulRate(a Decimal, rate int64) (Decimal, bool) {
	neg := (a < 0) != (rate < 0)
	ua, ur := uint64(a), uint64(rate)
	if a < 0 {
		ua = -ua
	}
	if rate < 0 {
		ur = -ur
	}
	const div = 1e10 // 10^rateDecimals
	hi, lo := bits.Mul64(ua, ur)
	if hi >= div {
		return 0, false
	}
	q, rem := bits.Div64(hi, lo, div)
	if r2 := rem * 2; r2 > div || (r2 == div && q&1 == 1) {
		q++
	}
	if q > math.MaxInt64 {
		return 0, false
	}
	if neg {
		return Decimal(-int64(q)), true
	}
	return Decimal(q), true
}

// rateDecimals is the precision of exchange rates: 4 places would leave a
// rate like JPY→USD 0.0067 with two significant digits.
const rateDecimals = 10
