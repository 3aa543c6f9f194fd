package testwarehouse

import (
	"errors"
	"strings"
	"testing"
)

// TestCheck: the in-process types pass; postgres only where it is
// allowed and its server is named; anything else is refused, naming the
// option and the types there are.
func TestCheck(t *testing.T) {
	t.Setenv(PostgresDSNEnv, "")
	for _, c := range []struct {
		typ          string
		withPostgres bool
		dsn          string
		want         string // "" for no error
	}{
		{"snowflake", false, "", ""},
		{"redshift", false, "", ""},
		{"bigquery", true, "", ""},
		{"postgres", false, "postgres://x@127.0.0.1/db", "only the fault harness"},
		{"postgres", true, "", "the DSN of a PostgreSQL server in " + PostgresDSNEnv},
		{"postgres", true, "postgres://x@127.0.0.1/db", ""},
		{"teradata", true, "", `--warehouse "teradata": use snowflake, redshift or bigquery`},
	} {
		t.Setenv(PostgresDSNEnv, c.dsn)
		err := Check(c.typ, c.withPostgres)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("Check(%s, %v): %v", c.typ, c.withPostgres, err)
		case c.want != "" && (!errors.As(err, new(*TypeError)) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("Check(%s, %v) = %v, want a *TypeError and %q", c.typ, c.withPostgres, err, c.want)
		}
		if c.want != "" {
			if w, err := New(c.typ, t.TempDir(), c.withPostgres); w != nil || !errors.As(err, new(*TypeError)) {
				t.Errorf("New(%s, %v) = %v, %v; want Check's error", c.typ, c.withPostgres, w, err)
			}
		}
	}
}
