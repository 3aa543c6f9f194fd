package snowtest

import (
	"slices"
	"strings"
	"unicode"
)

// tokKind classifies a token of Snowflake SQL text.
type tokKind int

const (
	tokSpace  tokKind = iota // whitespace and comments
	tokIdent                 // unquoted identifier or keyword
	tokQuoted                // "quoted identifier"
	tokString                // 'string literal'
	tokNumber                // numeric literal
	tokParam                 // :1 style bind placeholder
	tokOp                    // any other character, or ::
)

type token struct {
	kind tokKind
	text string
}

// upper returns the token text upper-cased when it is an unquoted
// identifier, and as is otherwise.
func (t token) upper() string {
	if t.kind == tokIdent {
		return strings.ToUpper(t.text)
	}
	return t.text
}

func (t token) is(kw string) bool { return t.kind == tokIdent && strings.EqualFold(t.text, kw) }

// tokenize splits SQL text into tokens. It never fails: an unterminated
// literal runs to the end of the text and DuckDB reports it.
func tokenize(s string) []token {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		j := i + 1
		kind := tokOp
		switch {
		case c == '-' && strings.HasPrefix(s[i:], "--"), c == '/' && strings.HasPrefix(s[i:], "//"):
			kind = tokSpace
			for j < len(s) && s[j] != '\n' {
				j++
			}
		case c == '/' && strings.HasPrefix(s[i:], "/*"):
			kind = tokSpace
			if k := strings.Index(s[i+2:], "*/"); k >= 0 {
				j = i + 2 + k + 2
			} else {
				j = len(s)
			}
		case unicode.IsSpace(rune(c)):
			kind = tokSpace
			for j < len(s) && unicode.IsSpace(rune(s[j])) {
				j++
			}
		case c == '\'' || c == '"':
			kind = tokString
			if c == '"' {
				kind = tokQuoted
			}
			for j < len(s) {
				if s[j] == '\\' && c == '\'' {
					j += 2
					continue
				}
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c { // doubled quote
						j += 2
						continue
					}
					j++
					break
				}
				j++
			}
			j = min(j, len(s))
		case c >= '0' && c <= '9':
			kind = tokNumber
			for j < len(s) && (isIdentChar(s[j]) || s[j] == '.') {
				j++
			}
		case isIdentChar(c):
			kind = tokIdent
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
		case c == ':' && j < len(s) && s[j] == ':':
			j++
		case j < len(s) && slices.Contains([]string{"<>", "<=", ">=", "!=", "||"}, s[i:j+1]):
			j++ // a two-character operator stays one token
		case c == ':' && j < len(s) && s[j] >= '0' && s[j] <= '9':
			kind = tokParam
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
		}
		toks = append(toks, token{kind, s[i:j]})
		i = j
	}
	return toks
}

func isIdentChar(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// words returns the non-space tokens.
func words(toks []token) []token {
	var out []token
	for _, t := range toks {
		if t.kind != tokSpace {
			out = append(out, t)
		}
	}
	return out
}

// leading returns the first n keywords of the statement, upper-cased and
// joined by single spaces.
func leading(sqlText string, n int) string {
	var kws []string
	for _, t := range words(tokenize(sqlText)) {
		if len(kws) == n || t.kind != tokIdent {
			break
		}
		kws = append(kws, strings.ToUpper(t.text))
	}
	return strings.Join(kws, " ")
}

// functionNames maps Snowflake functions to their DuckDB names.
var functionNames = map[string]string{
	"IFF":        "IF",
	"NVL":        "COALESCE",
	"PARSE_JSON": "JSON",
}

// translate rewrites a Snowflake statement into DuckDB SQL: unquoted
// identifiers are upper-cased (Snowflake resolves them that way), :N
// placeholders become $N, Snowflake types in type positions become DuckDB
// types, a leading database qualifier is dropped (the server has one
// database) and a few functions are renamed.
func translate(sqlText, database string) string {
	toks := words(tokenize(sqlText))
	var b strings.Builder
	createTable := isCreateTable(toks)
	depth := 0
	var castDepths []int // paren depths opened by CAST( or TRY_CAST(
	var written token    // the last token written out
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		prev := token{}
		if i > 0 {
			prev = toks[i-1]
		}
		typePos := prev.text == "::" ||
			prev.is("AS") && len(castDepths) > 0 && castDepths[len(castDepths)-1] == depth ||
			createTable && depth == 1 && i >= 2 && (toks[i-2].text == "(" || toks[i-2].text == ",") && prev.kind != tokOp && !isConstraintWord(prev)
		out := ""
		switch {
		case t.kind == tokIdent && typePos:
			var n int
			out, n = duckType(toks[i:])
			i += n - 1
		case t.kind == tokParam:
			out = "$" + t.text[1:]
		case t.kind == tokIdent && i+1 < len(toks) && toks[i+1].text == "(":
			name := strings.ToUpper(t.text)
			if name == "CAST" || name == "TRY_CAST" {
				castDepths = append(castDepths, depth+1)
			}
			if name == "CURRENT_TIMESTAMP" || name == "SYSDATE" || name == "GETDATE" {
				if i+2 < len(toks) && toks[i+2].text == ")" {
					out = "CURRENT_TIMESTAMP"
					if name != "CURRENT_TIMESTAMP" {
						out = "CAST(CURRENT_TIMESTAMP AS TIMESTAMP)"
					}
					i += 2
					break
				}
			}
			out = name
			if d, ok := functionNames[name]; ok {
				out = d
			}
		case t.kind == tokIdent && database != "" && strings.EqualFold(t.text, database) &&
			i+4 < len(toks) && toks[i+1].text == "." && toks[i+3].text == "." && prev.text != ".":
			i++ // drop "DB."
			continue
		case t.kind == tokQuoted && database != "" && t.text == `"`+database+`"` &&
			i+4 < len(toks) && toks[i+1].text == "." && toks[i+3].text == "." && prev.text != ".":
			i++
			continue
		case t.kind == tokString:
			out = quoteString(unescape(t.text))
		default:
			out = t.upper()
		}
		if depth == 0 && t.is("AS") {
			createTable = false // CREATE TABLE ... AS SELECT: no column list
		}
		switch t.text {
		case "(":
			depth++
		case ")":
			if len(castDepths) > 0 && castDepths[len(castDepths)-1] == depth {
				castDepths = castDepths[:len(castDepths)-1]
			}
			depth--
		}
		if b.Len() > 0 && needsSpace(written, t) {
			b.WriteByte(' ')
		}
		b.WriteString(out)
		written = t
	}
	return b.String()
}

