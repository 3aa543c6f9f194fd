package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/internal/ingest"
	"github.com/offload/offload/internal/sdnotify"
	"github.com/offload/offload/loader"
	"github.com/offload/offload/wal"
)

func runDaemon(args []string, stdout, stderr io.Writer) error {
	// Take SIGTERM first, so a stop that arrives during start-up is a clean
	// stop rather than the default abrupt exit.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fs := newFlags("run", stderr)
	path := fs.String("config", "", "configuration file (YAML); OFFLOAD_* variables override it")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{errors.New("--config FILE is required")}
	}
	c, err := loadConfig(*path)
	if err != nil {
		return err
	}
	log, level := newLogger(c.Log, stderr)
	setGoMemoryLimit(log)
	if err := daemon(ctx, c, log, reloader{path: *path, level: level}, daemonExtras{}); err != nil {
		log.Error("offload stopped on an error", "err", err)
		return errFound
	}
	return nil
}

// defaultGoMemoryLimit is the Go heap's soft limit in `offload run` when
// the GOMEMLIMIT variable sets none. Without it the heap grows to twice
// what a micro-batch keeps live before the collector runs, which put the
// drain benchmark's peak RSS ~100 MiB higher at the same CPU
// (docs/PERFORMANCE.md). DuckDB's and Pebble's memory are outside it.
const defaultGoMemoryLimit = 384 << 20

// setGoMemoryLimit applies defaultGoMemoryLimit unless GOMEMLIMIT is set.
func setGoMemoryLimit(log *slog.Logger) {
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		log.Debug("Go memory limit from GOMEMLIMIT", "limit", v)
		return
	}
	debug.SetMemoryLimit(defaultGoMemoryLimit)
}

// daemon runs the appliance until ctx is cancelled (SIGTERM) or a stage
// fails, then shuts down in data-flow order.
// daemonExtras are what `offload demo` adds to the daemon.
type daemonExtras struct {
	demo *admin.DemoHooks
	// started, if set, is called once the pipeline is recovered and
	// consuming, with the admin endpoint's address.
	started func(adminAddr string)
}

