package appliance

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Run runs the appliance until ctx is done (SIGTERM) or a stage fails,
// then stops the stages in data-flow order within shutdown_grace
// (docs/ARCHITECTURE.md, "Shutdown") and returns the stages' errors. Every
// goroutine it started has returned when it does. Call it once, then
// Close.
func (a *Appliance) Run(ctx context.Context) (err error) {
	if a.ran {
		return errors.New("BUG: appliance: Run called twice")
	}
	a.ran = true
	defer func() {
		err = WALRepairAdvice(err, a.cfg.DataDir)
		a.runErr = err
	}()
	failed := newFailOnce()
	// SIGHUP reloads what can change safely.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := startStage(func(ctx context.Context) error { a.rl.run(ctx, hup); return nil }, failed.fail)
	// The engine and the loader run beside ingest; if one fails, the
	// others stop too.
	engine := startStage(a.eng.Run, failed.fail)
	var loader, dogstatsd, ingest, watchdog *stage
	if a.ld != nil {
		loader = startStage(a.ld.Run, failed.fail)
	}
	if a.dd != nil {
		dogstatsd = startStage(func(ctx context.Context) error { a.dd.Run(ctx, a.cfg.Datadog.Interval.D()); return nil }, failed.fail)
	}

	// Recovered (WAL, engine state, outbox, the engine's first
	// micro-batch, which redoes what a crash rolled back): tell systemd,
	// then keep it told, and consume. Until then systemd's start timeout
	// bounds the start, not the watchdog (docs/OPERATIONS.md).
	select {
	case <-a.eng.Started():
	case <-ctx.Done():
	case <-failed.ch:
	}
	if err := a.notify.Ready(); err != nil {
		a.log.Warn("systemd: READY=1 not sent", "err", err)
	}
	if a.opts.Started != nil {
		addr := ""
		if a.adm != nil {
			addr = a.adm.Addr()
		}
		a.opts.Started(addr)
	}
	watchdog = startStage(func(ctx context.Context) error { a.runWatchdog(ctx); return nil }, failed.fail)
	select {
	case <-failed.ch:
	default:
		if ctx.Err() == nil {
			ingest = startStage(a.in.Run, failed.fail)
		}
	}

	select {
	case <-ctx.Done():
		a.log.Info("stopping", "reason", "signal")
	case <-failed.ch:
		a.log.Info("stopping", "reason", "a stage failed (its error follows)")
	}
	return a.stop(watchdog, ingest, engine, loader, dogstatsd, reload)
}

// stop stops the stages in data-flow order, within shutdown_grace: one
// deadline for all of them, so that the whole shutdown is bounded by it.
func (a *Appliance) stop(watchdog, ingest, engine, loader, dogstatsd, reload *stage) error {
	grace := a.cfg.ShutdownGrace.D()
	a.deadline = time.Now().Add(grace)
	ctx, cancel := context.WithDeadline(context.Background(), a.deadline)
	defer cancel()
	_ = a.notify.Stopping()
	_ = a.notify.Status("stopping: draining in data-flow order")
	late := func(msg string) func() {
		return func() { a.log.Warn(msg, "shutdown_grace", grace) }
	}
	_ = watchdog.stop(ctx, nil, nil)
	// 1. Ingest stops fetching: its in-flight append and offset commit
	//    finish, and it leaves the group.
	errIngest := ingest.stop(ctx, nil, late("ingest: still stopping after shutdown_grace (committing offsets or leaving the group, each bounded); waiting for it"))
	// 2. The engine finishes its in-flight micro-batch; past the grace it
	//    is interrupted, rolled back and redone at the next start.
	errEngine := engine.stop(ctx, a.eng.Interrupt, late("engine: micro-batch still running after shutdown_grace; interrupted (it is rolled back and redone at the next start)"))
	// 3. The loader abandons its in-flight load: the warehouse transaction
	//    does not commit (or the ledger tells, next time) and the batch
	//    stays in the outbox.
	errLoader := loader.stop(ctx, nil, late("loader: load still running after shutdown_grace; waiting for its warehouse call to give up (the batch stays in the outbox)"))
	// 4. What served the others.
	_ = dogstatsd.stop(ctx, nil, nil)
	_ = reload.stop(ctx, nil, nil)
	if a.ld != nil {
		ls := a.ld.Status()
		a.log.Info("loader: stopped", "loaded", ls.Loaded, "already_loaded", ls.AlreadyLoaded, "rows", ls.Rows,
			"bytes_shipped", ls.BytesShipped, "retries", ls.Retries, "parked", ls.Parked)
	}
	es := a.eng.Stats()
	a.log.Info("engine: stopped", "records_in", es.RecordsIn, "accepted", es.Accepted, "rejected", es.Rejected,
		"filtered", es.Filtered, "deduplicated", es.Deduplicated, "late", es.Late+es.TooLate,
		"windows_emitted", es.WindowsEmitted, "outbox_rows_pending", es.OutboxRowsPending,
		"sealed_batches_pending", es.SealedBatchesPending)
	return errors.Join(errIngest, errEngine, errLoader)
}
