package rig

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// bareConsumerFrom reads n records of topic from the offsets in start with
// franz-go and drops them, returning records per second.
func bareConsumerFrom(brokers []string, topic string, start kadm.ListedOffsets, n int64) (float64, error) {
	offsets := map[string]map[int32]kgo.Offset{topic: {}}
	start.Each(func(o kadm.ListedOffset) { offsets[topic][o.Partition] = kgo.NewOffset().At(o.Offset) })
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(offsets), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	began := time.Now()
	var got int64
	for got < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return 0, fmt.Errorf("bench: the bare consumer read %d of %d records", got, n)
		}
		got += int64(f.NumRecords())
	}
	return float64(got) / time.Since(began).Seconds(), nil
}
