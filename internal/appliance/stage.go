package appliance

import (
	"context"
	"sync"
)

// stage is one of the appliance's goroutines, Prometheus run-group style:
// an execute function (run) and an interrupt (its context's cancel). The
// appliance starts it and joins it in stop.
type stage struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // run's error, set before done closes
}

// startStage runs run on a goroutine of its own with a context that stop
// cancels; when run fails, failed is closed (once), which stops the rest.
func startStage(run func(context.Context) error, fail func()) *stage {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stage{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if s.err = run(ctx); s.err != nil {
			fail()
		}
	}()
	return s
}

// stop cancels the stage and waits for it. If ctx ends first, interrupt
// (if any) is called to cut the stage's work short, and the wait goes on:
// every stage's work takes a context (or the interrupt) and returns soon
// after it ends, and no goroutine is left running. late is called, once,
// when the wait outlives ctx.
func (s *stage) stop(ctx context.Context, interrupt, late func()) error {
	if s == nil {
		return nil
	}
	s.cancel()
	select {
	case <-s.done:
		return s.err
	case <-ctx.Done():
	}
	if interrupt != nil {
		interrupt()
	}
	if late != nil {
		late()
	}
	<-s.done
	return s.err
}

// failOnce closes a channel once, whoever fails first.
type failOnce struct {
	once sync.Once
	ch   chan struct{}
}

func newFailOnce() *failOnce { return &failOnce{ch: make(chan struct{})} }

func (f *failOnce) fail() { f.once.Do(func() { close(f.ch) }) }
