package redshifttest

import (
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"sync"

	// The DuckDB driver, registered as "duckdb".
	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/offload/offload/internal/tablelock"
)

// Options configures a Server.
type Options struct {
	// Path is the DuckDB database file; empty means in memory.
	Path string
	// User and Password are the one login [offload, offload-test].
	User, Password string
	// IAMRole, AccessKeyID and SecretAccessKey are what COPY's
	// credentials must be: the role, or the key and its secret
	// [arn:aws:iam::123456789012:role/offload-test, AKIAOFFLOADTEST,
	// offload-test-secret].
	IAMRole, AccessKeyID, SecretAccessKey string
}

// Server is a Redshift-dialect server on 127.0.0.1 with its fake S3.
type Server struct {
	opts  Options
	db    *sql.DB
	s3    gofakes3.Backend
	s3srv *httptest.Server
	tmp   string
	addr  string
	locks *tablelock.Locks[*session] // of LOCK statements

	mu       sync.Mutex
	ln       net.Listener // nil while connections are refused
	sessions map[net.Conn]bool
	faults   []*Injection
	nextPID  uint32
	wg       sync.WaitGroup
}

// New starts a server and its fake S3, both on 127.0.0.1.
func New(o Options) (*Server, error) {
	if o.User == "" {
		o.User, o.Password = "offload", "offload-test"
	}
	if o.IAMRole == "" {
		o.IAMRole = "arn:aws:iam::123456789012:role/offload-test"
	}
	if o.AccessKeyID == "" {
		o.AccessKeyID, o.SecretAccessKey = "AKIAOFFLOADTEST", "offload-test-secret"
	}
	db, err := sql.Open("duckdb", o.Path)
	if err != nil {
		return nil, fmt.Errorf("redshifttest: cannot open DuckDB: %w", err)
	}
	tmp, err := os.MkdirTemp("", "redshifttest-")
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("redshifttest: cannot create a scratch directory: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = db.Close()
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("redshifttest: cannot listen: %w", err)
	}
	backend := s3mem.New()
	s := &Server{opts: o, db: db, s3: backend, tmp: tmp, addr: ln.Addr().String(), ln: ln, sessions: map[net.Conn]bool{}, locks: tablelock.New[*session]()}
	s.s3srv = httptest.NewServer(gofakes3.New(backend).Server())
	s.wg.Add(1)
	go s.accept(ln)
	return s, nil
}

// Addr returns the server's host and port.
func (s *Server) Addr() (string, int) {
	a, _ := net.ResolveTCPAddr("tcp", s.addr)
	return a.IP.String(), a.Port
}

// User returns the login's user and password.
func (s *Server) User() (string, string) { return s.opts.User, s.opts.Password }

// IAMRole returns the role COPY accepts.
func (s *Server) IAMRole() string { return s.opts.IAMRole }

// S3Key returns the access key and secret COPY accepts, which the fake S3
// takes too (it takes any).
func (s *Server) S3Key() (string, string) { return s.opts.AccessKeyID, s.opts.SecretAccessKey }

// S3Endpoint returns the fake S3's URL (path-style addressing).
func (s *Server) S3Endpoint() string { return s.s3srv.URL }

// CreateBucket creates a bucket in the fake S3.
func (s *Server) CreateBucket(name string) error { return s.s3.CreateBucket(name) }

// Objects returns the keys the bucket holds.
func (s *Server) Objects(bucket string) ([]string, error) {
	l, err := s.s3.ListBucket(bucket, nil, gofakes3.ListBucketPage{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range l.Contents {
		out = append(out, o.Key)
	}
	return out, nil
}

// DB returns the DuckDB database behind the server, for checks.
func (s *Server) DB() *sql.DB { return s.db }

// Inject adds a fault.
func (s *Server) Inject(f Fault) *Injection {
	if f.Times == 0 {
		f.Times = 1
	}
	in := &Injection{f: f}
	in.left.Store(int64(f.Times))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, in)
	return in
}

// fault returns the first fault that hits statement q.
func (s *Server) fault(q string) *Injection {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range s.faults {
		if in.fire(q) {
			return in
		}
	}
	return nil
}

// RefuseConnections stops listening (connections are refused) and drops
// the open sessions: the cluster is away.
func (s *Server) RefuseConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		_ = s.ln.Close()
		s.ln = nil
	}
	for c := range s.sessions {
		_ = c.Close()
	}
}

// AcceptConnections listens again on the same address.
func (s *Server) AcceptConnections() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("redshifttest: cannot listen again on %s: %w", s.addr, err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.accept(ln)
	return nil
}

func (s *Server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.sessions[c] = true
		s.nextPID++
		pid := s.nextPID
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c, pid)
			_ = c.Close()
			s.mu.Lock()
			delete(s.sessions, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops the server and the fake S3 and removes their files.
func (s *Server) Close() error {
	s.RefuseConnections()
	s.wg.Wait()
	s.s3srv.Close()
	return errors.Join(s.db.Close(), os.RemoveAll(s.tmp))
}
