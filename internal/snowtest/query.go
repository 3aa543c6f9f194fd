package snowtest

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// Statement type ids of Snowflake's query responses. The driver treats
// 0x3000..0x3500 as DML (it sums the first row into RowsAffected) and
// 0x1000 as a query.
const (
	stmtSelect       = 0x1000
	stmtInsert       = 0x3100
	stmtUpdate       = 0x3200
	stmtDelete       = 0x3300
	stmtMerge        = 0x3400
	stmtCopy         = 0x3600
	stmtAlterSession = 0x4100
	stmtUse          = 0x4300
	stmtTransaction  = 0x5000
	stmtDDL          = 0x6000
	stmtPut          = 0x7200
	stmtRemove       = 0x7300
	stmtList         = 0x7400
)

type queryRequest struct {
	SQLText   string             `json:"sqlText"`
	Bindings  map[string]binding `json:"bindings"`
	BindStage string             `json:"bindStage"`
}

// binding is one bind variable as the driver sends it: a Snowflake type
// name and the value as a string (or a list of strings for array binds).
type binding struct {
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// column is one entry of a response's rowtype.
type column struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Precision int64  `json:"precision"`
	Scale     int64  `json:"scale"`
	Length    int64  `json:"length"`
	Nullable  bool   `json:"nullable"`
}

// result is a statement's answer: a JSON rowset as Snowflake sends it.
type result struct {
	stmtType int64
	columns  []column
	rows     [][]*string
	extra    map[string]any // more response data fields (PUT's upload info)
}

// sqlError is a Snowflake SQL error: a 6-digit code, a SQLSTATE and a
// message.
type sqlError struct{ code, state, msg string }

func (e *sqlError) Error() string { return e.code + " (" + e.state + "): " + e.msg }

func unsupported(what string) error {
	return &sqlError{"001003", "42000", "SQL compilation error:\n" + what + " is not supported by the snowtest server"}
}

func compileError(format string, args ...any) error {
	return &sqlError{"002003", "02000", "SQL compilation error:\n" + fmt.Sprintf(format, args...)}
}

// duckError turns a DuckDB error into the Snowflake error class closest to
// it, keeping DuckDB's message.
func duckError(err error) error {
	var se *sqlError
	if errors.As(err, &se) {
		return se
	}
	var de *duckdb.Error
	code, state := "000603", "XX000"
	if errors.As(err, &de) {
		switch de.Type {
		case duckdb.ErrorTypeCatalog:
			code, state = "002003", "42S02"
		case duckdb.ErrorTypeParser, duckdb.ErrorTypeSyntax:
			code, state = "001003", "42000"
		case duckdb.ErrorTypeBinder:
			code, state = "000904", "42000"
		case duckdb.ErrorTypeConversion, duckdb.ErrorTypeInvalidInput, duckdb.ErrorTypeOutOfRange, duckdb.ErrorTypeMismatchType:
			code, state = "100038", "22018"
		case duckdb.ErrorTypeConstraint:
			code, state = "100072", "22000"
		case duckdb.ErrorTypeTransaction:
			code, state = "000625", "57014"
		}
	}
	return &sqlError{code, state, "SQL execution error: " + err.Error()}
}

