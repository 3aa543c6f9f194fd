package harness

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startProducer starts the harness's producer against a kfake cluster of
// its own, and returns the cluster and the producer's stop.
func startProducer(t *testing.T, bound time.Duration) (*kfake.Cluster, *harness, func() error) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "chaos"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("chaos"), kgo.AlwaysRetryEOF())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	h := &harness{o: Options{Rate: 200, Seed: 1}}
	return c, h, h.produce(cl, "chaos", bound)
}

// stopWithin calls stop and fails the test unless it returns within limit.
func stopWithin(t *testing.T, stop func() error, limit time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- stop() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("the producer did not stop within %s", limit)
		return nil
	}
}

// TestProducerStops: stop ends the run's producing at once, with every
// event it counts acknowledged.
func TestProducerStops(t *testing.T) {
	_, h, stop := startProducer(t, time.Minute)
	time.Sleep(time.Second)
	if err := stopWithin(t, stop, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if s := h.g.Summary(); s.Produced < 100 {
		t.Fatalf("%d records produced in a second at 200 events/s", s.Produced)
	}
}

// TestProducerStopsWithTheBrokerGone: a broker that never comes back
// leaves a batch unacknowledged; stop gives it up after its bound and
// says so, instead of waiting for ever (the run would hang until the
// test's timeout).
func TestProducerStopsWithTheBrokerGone(t *testing.T) {
	c, h, stop := startProducer(t, 2*time.Second)
	time.Sleep(500 * time.Millisecond)
	c.Close()
	time.Sleep(500 * time.Millisecond) // a batch is under way by now
	before := h.g.Summary().Produced
	err := stopWithin(t, stop, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "not acknowledged within 2s") {
		t.Fatalf("stop returned %v with a batch that never reached Kafka", err)
	}
	if after := h.g.Summary().Produced; after != before {
		t.Fatalf("the summary counts %d records more than Kafka acknowledged", after-before)
	}
}
