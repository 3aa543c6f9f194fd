package snowtest

import (
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// rowset reads DuckDB rows into Snowflake's JSON result format: a rowtype
// per column and every value as a string in the form the driver parses
// for that type (see gosnowflake converter.go stringToValue).
func rowset(rows *sql.Rows) (*result, error) {
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, err
	}
	res := &result{}
	for _, ct := range types {
		res.columns = append(res.columns, snowflakeColumn(ct))
	}
	vals := make([]any, len(types))
	ptrs := make([]any, len(types))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]*string, len(vals))
		for i, v := range vals {
			if v == nil {
				continue
			}
			s, err := formatValue(res.columns[i].Type, v)
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", res.columns[i].Name, err)
			}
			row[i] = &s
		}
		res.rows = append(res.rows, row)
	}
	return res, rows.Err()
}

// snowflakeColumn describes a DuckDB result column with Snowflake's type
// names.
func snowflakeColumn(ct *sql.ColumnType) column {
	c := column{Name: ct.Name(), Nullable: true}
	dt := ct.DatabaseTypeName()
	switch {
	case strings.HasPrefix(dt, "DECIMAL"):
		p, s, _ := ct.DecimalSize()
		c.Type, c.Precision, c.Scale = "fixed", p, s
	case strings.Contains(dt, "INT"):
		c.Type, c.Precision = "fixed", 38
	case dt == "DOUBLE" || dt == "FLOAT":
		c.Type = "real"
	case dt == "BOOLEAN":
		c.Type = "boolean"
	case dt == "DATE":
		c.Type = "date"
	case dt == "TIME":
		c.Type, c.Scale = "time", 9
	case dt == "TIMESTAMPTZ":
		c.Type, c.Scale = "timestamp_tz", 9
	case strings.HasPrefix(dt, "TIMESTAMP"):
		c.Type, c.Scale = "timestamp_ntz", 9
	case dt == "JSON":
		c.Type = "variant"
	case dt == "BLOB":
		c.Type, c.Length = "binary", 8388608
	default:
		c.Type, c.Length = "text", 16777216
	}
	return c
}

func formatValue(typ string, v any) (string, error) {
	switch typ {
	case "fixed":
		switch n := v.(type) {
		case duckdb.Decimal:
			return n.String(), nil
		case *big.Int:
			return n.String(), nil
		}
		return fmt.Sprint(v), nil
	case "real":
		f, ok := v.(float64)
		if !ok {
			if f32, ok32 := v.(float32); ok32 {
				f, ok = float64(f32), true
			}
		}
		if !ok {
			return "", fmt.Errorf("%T is not a float", v)
		}
		return strconv.FormatFloat(f, 'g', -1, 64), nil
	case "boolean":
		if b, _ := v.(bool); b {
			return "1", nil
		}
		return "0", nil
	case "date":
		t, ok := v.(time.Time)
		if !ok {
			return "", fmt.Errorf("%T is not a date", v)
		}
		days := t.Unix() / 86400
		if t.Unix()%86400 < 0 {
			days--
		}
		return strconv.FormatInt(days, 10), nil
	case "time":
		t, ok := v.(time.Time)
		if !ok {
			return "", fmt.Errorf("%T is not a time", v)
		}
		d := t.Sub(time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, t.Location()))
		return epoch(int64(d)), nil
	case "timestamp_ntz", "timestamp_tz":
		t, ok := v.(time.Time)
		if !ok {
			return "", fmt.Errorf("%T is not a timestamp", v)
		}
		if typ == "timestamp_ntz" {
			return epoch(t.UnixNano()), nil
		}
		_, off := t.Zone()
		return epoch(t.UnixNano()) + " " + strconv.Itoa(off/60+1440), nil
	case "variant":
		if s, ok := v.(string); ok {
			return s, nil
		}
		b, err := json.Marshal(v)
		return string(b), err
	case "binary":
		b, ok := v.([]byte)
		if !ok {
			return "", fmt.Errorf("%T is not binary", v)
		}
		return hex.EncodeToString(b), nil
	}
	if b, ok := v.([]byte); ok {
		return string(b), nil
	}
	return fmt.Sprint(v), nil
}

// epoch formats nanoseconds as Snowflake's "seconds.fraction".
func epoch(ns int64) string {
	sec, frac := ns/1e9, ns%1e9
	if frac < 0 {
		sec, frac = sec-1, frac+1e9
	}
	return fmt.Sprintf("%d.%09d", sec, frac)
}
