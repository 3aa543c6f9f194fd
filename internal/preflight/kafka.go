package preflight

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/internal/ingest"
	"github.com/offload/offload/loader"
)

// KafkaOptions are the consumer's settings (config kafka.*).
type KafkaOptions struct {
	Brokers  []string
	Topics   []string
	Group    string
	ClientID string
	TLS      ingest.TLSOptions
	SASL     ingest.SASLOptions
}

// Kafka checks, with the configured TLS and SASL, that the brokers answer,
// that each topic exists (with its partition count), and that the group can
// be described and its committed offsets fetched (the ACLs the consumer
// needs). It stops when the brokers cannot be reached.
func Kafka(ctx context.Context, o KafkaOptions) []loader.CheckResult {
	brokers := strings.Join(o.Brokers, ",")
	sec, err := ingest.SecurityOpts(o.TLS, o.SASL)
	if err != nil {
		return []loader.CheckResult{{Name: "kafka: TLS and SASL settings", Detail: err.Error(), Fix: "fix the option the message names"}}
	}
	clientID := o.ClientID
	if clientID == "" {
		clientID = "offload"
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...), kgo.ClientID(clientID + "-check")}, sec...)...)
	if err != nil {
		return []loader.CheckResult{{Name: "kafka: client for " + brokers, Detail: err.Error(), Fix: "check kafka.brokers (host:port)"}}
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	var out []loader.CheckResult
	meta, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return append(out, loader.CheckResult{Name: "kafka: brokers " + brokers + " reachable", Detail: err.Error(), Fix: kafkaFix(err,
			"check kafka.brokers, the network and the firewall; a TLS listener needs kafka.tls.enabled, and SASL failures show here too (kafka.sasl.*)")})
	}
	out = append(out, loader.CheckResult{Name: fmt.Sprintf("kafka: brokers %s reachable (%d in the cluster)", brokers, len(meta.Brokers)), OK: true})

	topics, err := adm.ListTopics(ctx, o.Topics...)
	if err != nil {
		return append(out, loader.CheckResult{Name: "kafka: describe topics " + strings.Join(o.Topics, ","), Detail: err.Error(),
			Fix: kafkaFix(err, "check the brokers' logs")})
	}
	for _, name := range o.Topics {
		td, ok := topics[name]
		switch {
		case !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
			out = append(out, loader.CheckResult{Name: "kafka: topic " + name, Detail: "the cluster has no topic " + name,
				Fix: "create the topic, or correct kafka.topics"})
		case td.Err != nil:
			out = append(out, loader.CheckResult{Name: "kafka: topic " + name, Detail: td.Err.Error(), Fix: kafkaFix(td.Err, "check the brokers' logs")})
		default:
			out = append(out, loader.CheckResult{Name: fmt.Sprintf("kafka: topic %s (%d partitions)", name, len(td.Partitions)), OK: true})
		}
	}

	// A group no member has joined yet is "Dead" to older brokers and
	// GROUP_ID_NOT_FOUND to newer ones: both are a new group, fine to
	// start with.
	var groups kadm.DescribedGroups
	err = whileCoordinatorMoves(ctx, func() (err error) {
		if groups, err = adm.DescribeGroups(ctx, o.Group); err == nil {
			err = groups.Error()
		}
		return err
	})
	if errors.Is(err, kerr.GroupIDNotFound) {
		out = append(out, loader.CheckResult{Name: fmt.Sprintf("kafka: describe group %s (new: no member has joined yet)", o.Group), OK: true})
	} else if err != nil {
		out = append(out, loader.CheckResult{Name: "kafka: describe group " + o.Group, Detail: err.Error(),
			Fix: kafkaFix(err, "check the group's coordinator in the brokers' logs")})
	} else {
		g := groups[o.Group]
		state := fmt.Sprintf("state %s, %d members", g.State, len(g.Members))
		if g.State == "Dead" {
			state = "new: no member has joined yet"
		}
		out = append(out, loader.CheckResult{Name: fmt.Sprintf("kafka: describe group %s (%s)", o.Group, state), OK: true})
	}

	var offsets kadm.OffsetResponses
	err = whileCoordinatorMoves(ctx, func() (err error) {
		if offsets, err = adm.FetchOffsets(ctx, o.Group); err == nil {
			err = offsets.Error()
		}
		return err
	})
	if errors.Is(err, kerr.GroupIDNotFound) {
		return append(out, loader.CheckResult{Name: fmt.Sprintf("kafka: fetch the offsets of group %s (new: none committed yet)", o.Group), OK: true})
	}
	if err != nil {
		return append(out, loader.CheckResult{Name: "kafka: fetch the offsets of group " + o.Group, Detail: err.Error(),
			Fix: kafkaFix(err, "check the group's coordinator in the brokers' logs")})
	}
	var committed []string
	for _, name := range o.Topics {
		n := len(offsets[name])
		committed = append(committed, fmt.Sprintf("%s: %d partitions committed", name, n))
	}
	sort.Strings(committed)
	return append(out, loader.CheckResult{Name: fmt.Sprintf("kafka: fetch the offsets of group %s (%s)", o.Group, strings.Join(committed, "; ")), OK: true})
}

// coordinatorTries bounds the retries of a group request while the
// group's coordinator is not available, a few seconds in all.
const coordinatorTries = 20

// whileCoordinatorMoves runs f again while it fails because the group's
// coordinator is not available yet: a cluster that never had a consumer
// group creates __consumer_offsets on the first request, and answers
// COORDINATOR_NOT_AVAILABLE until it is ready.
func whileCoordinatorMoves(ctx context.Context, f func() error) error {
	var err error
	for range coordinatorTries {
		err = f()
		if !errors.Is(err, kerr.CoordinatorNotAvailable) && !errors.Is(err, kerr.CoordinatorLoadInProgress) && !errors.Is(err, kerr.NotCoordinator) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
	return err
}

// kafkaFix says what to do about err: the ACL to grant for an
// authorization error, else otherwise.
func kafkaFix(err error, otherwise string) string {
	switch {
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return "grant the appliance's principal DESCRIBE and READ on the topic (kafka-acls --add --allow-principal User:NAME --operation Read --operation Describe --topic TOPIC)"
	case errors.Is(err, kerr.GroupAuthorizationFailed):
		return "grant the appliance's principal DESCRIBE and READ on the group (kafka-acls --add --allow-principal User:NAME --operation Read --operation Describe --group GROUP)"
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		return "grant the appliance's principal DESCRIBE on the cluster"
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return "the brokers refused the credentials: check kafka.sasl.mechanism, kafka.sasl.username and kafka.sasl.password_file (or OFFLOAD_KAFKA_SASL_PASSWORD)"
	}
	return otherwise
}
