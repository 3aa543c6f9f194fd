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

	"github.com/offload/offload/bench/slowfs"
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
	setGoMemoryDefaults(log)
	walFS, err := slowfs.FromEnv(log)
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

// defaultGCPercent is the Go collector's target in `offload run` when the
// GOGC variable sets none: the heap may grow 60 % past what the last
// collection left live, not Go's 100 %. A drain keeps ~160 MiB live (a
// micro-batch's rows, the next one's records, the part writer), so the
// smaller target takes ~60 MiB off the appliance's peak RSS for a few
// more collections (docs/PERFORMANCE.md, "The appliance's peak RSS").
const defaultGCPercent = 60

// setGoMemoryDefaults applies defaultGoMemoryLimit and defaultGCPercent
// where GOMEMLIMIT and GOGC do not set them.
func setGoMemoryDefaults(log *slog.Logger) {
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		log.Debug("Go memory limit from GOMEMLIMIT", "limit", v)
	} else {
		debug.SetMemoryLimit(defaultGoMemoryLimit)
	}
	if v, ok := os.LookupEnv("GOGC"); ok {
		log.Debug("Go collector target from GOGC", "percent", v)
	} else {
		debug.SetGCPercent(defaultGCPercent)
	}
}
