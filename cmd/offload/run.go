package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/offload/offload/internal/appliance"
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
	walFS, err := walFS(log)
	if err != nil {
		return err
	}
	a, err := appliance.Open(ctx, c, log, appliance.Options{Version: versionString(), ConfigPath: *path, LogLevel: level, WALFS: walFS})
	if err != nil {
		log.Error("offload did not start", "err", err)
		return errFound
	}
	if err := errors.Join(a.Run(ctx), a.Close()); err != nil {
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
