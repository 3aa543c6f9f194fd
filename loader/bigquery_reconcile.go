package loader

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"

	"cloud.google.com/go/bigquery"

	"github.com/offload/offload/engine"
)

// Ledger returns the load ledger's rows of applianceID (Snowflake.Ledger
// for BigQuery). Amounts are written with 4 decimals, as the engine
// totals them, whatever text the ledger holds.
func (b *BigQuery) Ledger(ctx context.Context, applianceID string) (map[string]BatchTotals, error) {
	rows, err := b.query(ctx, "SELECT `BATCH_ID`, `ROWS`, COALESCE(`DUPLICATES`, 0), `CONTROL_TOTALS` FROM "+
		b.table(b.opts.LedgerTable)+" WHERE `APPLIANCE_ID` = @appliance",
		bigquery.QueryParameter{Name: "appliance", Value: applianceID})
	if err != nil {
		return nil, err
	}
	out := map[string]BatchTotals{}
	for _, r := range rows {
		id, _ := r[0].(string)
		n, _ := r[1].(int64)
		dups, _ := r[2].(int64)
		totals, _ := r[3].(string)
		var ct []engine.CurrencyTotal
		if err := json.Unmarshal([]byte(totals), &ct); err != nil {
			return nil, fmt.Errorf("ledger row %s: control totals %q: %w", id, totals, err)
		}
		m, err := scale4(amounts(ct))
		if err != nil {
			return nil, fmt.Errorf("ledger row %s: %w", id, err)
		}
		out[id] = BatchTotals{Rows: n, Duplicates: dups, Totals: m}
	}
	return out, nil
}

// Held returns what the transactions table holds of each batch of
// applianceID: rows and sums of amount per currency.
func (b *BigQuery) Held(ctx context.Context, applianceID string) (map[string]BatchTotals, error) {
	rows, err := b.query(ctx, "SELECT `BATCH_ID`, COALESCE(`CURRENCY`, ''), COUNT(*), CAST(SUM(`AMOUNT`) AS STRING) FROM "+
		b.table(b.opts.TransactionsTable)+" WHERE STARTS_WITH(`BATCH_ID`, @prefix) GROUP BY 1, 2",
		bigquery.QueryParameter{Name: "prefix", Value: applianceID + "-"})
	if err != nil {
		return nil, err
	}
	out := map[string]BatchTotals{}
	for _, r := range rows {
		id, _ := r[0].(string)
		cur, _ := r[1].(string)
		n, _ := r[2].(int64)
		sum, _ := r[3].(string)
		bt, ok := out[id]
		if !ok {
			bt = BatchTotals{Totals: map[string]string{}}
		}
		if sum == "" {
			sum = "0"
		}
		a, err := decimal4(sum)
		if err != nil {
			return nil, fmt.Errorf("batch %s: sum of amount %q: %w", id, sum, err)
		}
		bt.Rows += n
		bt.Totals[cur] = a
		out[id] = bt
	}
	return out, nil
}

// scale4 rewrites each amount of m with 4 decimals.
func scale4(m map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(m))
	for k, v := range m {
		a, err := decimal4(v)
		if err != nil {
			return nil, fmt.Errorf("amount %q of %q: %w", v, k, err)
		}
		out[k] = a
	}
	return out, nil
}

// decimal4 writes decimal text s with exactly 4 decimals, as DECIMAL(38,4)
// prints ("12.5" → "12.5000"); BigQuery's CAST(... AS STRING) drops
// trailing zeros.
func decimal4(s string) (string, error) {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return "", fmt.Errorf("not a decimal number")
	}
	return r.FloatString(4), nil
}
