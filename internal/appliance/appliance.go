package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/internal/ingest"
	"github.com/offload/offload/internal/sdnotify"
	"github.com/offload/offload/loader"
	"github.com/offload/offload/wal"
)

// Options are what the command that starts the appliance adds to its
// configuration. The zero value is valid.
type Options struct {
	// Version is the build's version, for the log and the metrics.
	Version string
	// ConfigPath is the configuration file SIGHUP reloads; empty: SIGHUP
	// only says there is nothing to reload.
	ConfigPath string
	// LogLevel, if set, is the level of log that SIGHUP changes when
	// log.level changes.
	LogLevel *slog.LevelVar
	// WALFS is the WAL's file system; nil means the operating system's.
	WALFS vfs.FS
	// Demo adds `offload demo`'s warehouse switch to the admin API.
	Demo *admin.DemoHooks
	// Started, if set, is called once the appliance is recovered and
	// consuming (when it tells systemd READY=1), with the admin API's
	// address ("" without one).
	Started func(adminAddr string)
	// EngineTestHook is for tests only: engine.Options.TestHook.
	EngineTestHook func(ctx context.Context, point string) error
}

// Appliance is one offload appliance: its stages and what runs them.
// Open it, Run it, Close it.
type Appliance struct {
	cfg  *config.Config
	log  *slog.Logger
	opts Options

	notify  *sdnotify.Notifier
	metrics *admin.Metrics
	wal     *wal.WAL
	eng     *engine.Engine
	ld      *loader.Loader // nil without a warehouse
	sink    loader.Sink    // nil without a warehouse
	in      *ingest.Ingest
	dd      *admin.DogStatsD // nil without datadog.statsd_addr
	adm     *admin.Server    // nil without admin.listen
	rl      *reloader

	// closers undo Open, newest last; Close runs them in reverse.
	closers []closer
	ran     bool // Run was called: it may be called once
	// deadline is when the shutdown Run began must be over; zero until
	// then. Close bounds its closers by it.
	deadline time.Time
	runErr   error // what Run returned
}

// closer undoes one step of Open; name says which in errors.
type closer struct {
	name  string
	close func(ctx context.Context) error
}

// push records how to undo the step Open just took.
func (a *Appliance) push(name string, close func(ctx context.Context) error) {
	a.closers = append(a.closers, closer{name: name, close: close})
}

// Open opens the appliance's stages in data-flow order: the WAL (verified
// entry by entry), the engine (its state recovered from DuckDB), the
// loader and its warehouse sink, the Kafka ingest, DogStatsD and the admin
// API. Nothing runs yet but the admin API, which answers /readyz with not
// ready until Run has the engine's first micro-batch behind it. If a step
// fails, what was opened is closed again, newest first, and the error says
// what to do (WALRepairAdvice for damage in the WAL). ctx and
// shutdown_grace bound that unwinding, not the opening.
func Open(ctx context.Context, c *config.Config, log *slog.Logger, opts Options) (_ *Appliance, err error) {
	if opts.WALFS == nil {
		opts.WALFS = vfs.Default
	}
	a := &Appliance{cfg: c, log: log, opts: opts}
	log.Info("offload starting", "version", opts.Version, "appliance_id", c.ApplianceID, "data_dir", c.DataDir, "delivery", c.Kafka.Delivery)
	defer func() {
		if err != nil {
			uctx, cancel := context.WithTimeout(ctx, c.ShutdownGrace.D())
			defer cancel()
			if cerr := a.unwind(uctx); cerr != nil {
				log.Error("cannot close what a failed start opened", "err", cerr)
			}
			err = WALRepairAdvice(err, c.DataDir)
		}
	}()
	if a.notify, err = sdnotify.New(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("cannot create data_dir %s: %w (check its parent's permissions)", c.DataDir, err)
	}
	// In data-flow order; each step pushes its closer.
	for _, open := range []func() error{a.openWAL, a.openEngine, a.openLoader, a.openIngest, a.openDogStatsD, a.openAdmin} {
		if err := open(); err != nil {
			return nil, err
		}
	}
	a.rl = &reloader{path: opts.ConfigPath, level: opts.LogLevel, cur: c, w: a.wal, eng: a.eng, ld: a.ld, log: log}
	return a, nil
}

// openWAL opens and verifies the WAL and counts its quarantine.
func (a *Appliance) openWAL() error {
	w, err := openWALChecked(a.cfg, a.opts.WALFS, a.log)
	if err != nil {
		return err
	}
	a.wal = w
	// The WAL closes last: everything before it reads or writes it.
	a.push("wal", func(context.Context) error { return w.Close() })
	a.log.Info("wal recovered", "partitions", len(w.Stats()), "bytes", w.Bytes())
	a.metrics = admin.NewMetrics(a.opts.Version)
	return nil
}

