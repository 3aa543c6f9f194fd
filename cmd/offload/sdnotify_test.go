package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offload/offload/internal/sdnotify/sdnotifytest"
)

// TestSystemdNotify runs the daemon under a NOTIFY_SOCKET listener with a
// watchdog: READY=1 comes only once the WAL and the engine have recovered,
// WATCHDOG=1 pings follow at half the watchdog interval, STATUS= lines
// describe the state, and SIGTERM brings STOPPING=1. The start (up to the
// engine's first micro-batch) is never logged as a stuck loop.
func TestSystemdNotify(t *testing.T) {
	l := sdnotifytest.Listen(t)
	brokers, _ := kfakeTopic(t, "shop", 1)
	d := startDaemon(t, testConfig(t, t.TempDir(), brokers, "shop"), "NOTIFY_SOCKET="+l.Socket(), "WATCHDOG_USEC=1000000")
	first, err := l.Next(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if first != "READY=1" {
		t.Fatalf("first message %q, want READY=1", first)
	}
	for _, recovered := range []string{"wal recovered", "engine: opened"} {
		if !strings.Contains(d.logs.String(), recovered) {
			t.Fatalf("READY=1 before %q", recovered)
		}
	}
	pings, status := 0, ""
	deadline := time.Now().Add(10 * time.Second)
	for (pings < 3 || status == "") && time.Now().Before(deadline) {
		m, err := l.Next(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case m == "WATCHDOG=1":
			pings++
		case strings.HasPrefix(m, "STATUS="):
			status = m
		}
	}
	if pings < 3 || !strings.Contains(status, "engine backlog") || !strings.Contains(status, "no warehouse") {
		t.Fatalf("%d watchdog pings, status %q", pings, status)
	}
	// A start is not a stuck loop: READY=1 waits for the engine's first
	// micro-batch, and the watchdog vouches from its first tick on.
	if logs := d.logs.String(); strings.Contains(logs, "loop is stuck") {
		t.Fatalf("the watchdog called the start a stuck loop:\n%s", logs)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		m, err := l.Next(5 * time.Second)
		if err != nil {
			t.Fatalf("no STOPPING=1 after SIGTERM: %v (messages %v)", err, l.Messages())
		}
		if m == "STOPPING=1" {
			break
		}
	}
	if code := d.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
