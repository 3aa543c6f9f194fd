package snowtest

import (
	"context"
	"crypto/rsa"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // registers the "duckdb" database/sql driver
	"github.com/snowflakedb/gosnowflake"

	"github.com/offload/offload/internal/tablelock"
)

// Endpoints of the Snowflake REST protocol that the server answers, for
// Fault.Endpoint and Server.Requests.
const (
	EndpointLogin     = "/session/v1/login-request"
	EndpointQuery     = "/queries/v1/query-request"
	EndpointAbort     = "/queries/v1/abort-request"
	EndpointRenew     = "/session/token-request"
	EndpointHeartbeat = "/session/heartbeat"
	EndpointSession   = "/session" // ?delete=true closes the session
	EndpointTelemetry = "/telemetry/send"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Account is the account name logins must use. Default "SNOWTEST".
	Account string
	// Path is the DuckDB database file; empty means in memory.
	Path string
	// Dir holds the stages' files. Empty means a temporary directory
	// removed by Close.
	Dir string
	// SessionTTL is how long a session token is valid before queries get
	// 390112 and the driver renews it. Default 1 hour.
	SessionTTL time.Duration
	// MasterTTL is how long the master token (used to renew) is valid.
	// Default 4 hours.
	MasterTTL time.Duration
	// LockTimeout bounds how long an UPDATE, DELETE or MERGE waits for
	// the lock of its table (then 000625). Default 1 minute (Snowflake's
	// LOCK_TIMEOUT is 12 hours).
	LockTimeout time.Duration
	// DetachedTimeout is how long a transaction whose client stopped
	// sending statements keeps its locks before a waiter rolls it back.
	// Default 4 hours, Snowflake's.
	DetachedTimeout time.Duration
	// OnCopy, if set, is called with the path of each staged file a COPY
	// INTO is about to read, so a test can see what was handed over for
	// loading.
	OnCopy func(path string)
}

// User is an account user. Each non-empty credential enables one way to
// log in.
type User struct {
	Name     string
	Password string
	// PrivateKey enables key-pair (JWT) login. The server checks JWTs
	// against its public half only; Config hands the key to the driver.
	PrivateKey *rsa.PrivateKey
	// OAuthToken enables OAuth login with this access token.
	OAuthToken string
}

// Server is a Snowflake-protocol server backed by DuckDB. Its methods are
// safe for concurrent use.
type Server struct {
	opts   Options
	db     *sql.DB
	dir    string
	ownDir bool
	http   *http.Server
	port   int
	done   chan struct{}              // closed by Close: releases hung requests
	locks  *tablelock.Locks[*session] // of UPDATE, DELETE and MERGE (lock.go)

	mu       sync.Mutex // guards the fields below
	ln       net.Listener
	conns    map[net.Conn]struct{}
	serving  sync.WaitGroup
	users    map[string]User // by upper-case name
	sessions map[int64]*session
	stages   map[string]*stage
	loaded   map[string]map[string]bool // COPY load metadata: table -> file keys
	faults   []*Injected
	requests map[string]int
	nextID   int64
}

// New opens the DuckDB database and starts serving on 127.0.0.1 on a
// random port.
func New(opts Options) (*Server, error) {
	if opts.Account == "" {
		opts.Account = "SNOWTEST"
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = time.Hour
	}
	if opts.MasterTTL <= 0 {
		opts.MasterTTL = 4 * time.Hour
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Minute
	}
	if opts.DetachedTimeout <= 0 {
		opts.DetachedTimeout = 4 * time.Hour
	}
	// One thread, and a checkpoint per GB of DuckDB's own WAL: in the
	// drain benchmark the server shares the appliance's two cores, and
	// there its second thread spun waiting for tasks and a checkpoint
	// after nearly every load recompressed the growing table
	// (docs/PERFORMANCE.md, "The test warehouse's share of the cores").
	db, err := sql.Open("duckdb", opts.Path+"?threads=1&checkpoint_threshold=1GB")
	if err != nil {
		return nil, fmt.Errorf("snowtest: cannot open DuckDB %q: %w", opts.Path, err)
	}
	// Sessions hold their own connection; a closed session's connection
	// must really close (ending its transaction), never go back to a pool.
	db.SetMaxIdleConns(0)
	s := &Server{
		opts:     opts,
		db:       db,
		dir:      opts.Dir,
		done:     make(chan struct{}),
		locks:    tablelock.New[*session](),
		conns:    map[net.Conn]struct{}{},
		users:    map[string]User{},
		sessions: map[int64]*session{},
		stages:   map[string]*stage{},
		loaded:   map[string]map[string]bool{},
		requests: map[string]int{},
		nextID:   1000,
	}
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "snowtest-"); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("snowtest: cannot create the stage directory: %w", err)
		}
		s.ownDir = true
	}
	s.http = &http.Server{
		Handler:   http.HandlerFunc(s.serveHTTP),
		ConnState: s.trackConn,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("snowtest: cannot listen on 127.0.0.1: %w", err)
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	s.serve(ln)
	return s, nil
}

