package appliance

import (
	"context"
	"fmt"
	"time"
)

// watchdogStale is how long the engine's loop may go without a round
// before the watchdog stops vouching for the process.
const watchdogStale = 30 * time.Second

// runWatchdog pings systemd's watchdog (every WatchdogInterval, or every
// 10s without one, for the offload_watchdog_timestamp_seconds metric) as
// long as the engine's loop goes round, and keeps STATUS= current, until
// ctx is done.
func (a *Appliance) runWatchdog(ctx context.Context) {
	every := a.notify.WatchdogInterval()
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		now := time.Now()
		if alive := a.eng.Alive(); now.Sub(alive) < watchdogStale {
			a.metrics.Watchdog(now)
			if err := a.notify.Watchdog(); err != nil {
				a.log.Warn("systemd: WATCHDOG=1 not sent", "err", err)
			}
		} else {
			a.log.Error("watchdog: the engine's loop is stuck; not pinging systemd", "last_round", a.eng.Alive())
		}
		_ = a.notify.Status(a.statusLine())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// statusLine is the one line systemctl status shows.
func (a *Appliance) statusLine() string {
	es := a.eng.Stats()
	var backlog int64
	for _, n := range es.CursorLag {
		backlog += n
	}
	state := "consuming"
	switch {
	case !a.in.Ready():
		state = "not consuming (Kafka unreachable or no partitions)"
	case a.in.Stats().Paused:
		state = "paused: disk budget used"
	}
	s := fmt.Sprintf("%s; engine backlog %d records; outbox %d rows unshipped in %d sealed batches", state, backlog,
		es.OutboxRowsPending, es.SealedBatchesPending)
	if a.ld != nil {
		ls := a.ld.Status()
		s += "; loader " + ls.State
		if ls.Parked > 0 {
			s += fmt.Sprintf(", %d parked", ls.Parked)
		}
	} else {
		s += "; no warehouse"
	}
	return s
}
