package loader

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/offload/offload/engine"
)

// BatchTotals are a batch's row count and sums of amount per currency.
type BatchTotals struct {
	Rows   int64
	Totals map[string]string // currency → sum of amount, DECIMAL text
}

// Ledger returns the load ledger's rows of applianceID: each batch's
// rows and control totals as recorded when it was loaded.
func (s *Snowflake) Ledger(ctx context.Context, applianceID string) (map[string]BatchTotals, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT BATCH_ID, ROWS, CONTROL_TOTALS FROM "+s.opts.LedgerTable+" WHERE APPLIANCE_ID = ?", applianceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]BatchTotals{}
	for rows.Next() {
		var id, totals string
		var n int64
		if err := rows.Scan(&id, &n, &totals); err != nil {
			return nil, err
		}
		var ct []engine.CurrencyTotal
		if err := json.Unmarshal([]byte(totals), &ct); err != nil {
			return nil, fmt.Errorf("ledger row %s: control totals %q: %w", id, totals, err)
		}
		bt := BatchTotals{Rows: n, Totals: map[string]string{}}
		for _, c := range ct {
			bt.Totals[c.Currency] = c.Amount
		}
		out[id] = bt
	}
	return out, rows.Err()
}

// Held returns what the transactions table holds of each batch of the
// ledger's appliance: rows and sums of amount per currency.
func (s *Snowflake) Held(ctx context.Context, applianceID string) (map[string]BatchTotals, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT t.BATCH_ID, COALESCE(t.CURRENCY, ''), COUNT(*), CAST(CAST(SUM(t.AMOUNT) AS NUMBER(38,4)) AS VARCHAR)
		FROM `+s.opts.TransactionsTable+` t WHERE t.BATCH_ID LIKE ? GROUP BY 1, 2`, applianceID+"-%")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]BatchTotals{}
	for rows.Next() {
		var id, cur string
		var sum *string
		var n int64
		if err := rows.Scan(&id, &cur, &n, &sum); err != nil {
			return nil, err
		}
		bt, ok := out[id]
		if !ok {
			bt = BatchTotals{Totals: map[string]string{}}
		}
		bt.Rows += n
		bt.Totals[cur] = "0"
		if sum != nil {
			bt.Totals[cur] = *sum
		}
		out[id] = bt
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
		if l.Rows != h.Rows {
			out = append(out, Discrepancy{id, "mismatch", fmt.Sprintf("ledger says %d rows, the warehouse holds %d", l.Rows, h.Rows)})
		}
		if a, b := totalsText(l.Totals), totalsText(h.Totals); l.Rows == h.Rows && a != b {
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