func daemon(ctx context.Context, c *config.Config, log *slog.Logger, rl reloader, ext daemonExtras) (err error) {
	log.Info("offload starting", "version", versionString(), "appliance_id", c.ApplianceID, "data_dir", c.DataDir)
	// Damage found in the WAL, at start or by the engine's reads, stops the
	// daemon with the way out.
	defer func() { err = walRepairAdvice(err, c.DataDir) }()
	notify, err := sdnotify.New()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
		return fmt.Errorf("cannot create data_dir: %w", err)
	}
	w, err := openWALChecked(c, log)
	if err != nil {
		return err
	}
	st := w.Stats()
	log.Info("wal recovered", "partitions", len(st), "bytes", w.Bytes())
	quarantined, err := wal.ReadQuarantine(nil, quarantineDir(c.DataDir))
	if err != nil {
		log.Warn("wal: cannot count the quarantined entries", "err", err)
	}
	for _, f := range quarantined.Incomplete {
		log.Warn("wal: quarantine folder without a manifest, not counted: a repair stopped before finishing it; if the WAL was not changed (no wal/ in it) the folder can go, else run `offload wal repair`",
			"dir", f)
	}
	if quarantined.Entries > 0 {
		log.Warn("wal: damaged entries are in quarantine; they are not loaded", "entries", quarantined.Entries,
			"records", quarantined.Records, "dir", quarantineDir(c.DataDir))
	}

	metrics := admin.NewMetrics(versionString())
	eopts, err := engineOptions(c, w, log)
	if err != nil {
		_ = w.Close()
		return err
	}
	eopts.OnBatch = metrics.ObserveBatch
	eng, err := engine.Open(eopts)
	if err != nil {
		_ = w.Close()
		return err
	}
	ld, sink, err := openLoader(c, eng, log, metrics.ObserveLoaded)
	if err != nil {
		_ = eng.Close()
		_ = w.Close()
		return err
	}

	budget := int64(c.DiskBudget)
	in, err := ingest.New(ingest.Options{
		Brokers:  c.Kafka.Brokers,
		Topics:   c.Kafka.Topics,
		Group:    c.Kafka.Group,
		ClientID: c.Kafka.ClientID,
		// A static member: a restart within the session timeout gets its
		// partitions back without a rebalance.
		InstanceID:     c.Kafka.ClientID,
		SessionTimeout: c.Kafka.SessionTimeout.D(),
		TLS:            kafkaTLS(c),
		SASL:           kafkaSASL(c),
		FetchMaxBytes:  int32(c.Kafka.FetchMaxBytes),
		WAL:            w,
		// The budget counts what must be kept: the WAL's live bytes and
		// the outbox rows not shipped yet (raw record bytes). DuckDB's
		// file does not shrink when shipped rows are deleted (it reuses
		// the space), so its size would keep ingest paused for good
		// after one outage.
		OverBudget: func() bool { return w.Bytes()+eng.OutboxBytesPending() >= budget },
		OnDurable:  metrics.ObserveDurable,
		Logger:     log,
	})
	if err != nil {
		_ = eng.Close()
		_ = w.Close()
		return err
	}
	metrics.SetSources(admin.Sources{Ingest: in, WAL: w, Engine: eng, Loader: ld, Budget: budget,
		WALQuarantine: admin.WALQuarantine{Entries: quarantined.Entries, Records: quarantined.Records, Dir: quarantineDir(c.DataDir)}})
	var dogstatsd *stage
	if c.Datadog.StatsdAddr != "" {
		dd, err := admin.NewDogStatsD(c.Datadog.StatsdAddr, metrics.Registry, append([]string{"appliance:" + c.ApplianceID}, c.Datadog.Tags...), log)
		if err != nil {
			in.Close()
			_ = eng.Close()
			_ = w.Close()
			return err
		}
		dogstatsd = startStage(func(ctx context.Context) error { dd.Run(ctx, c.Datadog.Interval.D()); return nil }, func() {})
		log.Info("sending metrics to DogStatsD", "addr", c.Datadog.StatsdAddr, "every", c.Datadog.Interval)
	}

	var adm *admin.Server
	if c.Admin.Listen != "" {
		adm, err = admin.Start(admin.Options{
			Listen:      c.Admin.Listen,
			Token:       c.Admin.Token.Reveal(),
			Metrics:     metrics,
			ApplianceID: c.ApplianceID,
			Loader:      ld,
			Demo:        ext.demo,
			Logger:      log,
			NotReady: func() string {
				if !in.Ready() {
					return "kafka: not consuming (brokers unreachable or no partitions assigned)"
				}
				return ""
			},
		})
		if err != nil {
			in.Close()
			_ = eng.Close()
			_ = w.Close()
			return err
		}
	}

	// SIGHUP reloads what can change safely.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	rl.cur, rl.w, rl.eng, rl.ld, rl.log = c, w, eng, ld, log
	go rl.run(ctx, hup)

	// The engine and the loader run beside ingest; if one fails, ingest
	// stops too and the daemon shuts down.
	ingestCtx, stopIngest := context.WithCancel(ctx)
	defer stopIngest()
	engineStage := startStage(eng.Run, stopIngest)
	var loaderStage *stage
	if ld != nil {
		loaderStage = startStage(ld.Run, stopIngest)
	}

	// Recovered (WAL, engine state, outbox, the engine's first
	// micro-batch, which redoes what a crash rolled back) and consuming:
	// tell systemd, then keep it told. Until then systemd's start timeout
	// bounds the start, not the watchdog (docs/OPERATIONS.md).
	select {
	case <-eng.Started():
	case <-ctx.Done():
	}
	if err := notify.Ready(); err != nil {
		log.Warn("systemd: READY=1 not sent", "err", err)
	}
	if ext.started != nil && adm != nil {
		ext.started(adm.Addr())
	}
	watchdog := startStage(func(ctx context.Context) error {
		runWatchdog(ctx, notify, metrics, eng, in, ld, log)
		return nil
	}, func() {})

	runErr := in.Run(ingestCtx)

	// Shut down in data-flow order.
	log.Info("stopping", "reason", stopReason(ctx, runErr))
	_ = notify.Stopping()
	_ = notify.Status("stopping: draining in data-flow order")
	_ = watchdog.stop(time.Second, "")
	in.Close() // 1. ingest finished its in-flight append and commit; leave the group.
	grace := c.ShutdownGrace.D()
	// 2. The engine finishes its in-flight micro-batch.
	runErr = errors.Join(runErr, engineStage.stop(grace, "engine: micro-batch still running after shutdown_grace; stopping anyway (an unfinished micro-batch is rolled back and redone at start-up)"))
	if loaderStage != nil {
		// 3. The loader abandons its in-flight load: the warehouse
		// transaction does not commit (or the ledger tells, next time)
		// and the batch stays in the outbox.
		runErr = errors.Join(runErr, loaderStage.stop(grace, "loader: load still running after shutdown_grace; stopping anyway (the batch stays in the outbox)"))
		if err := sink.Close(); err != nil {
			log.Warn("loader: closing the warehouse connections failed", "err", err)
		}
		ls := ld.Status()
		log.Info("loader: stopped", "loaded", ls.Loaded, "already_loaded", ls.AlreadyLoaded, "rows", ls.Rows,
			"bytes_shipped", ls.BytesShipped, "retries", ls.Retries, "parked", ls.Parked)
	}
	es := eng.Stats()
	log.Info("engine: stopped", "records_in", es.RecordsIn, "accepted", es.Accepted, "rejected", es.Rejected,
		"filtered", es.Filtered, "deduplicated", es.Deduplicated, "late", es.Late+es.TooLate,
		"windows_emitted", es.WindowsEmitted, "outbox_rows_pending", es.OutboxRowsPending,
		"sealed_batches_pending", es.SealedBatchesPending)
	if dogstatsd != nil {
		_ = dogstatsd.stop(time.Second, "")
	}
	if adm != nil {
		_ = adm.Close() // 4. stop answering probes.
	}
	if err := eng.Close(); err != nil && runErr == nil { // 5. close DuckDB.
		runErr = err
	}
	if err := w.Close(); err != nil { // 6. close the WAL last: everything before it read or wrote it.
		log.Error("wal: close failed", "err", err)
		if runErr == nil {
			runErr = err
		}
	}
	if runErr == nil {
		log.Info("offload stopped cleanly")
	}
	return runErr
}

