package loader

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/offload/offload/internal/durable"
)

// A Snowflake transaction whose client died in the middle (SIGKILL, power
// loss) stays open with its table locks until Snowflake aborts it, after
// 4 hours idle; every load that MERGEs the same tables waits for it. So
// the sink writes the id of each load's transaction to
// SnowflakeOptions.TransactionFile before the load's first write, removes
// it once the transaction committed, and aborts the transaction a file
// still names (SYSTEM$ABORT_TRANSACTION, which leaves a transaction that
// ended alone) at the next Prepare or load.

// recordTransaction writes the id of tx's transaction to the transaction
// file, durably.
func (s *Snowflake) recordTransaction(ctx context.Context, tx *sql.Tx) error {
	path := s.opts.TransactionFile
	if path == "" {
		return nil
	}
	var id string
	if err := tx.QueryRowContext(ctx, "SELECT CURRENT_TRANSACTION()").Scan(&id); err != nil {
		return fmt.Errorf("SELECT CURRENT_TRANSACTION(): %w", err)
	}
	if err := durable.WriteFile(path, 0o600, func(w io.Writer) error { _, err := io.WriteString(w, id); return err }); err != nil {
		return fmt.Errorf("cannot record the load's transaction id in %s: %w (check the data directory's permissions and free space)", path, err)
	}
	return nil
}

// forgetTransaction removes the transaction file once the load's
// transaction committed. After a failed load it stays: the transaction
// may still be open if its ROLLBACK got no answer.
func (s *Snowflake) forgetTransaction() {
	if path := s.opts.TransactionFile; path != "" {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("loader: cannot remove the load transaction's file; the next load aborts that transaction again, which is harmless", "path", path, "err", err)
		}
	}
}

// abortLeftTransaction aborts the transaction the transaction file names,
// if there is one, and removes the file.
func (s *Snowflake) abortLeftTransaction(ctx context.Context) error {
	path := s.opts.TransactionFile
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot read the load transaction's file %s: %w", path, err)
	}
	id := strings.TrimSpace(string(b))
	if !isDigits(id) {
		s.log.Warn("loader: the load transaction's file does not hold a transaction id; removed", "path", path, "content", firstWords(id))
		return os.Remove(path)
	}
	var answer string
	if err := s.db.QueryRowContext(ctx, "SELECT SYSTEM$ABORT_TRANSACTION("+id+")").Scan(&answer); err != nil {
		return fmt.Errorf("cannot abort transaction %s, which a load left open (its locks hold the tables' MERGEs): %w (or run SELECT SYSTEM$ABORT_TRANSACTION(%s) in Snowflake)", id, err, id)
	}
	s.log.Info("loader: aborted the transaction an interrupted load left open in Snowflake, if it was still running", "transaction", id, "answer", answer)
	return os.Remove(path)
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
