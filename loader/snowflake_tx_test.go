package loader

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/internal/snowtest"
)

// TestSnowflakeAbortsLeftTransaction: a load killed inside its transaction
// leaves it open in Snowflake, holding the windows table's lock. A load of
// another appliance waits for that lock and gives up; the sink that starts
// next on the same transaction file aborts the left transaction in
// Prepare, and its load goes through.
func TestSnowflakeAbortsLeftTransaction(t *testing.T) {
	// A waiting MERGE gives up after a second (Snowflake: 12 hours).
	w := newWarehouseWith(t, snowtest.Options{LockTimeout: time.Second})
	file := filepath.Join(t.TempDir(), "snowflake-load-transaction")
	ctx := context.Background()
	dead := w.sinkWith(t, AuthPassword, func(o *SnowflakeOptions) { o.TransactionFile = file })
	if err := dead.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	tx, err := dead.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.recordTransaction(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(file); err != nil || !isDigits(string(b)) {
		t.Fatalf("transaction file: %q, %v", b, err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE OFFLOAD_WINDOWS SET VERSION = VERSION WHERE 1 = 0"); err != nil {
		t.Fatal(err)
	}
	// The appliance dies here: no COMMIT, no ROLLBACK.

	other := w.sinkWith(t, AuthPassword, func(o *SnowflakeOptions) { o.ApplianceID = "other" })
	if err := other.Load(ctx, exportFirst(t, testOutboxOf(t, "other", 1, 60))); err == nil {
		t.Fatal("a load MERGEd windows while the left transaction held their lock: the test shows nothing")
	}
	next := w.sinkWith(t, AuthPassword, func(o *SnowflakeOptions) { o.TransactionFile = file })
	if err := next.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	x := exportFirst(t, testOutbox(t, 1, 60))
	if err := next.Load(ctx, x); err != nil {
		t.Fatalf("load after the left transaction was aborted: %v", err)
	}
	if ok, err := next.Loaded(ctx, x.ID); err != nil || !ok {
		t.Fatalf("batch %s not in the ledger: %v", x.ID, err)
	}
	if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("transaction file after a committed load: %v", err)
	}
	if err := tx.Commit(); err == nil {
		t.Fatal("the aborted transaction committed")
	}
}

// exportFirst exports the first sealed batch of e.
func exportFirst(t *testing.T, e *engine.Engine) engine.Export {
	t.Helper()
	bs, err := e.SealedBatches()
	if err != nil || len(bs) == 0 {
		t.Fatalf("sealed batches: %v, %v", bs, err)
	}
	x, err := e.ExportBatch(context.Background(), bs[0].ID, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if x.WindowRows == 0 {
		t.Fatal("the batch holds no window rows")
	}
	return x
}