// openWALChecked opens the WAL and verifies every entry before anything
// reads it: the engine would stop at the first damaged entry anyway, and
// an operator is better told at start, with all the damage at once.
func openWALChecked(c *config.Config, log *slog.Logger) (*wal.WAL, error) {
	fs, err := walFS(log)
	if err != nil {
		return nil, err
	}
	w, err := wal.Open(walDir(c.DataDir), wal.Options{FS: fs, Logger: log, MemTableSize: uint64(c.WAL.MemtableSize)})
	if err != nil {
		return nil, err
	}
	start := time.Now()
	rep, err := w.Verify()
	if err == nil && len(rep.Corruptions) > 0 {
		for _, ce := range rep.Corruptions {
			log.Error("wal: damaged", "at", ce.Error())
		}
		err = fmt.Errorf("%d damaged positions, the first: %w", len(rep.Corruptions), rep.Corruptions[0])
	}
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("wal: verify at start: %w", err)
	}
	log.Info("wal verified", "entries", rep.Entries, "records", rep.Records, "bytes", rep.Bytes, "took", time.Since(start))
	return w, nil
}

// walRepairAdvice tells the operator how to get past damage in the WAL
// that err reports; other errors pass unchanged.
func walRepairAdvice(err error, dataDir string) error {
	if !errors.As(err, new(*wal.CorruptionError)) && !errors.Is(err, wal.ErrRepairInterrupted) {
		return err
	}
	return fmt.Errorf("%w: the WAL is damaged; offload will not start on it: run `offload wal repair --data-dir %s`, which moves the damaged entries to %s (nothing is deleted) and keeps the rest",
		err, dataDir, quarantineDir(dataDir))
}

func stopReason(ctx context.Context, err error) string {
	if err != nil {
		return err.Error()
	}
	if ctx.Err() != nil {
		return "signal"
	}
	return "done"
}

// reloader applies SIGHUP: it reads the configuration file again and
// applies what can change while running, saying what it could not.
type reloader struct {
	path  string
	level *slog.LevelVar
	cur   *config.Config // what is in effect
	w     *wal.WAL
	eng   *engine.Engine
	ld    *loader.Loader // nil without a warehouse
	log   *slog.Logger
}

// reloadable are the options SIGHUP applies; topics.NAME.filters too.
var reloadable = map[string]bool{
	"log.level": true, "engine.rates_file": true, "engine.reference_file": true, "engine.base_currency": true,
	"outbox.seal_rows": true, "outbox.seal_bytes": true, "outbox.seal_age": true,
	"loader.shipping_windows": true, "loader.uplink_rate": true,
}

func (r *reloader) run(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		r.reload()
	}
}

