package ingest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/offload/offload/internal/testenv"
	"github.com/offload/offload/wal"
)

// TestTopicRecreationDetected deletes the consumed topic and creates it
// again under the same name while ingest runs (on kfake): see
// testTopicRecreation.
func TestTopicRecreationDetected(t *testing.T) {
	testTopicRecreation(t, newCluster(t), "orders", "g1")
}

// TestIntegrationRealKafkaRecreatedTopic does the same on a real Apache
// Kafka broker (scripts/kafka-broker.sh).
func TestIntegrationRealKafkaRecreatedTopic(t *testing.T) {
	suffix := time.Now().UnixNano()
	testTopicRecreation(t, strings.Split(testenv.Brokers(t), ","), fmt.Sprintf("ingest-recreated-%d", suffix),
		fmt.Sprintf("ingest-recreated-%d", suffix))
}

// testTopicRecreation: the new topic ID is detected, counted, listed in
// the stats with the WAL's high water at that moment, and logged once as
// an error that says what happens to the new topic's records; the failing
// fetches under the old ID do not spin. The WAL keeps the ID: a restart
// does not report the same change again, and a topic recreated while
// ingest is stopped is reported at the start.
func testTopicRecreation(t *testing.T, brokers []string, topic, group string) {
	p := newProducer(t, brokers)
	adm := kadm.NewClient(p)
	createTestTopic(t, adm, topic, group, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := openWAL(t, t.TempDir())
	defer w.Close()
	newLedger().produce(t, p, topic, 0, 100)
	opts := baseOptions(t, brokers, w, group, topic)
	log, buf := testLogger(t)
	opts.Logger = log
	r := start(t, opts)
	waitUntil(t, 60*time.Second, "the WAL to hold the first topic's records", func() bool { return walRecords(w) == 100 })
	if s := r.in.Stats(); s.TopicRecreations != 0 || len(s.Recreated) != 0 {
		t.Fatalf("a recreation before any: %+v", s)
	}

	// recreate deletes the topic, creates it again and produces 150
	// records to it.
	recreate := func() {
		t.Helper()
		if _, err := adm.DeleteTopic(ctx, topic); err != nil {
			t.Fatal(err)
		}
		// A real broker takes a moment to forget the topic.
		for {
			_, err := adm.CreateTopic(ctx, 1, 1, nil, topic)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("create topic %s again: %v", topic, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// A new producer: p holds the deleted topic's ID.
		newLedger().produce(t, newProducer(t, brokers), topic, 1000, 150)
	}
	recreate()
	recreated := time.Now()
	waitUntil(t, 60*time.Second, "the recreation to be counted", func() bool { return r.in.Stats().TopicRecreations == 1 })
	detected := time.Since(recreated)
	// The fetches under the old ID fail at once; the loop waits between
	// such polls instead of spinning.
	before := r.in.Stats().FetchErrors
	time.Sleep(2 * time.Second)
	n := r.in.Stats().FetchErrors - before
	if n > uint64(2*(2*time.Second/errorPause)) {
		t.Fatalf("%d fetch errors in 2s: the loop spins on the failing fetches", n)
	}
	t.Logf("recreation detected %s after the topic was created again; %d fetch errors in the 2s after", detected.Round(time.Millisecond), n)
	s := r.in.Stats()
	if len(s.Recreated) != 1 {
		t.Fatalf("recreated topics %+v, want one", s.Recreated)
	}
	rc := s.Recreated[0]
	if rc.Topic != topic || rc.ID == rc.PreviousID || len(rc.ID) != 32 || len(rc.PreviousID) != 32 ||
		rc.HighWaters[0] != 99 || rc.At.IsZero() {
		t.Fatalf("recreation %+v, want %s under a new ID with partition 0's high water 99", rc, topic)
	}
	if hw := w.HighWater(wal.TopicPartition{Topic: topic, Partition: 0}); hw < 99 {
		t.Fatalf("WAL high water %d", hw)
	}
	if out := buf.String(); !containsAll(out, "level=ERROR", "deleted and created again", "previous_id="+rc.PreviousID,
		"id="+rc.ID, `wal_high_waters="0=99"`) || strings.Count(out, "deleted and created again") != 1 {
		t.Fatalf("the log does not report the recreation once:\n%s", out)
	}
	r.stop(t)

	// The WAL recorded the new ID: a restart does not report it again.
	r = start(t, opts)
	waitUntil(t, 60*time.Second, "the restarted ingest to fetch", func() bool { return walRecords(w) > 100 })
	time.Sleep(time.Second)
	if s := r.in.Stats(); s.TopicRecreations != 0 {
		t.Fatalf("the restart reported the recreation again: %+v", s.Recreated)
	}
	r.stop(t)

	// Recreated while offload is stopped: the start reports it, against
	// the ID the WAL recorded.
	recreate()
	r = start(t, opts)
	waitUntil(t, 60*time.Second, "the recreation while stopped to be counted", func() bool { return r.in.Stats().TopicRecreations == 1 })
	if rc2 := r.in.Stats().Recreated[0]; rc2.PreviousID != rc.ID || rc2.ID == rc.ID {
		t.Fatalf("recreation while stopped: %+v, want the previous ID %s", rc2, rc.ID)
	}
}
