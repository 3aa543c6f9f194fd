package testwarehouse

import (
	"database/sql"

	"github.com/offload/offload/bench/check"
)

// sqlTables reads a test warehouse's PUBLIC.OFFLOAD_* tables through a
// *sql.DB that reaches them past the outage switch (the test server's
// DuckDB, or the PostgreSQL server itself rather than its proxy).
type sqlTables struct{ db *sql.DB }

// count runs q, a query of one row of integers, into dst (zeros on
// failure, e.g. while the tables do not exist yet).
func (s sqlTables) count(q string, dst ...*int64) {
	args := make([]any, len(dst))
	for i, d := range dst {
		args[i] = d
	}
	if err := s.db.QueryRow(q).Scan(args...); err != nil {
		for _, d := range dst {
			*d = 0
		}
	}
}

// Loaded implements Tables.
func (s sqlTables) Loaded() (rows, events int64) {
	s.count(`SELECT count(*), count(DISTINCT EVENT_ID) FROM PUBLIC.OFFLOAD_TRANSACTIONS`, &rows, &events)
	return rows, events
}

// Windows implements Tables.
func (s sqlTables) Windows() (n int64) {
	s.count(`SELECT count(*) FROM PUBLIC.OFFLOAD_WINDOWS`, &n)
	return n
}

// Tally implements Tables.
func (s sqlTables) Tally(valid map[string]struct{}) (missing, duplicated, unexpected int64, err error) {
	rows, err := s.db.Query(`SELECT EVENT_ID, count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS GROUP BY 1`)
	if err != nil {
		return 0, 0, 0, err
	}
	return check.TallyOnce(rows, valid)
}

// Latencies runs check.RunLatencies over every row (a test warehouse
// holds one run's): DuckDB's SQL, so the in-process servers' only; the
// postgres warehouse serves the fault harness, which measures none.
func (s sqlTables) Latencies() (check.Latencies, error) {
	return check.RunLatencies(s.db, "PUBLIC.", "%")
}
