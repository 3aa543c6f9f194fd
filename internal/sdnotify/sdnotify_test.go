package sdnotify_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/offload/offload/internal/sdnotify"
	"github.com/offload/offload/internal/sdnotify/sdnotifytest"
)

// notifier returns a Notifier made from the given environment (NOTIFY_SOCKET
// and the watchdog variables; "" unsets one).
func notifier(t *testing.T, socket, usec, pid string) *sdnotify.Notifier {
	t.Helper()
	for k, v := range map[string]string{"NOTIFY_SOCKET": socket, "WATCHDOG_USEC": usec, "WATCHDOG_PID": pid} {
		t.Setenv(k, v) // restored when the test ends
		if v == "" {
			os.Unsetenv(k)
		}
	}
	n, err := sdnotify.New()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMessages(t *testing.T) {
	l := sdnotifytest.Listen(t)
	n := notifier(t, l.Socket(), "", "")
	if !n.Enabled() {
		t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
	}
	steps := []struct {
		send func() error
		want string
	}{
		{func() error { return n.Status("recovering the WAL") }, "STATUS=recovering the WAL"},
		{n.Ready, "READY=1"},
		{func() error { return n.Status("backlog 12 batches\n3 parked") }, "STATUS=backlog 12 batches 3 parked"},
		{n.Watchdog, "WATCHDOG=1"},
		{n.Stopping, "STOPPING=1"},
	}
	for _, s := range steps {
		if err := s.send(); err != nil {
			t.Fatal(err)
		}
		got, err := l.Next(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got != s.want {
			t.Fatalf("received %q, want %q", got, s.want)
		}
	}
	if got := len(l.Messages()); got != len(steps) {
		t.Fatalf("Messages() holds %d datagrams, want %d: %q", got, len(steps), l.Messages())
	}
}

func TestWatchdogInterval(t *testing.T) {
	l := sdnotifytest.Listen(t)
	ours := strconv.Itoa(os.Getpid())
	for _, c := range []struct {
		name, usec, pid string
		want            time.Duration
	}{
		{"off", "", "", 0},
		{"half of WATCHDOG_USEC", "2000000", "", time.Second},
		{"for our pid", "2000000", ours, time.Second},
		{"for another pid", "2000000", strconv.Itoa(os.Getpid() + 1), 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := notifier(t, l.Socket(), c.usec, c.pid).WatchdogInterval(); got != c.want {
				t.Fatalf("WatchdogInterval() = %s, want %s", got, c.want)
			}
		})
	}
	t.Run("malformed", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", l.Socket())
		t.Setenv("WATCHDOG_USEC", "30s")
		if _, err := sdnotify.New(); err == nil {
			t.Fatal("New() accepted WATCHDOG_USEC=30s")
		}
	})
}

func TestDisabledIsNoOp(t *testing.T) {
	for name, n := range map[string]*sdnotify.Notifier{
		"no NOTIFY_SOCKET": notifier(t, "", "2000000", ""),
		"zero value":       {},
	} {
		if n.Enabled() || n.WatchdogInterval() != 0 {
			t.Errorf("%s: Enabled() = %v, WatchdogInterval() = %s; want false, 0", name, n.Enabled(), n.WatchdogInterval())
		}
		for _, send := range []func() error{n.Ready, n.Watchdog, n.Stopping, func() error { return n.Status("x") }} {
			if err := send(); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

func TestNoListener(t *testing.T) {
	n := notifier(t, filepath.Join(t.TempDir(), "gone.sock"), "", "")
	if err := n.Ready(); err == nil {
		t.Fatal("Ready() succeeded with nobody listening on NOTIFY_SOCKET")
	} else {
		t.Log(err)
	}
}
