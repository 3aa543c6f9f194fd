// Package admin serves offload's admin HTTP endpoint: liveness and
// readiness probes for supervisors and load balancers. It only reports; it
// owns no pipeline state.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Options configures the admin server.
type Options struct {
	// Listen is the host:port to bind, 127.0.0.1 by default in the config.
	Listen string
	// NotReady returns why the appliance is not consuming, or "" when it
	// is; /readyz answers 503 with that reason.
	NotReady func() string
	Logger   *slog.Logger
}

// Server is a running admin endpoint.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Start binds the listener and serves in a goroutine owned by the Server;
// Close stops it.
func Start(opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: cannot listen on %s (admin.listen): %w", opts.Listen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if reason := opts.NotReady(); reason != "" {
			http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	s := &Server{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			opts.Logger.Error("admin: server stopped", "err", err)
		}
	}()
	opts.Logger.Info("admin endpoint listening", "addr", ln.Addr().String())
	return s, nil
}

// Addr returns the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops serving, waiting up to a few seconds for open requests.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
