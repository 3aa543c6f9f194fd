package sdnotify

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends notify messages to the service manager. The zero value is
// disabled: its methods do nothing and return nil.
type Notifier struct {
	enabled  bool
	interval time.Duration
}

// New reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the
// environment. Without NOTIFY_SOCKET the Notifier is disabled. The watchdog
// is off without WATCHDOG_USEC or when WATCHDOG_PID names another process
// (a wrapper that started offload, say). A malformed WATCHDOG_USEC is an
// error: systemd would kill a service that never pings.
func New() (*Notifier, error) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return &Notifier{}, nil
	}
	timeout, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return nil, fmt.Errorf("sdnotify: cannot read the watchdog settings (WATCHDOG_USEC=%q): %w", os.Getenv("WATCHDOG_USEC"), err)
	}
	// Ping at half the timeout, as sd_watchdog_enabled(3) advises, so one
	// late tick does not cost a restart.
	return &Notifier{enabled: true, interval: timeout / 2}, nil
}

// Enabled reports whether a service manager listens (NOTIFY_SOCKET is set).
func (n *Notifier) Enabled() bool { return n.enabled }

// WatchdogInterval is how often to call Watchdog: half of WATCHDOG_USEC, or
// 0 when systemd runs no watchdog for this process.
func (n *Notifier) WatchdogInterval() time.Duration { return n.interval }

// Ready tells systemd that start-up is complete: the unit becomes active and
// units ordered after it start.
func (n *Notifier) Ready() error { return n.send(daemon.SdNotifyReady) }

// Status sets the one-line status shown by systemctl status. Newlines would
// start new protocol assignments, so they are replaced by spaces.
func (n *Notifier) Status(s string) error {
	return n.send("STATUS=" + strings.ReplaceAll(s, "\n", " "))
}

// Stopping tells systemd that a drain has begun: the unit shows as
// deactivating, and systemd waits up to TimeoutStopSec for the exit.
func (n *Notifier) Stopping() error { return n.send(daemon.SdNotifyStopping) }

// Watchdog is the keep-alive: call it every WatchdogInterval from the loop
// whose progress it vouches for.
func (n *Notifier) Watchdog() error { return n.send(daemon.SdNotifyWatchdog) }

func (n *Notifier) send(state string) error {
	if !n.enabled {
		return nil
	}
	if _, err := daemon.SdNotify(false, state); err != nil {
		name, _, _ := strings.Cut(state, "=")
		return fmt.Errorf("sdnotify: cannot send %s to NOTIFY_SOCKET: %w", name, err)
	}
	return nil
}