func (s *Server) serve(ln net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ln = ln
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		_ = s.http.Serve(ln) // returns when the listener closes
	}()
}

func (s *Server) trackConn(c net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.conns[c] = struct{}{}
	case http.StateHijacked, http.StateClosed:
		delete(s.conns, c)
	}
}

// Port is the TCP port the server listens on (it keeps it across
// RefuseConnections and AcceptConnections).
func (s *Server) Port() int { return s.port }

// Account is the account name logins must use.
func (s *Server) Account() string { return s.opts.Account }

// WarehouseYAML is the warehouse section of an offload configuration file
// that points at this server as user, with OFFLOAD_DB.PUBLIC for the
// tables and no password (it goes through the environment). Options of
// the section may be appended, indented by two spaces.
func (s *Server) WarehouseYAML(user string) string {
	return fmt.Sprintf(`warehouse:
  type: snowflake
  account: %s
  user: %s
  database: OFFLOAD_DB
  schema: PUBLIC
  host: 127.0.0.1
  port: %d
  protocol: http
`, s.Account(), user, s.Port())
}

// AddUser registers a user, replacing one of the same name.
func (s *Server) AddUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[strings.ToUpper(u.Name)] = u
}

// Config returns a driver configuration that logs in as the registered
// user: with the password if it has one, else with its key pair, else
// with its OAuth token. The database is OFFLOAD_DB and the schema PUBLIC;
// change them as needed. Query retries are off (RequestTimeout of one
// second is shorter than the driver's first backoff) so that faults
// surface at once; set RequestTimeout to 0 to get the driver's default
// retrying behaviour.
func (s *Server) Config(user string) *gosnowflake.Config {
	s.mu.Lock()
	u := s.users[strings.ToUpper(user)]
	s.mu.Unlock()
	cfg := &gosnowflake.Config{
		Account:   s.opts.Account,
		User:      user,
		Host:      "127.0.0.1",
		Port:      s.port,
		Protocol:  "http",
		Database:  "OFFLOAD_DB",
		Schema:    "PUBLIC",
		Warehouse: "OFFLOAD_WH",
		// gosnowflake v1.19.1 deprecates its timeouts and DisableTelemetry
		// without a replacement; they are still the only way to set them.
		//lint:ignore SA1019 deprecated without a replacement in gosnowflake v1.19.1
		RequestTimeout: time.Second, LoginTimeout: 5 * time.Second, ClientTimeout: 30 * time.Second, DisableTelemetry: true,
	}
	switch {
	case u.Password != "":
		cfg.Password = u.Password
	case u.PrivateKey != nil:
		cfg.Authenticator = gosnowflake.AuthTypeJwt
		cfg.PrivateKey = u.PrivateKey
	case u.OAuthToken != "":
		cfg.Authenticator = gosnowflake.AuthTypeOAuth
		cfg.Token = u.OAuthToken
	}
	return cfg
}

// DB returns the backing DuckDB database for assertions in tests. Tables
// live in a DuckDB schema named like the Snowflake schema (PUBLIC.T).
func (s *Server) DB() *sql.DB { return s.db }

// Requests returns how many requests reached an endpoint (Endpoint*),
// counting those a fault answered.
func (s *Server) Requests(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[endpoint]
}

// RefuseConnections closes the listener and every open connection, so
// requests get "connection refused" until AcceptConnections. A request
// sent on a kept-alive connection at that moment sees EOF instead.
func (s *Server) RefuseConnections() {
	s.mu.Lock()
	ln := s.ln
	s.ln = nil
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
		s.serving.Wait()
	}
}

