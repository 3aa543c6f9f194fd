package snowtest

import (
	"regexp"
	"strconv"
)

// The transaction functions answered by the server itself: DuckDB has no
// notion of Snowflake's transaction ids.
var (
	currentTxRE = regexp.MustCompile(`(?is)^SELECT\s+CURRENT_TRANSACTION\s*\(\s*\)$`)
	abortTxRE   = regexp.MustCompile(`(?is)^SELECT\s+SYSTEM\$ABORT_TRANSACTION\s*\(\s*'?(\d+)'?\s*\)$`)
)

// txFunction answers SELECT CURRENT_TRANSACTION() (the session's open
// transaction's id, NULL outside one) and SELECT
// SYSTEM$ABORT_TRANSACTION(id) (rolls back another session's open
// transaction, as for a detached one; a transaction no longer running is
// left alone). ok is false for any other statement.
func (s *Server) txFunction(sess *session, text string) (res *result, ok bool, err error) {
	if currentTxRE.MatchString(text) {
		var v *string
		if sess.inTx {
			id := strconv.FormatInt(sess.txID.Load(), 10)
			v = &id
		}
		return &result{stmtType: stmtSelect, columns: []column{{Name: "CURRENT_TRANSACTION()", Type: "text", Length: 16777216, Nullable: true}},
			rows: [][]*string{{v}}}, true, nil
	}
	m := abortTxRE.FindStringSubmatch(text)
	if m == nil {
		return nil, false, nil
	}
	id, _ := strconv.ParseInt(m[1], 10, 64)
	msg := "transaction [" + m[1] + "] is not running."
	if h := s.sessionInTx(id); h != nil && h != sess && s.abort(h, id) {
		msg = "transaction [" + m[1] + "] aborted."
	}
	return &result{stmtType: stmtSelect, columns: []column{{Name: "SYSTEM$ABORT_TRANSACTION(" + m[1] + ")", Type: "text", Length: 16777216, Nullable: true}},
		rows: [][]*string{{&msg}}}, true, nil
}

// sessionInTx returns the session whose open transaction is id, or nil.
func (s *Server) sessionInTx(id int64) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.sessions {
		if h.txID.Load() == id {
			return h
		}
	}
	return nil
}

// abort rolls back h's open transaction id, waiting for a statement of h
// to end first, and tells whether it did.
func (s *Server) abort(h *session, id int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.inTx || h.conn == nil || h.txID.Load() != id {
		return false
	}
	s.abortTx(h)
	return true
}

// newID returns an id no session or transaction of the server has had.
func (s *Server) newID() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	return s.nextID
}
