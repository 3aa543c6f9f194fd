package redshifttest

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

// pgError is an error answered with its SQLSTATE.
type pgError struct{ code, msg string }

func (e *pgError) Error() string { return e.msg + " (SQLSTATE " + e.code + ")" }

// errHangUp ends the session without an answer (an injected fault).
var errHangUp = errors.New("hang up")

// session is one client connection with its own DuckDB connection.
type session struct {
	srv   *Server
	be    *pgproto3.Backend
	conn  *sql.Conn
	types *pgtype.Map
	inTx  bool
	// failed: a statement failed inside the transaction; only ROLLBACK
	// (or COMMIT, which rolls back) is taken until it ends.
	failed  bool
	stmts   map[string]*prepared
	portals map[string]*portal
}

// prepared is a parsed statement of the extended protocol.
type prepared struct {
	sql       string
	paramOIDs []uint32
	cols      []string // nil: no rows
}

// portal is a bound statement.
type portal struct {
	stmt *prepared
	args []any
}

func (s *Server) serve(c net.Conn, pid uint32) {
	be := pgproto3.NewBackend(c, c)
	params, err := s.startup(c, be)
	if err != nil {
		return
	}
	ctx := context.Background()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		sendError(be, &pgError{"57P03", "the database is not available: " + err.Error()}, "FATAL")
		return
	}
	ss := &session{srv: s, be: be, conn: conn, types: pgtype.NewMap(), stmts: map[string]*prepared{}, portals: map[string]*portal{}}
	defer ss.close()
	if _, err := conn.ExecContext(ctx, "SET TimeZone = 'UTC'"); err != nil {
		sendError(be, &pgError{"XX000", err.Error()}, "FATAL")
		return
	}
	if sp := params["search_path"]; sp != "" {
		// A schema that does not exist leaves the default one, as the
		// first use of a table in it then fails.
		_, _ = conn.ExecContext(ctx, "SET schema = '"+strings.ReplaceAll(strings.TrimSpace(strings.Split(sp, ",")[0]), "'", "''")+"'")
	}
	for k, v := range map[string]string{"server_version": "8.0.2", "client_encoding": "UTF8", "standard_conforming_strings": "on",
		"DateStyle": "ISO, MDY", "integer_datetimes": "on", "TimeZone": "UTC"} {
		be.Send(&pgproto3.ParameterStatus{Name: k, Value: v})
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: pid, SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	_ = ss.loop(ctx)
}

// startup reads the startup message (refusing SSL and GSS encryption),
// checks the password and returns the startup parameters.
func (s *Server) startup(c net.Conn, be *pgproto3.Backend) (map[string]string, error) {
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := c.Write([]byte("N")); err != nil {
				return nil, err
			}
		case *pgproto3.StartupMessage:
			be.Send(&pgproto3.AuthenticationCleartextPassword{})
			if err := be.Flush(); err != nil {
				return nil, err
			}
			if err := be.SetAuthType(pgproto3.AuthTypeCleartextPassword); err != nil {
				return nil, err
			}
			pm, err := be.Receive()
			if err != nil {
				return nil, err
			}
			pw, ok := pm.(*pgproto3.PasswordMessage)
			if !ok || m.Parameters["user"] != s.opts.User || pw.Password != s.opts.Password {
				sendError(be, &pgError{"28P01", fmt.Sprintf("password authentication failed for user %q", m.Parameters["user"])}, "FATAL")
				return nil, errors.New("login refused")
			}
			be.Send(&pgproto3.AuthenticationOk{})
			return m.Parameters, nil
		default:
			return nil, fmt.Errorf("unexpected startup message %T", msg)
		}
	}
}

func sendError(be *pgproto3.Backend, err error, severity string) {
	var pe *pgError
	if !errors.As(err, &pe) {
		pe = &pgError{"XX000", err.Error()}
	}
	be.Send(&pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity, Code: pe.code, Message: pe.msg})
	_ = be.Flush()
}

func (ss *session) close() {
	if ss.inTx {
		_, _ = ss.conn.ExecContext(context.Background(), "ROLLBACK")
	}
	ss.srv.locks.Release(ss)
	_ = ss.conn.Close()
}

func (ss *session) ready() error {
	st := byte('I')
	switch {
	case ss.failed:
		st = 'E'
	case ss.inTx:
		st = 'T'
	}
	ss.be.Send(&pgproto3.ReadyForQuery{TxStatus: st})
	return ss.be.Flush()
}

