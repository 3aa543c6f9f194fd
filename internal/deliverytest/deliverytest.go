// Package deliverytest checks the delivery contract on warehouse tables,
// for the tests of the loader and of the whole appliance: on the
// Snowflake-protocol test server's DuckDB directly, or through the driver
// on another emulator. Only tests import it.
package deliverytest

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// QueryStrings runs q on db and returns each row as its values joined by
// '|' (NULL for NULL).
func QueryStrings(t testing.TB, db *sql.DB, q string) []string {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = fmt.Sprint(v)
			if v == nil {
				parts[i] = "NULL"
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// CheckTables asserts the delivery contract on the warehouse tables db
// holds (prefix qualifies their names): every event of the outbox exactly
// once, the windows table (summed over appliances) equal to a
// recomputation from the clean rows,
// and ledger control totals matching the rows of each batch (batches
// ledger rows; -1: any number). The SQL is
// Snowflake's, which DuckDB and PostgreSQL understand too. windows says whether to check
// the windows (they must have reached the warehouse); leave it off when
// no window closes, or when several appliances with their own watermarks
// loaded the table.
func CheckTables(t testing.TB, db *sql.DB, prefix string, want map[string]bool, batches int, windows bool) {
	t.Helper()
	CheckTablesOf(t, db, prefix, want, batches, Checks{Windows: windows, Amounts: true})
}

// Checks says what CheckTablesOf checks besides every event once and the
// ledger's row counts.
type Checks struct {
	// Windows: the windows table equals a recomputation from the rows.
	Windows bool
	// Amounts: the amounts too (sums, minimums and maximums of the
	// windows, the ledger's control totals). Off only for a server that
	// cannot hold them: the BigQuery emulator loads Parquet DECIMAL
	// values as 0 (docs/LOADER.md, "BigQuery emulator gaps").
	Amounts bool
}

// CheckTablesOf is CheckTables with the checks c.
func CheckTablesOf(t testing.TB, db *sql.DB, prefix string, want map[string]bool, batches int, c Checks) {
	t.Helper()
	windows := c.Windows
	amount := func(expr string) string {
		if c.Amounts {
			return expr
		}
		return "0"
	}
	query := func(q string) []string {
		t.Helper()
		return QueryStrings(t, db, strings.ReplaceAll(q, "PUBLIC.", prefix))
	}
	got := query(`SELECT EVENT_ID, count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS GROUP BY 1`)
	seen := map[string]bool{}
	for _, r := range got {
		id, n, _ := strings.Cut(r, "|")
		if n != "1" {
			t.Errorf("event %s is in the warehouse %s times", id, n)
		}
		if !want[id] {
			t.Errorf("event %s is in the warehouse but not in the outbox", id)
		}
		seen[id] = true
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("event %s is missing from the warehouse", id)
		}
	}
	// Windows: the table equals a recomputation from the clean rows of
	// every window the watermark (newest event time less the 5 minutes'
	// lateness) has passed.
	if windows {
		diff := query(`WITH e AS (
			SELECT STORE_ID, CURRENCY, EVENT_TYPE, CHANNEL, date_trunc('minute', EVENT_TIME) AS WINDOW_START, AMOUNT
			FROM PUBLIC.OFFLOAD_TRANSACTIONS),
		r AS (
			SELECT STORE_ID, CURRENCY, EVENT_TYPE, CHANNEL, WINDOW_START,
			       count(*) AS COUNT, ` + amount("sum(AMOUNT)") + ` AS SUM_AMOUNT, ` + amount("min(AMOUNT)") + ` AS MIN_AMOUNT, ` + amount("max(AMOUNT)") + ` AS MAX_AMOUNT
			FROM e
			WHERE WINDOW_START + INTERVAL '1 minute' <= (SELECT max(EVENT_TIME) FROM PUBLIC.OFFLOAD_TRANSACTIONS) - INTERVAL '5 minutes'
			GROUP BY STORE_ID, CURRENCY, EVENT_TYPE, CHANNEL, WINDOW_START),
		w AS (
			SELECT STORE_ID, CURRENCY, EVENT_TYPE, CHANNEL, WINDOW_START,
			       sum(COUNT) AS COUNT, ` + amount("sum(SUM_AMOUNT)") + ` AS SUM_AMOUNT, ` + amount("min(MIN_AMOUNT)") + ` AS MIN_AMOUNT, ` + amount("max(MAX_AMOUNT)") + ` AS MAX_AMOUNT
			FROM PUBLIC.OFFLOAD_WINDOWS GROUP BY STORE_ID, CURRENCY, EVENT_TYPE, CHANNEL, WINDOW_START)
			(SELECT * FROM r EXCEPT SELECT * FROM w)
			UNION ALL
			(SELECT * FROM w EXCEPT SELECT * FROM r)`)
		if len(diff) != 0 {
			t.Errorf("the windows table differs from a recomputation from the clean rows:\n%s", strings.Join(diff, "\n"))
		}
		if n := query(`SELECT count(*) FROM PUBLIC.OFFLOAD_WINDOWS`); n[0] == "0" {
			t.Error("no window reached the warehouse: the windows check means nothing")
		}
	}
	// A ledger row's control totals are what went in: its rows less
	// those a MERGE kept out (DUPLICATES).
	ledger := query(`SELECT BATCH_ID, ROWS - COALESCE(DUPLICATES, 0), CONTROL_TOTALS FROM PUBLIC.OFFLOAD_LOAD_LEDGER ORDER BY 1`)
	if batches >= 0 && len(ledger) != batches {
		t.Errorf("%d ledger rows, want %d", len(ledger), batches)
	}
	for _, l := range ledger {
		parts := strings.SplitN(l, "|", 3)
		var totals []struct {
			Currency string
			Rows     int64
			Amount   string
		}
		if err := json.Unmarshal([]byte(parts[2]), &totals); err != nil {
			t.Fatalf("ledger %s: control totals %q: %v", parts[0], parts[2], err)
		}
		var have []string
		var in int64
		for _, ct := range totals {
			have = append(have, fmt.Sprintf("%s|%d|%s", ct.Currency, ct.Rows, amount(ct.Amount)))
			in += ct.Rows
		}
		if fmt.Sprint(in) != parts[1] {
			t.Errorf("batch %s: the ledger says %s rows went in, its control totals count %d", parts[0], parts[1], in)
		}
		rows := query(fmt.Sprintf(`SELECT coalesce(CURRENCY, ''), count(*), `+amount("CAST(CAST(sum(AMOUNT) AS DECIMAL(38,4)) AS VARCHAR)")+`
			FROM PUBLIC.OFFLOAD_TRANSACTIONS WHERE BATCH_ID = '%s' GROUP BY 1 ORDER BY 1`, parts[0]))
		sort.Strings(have)
		if strings.Join(have, ",") != strings.Join(rows, ",") {
			t.Errorf("batch %s: ledger control totals %v, rows give %v", parts[0], have, rows)
		}
	}
}
