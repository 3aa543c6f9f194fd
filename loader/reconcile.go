package loader

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/offload/offload/engine"
)

// BatchTotals are a batch's row count and sums of amount per currency.
type BatchTotals struct {
	Rows int64
	// Duplicates are the ledger's rows of the batch kept out of the
	// warehouse because it held their events already (dedupe.warehouse:
	// merge); the warehouse holds Rows - Duplicates of the batch.
	Duplicates int64
	Totals     map[string]string // currency → sum of amount, DECIMAL text
}

// Ledger returns the load ledger's rows of applianceID: each batch's
// rows and control totals as recorded when it was loaded.
func (s *Snowflake) Ledger(ctx context.Context, applianceID string) (map[string]BatchTotals, error) {
	return readLedger(ctx, s.db, s.opts.LedgerTable, "?", applianceID)
}

// Held returns what the transactions table holds of each batch of the
// ledger's appliance: rows and sums of amount per currency.
func (s *Snowflake) Held(ctx context.Context, applianceID string) (map[string]BatchTotals, error) {
	return heldBatches(ctx, s.db, s.opts.TransactionsTable, "?", applianceID)
}

// Reconciler is a Sink whose ledger and tables offload reconcile reads.
type Reconciler interface {
	// Ledger returns the load ledger's rows of applianceID: each batch's
	// rows and control totals as recorded when it was loaded.
	Ledger(ctx context.Context, applianceID string) (map[string]BatchTotals, error)
	// Held returns what the transactions table holds of each batch of
	// applianceID: rows and sums of amount per currency.
	Held(ctx context.Context, applianceID string) (map[string]BatchTotals, error)
}

// readLedger reads the ledger table's rows of applianceID; ph is the
// driver's placeholder ("?" or "$1").
func readLedger(ctx context.Context, db *sql.DB, table, ph, applianceID string) (map[string]BatchTotals, error) {
	rows, err := db.QueryContext(ctx, "SELECT BATCH_ID, ROWS, COALESCE(DUPLICATES, 0), CONTROL_TOTALS FROM "+table+" WHERE APPLIANCE_ID = "+ph, applianceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]BatchTotals{}
	for rows.Next() {
		var id, totals string
		var n, dups int64
		if err := rows.Scan(&id, &n, &dups, &totals); err != nil {
			return nil, err
		}
		var ct []engine.CurrencyTotal
		if err := json.Unmarshal([]byte(totals), &ct); err != nil {
			return nil, fmt.Errorf("ledger row %s: control totals %q: %w", id, totals, err)
		}
		out[id] = BatchTotals{Rows: n, Duplicates: dups, Totals: amounts(ct)}
	}
	return out, rows.Err()
}

// heldBatches totals the rows of table by batch of applianceID.
func heldBatches(ctx context.Context, db *sql.DB, table, ph, applianceID string) (map[string]BatchTotals, error) {
	held, err := heldTotals(ctx, db, table, "LIKE", ph, applianceID+"-%")
	if err != nil {
		return nil, err
	}
	out := make(map[string]BatchTotals, len(held))
	for id, ct := range held {
		bt := BatchTotals{Totals: amounts(ct)}
		for _, c := range ct {
			bt.Rows += c.Rows
		}
		out[id] = bt
	}
	return out, nil
}

func amounts(ct []engine.CurrencyTotal) map[string]string {
	m := make(map[string]string, len(ct))
	for _, c := range ct {
		m[c.Currency] = c.Amount
	}
	return m
}

// heldTotals totals the rows of table whose BATCH_ID compares (op, "=" or
// "LIKE") to arg, by batch and currency, as the engine totals a batch; ph
// is the driver's placeholder ("?" or "$1").
func heldTotals(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, table, op, ph, arg string) (map[string][]engine.CurrencyTotal, error) {
	rows, err := q.QueryContext(ctx, `SELECT t.BATCH_ID, COALESCE(t.CURRENCY, ''), COUNT(*), CAST(CAST(SUM(t.AMOUNT) AS DECIMAL(38,4)) AS VARCHAR)
		FROM `+table+` t WHERE t.BATCH_ID `+op+` `+ph+` GROUP BY 1, 2 ORDER BY 1, 2`, arg)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]engine.CurrencyTotal{}
	for rows.Next() {
		var id string
		var sum *string
		c := engine.CurrencyTotal{Amount: "0"}
		if err := rows.Scan(&id, &c.Currency, &c.Rows, &sum); err != nil {
			return nil, err
		}
		if sum != nil {
			c.Amount = *sum
		}
		out[id] = append(out[id], c)
	}
	return out, rows.Err()
}

// Discrepancy is one difference reconcile found.
type Discrepancy struct {
	Batch string
	Kind  string // "missing", "extra" or "mismatch"
	What  string
}

// Reconcile compares the batches shipped locally (id → rows), the ledger
// and what the transactions table holds.
func Reconcile(shipped map[string]int64, ledger, held map[string]BatchTotals) []Discrepancy {
	var out []Discrepancy
	ids := map[string]bool{}
	for id := range shipped {
		ids[id] = true
	}
	for id := range ledger {
		ids[id] = true
	}
	for id := range held {
		ids[id] = true
	}
	for id := range ids {
		rows, isShipped := shipped[id]
		l, inLedger := ledger[id]
		h, isHeld := held[id]
		switch {
		case isShipped && !inLedger:
			out = append(out, Discrepancy{id, "missing", "shipped here but not in the warehouse's ledger"})
			continue
		case inLedger && !isShipped:
			out = append(out, Discrepancy{id, "extra", "in the warehouse's ledger but not shipped by this appliance"})
		case !inLedger && isHeld:
			out = append(out, Discrepancy{id, "extra", fmt.Sprintf("%d rows in the warehouse without a ledger row", h.Rows)})
			continue
		}
		if isShipped && l.Rows != rows {
			out = append(out, Discrepancy{id, "mismatch", fmt.Sprintf("ledger says %d rows, the batch here had %d", l.Rows, rows)})
		}
		in := l.Rows - l.Duplicates
		if in != h.Rows {
			what := fmt.Sprintf("ledger says %d rows, the warehouse holds %d", l.Rows, h.Rows)
			if l.Duplicates > 0 {
				what = fmt.Sprintf("ledger says %d rows went in (%d more kept out as duplicates), the warehouse holds %d", in, l.Duplicates, h.Rows)
			}
			out = append(out, Discrepancy{id, "mismatch", what})
		}
		if a, b := totalsText(l.Totals), totalsText(h.Totals); in == h.Rows && a != b {
			out = append(out, Discrepancy{id, "mismatch", fmt.Sprintf("control totals %s, the warehouse sums to %s", a, b)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Batch != out[j].Batch {
			return out[i].Batch < out[j].Batch
		}
		return out[i].What < out[j].What
	})
	return out
}

func totalsText(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + m[k]
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
