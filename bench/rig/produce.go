package rig

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/bench/gen"
)

// errNotLoaded is produceUntilLoaded's answer when the run's events were
// not all loaded within loadTimeout.
var errNotLoaded = errors.New("bench: the run was not loaded in time")

// loadTimeout bounds how long a run waits for its events to be loaded.
const loadTimeout = 30 * time.Minute

// produceUntilLoaded runs g into cl in the background and, every interval,
// asks loaded whether the run has reached the warehouse, telling it
// whether the generator has finished. It returns when loaded says yes,
// with the time the generator finished; errNotLoaded after loadTimeout,
// having stopped the generator.
func produceUntilLoaded(ctx context.Context, g *gen.Generator, cl *kgo.Client, interval time.Duration, loaded func(produced bool) bool) (time.Time, error) {
	ctx, cancel := context.WithCancel(ctx)
	genDone := make(chan error, 1)
	go func() {
		_, err := g.Run(ctx, cl)
		genDone <- err
	}()
	defer func() {
		cancel()
		if genDone != nil {
			<-genDone
		}
	}()
	var produced time.Time
	tick := time.NewTicker(interval)
	defer tick.Stop()
	deadline := time.Now().Add(loadTimeout)
	for {
		select {
		case err := <-genDone:
			if err != nil {
				return produced, err
			}
			produced, genDone = time.Now(), nil
		case <-tick.C:
		}
		if loaded(!produced.IsZero()) {
			return produced, nil
		}
		if time.Now().After(deadline) {
			return produced, errNotLoaded
		}
	}
}
