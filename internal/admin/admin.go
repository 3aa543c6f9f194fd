// Package admin serves offload's admin HTTP endpoint: liveness and
// readiness probes, Prometheus metrics, the status document
// (docs/API.md), Go's profiles (/debug/pprof/, docs/OPERATIONS.md), and
// the operator's actions on the loader. It reports on
// the pipeline and forwards actions to it; it owns no pipeline state.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/offload/offload/loader"
)

// Options configures the admin server.
type Options struct {
	// Listen is the host:port to bind, 127.0.0.1 by default in the config.
	Listen string
	// Token is the bearer token actions require, and every request when
	// Listen is not a loopback address. Empty: actions are refused, and a
	// non-loopback Listen is refused at Start.
	Token string
	// NotReady returns why the appliance is not consuming, or "" when it
	// is; /readyz answers 503 with that reason.
	NotReady func() string
	// Metrics, if set, serves /metrics and /api/v1/status.
	Metrics     *Metrics
	ApplianceID string
	// Loader, if set, takes the actions (pause, resume, retry a parked
	// batch).
	Loader *loader.Loader
	// Demo, set by `offload demo`, lets the dashboard take the embedded
	// warehouse down and bring it back.
	Demo   *DemoHooks
	Logger *slog.Logger
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
	loopback := isLoopback(ln.Addr())
	if !loopback && opts.Token == "" {
		_ = ln.Close()
		return nil, fmt.Errorf("admin: %s is not a loopback address; set admin.token_file (or OFFLOAD_ADMIN_TOKEN) to serve it", opts.Listen)
	}
	h := &handler{opts: opts, started: time.Now(), rates: newStatusRates()}
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
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Metrics.Registry, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /api/v1/status", h.status)
	}
	mux.HandleFunc("POST /api/v1/loader/pause", h.action(h.pause))
	mux.HandleFunc("POST /api/v1/loader/resume", h.action(h.resume))
	mux.HandleFunc("POST /api/v1/batches/{id}/retry", h.action(h.retry))
	if opts.Demo != nil {
		for path, up := range map[string]bool{"/api/v1/demo/warehouse/up": true, "/api/v1/demo/warehouse/down": false} {
			mux.HandleFunc("POST "+path, h.demoAction(up))
		}
	}
	// Go's profiles, on the admin mux rather than http.DefaultServeMux:
	// open on loopback like /metrics, behind the token elsewhere.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	var root http.Handler = mux
	if !loopback {
		root = h.requireToken(mux)
	}
	s := &Server{
		srv:  &http.Server{Handler: root, ReadHeaderTimeout: 5 * time.Second},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			opts.Logger.Error("admin: server stopped", "err", err)
		}
	}()
	opts.Logger.Info("admin endpoint listening", "addr", ln.Addr().String(), "token_required_for", map[bool]string{true: "actions", false: "everything"}[loopback])
	return s, nil
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
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

type handler struct {
	opts    Options
	started time.Time
	rates   *statusRates
}

func (h *handler) status(w http.ResponseWriter, _ *http.Request) {
	st := h.opts.Metrics.status(h.opts.ApplianceID, h.started, h.rates)
	if d := h.opts.Demo; d != nil {
		st.Demo = &DemoStatus{WarehouseUp: d.WarehouseUp()}
	}
	writeJSON(w, http.StatusOK, st)
}

// DemoHooks control the demo's embedded warehouse.
type DemoHooks struct {
	WarehouseUp  func() bool
	SetWarehouse func(up bool) error
}

// DemoStatus is the status document's "demo" part.
type DemoStatus struct {
	WarehouseUp bool `json:"warehouse_up"`
}

func (h *handler) demoAction(up bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.authorized(r) {
			unauthorized(w)
			return
		}
		if err := h.opts.Demo.SetWarehouse(up); err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		msg := map[bool]string{true: "demo: warehouse back up", false: "demo: warehouse taken down"}[up]
		h.opts.Logger.Info(msg)
		writeJSON(w, http.StatusOK, map[string]string{"result": msg})
	}
}

// authorized tells whether r carries the bearer token.
func (h *handler) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && h.opts.Token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(h.opts.Token)) == 1
}

func (h *handler) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.authorized(r) {
			unauthorized(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="offload"`)
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a bearer token is required (admin.token_file)"})
}

// action wraps an operator action: token required; the loader must exist.
func (h *handler) action(do func(r *http.Request) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.authorized(r) {
			unauthorized(w)
			return
		}
		if h.opts.Loader == nil {
			writeJSON(w, http.StatusConflict, map[string]string{"error": "no warehouse is configured (warehouse.type): there is no loader"})
			return
		}
		msg, err := do(r)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		h.opts.Logger.Info("admin: "+msg, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, map[string]string{"result": msg})
	}
}

func (h *handler) pause(*http.Request) (string, error) {
	h.opts.Loader.Pause()
	return "loader paused by the operator", nil
}

func (h *handler) resume(*http.Request) (string, error) {
	h.opts.Loader.Resume()
	return "loader resumed by the operator", nil
}

func (h *handler) retry(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := h.opts.Loader.RetryParked(id); err != nil {
		return "", err
	}
	return "parked batch " + id + " queued again by the operator", nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
