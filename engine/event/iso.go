package event

import (
	_ "embed"
	"strings"
)

//go:embed iso4217.txt
var iso4217Text string

//go:embed iso3166.txt
var iso3166Text string

// Code tables: a code's letters index a flat array, so a lookup is one load
// and the canonical string is shared (no allocation per event).
var (
	currencyIdx  [26 * 26 * 26]uint8 // 1-based index into currencyCodes; 0 = unknown
	currencyCode []string
	countryIdx   [26 * 26]uint8 // 1-based index into countryCodes
	countryCode  []string
)

func init() {
	for _, code := range tableCodes(iso4217Text, 3) {
		currencyCode = append(currencyCode, code)
		currencyIdx[letters3(code)] = uint8(len(currencyCode))
	}
	for _, code := range tableCodes(iso3166Text, 2) {
		countryCode = append(countryCode, code)
		countryIdx[int(code[0]-'A')*26+int(code[1]-'A')] = uint8(len(countryCode))
	}
	if len(currencyCode) > 255 || len(countryCode) > 255 {
		panic("BUG: event: code table larger than 255 entries")
	}
}

// tableCodes reads the code of each non-comment line of an embedded table.
func tableCodes(text string, n int) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		code, _, _ := strings.Cut(line, " ")
		if len(code) != n || strings.ToUpper(code) != code {
			panic("BUG: event: bad code table line " + line)
		}
		out = append(out, code)
	}
	return out
}

func letters3(code string) int {
	return int(code[0]-'A')*676 + int(code[1]-'A')*26 + int(code[2]-'A')
}

// upperLetter returns c upper-cased and whether it is an ASCII letter.
func upperLetter(c byte) (byte, bool) {
	if c >= 'a' && c <= 'z' {
		return c - 32, true
	}
	return c, c >= 'A' && c <= 'Z'
}

// currencyOf returns the 1-based table index of a currency code given in
// any letter case, or 0.
func currencyOf(b []byte) int {
	if len(b) != 3 {
		return 0
	}
	var k int
	for _, c := range b {
		u, ok := upperLetter(c)
		if !ok {
			return 0
		}
		k = k*26 + int(u-'A')
	}
	return int(currencyIdx[k])
}

// countryOf returns the 1-based table index of a country code given in any
// letter case, or 0. "UK", the exceptionally reserved code people use for
// the United Kingdom, is read as GB.
func countryOf(b []byte) int {
	if len(b) != 2 {
		return 0
	}
	c0, ok0 := upperLetter(b[0])
	c1, ok1 := upperLetter(b[1])
	if !ok0 || !ok1 {
		return 0
	}
	if c0 == 'U' && c1 == 'K' {
		c1 = 'B'
		c0 = 'G'
	}
	return int(countryIdx[int(c0-'A')*26+int(c1-'A')])
}

// IsCurrency reports whether code is an upper-case ISO 4217 code from the
// embedded list.
func IsCurrency(code string) bool {
	return len(code) == 3 && currencyOf([]byte(code)) != 0 && strings.ToUpper(code) == code
}

// IsCountry reports whether code is an upper-case ISO 3166-1 alpha-2 code
// from the embedded list.
func IsCountry(code string) bool {
	return len(code) == 2 && code != "UK" && countryOf([]byte(code)) != 0 && strings.ToUpper(code) == code
}

// Currencies returns the embedded ISO 4217 list.
func Currencies() []string { return append([]string(nil), currencyCode...) }
