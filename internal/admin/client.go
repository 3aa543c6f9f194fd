package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrNoToken is returned for an action when no token was given.
var ErrNoToken = errors.New("actions need the admin token: pass --token or set OFFLOAD_ADMIN_TOKEN")

// RequestTimeout bounds every request, so a hung appliance shows as
// disconnected instead of freezing the dashboard.
const RequestTimeout = 3 * time.Second

// Client reaches a running appliance's admin API: the dashboard
// (offload top), the benchmark and the fault harness read its status and
// metrics and send the operator's actions through it.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client for the admin API at addr (for example
// http://127.0.0.1:7070). The token may be empty: status then goes
// without it (enough on a loopback address) and actions are refused.
func NewClient(addr, token string) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{base: strings.TrimRight(addr, "/"), token: token, http: &http.Client{Timeout: RequestTimeout}}
}

// Status fetches GET /api/v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	resp, err := c.do(ctx, http.MethodGet, "/api/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, answerError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("cannot decode status: %w", err)
	}
	return st, nil
}

// Metrics fetches GET /metrics and returns the values of the unlabelled
// samples named (process_cpu_seconds_total, say); a name the appliance
// does not export is absent from the map.
func (c *Client) Metrics(ctx context.Context, names ...string) (map[string]float64, error) {
	resp, err := c.do(ctx, http.MethodGet, "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, answerError(resp)
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	got := make(map[string]float64, len(names))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !want[name] {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("cannot read metric %s: %w", name, err)
		}
		got[name] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read /metrics: %w", err)
	}
	return got, nil
}

// Post sends an action (a path such as /api/v1/loader/pause) and
// returns the appliance's result message.
func (c *Client) Post(ctx context.Context, path string) (string, error) {
	if c.token == "" {
		return "", ErrNoToken
	}
	resp, err := c.do(ctx, http.MethodPost, path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", answerError(resp)
	}
	var body struct {
		Result string `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("cannot decode the answer to %s: %w", path, err)
	}
	return body.Result, nil
}

func (c *Client) do(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return c.http.Do(req)
}

// answerError turns an error answer ({"error": "..."} or plain text) into
// an error naming the HTTP status.
func answerError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var body struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		msg = body.Error
	}
	return fmt.Errorf("%s: %s", resp.Status, msg)
}