// query answers /queries/v1/query-request.
func (s *Server) query(w http.ResponseWriter, r *http.Request, q queryRequest, f *Injected) {
	if f != nil && f.Kind == FaultSessionExpired {
		s.expire(r)
	}
	sess, fail := s.authenticate(r)
	if fail != nil {
		writeJSON(w, http.StatusOK, *fail)
		return
	}
	params := r.URL.Query()
	reqID := params.Get("requestId")
	sess.mu.Lock()
	defer sess.mu.Unlock()
	defer sess.lastUsed.Store(time.Now().UnixNano())
	if sess.conn == nil {
		writeJSON(w, http.StatusOK, failure(codeSessionGone, "", "Session no longer exists.  New login required to access the service."))
		return
	}
	// Snowflake does not run a retried request (same requestId) twice: it
	// answers with the first execution's result.
	if b, done := sess.answered[reqID]; done && params.Has("retryCount") {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
		return
	}
	// A statement runs to its end even if the client goes away, as on a
	// real warehouse.
	ctx := context.WithoutCancel(r.Context())
	if f != nil && f.Kind == FaultSlow && !s.hang(ctx, f.Hang) {
		return // the server is closing
	}
	var (
		res *result
		err error
	)
	switch {
	case sess.aborted:
		res, err = sess.afterAbort(q.SQLText)
	case f != nil && f.Kind == FaultStatementError:
		err = s.injectedError(ctx, sess, q.SQLText)
	case f != nil && f.Kind == FaultInsufficientPrivileges:
		err = &sqlError{"003001", "42501", "SQL access control error:\nInsufficient privileges to operate on schema '" + sess.schema + "' (injected by snowtest)"}
	default:
		res, err = s.execute(ctx, sess, q)
	}
	var resp response
	queryID := newQueryID()
	if err != nil {
		se := duckError(err).(*sqlError)
		resp = response{
			Data:    map[string]any{"sqlState": se.state, "errorCode": se.code, "queryId": queryID, "internalError": false},
			Code:    se.code,
			Message: se.msg,
		}
	} else {
		data := map[string]any{
			"queryId":           queryID,
			"rowtype":           res.columns,
			"rowset":            res.rows,
			"total":             len(res.rows),
			"returned":          len(res.rows),
			"statementTypeId":   res.stmtType,
			"queryResultFormat": "json",
			"finalDatabaseName": sess.database,
			"finalSchemaName":   sess.schema,
		}
		for k, v := range res.extra {
			data[k] = v
		}
		resp = ok(data)
	}
	b, mErr := json.Marshal(resp)
	if mErr != nil {
		panic("BUG: cannot encode a query response: " + mErr.Error())
	}
	if len(sess.answered) >= 256 {
		clear(sess.answered)
	}
	sess.answered[reqID] = b
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// afterAbort answers a statement of a session whose transaction was
// rolled back as detached: ROLLBACK ends it, anything else fails, COMMIT
// too.
func (sess *session) afterAbort(sqlText string) (*result, error) {
	switch leading(sqlText, 1) {
	case "ROLLBACK":
		sess.aborted = false
		return status(stmtTransaction, "Statement executed successfully."), nil
	case "COMMIT":
		sess.aborted = false
	}
	return nil, &sqlError{"000625", "57014", "Transaction aborted: it was idle with locks held longer than the detached transaction timeout (snowtest)"}
}

// injectedError is FaultStatementError: nothing runs, and a COMMIT that
// fails rolls the transaction back.
func (s *Server) injectedError(ctx context.Context, sess *session, sqlText string) error {
	if leading(sqlText, 1) == "COMMIT" && sess.inTx {
		sess.inTx = false
		defer s.endTx(sess)
		if _, err := sess.conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			return fmt.Errorf("snowtest: cannot roll back after an injected commit failure: %w", err)
		}
	}
	return &sqlError{"000603", "XX000", "SQL execution internal error: Processing aborted due to error 300010:391167117; incident 1 (injected by snowtest)."}
}

