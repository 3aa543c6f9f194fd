package event

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"unicode/utf8"
)

// Card numbers. A "run" is a maximal sequence of digits in which up to
// three spaces or dashes may stand between two digits ("4111 1111",
// "4111-1111", "4111 - 1111"); its "groups" are the digit sequences between
// separators. A span of whole consecutive groups of
// one run holding 13 to 19 digits that pass the Luhn check looks like a full
// card number (PAN). A single unseparated group longer than 19 digits is not
// a card number (long numeric ids are common; card numbers are never written
// inside them), so nothing inside it is masked.
//
// A span starting with 0 or 1 is not a card number: no card network issues
// from major industry identifiers 0 and 1 except UATP airline cards, while
// epoch milliseconds (13 digits, "17..." until 2033), microseconds and
// nanoseconds all start with 1 and a tenth of them pass Luhn; masking them
// would break ids built from timestamps and dead-letter replays.
//
// Spans are chosen left to right, the longest valid span first, and the
// scan repeats over its own output until nothing is found, because the four
// digits a replacement keeps could complete a new span with the digits after
// it.

const (
	panMinDigits     = 13
	panMaxDigits     = 19
	maxPANSeparators = 3
)

type span struct{ start, end int } // byte offsets, end exclusive

// maybePAN is the cheap pre-check: fewer than 13 digits cannot hold one.
func maybePAN(b []byte) bool {
	n := 0
	for _, c := range b {
		if c >= '0' && c <= '9' {
			n++
			if n >= panMinDigits {
				return true
			}
		}
	}
	return false
}

// nextPAN returns the first card-number span of b at or after from, using
// groups as scratch space.
func nextPAN(b []byte, from int, groups *[]span) (span, bool) {
	i := from
	for i < len(b) {
		if b[i] < '0' || b[i] > '9' {
			i++
			continue
		}
		// A run starts at i: collect its groups.
		gs := (*groups)[:0]
		for {
			s := i
			for i < len(b) && b[i] >= '0' && b[i] <= '9' {
				i++
			}
			gs = append(gs, span{s, i})
			k := i
			for k < len(b) && k-i < maxPANSeparators && (b[k] == ' ' || b[k] == '-') {
				k++
			}
			if k > i && k < len(b) && b[k] >= '0' && b[k] <= '9' {
				i = k
				continue
			}
			break
		}
		*groups = gs
		for gi := range gs {
			if c := b[gs[gi].start]; c == '0' || c == '1' {
				continue // see panFirstDigit
			}
			digits, best := 0, -1
			for gj := gi; gj < len(gs); gj++ {
				digits += gs[gj].end - gs[gj].start
				if digits > panMaxDigits {
					break
				}
				if digits >= panMinDigits && luhn(b, gs[gi:gj+1]) {
					best = gj
				}
			}
			if best >= 0 {
				return span{gs[gi].start, gs[best].end}, true
			}
		}
	}
	return span{}, false
}

// luhn runs the Luhn check over the digits of groups.
func luhn(b []byte, groups []span) bool {
	sum, double := 0, false
	for g := len(groups) - 1; g >= 0; g-- {
		for k := groups[g].end - 1; k >= groups[g].start; k-- {
			d := int(b[k] - '0')
			if double {
				d *= 2
				if d > 9 {
					d -= 9
				}
			}
			sum += d
			double = !double
		}
	}
	return sum%10 == 0
}

// last4 appends the last four digits of b[s.start:s.end] to dst.
func last4(dst []byte, b []byte, s span) []byte {
	var d [4]byte
	n := 0
	for k := s.end - 1; k >= s.start && n < 4; k-- {
		if c := b[k]; c >= '0' && c <= '9' {
			n++
			d[4-n] = c
		}
	}
	return append(dst, d[4-n:]...)
}

// digitsOf appends the digits of b[s.start:s.end] to dst.
func digitsOf(dst []byte, b []byte, s span) []byte {
	for _, c := range b[s.start:s.end] {
		if c >= '0' && c <= '9' {
			dst = append(dst, c)
		}
	}
	return dst
}

