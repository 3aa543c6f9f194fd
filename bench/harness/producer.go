package harness

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/bench/gen"
)

// produce starts producing the run's events (h.g) to topic through cl at
// the run's rate until stop is called. stop waits for the producer and
// returns its error; it may be called again and returns the same.
func (h *harness) produce(cl *kgo.Client, topic string) (stop func() error) {
	o := h.o
	batch := max(1, int(o.Rate/4)) // a quarter second of events
	h.g = gen.New(gen.Options{Topic: topic, Rate: o.Rate, Count: batch, Seed: o.Seed,
		RunID: "chaos" + strconv.FormatUint(o.Seed%(1<<32), 36)})
	stopProducing := make(chan struct{})
	produced := make(chan error, 1)
	go func() {
		// One quarter-second batch at a time, each produced in full (the
		// client retries through broker restarts), so every event the
		// generator remembers did reach Kafka.
		start := time.Now()
		for k := 0; ; k++ {
			select {
			case <-stopProducing:
				produced <- nil
				return
			default:
			}
			time.Sleep(time.Until(start.Add(time.Duration(float64(k*batch) / o.Rate * float64(time.Second)))))
			if _, err := h.g.Run(context.Background(), cl); err != nil {
				produced <- err
				return
			}
		}
	}()
	return sync.OnceValue(func() error {
		close(stopProducing)
		return <-produced
	})
}
