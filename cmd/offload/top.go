package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/offload/offload/tui"
)

// runTop shows the dashboard of a running appliance, polling its admin API.
func runTop(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("top", stderr)
	addr := fs.String("addr", "http://127.0.0.1:7070", "admin API address of the appliance (admin.listen)")
	token := fs.String("token", "", "admin bearer token for the actions (default $OFFLOAD_ADMIN_TOKEN)")
	tokenFile := fs.String("token-file", "", "read the admin bearer token from this file (keeps it out of the process list)")
	interval := fs.Duration("interval", time.Second, "time between status polls")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: offload top [flags]

The dashboard of a running appliance, from its admin API. Before the first
start, or when the appliance cannot load, run the preflight:
  offload check --config /etc/offload/offload.yaml
It proves the Kafka brokers, topics and group, the warehouse's login,
privileges and a load through a scratch table, and the local disk, one line
per check with the fix.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *interval <= 0 {
		return usageError{fmt.Errorf("--interval must be positive, got %s", *interval)}
	}
	if *token != "" && *tokenFile != "" {
		return usageError{errors.New("give --token or --token-file, not both")}
	}
	if !terminal(os.Stdin, stdout) {
		return usageError{fmt.Errorf("the dashboard needs a terminal; without one, read the status: curl -s %s/api/v1/status", *addr)}
	}
	secret := cmp.Or(*token, os.Getenv("OFFLOAD_ADMIN_TOKEN"))
	if *tokenFile != "" {
		raw, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("cannot read --token-file: %w", err)
		}
		secret = strings.TrimSpace(string(raw))
	}
	// SIGHUP: the terminal closed.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	return tui.Run(ctx, tui.Config{Addr: *addr, Token: secret, Interval: *interval, In: os.Stdin, Out: stdout, Getenv: os.Getenv})
}