// maskPANs replaces every card-number span in b with "****" and its last
// four digits, repeating until none is left. It returns b itself and false
// when nothing was found; otherwise a slice of a scratch buffer and true.
// replace, when set, writes the replacement instead (identifier fields).
func maskPANs(b []byte, scratch *[2][]byte, groups *[]span, replace func(dst, b []byte, s span) []byte) ([]byte, bool) {
	if !maybePAN(b) {
		return b, false
	}
	cur, which, changed := b, 0, false
	for {
		s, ok := nextPAN(cur, 0, groups)
		if !ok {
			return cur, changed
		}
		changed = true
		out := scratch[which][:0]
		pos := 0
		for ok {
			out = append(out, cur[pos:s.start]...)
			if replace != nil {
				out = replace(out, cur, s)
			} else {
				out = append(out, "****"...)
				out = last4(out, cur, s)
			}
			pos = s.end
			s, ok = nextPAN(cur, pos, groups)
		}
		out = append(out, cur[pos:]...)
		scratch[which] = out
		cur, which = out, 1-which
		if !maybePAN(cur) {
			return cur, true
		}
	}
}

// MaskRaw returns raw with every run of digits that looks like a full card
// number (see the package doc) replaced by "****" and its last four digits.
// The dead-letter table keeps raw records through it. raw itself is
// returned when it holds none; otherwise a new slice, raw left untouched.
// Masking a card number that was a bare JSON number leaves the record
// invalid JSON: it is in the dead-letter table already.
func MaskRaw(raw []byte) []byte {
	var scratch [2][]byte
	var groups []span
	out, changed := maskPANs(raw, &scratch, &groups, nil)
	if !changed {
		return raw
	}
	return append([]byte(nil), out...)
}

// E-mail-shaped tokens inside kept text fields and reasons: a local part
// of [A-Za-z0-9._%+-], '@', and a domain of at least two dot-separated
// non-empty labels of [A-Za-z0-9-]; the domain ends where the next label
// would be empty ("ann@example.org." ends before the last dot). It errs on
// the side of masking: "ann@example.org...x" is still a token.

func isLocalChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

func isLabelChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

// nextEmail returns the first e-mail-shaped token of b at or after from.
func nextEmail(b []byte, from int) (span, bool) {
	for at := from; at < len(b); at++ {
		if b[at] != '@' {
			continue
		}
		l := at
		for l > from && isLocalChar(b[l-1]) {
			l--
		}
		if l == at {
			continue
		}
		r, labels := at+1, 0
		for {
			k := r
			for k < len(b) && isLabelChar(b[k]) {
				k++
			}
			if k == r {
				break // empty label: the domain ended at the previous dot
			}
			labels++
			r = k
			if r+1 < len(b) && b[r] == '.' && isLabelChar(b[r+1]) {
				r++
				continue
			}
			break
		}
		if labels >= 2 {
			return span{l, r}, true
		}
	}
	return span{}, false
}

// validEmail checks the shape of a whole customer_email value (trimmed):
// one '@', a non-empty local part of at most 64 bytes without spaces or
// control characters, and a domain of dot-separated non-empty labels of
// letters, digits, '-' or non-ASCII bytes, with at least two labels.
func validEmail(b []byte) bool {
	if len(b) < 3 || len(b) > 254 {
		return false
	}
	at := -1
	for i, c := range b {
		if c == '@' {
			if at >= 0 {
				return false
			}
			at = i
		}
	}
	if at < 1 || at > 64 || at == len(b)-1 {
		return false
	}
	for _, c := range b[:at] {
		if c <= ' ' || c == 0x7f || c == '"' || c == '<' || c == '>' || c == '(' ||
			c == ')' || c == ',' || c == ';' || c == ':' || c == '[' || c == ']' || c == '\\' {
			return false
		}
	}
	dom := b[at+1:]
	labels, n := 0, 0
	for i, c := range dom {
		switch {
		case c == '.':
			if n == 0 || dom[i-1] == '-' {
				return false
			}
			labels++
			n = 0
		case c == '-':
			if n == 0 {
				return false
			}
			n++
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80:
			n++
		default:
			return false
		}
	}
	if n == 0 || dom[len(dom)-1] == '-' {
		return false
	}
	return labels >= 1
}

func (d *Decoder) email(ev *Event) bool {
	b, ok := d.text(fCustomerEmail, d.slots[fCustomerEmail])
	if !ok || len(b) == 0 {
		return ok
	}
	if !validEmail(b) {
		// The value is personal data: never echoed.
		return d.fail(CodeBadEmail, fCustomerEmail, "not an e-mail address (local@domain, at most 254 bytes)")
	}
	d.mailBuf = d.hashEmail(d.mailBuf[:0], b)
	ev.CustomerEmailHash = d.intern(d.mailBuf)
	return true
}

