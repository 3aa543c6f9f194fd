package tui

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"
)

// start runs the dashboard against client in a test program at 80×24 and
// waits for the first status to show.
func start(t *testing.T, client *fakeClient) *teatest.TestModel {
	t.Helper()
	m := New(Options{Client: client, Addr: "http://127.0.0.1:7070", Interval: time.Hour,
		Renderer: renderer(termenv.Ascii), Now: func() time.Time { return testNow }})
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(80, 24))
	t.Cleanup(func() { _ = tm.Quit() })
	waitOutput(t, tm, "edge-berlin-3")
	return tm
}

func waitOutput(t *testing.T, tm *teatest.TestModel, want string) {
	t.Helper()
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(want)) },
		teatest.WithDuration(3*time.Second))
}

// waitPosts waits until client received want, in order.
func waitPosts(t *testing.T, client *fakeClient, want ...string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !slices.Equal(client.posted(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("posts = %q, want %q", client.posted(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func finalModel(t *testing.T, tm *teatest.TestModel) Model {
	t.Helper()
	tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")})
	return tm.FinalModel(t, teatest.WithFinalTimeout(3*time.Second)).(Model)
}

func TestRetryParkedBatch(t *testing.T) {
	client := &fakeClient{status: loadStatus(t, "parked"), answer: func(path string) (string, error) {
		return "edge-berlin-3-77aa02 queued for the loader again", nil
	}}
	tm := start(t, client)
	tm.Send(tea.KeyMsg{Type: tea.KeyDown})
	tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("r")})
	waitPosts(t, client, "/api/v1/batches/edge-berlin-3-77aa02/retry")
	waitOutput(t, tm, "queued for the loader again")
	if m := finalModel(t, tm); m.messageBad || !strings.Contains(m.statusLine(), "retry edge-berlin-3-77aa02: edge-berlin-3-77aa02 queued") {
		t.Errorf("status line = %q", m.statusLine())
	}
}

func TestRetryShowsTheError(t *testing.T) {
	client := &fakeClient{status: loadStatus(t, "parked"), answer: func(string) (string, error) {
		return "", errors.New("400 Bad Request: batch is not parked")
	}}
	tm := start(t, client)
	tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("r")})
	waitPosts(t, client, "/api/v1/batches/edge-berlin-3-5f2c01/retry")
	waitOutput(t, tm, "batch is not parked")
	if m := finalModel(t, tm); !m.messageBad {
		t.Error("a failed retry is not shown as an error")
	}
}

func TestPauseTogglesWithTheLoaderState(t *testing.T) {
	client := &fakeClient{status: loadStatus(t, "healthy")}
	client.onPost = func(f *fakeClient, path string) {
		f.status.Loader.State = map[string]string{"/api/v1/loader/pause": "paused", "/api/v1/loader/resume": "idle"}[path]
	}
	tm := start(t, client)
	tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("p")})
	waitPosts(t, client, "/api/v1/loader/pause")
	waitOutput(t, tm, "loader  paused")
	tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("p")})
	waitPosts(t, client, "/api/v1/loader/pause", "/api/v1/loader/resume")
	waitOutput(t, tm, "loader  idle")
	finalModel(t, tm)
}

func TestWarehouseKeyOnlyInDemo(t *testing.T) {
	client := &fakeClient{status: loadStatus(t, "healthy")}
	tm := start(t, client)
	tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("w")})
	if m := finalModel(t, tm); len(client.posted()) != 0 || m.message != "" {
		t.Fatalf("w outside the demo posted %q, said %q", client.posted(), m.message)
	}

	demo := &fakeClient{status: loadStatus(t, "demo")}
	demo.onPost = func(f *fakeClient, path string) { f.status.Demo.WarehouseUp = strings.HasSuffix(path, "/up") }
	tm = start(t, demo)
	tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("w")})
	waitPosts(t, demo, "/api/v1/demo/warehouse/down")
	waitOutput(t, tm, "demo warehouse down")
	tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("w")})
	waitPosts(t, demo, "/api/v1/demo/warehouse/down", "/api/v1/demo/warehouse/up")
	finalModel(t, tm)
}

func TestHelpAndQuit(t *testing.T) {
	tm := start(t, &fakeClient{status: loadStatus(t, "healthy")})
	tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("?")})
	waitOutput(t, tm, "select parked")
	tm.Send(tea.KeyMsg{Type: tea.KeyCtrlC})
	tm.WaitFinished(t, teatest.WithFinalTimeout(3*time.Second))
}

// TestReconnects checks a failed poll keeps the last data, backs off up
// to maxBackoff, and that the next answer clears the error.
func TestReconnects(t *testing.T) {
	m := newTestModel(&fakeClient{}, termenv.Ascii)
	m = feed(m, statusMsg{status: loadStatus(t, "healthy")})
	down := errors.New("connection refused")
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
		m = feed(m, statusMsg{err: down})
		if got := m.nextPoll.Sub(testNow); got != want {
			t.Errorf("after %d failures: next poll in %s, want %s", m.failures, got, want)
		}
	}
	if m.status == nil || !strings.Contains(m.View(), "disconnected — retrying in 5s (connection refused)") {
		t.Fatalf("disconnected view:\n%s", m.View())
	}
	restarted := loadStatus(t, "healthy")
	restarted.UptimeSeconds = 2
	m = feed(m, statusMsg{status: restarted})
	if m.pollErr != nil || m.failures != 0 || strings.Contains(m.View(), "disconnected") {
		t.Errorf("still disconnected after an answer:\n%s", m.View())
	}
}

func TestStalePollIsDropped(t *testing.T) {
	m := newTestModel(&fakeClient{}, termenv.Ascii)
	m = feed(m, statusMsg{status: loadStatus(t, "healthy")})
	if _, cmd := m.Update(pollMsg{seq: m.pollSeq - 1}); cmd != nil {
		t.Error("a replaced poll still fetched")
	}
	if _, cmd := m.Update(pollMsg{seq: m.pollSeq}); cmd == nil {
		t.Error("the scheduled poll did not fetch")
	}
}

func TestFilterKeys(t *testing.T) {
	m := newTestModel(&fakeClient{}, termenv.Ascii)
	m = feed(m, statusMsg{status: loadStatus(t, "healthy")})
	m = feed(m, keys("/", "payq")...)
	if m.filter != "payq" || !m.filtering {
		t.Fatalf("filter = %q (editing %v): q while typing must not quit", m.filter, m.filtering)
	}
	m = feed(m, tea.KeyMsg{Type: tea.KeyBackspace})
	m = feed(m, keys("enter")...)
	if m.filter != "pay" || m.filtering {
		t.Fatalf("filter = %q (editing %v)", m.filter, m.filtering)
	}
	m = feed(m, keys("/", "esc")...)
	if m.filter != "" {
		t.Errorf("esc kept filter %q", m.filter)
	}
}
