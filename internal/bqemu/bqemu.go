// Package bqemu runs github.com/goccy/bigquery-emulator in this process,
// for the program offload-bigquery-emulator and for the loader's tests.
// The offload binary does not link it: the emulator (GoogleSQL compiled
// to Go) is more than half of such a binary's code, and every appliance
// would map it without ever running it. `offload demo` and `offload
// bench` with --warehouse bigquery run the program instead
// (internal/bqtest.Program).
package bqemu

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/goccy/bigquery-emulator/server"
)

// stopTimeout bounds how long Start's stop waits for the emulator's
// requests in flight.
const stopTimeout = 10 * time.Second

// Start starts the emulator with its one project, its data in the SQLite
// file path (a temporary one, removed by stop, when path is empty), its
// REST API on httpAddr and its gRPC API on grpcAddr. It returns once the
// emulator listens; stop stops it and waits for it.
func Start(project, path, httpAddr, grpcAddr string) (stop func() error, err error) {
	storage := server.TempStorage
	if path != "" {
		storage = server.Storage("file:" + path + "?cache=shared")
	}
	emu, err := server.New(storage)
	if err != nil {
		return nil, fmt.Errorf("cannot start the BigQuery emulator: %w", err)
	}
	if err := emu.SetProject(project); err != nil {
		_ = emu.Close()
		return nil, fmt.Errorf("cannot create the BigQuery emulator's project %s: %w", project, err)
	}
	listening := make(chan struct{})
	emu.SetListenCallback(func(string, string) { close(listening) })
	served := make(chan error, 1)
	go func() { served <- emu.Serve(context.Background(), httpAddr, grpcAddr) }()
	stop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		err := emu.Stop(ctx)
		<-served
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("the BigQuery emulator did not stop within %v: %w", stopTimeout, err)
		}
		return nil
	}
	select {
	case <-listening:
		return stop, nil
	case err := <-served:
		_ = emu.Close()
		return nil, fmt.Errorf("the BigQuery emulator did not start: %w", err)
	case <-time.After(30 * time.Second):
		_ = stop()
		return nil, errors.New("the BigQuery emulator did not listen within 30s")
	}
}