func (d *Decoder) card(ev *Event) bool {
	b, ok := d.text(fCardNumber, d.slots[fCardNumber])
	if !ok || len(b) == 0 {
		return ok
	}
	digits, _, _ := scanText(b)
	if digits == 0 || digits > panMaxDigits {
		// Never echoed: it may be a card number in another layout.
		return d.fail(CodeBadCardNumber, fCardNumber, "has %d digits; a card number or its masked form has 1 to %d", digits, panMaxDigits)
	}
	var l4 [4]byte
	ev.CardLast4 = d.intern(last4(l4[:0], b, span{0, len(b)}))
	return true
}

// hashEmail appends the lower-case hex HMAC-SHA256 of the lower-cased
// address to dst.
func (d *Decoder) hashEmail(dst, addr []byte) []byte {
	low := addr
	for _, c := range addr {
		if c >= 'A' && c <= 'Z' || c >= 0x80 {
			low = d.lowerCase(addr)
			break
		}
	}
	d.mac.Reset()
	d.mac.Write(low)
	d.sum = d.mac.Sum(d.sum[:0])
	n := len(dst)
	dst = append(dst, make([]byte, 2*len(d.sum))...) // no allocation: make is folded into append
	hex.Encode(dst[n:], d.sum)
	return dst
}

// lowerCase returns addr lower-cased in d.lower.
func (d *Decoder) lowerCase(addr []byte) []byte {
	for _, c := range addr {
		if c >= 0x80 {
			d.lower = append(d.lower[:0], bytes.ToLower(addr)...)
			return d.lower
		}
	}
	if cap(d.lower) < len(addr) {
		d.lower = make([]byte, len(addr), 2*len(addr))
	}
	low := d.lower[:len(addr)]
	for i, c := range addr {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		low[i] = c
	}
	return low
}

// maskEmails replaces each e-mail-shaped token of b with its hash (the same
// value CustomerEmailHash would hold), so that an id that is an address
// still joins.
func (d *Decoder) maskEmails(b []byte) []byte {
	s, ok := nextEmail(b, 0)
	if !ok {
		return b
	}
	out := d.mailBuf[:0]
	pos := 0
	for ok {
		out = append(out, b[pos:s.start]...)
		out = d.hashEmail(out, b[s.start:s.end])
		pos = s.end
		s, ok = nextEmail(b, pos)
	}
	out = append(out, b[pos:]...)
	d.mailBuf = out
	return out
}

// panToken writes the replacement of a card number found in an identifier
// field: "****", the last four digits, '#', and 24 letters a-p encoding 96
// bits of the HMAC-SHA256 of its digits. Two different ids stay different
// and one id always maps to the same value, so dedupe and joins still work;
// the letters hold no digits that could look like a card number again.
func (d *Decoder) panToken(dst, b []byte, s span) []byte {
	dst = append(dst, "****"...)
	dst = last4(dst, b, s)
	dst = append(dst, '#')
	d.lower = digitsOf(d.lower[:0], b, s)
	d.mac.Reset()
	d.mac.Write(d.lower)
	d.sum = d.mac.Sum(d.sum[:0])
	for _, c := range d.sum[:12] {
		dst = append(dst, 'a'+c>>4, 'a'+c&15)
	}
	return dst
}

// maskReason masks card numbers and e-mail addresses in a reason.
func maskReason(reason string) string {
	s, _ := clip([]byte(reason), 2*len(reason)+64) // never cut: masks are not much longer
	return s
}

// sanitize quotes a value for a reason: at most max bytes (cut on a rune
// boundary), card numbers reduced to their last four digits and e-mail
// addresses replaced, so reasons never carry personal data.
func sanitize(b []byte, max int) string {
	s, cut := clip(b, max)
	// Quoting can turn bytes into text ("\x00@a.b" into `\x00@a.b`): mask
	// the quoted form again.
	q, _ := clip([]byte(strconv.Quote(s)), 1<<20)
	if cut {
		q += "..."
	}
	return q
}

// sanitizeText is sanitize without the quotes, for parser messages.
func sanitizeText(b []byte, max int) string {
	s, cut := clip(b, max)
	if cut {
		s += "..."
	}
	return s
}

// clip masks b, then cuts it to max bytes: masking first, so that a cut
// cannot leave an unmasked part of a card number or address behind.
func clip(b []byte, max int) (string, bool) {
	var scratch [2][]byte
	var groups []span
	b, _ = maskPANs(b, &scratch, &groups, nil)
	if s, ok := nextEmail(b, 0); ok {
		var out []byte
		pos := 0
		for ok {
			out = append(out, b[pos:s.start]...)
			out = append(out, "<e-mail>"...)
			pos = s.end
			s, ok = nextEmail(b, pos)
		}
		b = append(out, b[pos:]...)
	}
	if len(b) <= max {
		return string(b), false
	}
	n := max
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return string(b[:n]), true
}