// execute runs one Snowflake statement on the session.
func (s *Server) execute(ctx context.Context, sess *session, q queryRequest) (*result, error) {
	if q.BindStage != "" {
		return nil, unsupported("array binding through a stage (CLIENT_STAGE_ARRAY_BINDING_THRESHOLD)")
	}
	argRows, err := bindArgs(q.Bindings)
	if err != nil {
		return nil, err
	}
	text := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(q.SQLText), ";"))
	kw := leading(text, 2)
	first, _, _ := strings.Cut(kw, " ")
	if len(argRows) > 1 && first != "INSERT" && first != "UPDATE" && first != "DELETE" && first != "MERGE" {
		return nil, unsupported("array binding in " + first)
	}
	switch first {
	case "SELECT", "WITH", "VALUES":
		if res, ok, err := s.txFunction(sess, text); ok {
			return res, err
		}
		return s.selectRows(ctx, sess, text, argRows[0])
	case "INSERT", "UPDATE", "DELETE", "MERGE":
		return s.dml(ctx, sess, first, text, argRows)
	case "BEGIN", "START", "COMMIT", "ROLLBACK":
		return s.transaction(ctx, sess, first)
	case "USE":
		return s.use(ctx, sess, text)
	case "ALTER":
		if kw == "ALTER SESSION" || kw == "ALTER WAREHOUSE" {
			return status(stmtAlterSession, "Statement executed successfully."), nil
		}
		return s.ddl(ctx, sess, text)
	case "CREATE", "DROP", "TRUNCATE":
		if objectKind(text) == "STAGE" {
			if err := s.implicitCommit(ctx, sess); err != nil {
				return nil, err
			}
			return s.stageDDL(sess, text)
		}
		return s.ddl(ctx, sess, text)
	case "PUT":
		return s.put(sess, text)
	case "LIST", "LS":
		return s.list(sess, text)
	case "REMOVE", "RM":
		return s.remove(sess, text)
	case "COPY":
		return s.copyInto(ctx, sess, text)
	case "":
		return nil, &sqlError{"000900", "42601", "SQL compilation error:\nEmpty SQL statement."}
	}
	return nil, unsupported("the statement " + kw)
}

func status(stmtType int64, msg string) *result {
	return &result{
		stmtType: stmtType,
		columns:  []column{{Name: "status", Type: "text", Length: 16777216, Nullable: true}},
		rows:     [][]*string{{&msg}},
	}
}

// countResult is a DML answer: one row of counts, which the driver sums
// into RowsAffected.
func countResult(stmtType int64, names []string, counts []int64) *result {
	res := &result{stmtType: stmtType, rows: [][]*string{make([]*string, len(names))}}
	for i, n := range names {
		res.columns = append(res.columns, column{Name: n, Type: "fixed", Precision: 19})
		v := strconv.FormatInt(counts[i], 10)
		res.rows[0][i] = &v
	}
	return res
}

func (s *Server) selectRows(ctx context.Context, sess *session, text string, args []any) (*result, error) {
	rows, err := sess.conn.QueryContext(ctx, translate(text, sess.database), args...)
	if err != nil {
		return nil, duckError(err)
	}
	defer rows.Close()
	res, err := rowset(rows)
	if err != nil {
		return nil, duckError(err)
	}
	res.stmtType = stmtSelect
	return res, nil
}

func (s *Server) dml(ctx context.Context, sess *session, verb, text string, argRows [][]any) (*result, error) {
	sqlText := translate(text, sess.database)
	if table := dmlTable(sqlText); table != "" {
		if err := s.lock(ctx, sess, table); err != nil {
			return nil, err
		}
		if !sess.inTx {
			defer s.endTx(sess)
		}
	}
	counts := make([]int64, 3) // inserted, updated, deleted
	for _, args := range argRows {
		if verb == "MERGE" {
			if err := mergeCounts(ctx, sess.conn, sqlText+" RETURNING merge_action", args, counts); err != nil {
				return nil, err
			}
			continue
		}
		r, err := sess.conn.ExecContext(ctx, sqlText, args...)
		if err != nil {
			return nil, duckError(err)
		}
		n, err := r.RowsAffected()
		if err != nil {
			return nil, duckError(err)
		}
		counts[0] += n
	}
	switch verb {
	case "INSERT":
		return countResult(stmtInsert, []string{"number of rows inserted"}, counts[:1]), nil
	case "UPDATE":
		return countResult(stmtUpdate, []string{"number of rows updated", "number of multi-joined rows updated"}, []int64{counts[0], 0}), nil
	case "DELETE":
		return countResult(stmtDelete, []string{"number of rows deleted"}, counts[:1]), nil
	}
	names := []string{"number of rows inserted", "number of rows updated"}
	if hasWord(text, "DELETE") {
		names = append(names, "number of rows deleted")
	}
	return countResult(stmtMerge, names, counts[:len(names)]), nil
}

