// Command offload-bigquery-emulator runs the BigQuery emulator
// (github.com/goccy/bigquery-emulator) on 127.0.0.1 for `offload demo`
// and `offload bench` with --warehouse bigquery, which start it beside
// bin/offload. It prints "offload-bigquery-emulator: listening" once the
// emulator listens, and stops when its standard input closes or on
// SIGINT or SIGTERM. It is a test stand-in, never BigQuery itself
// (docs/LOADER.md, "BigQuery emulator gaps").
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/offload/offload/internal/bqemu"
	"github.com/offload/offload/internal/bqtest"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(bqtest.ProgramName, flag.ContinueOnError)
	fs.SetOutput(stderr)
	project := fs.String("project", "offload-test", "the emulator's one project")
	database := fs.String("database", "", "the SQLite file the emulator keeps its data in (empty: a temporary one)")
	httpAddr := fs.String("http", "127.0.0.1:9050", "the address of its REST API")
	grpcAddr := fs.String("grpc", "127.0.0.1:9060", "the address of its gRPC API")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	stop, err := bqemu.Start(*project, *database, *httpAddr, *grpcAddr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", bqtest.ProgramName, err)
		return 1
	}
	fmt.Fprintln(stdout, bqtest.ReadyLine)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	go func() {
		// Its input closes when the process that started it stops or dies.
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	<-ctx.Done()
	if err := stop(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", bqtest.ProgramName, err)
		return 1
	}
	return 0
}
