package appliance

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/offload/offload/internal/deliverytest"
	"github.com/offload/offload/internal/testenv"
)

// TestRecreatedTopicExactlyOnce deletes the consumed topic and creates it
// again under its name while the appliance runs (on kfake): see
// testRecreatedTopic.
func TestRecreatedTopicExactlyOnce(t *testing.T) {
	k, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, testTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	testRecreatedTopic(t, newRigOn(t, k.ListenAddrs(), testTopic, "offload-appliance-test"))
}

// TestIntegrationRealKafkaRecreatedTopicExactlyOnce does the same on a
// real Apache Kafka broker (scripts/kafka-broker.sh).
func TestIntegrationRealKafkaRecreatedTopicExactlyOnce(t *testing.T) {
	seeds := strings.Split(testenv.Brokers(t), ",")
	name := fmt.Sprintf("appliance-recreated-%d", time.Now().UnixNano())
	r := newRigOn(t, seeds, name, name)
	createTopic(t, r, 2)
	testRecreatedTopic(t, r)
}

// testRecreatedTopic: the topic is deleted and created again mid-run, and
// produced to before and after; without a restart every valid event of
// both topics reaches the warehouse exactly once (the new topic's offsets
// start at 0 again, below the old topic's high waters), with the windows
// and the ledger's control totals right.
func testRecreatedTopic(t *testing.T, r *rig) {
	rn := r.start(nil)
	valid := map[string]bool{}
	r.produce(0, 1500, valid)
	loaded := func(n int) func() bool {
		return func() bool {
			// The table exists from the first load on.
			var got int
			err := r.srv.DB().QueryRow(`SELECT count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS`).Scan(&got)
			return err == nil && got == n
		}
	}
	waitFor(t, 60*time.Second, "the first topic's events in the warehouse", loaded(len(valid)))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(r.cl).DeleteTopic(ctx, r.topic); err != nil {
		t.Fatal(err)
	}
	createTopic(t, r, 2)
	recreated := time.Now()
	// A new producer: the old one holds the deleted topic's ID. Half
	// the new events go before the appliance notices, half while it
	// switches over.
	r.cl = newTopicProducer(t, r.seeds, r.topic)
	r.produce(1500, 2250, valid)
	time.Sleep(time.Second)
	r.produce(2250, 3000, valid)
	waitFor(t, 90*time.Second, fmt.Sprintf("all %d events of both topics in the warehouse", len(valid)), loaded(len(valid)))
	t.Logf("the new topic's events were all in the warehouse %s after it was created again", time.Since(recreated).Round(time.Millisecond))
	rn.shutdown(t)
	deliverytest.CheckTables(t, r.srv.DB(), "PUBLIC.", valid, -1, true)
	// Both topics' offsets are there under the one name: the new
	// topic's low offsets were not taken for re-deliveries.
	if got := deliverytest.QueryStrings(t, r.srv.DB(), `SELECT count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS WHERE SOURCE_OFFSET = 0`); got[0] != "4" {
		t.Errorf("%s rows at Kafka offset 0, want 4 (two partitions of two topics)", got[0])
	}
}

// createTopic creates the rig's topic with partitions partitions,
// retrying while a real broker still deletes the topic of that name.
func createTopic(t *testing.T, r *rig, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(r.cl)
	for {
		resp, err := adm.CreateTopic(ctx, partitions, 1, nil, r.topic)
		if err == nil && resp.Err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("create topic %s: %v %v", r.topic, err, resp.Err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