// mergeCounts runs a MERGE ... RETURNING merge_action and adds up what
// each row had done to it.
func mergeCounts(ctx context.Context, conn *sql.Conn, sqlText string, args []any, counts []int64) error {
	rows, err := conn.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return duckError(err)
	}
	defer rows.Close()
	for rows.Next() {
		var action string
		if err := rows.Scan(&action); err != nil {
			return duckError(err)
		}
		switch action {
		case "INSERT":
			counts[0]++
		case "UPDATE":
			counts[1]++
		case "DELETE":
			counts[2]++
		}
	}
	if err := rows.Err(); err != nil {
		return duckError(err)
	}
	return nil
}

func hasWord(text, kw string) bool {
	for _, t := range tokenize(text) {
		if t.is(kw) {
			return true
		}
	}
	return false
}

// transaction runs BEGIN, COMMIT or ROLLBACK. As in Snowflake, COMMIT and
// ROLLBACK without a transaction, and BEGIN inside one, do nothing.
func (s *Server) transaction(ctx context.Context, sess *session, verb string) (*result, error) {
	done := status(stmtTransaction, "Statement executed successfully.")
	switch {
	case verb == "BEGIN" || verb == "START":
		if sess.inTx {
			return done, nil
		}
		if _, err := sess.conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
			return nil, duckError(err)
		}
		sess.inTx = true
		sess.txID.Store(s.newID())
	case !sess.inTx:
	case verb == "COMMIT":
		sess.inTx = false
		defer s.endTx(sess)
		if _, err := sess.conn.ExecContext(ctx, "COMMIT"); err != nil {
			// DuckDB has aborted the transaction; make sure the
			// connection is out of it.
			_, _ = sess.conn.ExecContext(ctx, "ROLLBACK")
			return nil, duckError(err)
		}
	default:
		sess.inTx = false
		defer s.endTx(sess)
		if _, err := sess.conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			return nil, duckError(err)
		}
	}
	return done, nil
}

// implicitCommit commits an open transaction before DDL, as Snowflake
// does.
func (s *Server) implicitCommit(ctx context.Context, sess *session) error {
	if !sess.inTx {
		return nil
	}
	_, err := s.transaction(ctx, sess, "COMMIT")
	return err
}

func (s *Server) ddl(ctx context.Context, sess *session, text string) (*result, error) {
	if err := s.implicitCommit(ctx, sess); err != nil {
		return nil, err
	}
	switch kind := objectKind(text); kind {
	case "TABLE", "SCHEMA", "VIEW", "SEQUENCE":
	default:
		return nil, unsupported(strings.ToUpper(strings.Fields(text)[0]) + " " + kind)
	}
	if _, err := sess.conn.ExecContext(ctx, translate(text, sess.database)); err != nil {
		return nil, duckError(err)
	}
	return status(stmtDDL, "Statement executed successfully."), nil
}

// objectKind returns the kind of object a CREATE, DROP, ALTER or TRUNCATE
// statement is about (TABLE, STAGE, ...).
func objectKind(text string) string {
	toks := words(tokenize(text))
	if toks[0].is("TRUNCATE") {
		return "TABLE"
	}
	for _, t := range toks[1:] {
		switch strings.ToUpper(t.text) {
		case "OR", "REPLACE", "TEMPORARY", "TEMP", "TRANSIENT", "LOCAL", "GLOBAL", "VOLATILE":
		default:
			return strings.ToUpper(t.text)
		}
	}
	return ""
}

