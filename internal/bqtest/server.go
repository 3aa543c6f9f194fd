// Package bqtest puts a BigQuery emulator (github.com/goccy/bigquery-emulator)
// on 127.0.0.1 as a BigQuery stand-in: the loader's tests and `offload
// demo --warehouse bigquery` talk to it through the real Go client
// (cloud.google.com/go/bigquery) with the endpoint overridden and no
// authentication. A TCP relay in front of the emulator can refuse
// connections for a while (a warehouse outage). What the emulator does
// not model, and how the loader lives with it, is in docs/LOADER.md
// ("BigQuery emulator gaps"); it must never be taken for BigQuery itself.
//
// The emulator runs where Options.Launch says: in the test's own process
// (internal/bqemu.Start), or as the program offload-bigquery-emulator
// (Program), which is how the offload binary runs it without linking it.
//
// The relay does not see everything: a resumable upload (the client
// library's choice for a load job's file above 16 MiB) continues at the
// URL the emulator hands out, which names the emulator's own port, so
// RefuseConnections does not refuse it.
package bqtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Launch starts the emulator with its one project, its data in the SQLite
// file path (a temporary one when empty), its REST API on httpAddr and
// its gRPC API on grpcAddr, and returns once it listens; stop stops it.
type Launch func(project, path, httpAddr, grpcAddr string) (stop func() error, err error)

// Options configures a Server.
type Options struct {
	// Launch starts the emulator (required).
	Launch Launch
	// Project is the emulator's one project ["offload-test"].
	Project string
	// Path is the SQLite file the emulator keeps its data in; empty: a
	// temporary file removed by Close.
	Path string
}

// Server is a running emulator behind a relay that can refuse
// connections.
type Server struct {
	project string
	stopEmu func() error
	emuAddr string

	mu      sync.Mutex
	ln      net.Listener // nil while refusing
	port    int
	conns   map[net.Conn]bool
	relayWG sync.WaitGroup
	closed  bool
}

// Start starts the emulator and its relay.
func Start(o Options) (*Server, error) {
	if o.Launch == nil {
		return nil, errors.New("bqtest: Options.Launch is required")
	}
	if o.Project == "" {
		o.Project = "offload-test"
	}
	// The emulator names its own address in the upload URLs it hands out
	// (resumable uploads), so it must listen on a known port: take a free
	// one, then let the emulator listen on it.
	emuAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	stop, err := o.Launch(o.Project, o.Path, emuAddr, grpcAddr)
	if err != nil {
		return nil, fmt.Errorf("bqtest: %w", err)
	}
	s := &Server{project: o.Project, stopEmu: stop, emuAddr: emuAddr, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = stop()
		return nil, fmt.Errorf("bqtest: cannot listen: %w", err)
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	s.relay(ln)
	return s, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bqtest: cannot find a free port: %w", err)
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// Project is the emulator's project id.
func (s *Server) Project() string { return s.project }

// Endpoint is the URL clients use (option.WithEndpoint): the relay's.
func (s *Server) Endpoint() string { return fmt.Sprintf("http://127.0.0.1:%d", s.port) }

// DirectEndpoint is the emulator's own URL, past the relay, which
// RefuseConnections does not refuse: for a check that reads the tables
// during an outage, as the SQL test servers' checks read their database
// directly.
func (s *Server) DirectEndpoint() string { return "http://" + s.emuAddr }

// relay accepts connections on ln and pipes each to the emulator until
// ln closes.
func (s *Server) relay(ln net.Listener) {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.relayWG.Add(1)
	go func() {
		defer s.relayWG.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", s.emuAddr)
			if err != nil {
				_ = c.Close()
				continue
			}
			s.mu.Lock()
			s.conns[c], s.conns[up] = true, true
			s.mu.Unlock()
			s.relayWG.Add(2)
			go s.pipe(up, c)
			go s.pipe(c, up)
		}
	}()
}

// pipe copies from src to dst, then closes both.
func (s *Server) pipe(dst, src net.Conn) {
	defer s.relayWG.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	s.mu.Lock()
	delete(s.conns, dst)
	delete(s.conns, src)
	s.mu.Unlock()
}

// RefuseConnections closes the relay's listener and its open connections:
// clients get "connection refused" until AcceptConnections.
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
	}
	s.relayWG.Wait()
}

// AcceptConnections listens again on the relay's port.
func (s *Server) AcceptConnections() error {
	s.mu.Lock()
	listening, closed := s.ln != nil, s.closed
	s.mu.Unlock()
	if listening || closed {
		return nil
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
	if err != nil {
		return fmt.Errorf("bqtest: cannot listen again on port %d: %w", s.port, err)
	}
	s.relay(ln)
	return nil
}

// Close stops the relay, then the emulator, and removes its temporary
// data.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.RefuseConnections()
	if err := s.stopEmu(); err != nil {
		return fmt.Errorf("bqtest: %w", err)
	}
	return nil
}