func (r *reloader) reload() {
	if r.path == "" {
		r.log.Warn("SIGHUP: this run has no configuration file to reload")
		return
	}
	next, err := loadConfig(r.path)
	if err != nil {
		r.log.Error("SIGHUP: the configuration does not load; nothing reloaded", "err", err)
		return
	}
	var applied, refused []string
	// The tables' files may have changed without the configuration.
	rates, ref, err := loadTables(next)
	if err != nil {
		r.log.Error("SIGHUP: tables not reloaded; the previous ones stay in use", "err", err)
	} else {
		r.eng.SetTables(rates, ref)
		r.log.Info("SIGHUP: rates and reference tables reloaded; they apply from the next micro-batch",
			"rates", rates.Len(), "reference", ref.Len())
	}
	eff := *r.cur // becomes what is in effect after this reload
	eff.Topics = maps.Clone(r.cur.Topics)
	engineChanged := false
	for _, name := range config.Changed(r.cur, next) {
		topic, isFilters := strings.CutSuffix(strings.TrimPrefix(name, "topics."), ".filters")
		switch {
		case strings.HasPrefix(name, "topics.") && isFilters:
			tc := eff.Topics[topic]
			tc.Filters = next.Topics[topic].Filters
			eff.Topics[topic] = tc
			engineChanged = true
		case !reloadable[name]:
			refused = append(refused, name)
			continue
		case name == "log.level":
			_ = r.level.UnmarshalText([]byte(next.Log.Level))
			eff.Log.Level = next.Log.Level
		case strings.HasPrefix(name, "outbox."):
			eff.Outbox = next.Outbox
			engineChanged = true
		case strings.HasPrefix(name, "engine."):
			eff.Engine.RatesFile, eff.Engine.ReferenceFile, eff.Engine.BaseCurrency = next.Engine.RatesFile, next.Engine.ReferenceFile, next.Engine.BaseCurrency
		case strings.HasPrefix(name, "loader."):
			eff.Loader.ShippingWindows, eff.Loader.UplinkRate = next.Loader.ShippingWindows, next.Loader.UplinkRate
			if r.ld != nil {
				var windows []loader.ShippingWindow
				for _, s := range eff.Loader.ShippingWindows {
					sw, _ := loader.ParseShippingWindow(s) // validated by config
					windows = append(windows, sw)
				}
				r.ld.SetPolicy(windows, int64(eff.Loader.UplinkRate))
			}
		}
		applied = append(applied, name)
	}
	if engineChanged {
		opts, err := engineOptions(&eff, r.w, r.log)
		if err == nil {
			err = r.eng.Reconfigure(opts.Topics, opts.Seal)
		}
		if err != nil {
			r.log.Error("SIGHUP: filter rules and seal policy not reloaded", "err", err)
			return
		}
	}
	r.cur = &eff
	r.log.Info("SIGHUP: configuration reloaded", "applied", applied, "not_reloaded_restart_needed", refused)
}

// stage is a part of the pipeline running in a goroutine with a context
// of its own, so that shutdown can stop the parts one by one.
type stage struct {
	cancel context.CancelFunc
	done   chan error
}

// startStage runs run; if it fails, onFail is called (to stop the rest).
func startStage(run func(context.Context) error, onFail func()) *stage {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stage{cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := run(ctx)
		if err != nil {
			onFail()
		}
		s.done <- err
	}()
	return s
}

// stop cancels the stage and waits up to grace for it to return; past it,
// it gives up with late as the error.
func (s *stage) stop(grace time.Duration, late string) error {
	s.cancel()
	select {
	case err := <-s.done:
		return err
	case <-time.After(grace):
		return errors.New(late)
	}
}

// watchdogStale is how long the engine's loop may go without a round
// before the watchdog stops vouching for the process.
const watchdogStale = 30 * time.Second

// runWatchdog pings systemd's watchdog (every WatchdogInterval, or every
// 10s without one, for the offload_watchdog_timestamp_seconds metric) as
// long as the engine's loop goes round, and keeps STATUS= current, until
// ctx is done.
func runWatchdog(ctx context.Context, notify *sdnotify.Notifier, metrics *admin.Metrics, eng *engine.Engine, in *ingest.Ingest, ld *loader.Loader, log *slog.Logger) {
	every := notify.WatchdogInterval()
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		now := time.Now()
		if alive := eng.Alive(); now.Sub(alive) < watchdogStale {
			metrics.Watchdog(now)
			if err := notify.Watchdog(); err != nil {
				log.Warn("systemd: WATCHDOG=1 not sent", "err", err)
			}
		} else {
			log.Error("watchdog: the engine's loop is stuck; not pinging systemd", "last_round", eng.Alive())
		}
		_ = notify.Status(statusLine(eng, in, ld))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// statusLine is the one line systemctl status shows.
func statusLine(eng *engine.Engine, in *ingest.Ingest, ld *loader.Loader) string {
	es := eng.Stats()
	var backlog int64
	for _, n := range es.CursorLag {
		backlog += n
	}
	state := "consuming"
	switch {
	case !in.Ready():
		state = "not consuming (Kafka unreachable or no partitions)"
	case in.Stats().Paused:
		state = "paused: disk budget used"
	}
	s := fmt.Sprintf("%s; engine backlog %d records; outbox %d rows unshipped in %d sealed batches", state, backlog,
		es.OutboxRowsPending, es.SealedBatchesPending)
	if ld != nil {
		ls := ld.Status()
		s += "; loader " + ls.State
		if ls.Parked > 0 {
			s += fmt.Sprintf(", %d parked", ls.Parked)
		}
	} else {
		s += "; no warehouse"
	}
	return s
}