// use handles USE [DATABASE|SCHEMA|WAREHOUSE|ROLE] name. Only the schema
// matters to DuckDB; the database name is remembered so that qualified
// names drop it.
func (s *Server) use(ctx context.Context, sess *session, text string) (*result, error) {
	toks := words(tokenize(text))
	if len(toks) < 2 {
		return nil, &sqlError{"001003", "42000", "SQL compilation error:\nsyntax error: USE needs a name"}
	}
	what, rest := "DATABASE", toks[1:]
	if toks[1].kind == tokIdent && len(toks) > 2 {
		what, rest = strings.ToUpper(toks[1].text), toks[2:]
	}
	var name strings.Builder
	for _, t := range rest {
		name.WriteString(t.text)
	}
	db, obj := objectName(name.String())
	switch what {
	case "DATABASE":
		sess.database = obj
	case "SCHEMA":
		if _, err := sess.conn.ExecContext(ctx, "USE "+quoteIdent(obj)); err != nil {
			return nil, &sqlError{"002043", "02000", "SQL compilation error:\nObject does not exist, or operation cannot be performed: schema " + obj}
		}
		if db != "" {
			sess.database = db
		}
		sess.schema = obj
	case "WAREHOUSE", "ROLE", "SECONDARY":
	default:
		return nil, unsupported("USE " + what)
	}
	return status(stmtUse, "Statement executed successfully."), nil
}

// bindArgs converts the driver's bindings ("1", "2", ... with Snowflake
// types and string values) to DuckDB arguments. Array binds give one
// argument row per element.
func bindArgs(bs map[string]binding) ([][]any, error) {
	n := len(bs)
	rows := 1
	for _, b := range bs {
		if arr, ok := b.Value.([]any); ok {
			rows = max(rows, len(arr))
		}
	}
	out := make([][]any, rows)
	for r := range out {
		out[r] = make([]any, n)
	}
	for i := 1; i <= n; i++ {
		b, ok := bs[strconv.Itoa(i)]
		if !ok {
			return nil, unsupported("named bind variables")
		}
		for r := range rows {
			v := b.Value
			if arr, ok := v.([]any); ok {
				v = nil
				if r < len(arr) {
					v = arr[r]
				}
			}
			arg, err := bindValue(b.Type, v)
			if err != nil {
				return nil, &sqlError{"002049", "22000", fmt.Sprintf("SQL compilation error: bind variable %d of type %s: %v", i, b.Type, err)}
			}
			out[r][i-1] = arg
		}
	}
	return out, nil
}

func bindValue(typ string, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("value %v is not a string", v)
	}
	switch strings.ToUpper(typ) {
	case "FIXED":
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
		return s, nil // a big number: DuckDB casts it
	case "REAL":
		return strconv.ParseFloat(s, 64)
	case "BOOLEAN":
		return strconv.ParseBool(s)
	case "DATE":
		ms, err := strconv.ParseInt(s, 10, 64)
		return time.UnixMilli(ms).UTC().Format(time.DateOnly), err
	case "TIME":
		ns, err := strconv.ParseInt(s, 10, 64)
		return time.Time{}.Add(time.Duration(ns)).Format("15:04:05.999999999"), err
	case "TIMESTAMP_NTZ", "TIMESTAMP_LTZ":
		ns, err := strconv.ParseInt(s, 10, 64)
		return time.Unix(0, ns).UTC(), err
	case "TIMESTAMP_TZ":
		nsText, offText, _ := strings.Cut(s, " ")
		ns, err := strconv.ParseInt(nsText, 10, 64)
		if err != nil {
			return nil, err
		}
		off, err := strconv.Atoi(offText)
		return time.Unix(0, ns).In(time.FixedZone("", (off-1440)*60)), err
	case "BINARY":
		return hex.DecodeString(s)
	}
	return s, nil
}