// loop answers messages until the client leaves or a fault hangs up.
func (ss *session) loop(ctx context.Context) error {
	skipToSync := false // after an error in the extended protocol
	for {
		msg, err := ss.be.Receive()
		if err != nil {
			return err
		}
		if skipToSync {
			if _, ok := msg.(*pgproto3.Sync); !ok {
				continue
			}
			skipToSync = false
		}
		var failed error
		switch m := msg.(type) {
		case *pgproto3.Query:
			if err := ss.simple(ctx, m.String); err != nil {
				if errors.Is(err, errHangUp) {
					return err
				}
				sendError(ss.be, err, "ERROR")
			}
			if err := ss.ready(); err != nil {
				return err
			}
		case *pgproto3.Parse:
			failed = ss.parse(ctx, m)
		case *pgproto3.Describe:
			failed = ss.describe(m)
		case *pgproto3.Bind:
			failed = ss.bind(m)
		case *pgproto3.Execute:
			p := ss.portals[m.Portal]
			if p == nil {
				failed = &pgError{"34000", fmt.Sprintf("portal %q does not exist", m.Portal)}
				break
			}
			failed = ss.run(ctx, p.stmt.sql, p.args, false)
		case *pgproto3.Close:
			if m.ObjectType == 'S' {
				delete(ss.stmts, m.Name)
			} else {
				delete(ss.portals, m.Name)
			}
			ss.be.Send(&pgproto3.CloseComplete{})
		case *pgproto3.Sync:
			if err := ss.ready(); err != nil {
				return err
			}
		case *pgproto3.Flush:
			if err := ss.be.Flush(); err != nil {
				return err
			}
		case *pgproto3.Terminate:
			return nil
		default:
			failed = &pgError{"08P01", fmt.Sprintf("unsupported message %T", msg)}
		}
		if failed != nil {
			if errors.Is(failed, errHangUp) {
				return failed
			}
			sendError(ss.be, failed, "ERROR")
			skipToSync = true
		}
	}
}

// simple runs one statement of the simple query protocol.
func (ss *session) simple(ctx context.Context, q string) error {
	q = strings.TrimRight(strings.TrimSpace(q), ";")
	if q == "" || strings.HasPrefix(q, "--") && !strings.Contains(q, "\n") {
		// pgx pings with "-- ping": a query of only a comment is empty.
		ss.be.Send(&pgproto3.EmptyQueryResponse{})
		return nil
	}
	return ss.run(ctx, q, nil, true)
}

func (ss *session) parse(ctx context.Context, m *pgproto3.Parse) error {
	q := strings.TrimRight(strings.TrimSpace(m.Query), ";")
	p := &prepared{sql: q, paramOIDs: m.ParameterOIDs}
	if isQuery(q) || strings.Contains(q, "$1") {
		if err := ss.describeSQL(ctx, p); err != nil {
			return err
		}
	}
	ss.stmts[m.Name] = p
	ss.be.Send(&pgproto3.ParseComplete{})
	return nil
}

