package gen

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// CreateTopicOn creates topic with partitions partitions on brokers
// unless it exists.
func CreateTopicOn(brokers []string, topic string, partitions int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("cannot create a Kafka client for %v: %w", brokers, err)
	}
	defer cl.Close()
	return CreateTopic(cl, topic, partitions)
}

// CreateTopic creates topic with partitions partitions through cl unless
// it exists.
func CreateTopic(cl *kgo.Client, topic string, partitions int) error {
	brokers := cl.OptValue(kgo.SeedBrokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := kadm.NewClient(cl).CreateTopic(ctx, int32(partitions), -1, nil, topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("cannot create topic %s on %v: %w", topic, brokers, err)
	}
	if res.Err != nil && !errors.Is(res.Err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("cannot create topic %s on %v: %w", topic, brokers, res.Err)
	}
	return nil
}