// AcceptConnections listens again on the same port after
// RefuseConnections.
func (s *Server) AcceptConnections() error {
	s.mu.Lock()
	listening := s.ln != nil
	s.mu.Unlock()
	if listening {
		return nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)))
	if err != nil {
		return fmt.Errorf("snowtest: cannot listen again on port %d: %w", s.port, err)
	}
	s.serve(ln)
	return nil
}

// Close stops serving, closes every session and the database, and removes
// the stage directory if the server created it.
func (s *Server) Close() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	// Release hung requests first so that shutdown does not wait for them.
	close(s.done)
	// Stop accepting and drop open connections.
	_ = s.http.Close()
	s.serving.Wait()
	// Close the sessions' DuckDB connections, then the database.
	s.mu.Lock()
	sessions := s.sessions
	s.sessions = map[int64]*session{}
	s.mu.Unlock()
	for _, sess := range sessions {
		sess.close()
		s.endTx(sess)
	}
	err := s.db.Close()
	if s.ownDir {
		err = errors.Join(err, os.RemoveAll(s.dir))
	}
	if err != nil {
		return fmt.Errorf("snowtest: close: %w", err)
	}
	return nil
}

// response is the envelope of every Snowflake REST answer.
type response struct {
	Data    any  `json:"data"`
	Code    any  `json:"code"` // a string, or null on success
	Message any  `json:"message"`
	Success bool `json:"success"`
}

func ok(data any) response { return response{Data: data, Success: true} }

// failure is a Snowflake error answer: HTTP 200 with success false.
func failure(code, sqlState, msg string) response {
	var data any
	if sqlState != "" {
		data = map[string]any{"sqlState": sqlState, "errorCode": code, "queryId": newQueryID()}
	}
	return response{Data: data, Code: code, Message: msg}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// serveHTTP counts the request, applies any matching fault and routes it.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		http.Error(w, "cannot read the request body", http.StatusBadRequest)
		return
	}
	ep := r.URL.Path
	s.mu.Lock()
	s.requests[ep]++
	s.mu.Unlock()

	var q queryRequest
	if ep == EndpointQuery {
		if err := json.Unmarshal(body, &q); err != nil {
			writeJSON(w, http.StatusBadRequest, failure("390100", "", "snowtest: query request is not JSON: "+err.Error()))
			return
		}
	}
	f := s.matchFault(ep, q.SQLText)
	if f != nil {
		switch f.Kind {
		case FaultHTTPStatus:
			writeJSON(w, f.Status, map[string]any{"message": fmt.Sprintf("injected HTTP %d", f.Status)})
			return
		case FaultHang:
			if !s.hang(r.Context(), f.Hang) {
				return
			}
		case FaultDropConnection:
			dropConnection(w)
			return
		}
	}
	if f != nil && f.Kind == FaultResponseLost {
		rec := &recorder{header: http.Header{}}
		s.route(rec, r, body, q, nil)
		dropConnection(w)
		return
	}
	s.route(w, r, body, q, f)
}

// hang holds a request for d, until the client goes away or the server
// closes. It reports whether the request should still be answered.
func (s *Server) hang(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-s.done:
	}
	return false
}

// dropConnection closes the client's connection without an answer.
func dropConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("BUG: snowtest response writer cannot be hijacked")
	}
	c, _, err := hj.Hijack()
	if err == nil {
		_ = c.Close()
	}
}

// recorder is a ResponseWriter that discards the answer of a request
// whose response a fault loses.
type recorder struct{ header http.Header }

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(int)             {}

func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte, q queryRequest, f *Injected) {
	switch r.URL.Path {
	case EndpointLogin:
		s.login(w, r, body)
	case EndpointQuery:
		s.query(w, r, q, f)
	case EndpointRenew:
		s.renew(w, r, body)
	case EndpointHeartbeat:
		s.heartbeat(w, r, f)
	case EndpointSession:
		s.closeSession(w, r)
	case EndpointAbort, EndpointTelemetry:
		writeJSON(w, http.StatusOK, ok(nil))
	default:
		writeJSON(w, http.StatusNotFound, failure("390400", "", "snowtest: unknown endpoint "+r.URL.Path))
	}
}