// openEngine opens the engine on the WAL.
func (a *Appliance) openEngine() error {
	eopts, err := EngineOptions(a.cfg, a.wal, a.log)
	if err != nil {
		return err
	}
	eopts.OnBatch = a.metrics.ObserveBatch
	eopts.TestHook = a.opts.EngineTestHook
	eng, err := engine.Open(eopts)
	if err != nil {
		return err
	}
	a.eng = eng
	// Run has joined the engine's loop by the time this runs, so Close
	// does not wait for a micro-batch.
	a.push("engine", func(context.Context) error { return eng.Close() })
	return nil
}

// openLoader builds the warehouse sink and the loader over the engine's
// outbox, if a warehouse is configured.
func (a *Appliance) openLoader() error {
	ld, sink, err := newLoader(a.cfg, a.eng, a.log, a.metrics.ObserveLoaded)
	if err != nil || ld == nil {
		return err
	}
	a.ld, a.sink = ld, sink
	a.push("warehouse connections", func(context.Context) error { return sink.Close() })
	return nil
}

// openIngest creates the Kafka consumer that appends to the WAL.
func (a *Appliance) openIngest() error {
	c, w, eng := a.cfg, a.wal, a.eng
	budget := int64(c.DiskBudget)
	var loaded func() wal.Cursor
	if c.Kafka.Delivery == config.DeliveryEndToEnd {
		// Offsets are committed once their load has committed; the
		// WAL keeps the entries until then (engine.Options.KeepUntilLoaded).
		loaded = eng.Loaded
	}
	in, err := ingest.New(ingest.Options{
		Brokers:  c.Kafka.Brokers,
		Topics:   c.Kafka.Topics,
		Group:    c.Kafka.Group,
		ClientID: c.Kafka.ClientID,
		// A static member: a restart within the session timeout gets its
		// partitions back without a rebalance.
		InstanceID:     c.Kafka.ClientID,
		SessionTimeout: c.Kafka.SessionTimeout.D(),
		TLS:            KafkaTLS(c),
		SASL:           KafkaSASL(c),
		FetchMaxBytes:  int32(c.Kafka.FetchMaxBytes),
		WAL:            w,
		// The budget counts what must be kept: the WAL's live bytes (in
		// end-to-end delivery, up to the last load) and the outbox rows
		// not shipped yet (raw record bytes). DuckDB's
		// file does not shrink when shipped rows are deleted (it reuses
		// the space), so its size would keep ingest paused for good
		// after one outage.
		OverBudget: func() bool { return w.Bytes()+eng.OutboxBytesPending() >= budget },
		OnDurable:  a.metrics.ObserveDurable,
		Loaded:     loaded,
		// Its stop is part of the shutdown: one grace for all stages.
		StopTimeout: c.ShutdownGrace.D(),
		Logger:      a.log,
	})
	if err != nil {
		return err
	}
	a.in = in
	a.push("kafka client", func(ctx context.Context) error { in.Close(ctx); return nil })
	return nil
}

// openDogStatsD prepares the DogStatsD sender if datadog.statsd_addr is
// set; Run runs it.
func (a *Appliance) openDogStatsD() error {
	c := a.cfg
	if c.Datadog.StatsdAddr == "" {
		return nil
	}
	dd, err := admin.NewDogStatsD(c.Datadog.StatsdAddr, a.metrics.Registry, append([]string{"appliance:" + c.ApplianceID}, c.Datadog.Tags...), a.log)
	if err != nil {
		return err
	}
	a.dd = dd
	a.log.Info("sending metrics to DogStatsD", "addr", c.Datadog.StatsdAddr, "every", c.Datadog.Interval)
	return nil
}

// openAdmin hands the stages to the metrics and starts the admin API if
// admin.listen is set.
func (a *Appliance) openAdmin() error {
	c := a.cfg
	a.metrics.SetSources(admin.Sources{Ingest: a.in, WAL: a.wal, Engine: a.eng, Loader: a.ld, Budget: int64(c.DiskBudget), Delivery: c.Kafka.Delivery,
		WALQuarantine: readQuarantine(c.DataDir, a.log)})
	if c.Admin.Listen == "" {
		return nil
	}
	in := a.in
	adm, err := admin.Start(admin.Options{
		Listen:      c.Admin.Listen,
		Token:       c.Admin.Token.Reveal(),
		Metrics:     a.metrics,
		ApplianceID: c.ApplianceID,
		Loader:      a.ld,
		Demo:        a.opts.Demo,
		Logger:      a.log,
		NotReady: func() string {
			if !in.Ready() {
				return "kafka: not consuming (brokers unreachable or no partitions assigned)"
			}
			return ""
		},
	})
	if err != nil {
		return err
	}
	a.adm = adm
	// Probes are answered until everything else has stopped.
	a.push("admin API", func(context.Context) error { return adm.Close() })
	return nil
}

// unwind runs the closers newest first and forgets them.
func (a *Appliance) unwind(ctx context.Context) error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		c := a.closers[i]
		if err := c.close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("cannot close the %s: %w", c.name, err))
		}
	}
	a.closers = nil
	return errors.Join(errs...)
}
