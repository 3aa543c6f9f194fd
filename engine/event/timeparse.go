package event

import (
	"time"
)

// MinEventTime is the earliest event time accepted (ancient_timestamp
// below it). It also makes the epoch magnitude rule safe: no accepted
// seconds value can be mistaken for milliseconds.
var MinEventTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Epoch magnitude bounds (see the package doc). |n| < 1e11 is seconds (up
// to the year 5138), < 1e14 milliseconds, < 1e17 microseconds, otherwise
// nanoseconds.
const (
	epochMillisFrom = 1e11
	epochMicrosFrom = 1e14
	epochNanosFrom  = 1e17
)

// isEpochText reports whether b has the epoch form: an optional '-',
// digits, and for seconds an optional '.' and fraction.
func isEpochText(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == start {
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		fs := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == fs {
			return false
		}
	}
	return i == len(b)
}

// parseEpoch parses an epoch number (isEpochText form) and tells the unit
// by magnitude. A fraction is accepted only on seconds.
func parseEpoch(b []byte) (time.Time, bool) {
	i := 0
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	var n uint64
	digits := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if n == 0 && b[i] == '0' {
			continue
		}
		digits++
		if digits > 19 {
			return time.Time{}, false
		}
		n = n*10 + uint64(b[i]-'0')
	}
	if n > 1<<63-1 {
		return time.Time{}, false
	}
	var frac int64
	if i < len(b) && b[i] == '.' {
		if n >= epochMillisFrom {
			return time.Time{}, false
		}
		i++
		scale := int64(1e8)
		for ; i < len(b); i++ {
			frac += int64(b[i]-'0') * scale // digits past nanoseconds are dropped
			scale /= 10
		}
	}
	var sec, nsec int64
	switch {
	case n < epochMillisFrom:
		sec, nsec = int64(n), frac
	case n < epochMicrosFrom:
		sec, nsec = int64(n/1e3), int64(n%1e3)*1e6
	case n < epochNanosFrom:
		sec, nsec = int64(n/1e6), int64(n%1e6)*1e3
	default:
		sec, nsec = int64(n/1e9), int64(n%1e9)
	}
	if neg {
		sec, nsec = -sec, -nsec
	}
	return time.Unix(sec, nsec).UTC(), true
}

// parseISO parses the ISO 8601 / RFC 3339 subset described in the package
// doc: YYYY-MM-DD, 'T', 't' or ' ', hh:mm[:ss[.fraction]], then nothing
// (UTC), 'Z', "UTC", or an offset ±hh, ±hhmm or ±hh:mm, optionally after
// one space.
func parseISO(b []byte) (time.Time, bool) {
	if len(b) < 16 {
		return time.Time{}, false
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	if !ok1 || !ok2 || !ok3 || b[4] != '-' || b[7] != '-' {
		return time.Time{}, false
	}
	if c := b[10]; c != 'T' && c != 't' && c != ' ' {
		return time.Time{}, false
	}
	hour, ok1 := num(b[11:13])
	min, ok2 := num(b[14:16])
	if !ok1 || !ok2 || b[13] != ':' {
		return time.Time{}, false
	}
	sec, nsec := 0, 0
	b = b[16:]
	if len(b) >= 3 && b[0] == ':' {
		s, ok := num(b[1:3])
		if !ok {
			return time.Time{}, false
		}
		sec = s
		b = b[3:]
		if len(b) > 0 && (b[0] == '.' || b[0] == ',') {
			k := 1
			scale := 100000000
			for ; k < len(b) && b[k] >= '0' && b[k] <= '9'; k++ {
				nsec += int(b[k]-'0') * scale // digits past nanoseconds are dropped
				scale /= 10
			}
			if k == 1 {
				return time.Time{}, false
			}
			b = b[k:]
		}
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || min > 59 || sec > 59 {
		return time.Time{}, false
	}
	offset := 0
	if len(b) > 0 && b[0] == ' ' {
		b = b[1:]
		if len(b) == 0 {
			return time.Time{}, false
		}
	}
	switch {
	case len(b) == 0:
	case len(b) == 1 && (b[0] == 'Z' || b[0] == 'z'):
	case len(b) == 3 && string(b) == "UTC":
	case b[0] == '+' || b[0] == '-':
		h, ok := num2(b, 1)
		m := 0
		switch {
		case !ok:
			return time.Time{}, false
		case len(b) == 3:
		case len(b) == 5:
			m, ok = num2(b, 3)
		case len(b) == 6 && b[3] == ':':
			m, ok = num2(b, 4)
		default:
			ok = false
		}
		if !ok || h > 23 || m > 59 {
			return time.Time{}, false
		}
		offset = h*3600 + m*60
		if b[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	days := daysFromCivil(year, month, day)
	unix := days*86400 + int64(hour*3600+min*60+sec) - int64(offset)
	return time.Unix(unix, int64(nsec)).UTC(), true
}

func num(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func num2(b []byte, at int) (int, bool) {
	if at+2 > len(b) {
		return 0, false
	}
	return num(b[at : at+2])
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date with year >= 0 (H. Hinnant's algorithm).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}
