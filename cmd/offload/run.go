package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/internal/ingest"
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
	log := newLogger(c.Log, stderr)
	if err := daemon(ctx, c, log); err != nil {
		log.Error("offload stopped on an error", "err", err)
		return errFound
	}
	return nil
}

// daemon runs the appliance until ctx is cancelled (SIGTERM) or a stage
// fails, then shuts down in data-flow order.
func daemon(ctx context.Context, c *config.Config, log *slog.Logger) error {
	log.Info("offload starting", "version", versionString(), "appliance_id", c.ApplianceID, "data_dir", c.DataDir)
	if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
		return fmt.Errorf("cannot create data_dir: %w", err)
	}
	w, err := wal.Open(walDir(c.DataDir), wal.Options{Logger: log, MemTableSize: uint64(c.WAL.MemtableSize)})
	if err != nil {
		return err
	}
	st := w.Stats()
	log.Info("wal recovered", "partitions", len(st), "bytes", w.Bytes())

	eng, err := openEngine(c, w, log)
	if err != nil {
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
		TLS: ingest.TLSOptions{
			Enabled: c.Kafka.TLS.Enabled, CAFile: c.Kafka.TLS.CAFile, CertFile: c.Kafka.TLS.CertFile,
			KeyFile: c.Kafka.TLS.KeyFile, ServerName: c.Kafka.TLS.ServerName, InsecureSkipVerify: c.Kafka.TLS.InsecureSkipVerify,
		},
		SASL: ingest.SASLOptions{
			Mechanism: c.Kafka.SASL.Mechanism, Username: c.Kafka.SASL.Username, Password: c.Kafka.SASL.Password.Reveal(),
		},
		FetchMaxBytes: int32(c.Kafka.FetchMaxBytes),
		WAL:           w,
		// The budget counts the WAL's live bytes and the engine's DuckDB
		// file, which holds the outbox and the dead-letter table.
		OverBudget: func() bool { return w.Bytes()+eng.DiskBytes() >= budget },
		Logger:     log,
	})
	if err != nil {
		_ = eng.Close()
		_ = w.Close()
		return err
	}

	var adm *admin.Server
	if c.Admin.Listen != "" {
		adm, err = admin.Start(admin.Options{
			Listen: c.Admin.Listen,
			Logger: log,
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

	// SIGHUP reloads the rates and reference tables from their files.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadTablesOnHUP(ctx, hup, c, eng, log)

	// The engine runs beside ingest; if it fails, ingest stops too.
	ingestCtx, stopIngest := context.WithCancel(ctx)
	defer stopIngest()
	engineCtx, stopEngine := context.WithCancel(context.Background())
	defer stopEngine()
	engineDone := make(chan error, 1)
	go func() {
		err := eng.Run(engineCtx)
		if err != nil {
			stopIngest()
		}
		engineDone <- err
	}()

	runErr := in.Run(ingestCtx)

	// Shut down in data-flow order.
	log.Info("stopping", "reason", stopReason(ctx, runErr))
	in.Close() // 1. ingest finished its in-flight append and commit; leave the group.
	stopEngine()
	var engineErr error
	select { // 2. the engine finishes its in-flight micro-batch.
	case engineErr = <-engineDone:
	case <-time.After(c.ShutdownGrace.D()):
		engineErr = fmt.Errorf("engine: micro-batch still running after shutdown_grace %s; stopping anyway (an unfinished micro-batch is rolled back and redone at start-up)", c.ShutdownGrace)
	}
	if runErr == nil {
		runErr = engineErr
	}
	es := eng.Stats()
	log.Info("engine: stopped", "records_in", es.RecordsIn, "accepted", es.Accepted, "rejected", es.Rejected,
		"filtered", es.Filtered, "deduplicated", es.Deduplicated, "late", es.Late+es.TooLate,
		"windows_emitted", es.WindowsEmitted, "outbox_rows_pending", es.OutboxRowsPending,
		"sealed_batches_pending", es.SealedBatchesPending)
	if adm != nil {
		_ = adm.Close() // 3. stop answering probes.
	}
	if err := eng.Close(); err != nil && runErr == nil { // 4. close DuckDB.
		runErr = err
	}
	if err := w.Close(); err != nil { // 5. close the WAL last: everything before it read or wrote it.
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

func stopReason(ctx context.Context, err error) string {
	if err != nil {
		return err.Error()
	}
	if ctx.Err() != nil {
		return "signal"
	}
	return "done"
}

// reloadTablesOnHUP reloads the rates and reference files named by the
// configuration on each SIGHUP, until ctx is done. A file that fails to
// load leaves the tables in use unchanged.
func reloadTablesOnHUP(ctx context.Context, hup <-chan os.Signal, c *config.Config, eng *engine.Engine, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		rates, ref, err := loadTables(c)
		if err != nil {
			log.Error("SIGHUP: tables not reloaded; the previous ones stay in use", "err", err)
			continue
		}
		eng.SetTables(rates, ref)
		log.Info("SIGHUP: rates and reference tables reloaded; they apply from the next micro-batch",
			"rates", rates.Len(), "reference", ref.Len())
	}
}
