package rig

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/bench/gen"
	"github.com/offload/offload/bench/stack"
)

// TestProduceUntilLoaded: the generator runs in the background, into a
// stack's in-process Kafka, while the run is asked, with the news that it
// finished, whether it was loaded; the wait ends on the first yes, with
// the time the generator finished.
func TestProduceUntilLoaded(t *testing.T) {
	s, err := stack.Start(t.TempDir(), stack.Options{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	g := gen.New(gen.Options{Topic: s.Topic, Count: 500, Seed: 1})
	began := time.Now()
	var asked, askedDone int
	produced, err := produceUntilLoaded(context.Background(), g, cl, 10*time.Millisecond, func(produced bool) bool {
		asked++
		if produced {
			askedDone++
		}
		return askedDone == 2
	})
	if err != nil {
		t.Fatal(err)
	}
	if produced.Before(began) || askedDone != 2 || g.Summary().Produced < 500 {
		t.Fatalf("produced at %v (began %v), asked %d times (%d after the generator), %d records",
			produced, began, asked, askedDone, g.Summary().Produced)
	}

}
