package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// tmuxSession drives a program in a detached tmux session of 80×24.
type tmuxSession struct {
	t    *testing.T
	tmux string
	name string
}

func (s *tmuxSession) run(args ...string) string {
	s.t.Helper()
	out, err := exec.Command(s.tmux, args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (s *tmuxSession) screen() string { return s.run("capture-pane", "-p", "-t", s.name) }

// waitFor waits until the screen matches re and returns it.
func (s *tmuxSession) waitFor(re string, timeout time.Duration) string {
	s.t.Helper()
	r := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	var screen string
	for time.Now().Before(deadline) {
		if screen = s.screen(); r.MatchString(screen) {
			return screen
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("the screen never matched %q; it shows:\n%s", re, screen)
	return ""
}

// TestDemoDashboardInTmux runs `offload demo` with its dashboard in an
// 80×24 tmux pane: the numbers on screen change, the warehouse-down key
// makes the loader retry and the outage runway finite, bringing it back
// lets the loader go on, and quitting prints the summary on a clean
// terminal (the dashboard's alternate screen is gone).
func TestDemoDashboardInTmux(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tmux is missing (scripts/setup.sh installs it)")
		}
		t.Skip("tmux is not installed")
	}
	s := &tmuxSession{t: t, tmux: tmux, name: "offload-demo-test-" + strings.ReplaceAll(time.Now().Format("150405.000"), ".", "")}
	cmd := offloadBin + " demo --rate 300 --dir " + t.TempDir() + "; echo DEMO-EXIT=$?; sleep 60"
	s.run("new-session", "-d", "-s", s.name, "-x", "80", "-y", "24", "env", "TERM=xterm-256color", "sh", "-c", cmd)
	t.Cleanup(func() { _ = exec.Command(tmux, "kill-session", "-t", s.name).Run() })

	first := s.waitFor(`offload top · demo .* ok`, 60*time.Second)
	s.waitFor(`loader\s+\S+ · circuit closed · [1-9]`, 30*time.Second)
	time.Sleep(3 * time.Second)
	if second := s.screen(); second == first {
		t.Fatalf("the screen did not change in 3s:\n%s", second)
	}

	s.run("send-keys", "-t", s.name, "w")
	s.waitFor(`warehouse down`, 15*time.Second)
	s.waitFor(`loader\s+(retrying|open)`, 30*time.Second)
	// The header says so, and keeps saying it while the loader's next
	// attempts run (state loading), instead of flickering back to ok.
	s.waitFor(`offload top · demo .* warehouse_unavailable`, 30*time.Second)
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if screen := s.screen(); !strings.Contains(strings.SplitN(screen, "\n", 2)[0], "warehouse_unavailable") {
			t.Fatalf("the header left warehouse_unavailable with the warehouse down:\n%s", screen)
		}
	}
	// A finite runway with the warehouse down; waitFor fails with the screen.
	s.waitFor(`runway [0-9]`, 30*time.Second)
	s.run("send-keys", "-t", s.name, "w")
	s.waitFor(`warehouse up`, 15*time.Second)

	s.run("send-keys", "-t", s.name, "q")
	end := s.waitFor(`DEMO-EXIT=\d+`, 120*time.Second)
	if !strings.Contains(end, "DEMO-EXIT=0") || !strings.Contains(end, "exactly once         yes") {
		t.Fatalf("after quitting:\n%s", end)
	}
	if strings.Contains(end, "offload top ·") {
		t.Fatalf("the dashboard was left on the terminal:\n%s", end)
	}
}