// needsSpace reports whether two adjacent tokens must be separated when the
// statement is written back.
func needsSpace(prev, t token) bool {
	return prev.text != "." && t.text != "." && prev.text != "::" && t.text != "::"
}

func isCreateTable(toks []token) bool {
	if len(toks) == 0 || !toks[0].is("CREATE") {
		return false
	}
	for _, t := range toks[1:] {
		switch {
		case t.is("TABLE"):
			return true
		case t.is("OR"), t.is("REPLACE"), t.is("TEMPORARY"), t.is("TEMP"), t.is("TRANSIENT"), t.is("LOCAL"), t.is("GLOBAL"):
		default:
			return false
		}
	}
	return false
}

func isConstraintWord(t token) bool {
	return t.is("PRIMARY") || t.is("CONSTRAINT") || t.is("UNIQUE") || t.is("FOREIGN") || t.is("CHECK")
}

// duckType maps the Snowflake type starting at toks[0] to a DuckDB type
// and says how many tokens it used (the name and any (p, s) after it).
func duckType(toks []token) (string, int) {
	n := 1
	var args []string
	if len(toks) > 1 && toks[1].text == "(" {
		for k := 2; k < len(toks); k++ {
			if toks[k].text == ")" {
				n = k + 1
				break
			}
			if toks[k].text != "," {
				args = append(args, toks[k].text)
			}
		}
	}
	switch strings.ToUpper(toks[0].text) {
	case "NUMBER", "DECIMAL", "NUMERIC":
		p, s := "38", "0"
		if len(args) > 0 {
			p = args[0]
		}
		if len(args) > 1 {
			s = args[1]
		}
		return "DECIMAL(" + p + "," + s + ")", n
	case "INT", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "BYTEINT":
		return "BIGINT", n
	case "FLOAT", "FLOAT4", "FLOAT8", "REAL":
		return "DOUBLE", n
	case "DOUBLE":
		if len(toks) > 1 && toks[1].is("PRECISION") {
			return "DOUBLE", 2
		}
		return "DOUBLE", n
	case "VARCHAR", "STRING", "TEXT", "CHAR", "CHARACTER", "NCHAR", "NVARCHAR", "NVARCHAR2", "CHAR_VARYING":
		return "VARCHAR", n
	case "DATETIME", "TIMESTAMP", "TIMESTAMP_NTZ", "TIMESTAMPNTZ":
		return "TIMESTAMP", n
	case "TIMESTAMP_TZ", "TIMESTAMP_LTZ", "TIMESTAMPTZ", "TIMESTAMPLTZ":
		return "TIMESTAMPTZ", n
	case "TIME":
		return "TIME", n
	case "VARIANT", "OBJECT", "ARRAY":
		return "JSON", n
	case "BINARY", "VARBINARY":
		return "BLOB", n
	}
	return strings.ToUpper(toks[0].text), 1
}

// objectName normalises a possibly qualified object name the way
// Snowflake resolves it: unquoted parts upper-cased, quotes removed. It
// returns the last part (the object) and the part before it (the schema,
// empty when unqualified).
func objectName(s string) (schema, name string) {
	var parts []string
	for _, t := range tokenize(strings.TrimSpace(s)) {
		switch t.kind {
		case tokIdent:
			parts = append(parts, strings.ToUpper(t.text))
		case tokQuoted:
			parts = append(parts, strings.ReplaceAll(t.text[1:len(t.text)-1], `""`, `"`))
		}
	}
	switch len(parts) {
	case 0:
		return "", ""
	case 1:
		return "", parts[0]
	}
	return parts[len(parts)-2], parts[len(parts)-1]
}

// quoteIdent quotes a DuckDB identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// unescape returns the value of a Snowflake string literal, which allows
// backslash escapes that DuckDB does not.
func unescape(lit string) string {
	s := strings.TrimSuffix(lit[1:], "'")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '0':
				b.WriteByte(0)
			default:
				b.WriteByte(s[i])
			}
		case c == '\'' && i+1 < len(s) && s[i+1] == '\'':
			b.WriteByte('\'')
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// quoteString quotes a DuckDB string literal.
func quoteString(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }
