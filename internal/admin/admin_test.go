package admin

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func request(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestTokenRules: on loopback, probes are open and actions need the token;
// on any other address everything needs it, and without a token such an
// address is refused at start.
func TestTokenRules(t *testing.T) {
	const token = "t0ken-for-admin-tests"
	ready := func() string { return "" }
	s, err := Start(Options{Listen: "127.0.0.1:0", Token: token, NotReady: ready, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.Addr()
	for _, c := range []struct {
		method, path, token string
		code                int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"POST", "/api/v1/loader/pause", "", 401},
		{"POST", "/api/v1/loader/pause", "wrong-token-wrong-token", 401},
		{"POST", "/api/v1/loader/resume", "", 401},
		{"POST", "/api/v1/batches/x/retry", "", 401},
		// With the token: no warehouse here, so no loader to act on.
		{"POST", "/api/v1/loader/pause", token, 409},
		// Profiles are open on loopback, like /metrics.
		{"GET", "/debug/pprof/", "", 200},
		{"GET", "/debug/pprof/heap?debug=1", "", 200},
		{"GET", "/debug/pprof/goroutine?debug=1", "", 200},
		{"GET", "/debug/pprof/profile?seconds=1", "", 200},
		{"GET", "/debug/pprof/cmdline", "", 200},
	} {
		if code, body := request(t, c.method, base+c.path, c.token); code != c.code {
			t.Errorf("%s %s (token %q): %d %s, want %d", c.method, c.path, c.token, code, body, c.code)
		}
	}

	if _, err := Start(Options{Listen: "0.0.0.0:0", NotReady: ready, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "admin.token_file") {
		t.Fatalf("a non-loopback address without a token: %v", err)
	}
	// Bound to every address, reached here through 127.0.0.1 only.
	pub, err := Start(Options{Listen: "0.0.0.0:0", Token: token, NotReady: ready, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	port := pub.Addr()[strings.LastIndex(pub.Addr(), ":"):]
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/api/v1/status", "/debug/pprof/", "/debug/pprof/heap",
		"/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1", "/debug/pprof/symbol"} {
		if code, _ := request(t, "GET", "http://127.0.0.1"+port+path, ""); code != 401 {
			t.Errorf("GET %s without a token on a public address: %d, want 401", path, code)
		}
	}
	if code, body := request(t, "GET", "http://127.0.0.1"+port+"/healthz", token); code != 200 {
		t.Errorf("GET /healthz with the token: %d %s", code, body)
	}
	// With the token, a heap profile in pprof's format (gzipped protobuf).
	if code, body := request(t, "GET", "http://127.0.0.1"+port+"/debug/pprof/heap", token); code != 200 || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Errorf("GET /debug/pprof/heap with the token: %d, %d bytes, want 200 and a gzipped profile", code, len(body))
	}
}
