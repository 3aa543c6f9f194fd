package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/offload/offload/internal/config"
)

// newLogger builds the process logger from the log options.
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// quietLogger is for offline tools: warnings and errors only, to stderr.
func quietLogger() *slog.Logger {
	return newLogger(config.Log{Level: "warn", Format: "text"}, os.Stderr)
}
