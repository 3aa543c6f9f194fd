package tui

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/offload/offload/internal/admin"
)

// fakeClient is an appliance that answers with a set status and records
// the actions posted to it.
type fakeClient struct {
	mu     sync.Mutex
	status admin.Status
	err    error
	posts  []string
	answer func(path string) (string, error) // nil answers "ok"
	onPost func(f *fakeClient, path string)  // changes the status after an action
}

func (f *fakeClient) Status(context.Context) (admin.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return admin.Status{}, f.err
	}
	// A fresh copy, as decoding an answer gives: actions may change
	// f.status while the model holds the last one.
	raw, err := json.Marshal(f.status)
	if err != nil {
		return admin.Status{}, err
	}
	var st admin.Status
	return st, json.Unmarshal(raw, &st)
}

func (f *fakeClient) Post(_ context.Context, path string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.posts = append(f.posts, path)
	if f.onPost != nil {
		f.onPost(f, path)
	}
	if f.answer != nil {
		return f.answer(path)
	}
	return "ok", nil
}

func (f *fakeClient) posted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.posts...)
}

// testNow is the fixed clock of the tests, a few seconds after the
// fixtures' last events.
var testNow = time.Date(2026, 11, 27, 8, 15, 0, 0, time.UTC)

// loadStatus decodes testdata/NAME.json as the HTTP client would.
func loadStatus(t *testing.T, name string) admin.Status {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var st admin.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return st
}

// renderer returns a renderer with a fixed colour profile, so views do
// not depend on the terminal running the tests.
func renderer(p termenv.Profile) *lipgloss.Renderer {
	r := lipgloss.NewRenderer(os.Stdout)
	r.SetColorProfile(p)
	r.SetHasDarkBackground(true)
	return r
}

// newTestModel returns a plain-text model on the fixed clock at 80×24.
func newTestModel(client Client, p termenv.Profile) Model {
	return New(Options{Client: client, Addr: "http://127.0.0.1:7070", Interval: time.Second,
		Renderer: renderer(p), Now: func() time.Time { return testNow }})
}
