package loader

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/offload/offload/engine"
)

// commitLoad runs a load's one transaction, begun by begin (of a *sql.DB
// or of the *sql.Conn whose session holds the staging tables): body does
// the statements and returns the rows a merge kept out as duplicates,
// which are counted in dups and logged once committed.
func commitLoad(ctx context.Context, begin func(context.Context, *sql.TxOptions) (*sql.Tx, error), x engine.Export,
	log *slog.Logger, dups *atomic.Int64, body func(*sql.Tx) (int64, error)) error {
	tx, err := begin(ctx, nil)
	if err != nil {
		return fmt.Errorf("BEGIN: %w", err)
	}
	skipped, err := body(tx)
	if err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("COMMIT: %w", err)
	}
	if skipped > 0 {
		dups.Add(skipped)
		log.Warn("loader: rows already in the warehouse were not loaded again (warehouse dedupe: merge)",
			"batch", x.ID, "rows", x.Rows, "skipped", skipped)
	}
	return nil
}

// checkStaged makes sure each staging table holds its file's rows.
func checkStaged(ctx context.Context, tx *sql.Tx, parts []staged) error {
	for _, p := range parts {
		var n int64
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+p.table).Scan(&n); err != nil {
			return fmt.Errorf("count staged rows: %w", err)
		}
		if n != p.rows {
			return fmt.Errorf("%w: staging table %s holds %d rows, the batch %d", errStagedCount, p.table, n, p.rows)
		}
	}
	return nil
}

// ledgerTotals returns the ledger row's control totals (JSON) of what
// went in: the batch's own, or when a merge kept rows out, those of the
// rows the transactions table holds of it now; ph is the driver's
// placeholder.
func ledgerTotals(ctx context.Context, tx *sql.Tx, x engine.Export, skipped int64, table, ph string) (string, error) {
	totals := x.Totals
	if skipped > 0 {
		held, err := heldTotals(ctx, tx, table, "=", ph, x.ID)
		if err != nil {
			return "", fmt.Errorf("total the merged rows: %w", err)
		}
		totals = held[x.ID]
	}
	ct, err := json.Marshal(append([]engine.CurrencyTotal{}, totals...))
	return string(ct), err
}
