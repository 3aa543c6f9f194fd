package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/offload/offload/internal/config"
)

// newLogger builds the process logger from the log options; its level
// can be changed through the returned LevelVar (SIGHUP).
func newLogger(c config.Log, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	_ = level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}

// quietLogger is for offline tools: warnings and errors only, to stderr.
func quietLogger() *slog.Logger {
	log, _ := newLogger(config.Log{Level: "warn", Format: "text"}, os.Stderr)
	return log
}
