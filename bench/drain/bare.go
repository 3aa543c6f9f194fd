package drain

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// bareTimeout bounds the bare consumer's read.
const bareTimeout = 10 * time.Minute

// bareConsumer reads the whole of topic with a plain franz-go group
// consumer (a fresh group, from the start) and drops the records: the
// ceiling a Kafka client reaches on this broker. It returns the records
// read and their rate, counted from the client's creation, as the
// appliance's rates count from its start.
func bareConsumer(ctx context.Context, brokers []string, topic string) (int64, float64, error) {
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return 0, 0, fmt.Errorf("cannot create a Kafka client for %v: %w", brokers, err)
	}
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	adm.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("cannot list the end offsets of %s: %w", topic, err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })

	ctx, cancel := context.WithTimeout(ctx, bareTimeout)
	defer cancel()
	began := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumerGroup("offload-bench-bare-"+strconv.FormatInt(began.UnixNano(), 36)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, 0, fmt.Errorf("cannot create the bare consumer: %w", err)
	}
	defer cl.Close()
	var got int64
	for got < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return got, 0, fmt.Errorf("the bare consumer read %d of %d records of %s within %s", got, n, topic, bareTimeout)
		}
		if err := f.Err0(); err != nil {
			return got, 0, fmt.Errorf("the bare consumer cannot read %s: %w", topic, err)
		}
		got += int64(f.NumRecords())
	}
	return got, float64(got) / time.Since(began).Seconds(), nil
}