// describeSQL asks DuckDB for the statement's parameter types and
// columns, without running it.
func (ss *session) describeSQL(ctx context.Context, p *prepared) error {
	return ss.conn.Raw(func(dc any) error {
		st, err := dc.(driver.ConnPrepareContext).PrepareContext(ctx, p.sql)
		if err != nil {
			return &pgError{"42601", err.Error()}
		}
		defer st.Close()
		ds, ok := st.(*duckdb.Stmt)
		if !ok {
			return fmt.Errorf("unexpected statement type %T", st)
		}
		n := ds.NumInput()
		for i := len(p.paramOIDs); i < n; i++ {
			p.paramOIDs = append(p.paramOIDs, 0)
		}
		for i := range n {
			if p.paramOIDs[i] != 0 {
				continue
			}
			t, err := ds.ParamType(i + 1)
			if err != nil {
				return err
			}
			p.paramOIDs[i] = oidOf(t)
		}
		if isQuery(p.sql) {
			cols, err := ds.ColumnCount()
			if err != nil {
				return err
			}
			p.cols = make([]string, cols)
			for i := range cols {
				if p.cols[i], err = ds.ColumnName(i); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// oidOf is the PostgreSQL type of a DuckDB parameter type: what pgx
// encodes the argument as.
func oidOf(t duckdb.Type) uint32 {
	switch t {
	case duckdb.TYPE_BIGINT:
		return pgtype.Int8OID
	case duckdb.TYPE_INTEGER:
		return pgtype.Int4OID
	case duckdb.TYPE_BOOLEAN:
		return pgtype.BoolOID
	case duckdb.TYPE_DOUBLE:
		return pgtype.Float8OID
	case duckdb.TYPE_TIMESTAMP_TZ:
		return pgtype.TimestamptzOID
	case duckdb.TYPE_TIMESTAMP:
		return pgtype.TimestampOID
	}
	return pgtype.TextOID
}

func (ss *session) describe(m *pgproto3.Describe) error {
	var p *prepared
	if m.ObjectType == 'S' {
		p = ss.stmts[m.Name]
		if p == nil {
			return &pgError{"26000", fmt.Sprintf("prepared statement %q does not exist", m.Name)}
		}
		ss.be.Send(&pgproto3.ParameterDescription{ParameterOIDs: p.paramOIDs})
	} else {
		pt := ss.portals[m.Name]
		if pt == nil {
			return &pgError{"34000", fmt.Sprintf("portal %q does not exist", m.Name)}
		}
		p = pt.stmt
	}
	if p.cols == nil {
		ss.be.Send(&pgproto3.NoData{})
		return nil
	}
	ss.be.Send(rowDescription(p.cols))
	return nil
}

// rowDescription describes every column as text: values go out as text.
func rowDescription(cols []string) *pgproto3.RowDescription {
	rd := &pgproto3.RowDescription{}
	for _, c := range cols {
		rd.Fields = append(rd.Fields, pgproto3.FieldDescription{Name: []byte(c), DataTypeOID: pgtype.TextOID, DataTypeSize: -1, TypeModifier: -1})
	}
	return rd
}

func (ss *session) bind(m *pgproto3.Bind) error {
	p := ss.stmts[m.PreparedStatement]
	if p == nil {
		return &pgError{"26000", fmt.Sprintf("prepared statement %q does not exist", m.PreparedStatement)}
	}
	if len(m.Parameters) != len(p.paramOIDs) {
		return &pgError{"08P01", fmt.Sprintf("bind message supplies %d parameters, the statement needs %d", len(m.Parameters), len(p.paramOIDs))}
	}
	args := make([]any, len(m.Parameters))
	for i, raw := range m.Parameters {
		if raw == nil {
			continue
		}
		format := int16(0)
		switch len(m.ParameterFormatCodes) {
		case 0:
		case 1:
			format = m.ParameterFormatCodes[0]
		default:
			format = m.ParameterFormatCodes[i]
		}
		v, err := ss.decode(p.paramOIDs[i], format, raw)
		if err != nil {
			return &pgError{"22P02", fmt.Sprintf("parameter $%d: %v", i+1, err)}
		}
		args[i] = v
	}
	ss.portals[m.DestinationPortal] = &portal{stmt: p, args: args}
	ss.be.Send(&pgproto3.BindComplete{})
	return nil
}

// decode reads a parameter as pgx sent it, into the Go value DuckDB binds.
func (ss *session) decode(oid uint32, format int16, raw []byte) (any, error) {
	switch oid {
	case pgtype.Int8OID:
		return scanAs[int64](ss.types, oid, format, raw)
	case pgtype.Int4OID:
		return scanAs[int32](ss.types, oid, format, raw)
	case pgtype.BoolOID:
		return scanAs[bool](ss.types, oid, format, raw)
	case pgtype.Float8OID:
		return scanAs[float64](ss.types, oid, format, raw)
	case pgtype.TimestamptzOID, pgtype.TimestampOID:
		return scanAs[time.Time](ss.types, oid, format, raw)
	}
	return scanAs[string](ss.types, pgtype.TextOID, format, raw)
}

func scanAs[T any](m *pgtype.Map, oid uint32, format int16, raw []byte) (any, error) {
	var v T
	err := m.Scan(oid, format, raw, &v)
	return v, err
}

// run runs one statement; describe says whether to send the row
// description first (the simple protocol does, Execute does not).
func (ss *session) run(ctx context.Context, q string, args []any, describe bool) error {
	if in := ss.srv.fault(q); in != nil {
		switch in.f.Kind {
		case FaultDropConnection:
			return errHangUp
		case FaultStatementError:
			code := in.f.Code
			if code == "" {
				code = "XX000"
			}
			return ss.fail(&pgError{code, "injected failure of " + firstWord(q)})
		case FaultAnswerLost:
			_, _ = ss.exec(ctx, q, args, false)
			in.applied.Add(1)
			return errHangUp
		case FaultSlow:
			time.Sleep(in.f.Hang)
			defer in.applied.Add(1)
		}
	}
	tag, err := ss.exec(ctx, q, args, describe)
	if err != nil {
		return ss.fail(err)
	}
	ss.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
	return nil
}

// fail records a failed statement: inside a transaction it aborts it.
func (ss *session) fail(err error) error {
	if ss.inTx {
		ss.failed = true
	}
	return err
}

// exec runs q and sends its rows; it returns the command tag.
func (ss *session) exec(ctx context.Context, q string, args []any, describe bool) (string, error) {
	word := strings.ToUpper(firstWord(q))
	switch word {
	case "BEGIN", "START":
		if ss.inTx {
			return "BEGIN", nil // PostgreSQL warns and goes on
		}
		if _, err := ss.conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
			return "", err
		}
		ss.inTx, ss.failed = true, false
		return "BEGIN", nil
	case "COMMIT", "END", "ROLLBACK", "ABORT":
		if !ss.inTx {
			return strings.ToUpper(word), nil
		}
		stmt, tag := "COMMIT", "COMMIT"
		if ss.failed || word == "ROLLBACK" || word == "ABORT" {
			stmt, tag = "ROLLBACK", "ROLLBACK"
		}
		ss.inTx, ss.failed = false, false
		defer ss.srv.locks.Release(ss)
		if _, err := ss.conn.ExecContext(ctx, stmt); err != nil {
			return "", &pgError{"40001", err.Error()}
		}
		return tag, nil
	}
	if ss.failed {
		return "", &pgError{"25P02", "current transaction is aborted, commands ignored until end of transaction block"}
	}
	if err := refused(q); err != nil {
		return "", err
	}
	switch word {
	case "COPY":
		return ss.copyFromS3(ctx, q)
	case "LOCK":
		if err := ss.lock(q); err != nil {
			return "", err
		}
		if !ss.inTx { // outside a transaction a lock ends with its statement
			ss.srv.locks.Release(ss)
		}
		return "LOCK TABLE", nil
	}
	if isQuery(q) {
		return ss.query(ctx, q, args, describe)
	}
	if word == "CREATE" {
		q = unenforced(q)
	}
	res, err := ss.conn.ExecContext(ctx, q, args...)
	if err != nil {
		return "", duckError(err)
	}
	n, _ := res.RowsAffected()
	switch word {
	case "INSERT":
		return fmt.Sprintf("INSERT 0 %d", n), nil
	case "UPDATE", "DELETE", "MERGE":
		return fmt.Sprintf("%s %d", word, n), nil
	case "CREATE", "DROP", "ALTER":
		f := strings.Fields(strings.ToUpper(q))
		if len(f) > 2 && (f[1] == "TEMP" || f[1] == "TEMPORARY") {
			return word + " " + f[2], nil
		}
		if len(f) > 1 {
			return word + " " + f[1], nil
		}
	}
	return word, nil
}

func (ss *session) query(ctx context.Context, q string, args []any, describe bool) (string, error) {
	rows, err := ss.conn.QueryContext(ctx, q, args...)
	if err != nil {
		return "", duckError(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return "", err
	}
	if describe {
		ss.be.Send(rowDescription(cols))
	}
	n := 0
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return "", err
		}
		dr := &pgproto3.DataRow{Values: make([][]byte, len(cols))}
		for i, v := range vals {
			dr.Values[i] = text(v)
		}
		ss.be.Send(dr)
		n++
	}
	if err := rows.Err(); err != nil {
		return "", duckError(err)
	}
	return fmt.Sprintf("SELECT %d", n), nil
}

// text is a value in PostgreSQL's text format (nil for NULL).
func text(v any) []byte {
	switch v := v.(type) {
	case nil:
		return nil
	case []byte:
		return v
	case bool:
		if v {
			return []byte("t")
		}
		return []byte("f")
	case time.Time:
		return []byte(v.UTC().Format("2006-01-02 15:04:05.999999Z07"))
	case *big.Int:
		return []byte(v.String())
	case duckdb.Decimal:
		return []byte(v.String())
	}
	return []byte(fmt.Sprint(v))
}

// duckError maps DuckDB's errors to SQLSTATEs a PostgreSQL-protocol client
// classifies: catalog, binder and parser errors are class 42, conversions
// 22, constraints 23.
func duckError(err error) error {
	var de *duckdb.Error
	if errors.As(err, &de) {
		switch de.Type {
		case duckdb.ErrorTypeCatalog, duckdb.ErrorTypeBinder, duckdb.ErrorTypeParser, duckdb.ErrorTypeSyntax:
			return &pgError{"42000", de.Msg}
		case duckdb.ErrorTypeConversion, duckdb.ErrorTypeInvalidInput, duckdb.ErrorTypeOutOfRange, duckdb.ErrorTypeMismatchType:
			return &pgError{"22000", de.Msg}
		case duckdb.ErrorTypeConstraint:
			return &pgError{"23000", de.Msg}
		case duckdb.ErrorTypeTransaction:
			return &pgError{"40001", de.Msg}
		}
	}
	return &pgError{"XX000", err.Error()}
}

func firstWord(q string) string {
	f := strings.Fields(q)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func isQuery(q string) bool {
	switch strings.ToUpper(firstWord(q)) {
	case "SELECT", "WITH", "SHOW", "VALUES":
		return true
	}
	return false
}
