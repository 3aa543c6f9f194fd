// Package sdnotify tells systemd how the appliance is doing, through the
// notify protocol of a Type=notify unit (sd_notify(3)): READY=1 once
// recovered and consuming, STATUS= lines, WATCHDOG=1 keep-alives and
// STOPPING=1 when a drain begins.
//
// The datagrams are sent by github.com/coreos/go-systemd/v22/daemon. The
// package owns no goroutine: the daemon's main loop decides when to ping the
// watchdog, so a hung loop stops the pings and systemd restarts the service.
// Outside systemd (NOTIFY_SOCKET unset) every method is a no-op, so the
// daemon calls them unconditionally.
package sdnotify
