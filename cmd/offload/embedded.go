package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/offload/offload/bench/rig"
	"github.com/offload/offload/bench/slowfs"
	"github.com/offload/offload/bench/stack"
	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/appliance"
	"github.com/offload/offload/internal/config"
)

// embedded is the appliance run in-process on a bench/stack (its Kafka
// and test warehouse). `offload demo` and `offload bench --profile
// inprocess` run on it.
type embedded struct {
	*stack.Stack
	adminAddr  string
	daemonStop context.CancelFunc
	daemonDone chan error

	stopOnce sync.Once
	stopErr  error
}

// startEmbedded starts a stack and the daemon on it; tune adjusts the
// configuration; demo adds the dashboard's warehouse switch.
func startEmbedded(dir string, o stack.Options, demo bool, tune func(*config.Config)) (*embedded, error) {
	s, err := stack.Start(dir, o)
	if err != nil {
		return nil, err
	}
	e, err := runEmbedded(s, demo, tune)
	if err != nil {
		s.Close()
		return nil, err
	}
	return e, nil
}

// startRig starts the appliance for the in-process benchmark (bench/rig).
func startRig(dir string, o stack.Options, tune func(*config.Config)) (*stack.Stack, rig.Appliance, error) {
	e, err := startEmbedded(dir, o, false, tune)
	if err != nil {
		return nil, nil, err
	}
	return e.Stack, e, nil
}

// runEmbedded opens the appliance (internal/appliance) on the started
// stack s, logging to its log file, runs it in a goroutine that Stop
// joins, and waits (bounded) until its admin endpoint listens.
func runEmbedded(s *stack.Stack, demo bool, tune func(*config.Config)) (*embedded, error) {
	c, err := s.Config(tune)
	if err != nil {
		return nil, err
	}
	log, level := newLogger(c.Log, s.Log)
	fs, err := slowfs.FromEnv(log)
	if err != nil {
		return nil, err
	}
	started := make(chan string, 1)
	opts := appliance.Options{Version: versionString(), LogLevel: level, WALFS: fs, Started: func(a string) { started <- a }}
	if demo {
		opts.Demo = s.DemoHooks()
	}
	a, err := appliance.Open(context.Background(), c, log, opts)
	if err != nil {
		return nil, fmt.Errorf("the pipeline did not start: %v (log: %s)", err, s.LogPath)
	}
	dctx, dstop := context.WithCancel(context.Background())
	e := &embedded{Stack: s, daemonStop: dstop, daemonDone: make(chan error, 1)}
	go func() { e.daemonDone <- errors.Join(a.Run(dctx), a.Close()) }()
	select {
	case e.adminAddr = <-started:
	case err := <-e.daemonDone:
		dstop()
		return nil, fmt.Errorf("the pipeline did not start: %v (log: %s)", err, s.LogPath)
	case <-time.After(60 * time.Second):
		_ = e.Stop() // joins the appliance's goroutine
		return nil, fmt.Errorf("the pipeline did not start within 60s (log: %s)", s.LogPath)
	}
	return e, nil
}

// Status reads the pipeline's status document (zero on failure).
func (e *embedded) Status() admin.Status {
	st, _ := admin.NewClient(e.adminAddr, "").Status(context.Background())
	return st
}

// Stop stops the pipeline (a SIGTERM's drain); once stopped, it returns
// how the first stop ended.
func (e *embedded) Stop() error {
	e.stopOnce.Do(func() {
		e.daemonStop()
		if err := <-e.daemonDone; err != nil {
			e.stopErr = fmt.Errorf("the pipeline stopped on an error: %w (log: %s)", err, e.LogPath)
		}
	})
	return e.stopErr
}

// Close stops the pipeline if it still runs, then the stack.
func (e *embedded) Close() {
	_ = e.Stop()
	e.Stack.Close()
}
