package harness

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/bench/gen"
)

// producerStopBound is how long stop waits for the batch under way to be
// acknowledged: a broker restarted on a loaded machine may take a while.
const producerStopBound = 2 * time.Minute

// produce starts producing the run's events (h.g) to topic through cl at
// the run's rate until stop is called. stop waits for the producer and
// returns its error; it may be called again and returns the same. The
// batch under way is finished, or, if Kafka has not acknowledged it
// within bound (a broker that never came back: the client never gives up
// a batch it sent without an answer), failed by closing cl, so that stop
// returns an error instead of waiting for ever.
func (h *harness) produce(cl *kgo.Client, topic string, bound time.Duration) (stop func() error) {
	o := h.o
	batch := max(1, int(o.Rate/4)) // a quarter second of events
	h.g = gen.New(gen.Options{Topic: topic, Rate: o.Rate, Count: batch, Seed: o.Seed,
		RunID: "chaos" + strconv.FormatUint(o.Seed%(1<<32), 36)})
	ctx, cancel := context.WithCancel(context.Background())
	produced := make(chan error, 1)
	go func() {
		// One quarter-second batch at a time, each produced in full (the
		// client retries through broker restarts), so every event the
		// generator remembers did reach Kafka.
		start := time.Now()
		for k := 0; ; k++ {
			select {
			case <-ctx.Done():
				produced <- nil
				return
			case <-time.After(time.Until(start.Add(time.Duration(float64(k*batch) / o.Rate * float64(time.Second))))):
			}
			if _, err := h.g.Run(ctx, cl); err != nil {
				produced <- err
				return
			}
		}
	}()
	return sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-produced:
			return err
		case <-time.After(bound):
		}
		cl.Close()
		if err := <-produced; err != nil {
			return fmt.Errorf("the chaos run's last batch was not acknowledged within %s of the end of producing (is the broker up?): %w", bound, err)
		}
		return nil // acknowledged after all, before the close
	})
}
