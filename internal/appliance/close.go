package appliance

import (
	"context"
	"time"
)

// Close closes what Open opened, newest first: the admin API (probes are
// answered until then), the Kafka client, the warehouse connections,
// DuckDB, and the WAL last, since everything before it read or wrote it.
// Call it after Run has returned, or instead of Run. The Kafka client's
// close is bounded by what is left of Run's shutdown_grace (a grace of
// its own without Run). Closing twice does nothing.
func (a *Appliance) Close() error {
	deadline := a.deadline
	if deadline.IsZero() {
		deadline = time.Now().Add(a.cfg.ShutdownGrace.D())
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if len(a.closers) == 0 {
		return nil
	}
	err := a.unwind(ctx)
	if err != nil {
		a.log.Error("offload: closing failed", "err", err)
	} else if a.runErr == nil {
		a.log.Info("offload stopped cleanly")
	}
	return err
}
