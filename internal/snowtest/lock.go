package snowtest

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// dmlTargetRE finds the table an UPDATE, DELETE or MERGE writes.
var dmlTargetRE = regexp.MustCompile(`(?is)^\s*(?:UPDATE|DELETE\s+FROM|MERGE\s+INTO)\s+([^\s(]+)`)

// dmlTable returns the table the DML statement text writes, as a lock's
// key: upper-case, without database or schema; "" for an INSERT.
func dmlTable(text string) string {
	m := dmlTargetRE.FindStringSubmatch(text)
	if m == nil {
		return ""
	}
	name := m[1]
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	return strings.ToUpper(strings.Trim(name, `"`))
}

// lock takes table for sess, which runs an UPDATE, DELETE or MERGE (and
// holds sess.mu), as Snowflake's table locks: held until the transaction
// ends (Server.locks). It waits for another holder until
// Options.LockTimeout (then 000625, as Snowflake's LOCK_TIMEOUT), and
// rolls the holder back once it has been idle in its transaction for
// Options.DetachedTimeout, as Snowflake aborts a detached transaction.
func (s *Server) lock(ctx context.Context, sess *session, table string) error {
	deadline := time.Now().Add(s.opts.LockTimeout)
	for {
		h, ok, released := s.locks.TryLock(sess, table)
		if ok {
			return nil
		}
		detachedAt := h.idleSince().Add(s.opts.DetachedTimeout)
		if !time.Now().Before(detachedAt) && s.abortDetached(h) {
			continue
		}
		if !time.Now().Before(deadline) {
			return &sqlError{"000625", "57014", fmt.Sprintf("Statement reached its lock timeout of %s waiting for the lock on table %s held by another transaction", s.opts.LockTimeout, table)}
		}
		wake := max(min(time.Until(deadline), time.Until(detachedAt)), 10*time.Millisecond)
		t := time.NewTimer(wake)
		select {
		case <-released:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-s.done:
			t.Stop()
			return &sqlError{"000625", "57014", "the server is shutting down"}
		}
		t.Stop()
	}
}

// abortDetached rolls back h's transaction if h is still idle in it (no
// statement running), and tells whether it did. A client that comes back
// to it gets errors until its COMMIT (which fails) or ROLLBACK: nothing
// it sends runs outside the transaction it began.
func (s *Server) abortDetached(h *session) bool {
	if !h.mu.TryLock() { // a statement of h is running: it is not detached
		return false
	}
	defer h.mu.Unlock()
	if !h.inTx || h.conn == nil || time.Since(h.idleSince()) < s.opts.DetachedTimeout {
		return false
	}
	s.abortTx(h)
	return true
}

// abortTx rolls back h's open transaction for the server (a detached one,
// or SYSTEM$ABORT_TRANSACTION): its client then gets errors until it ends
// it. Callers hold h.mu.
func (s *Server) abortTx(h *session) {
	h.inTx, h.aborted = false, true
	_, _ = h.conn.ExecContext(context.Background(), "ROLLBACK")
	s.endTx(h)
}

// endTx releases what sess's transaction held: its id and its locks.
func (s *Server) endTx(sess *session) {
	sess.txID.Store(0)
	s.locks.Release(sess)
}
