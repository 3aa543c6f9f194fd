package ingest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/offload/offload/internal/testenv"
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
// the stats and logged once; without a restart the new topic is consumed
// from its first offset into the WAL's next incarnation, beside the old
// topic's records, none dropped and none twice, and the group's committed
// offset is the new topic's. The WAL keeps the ID: a restart does not
// report the same change again and goes on after the new topic's last
// offset, and a topic recreated while ingest is stopped is found at the
// start and consumed from its first offset too.
func testTopicRecreation(t *testing.T, brokers []string, topic, group string) {
	p := newProducer(t, brokers)
	adm := kadm.NewClient(p)
	createTestTopic(t, adm, topic, group, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	w := openWAL(t, t.TempDir())
	defer w.Close()
	first := newLedger()
	first.produce(t, p, topic, 0, 100)
	opts := baseOptions(t, brokers, w, group, topic)
	log, buf := testLogger(t)
	opts.Logger = log
	r := start(t, opts)
	waitUntil(t, 60*time.Second, "the WAL to hold the first topic's records", func() bool { return walRecords(w) == 100 })
	if s := r.in.Stats(); s.TopicRecreations != 0 || len(s.Recreated) != 0 {
		t.Fatalf("a recreation before any: %+v", s)
	}

	// recreate deletes the topic, creates it again and produces n
	// records to it, from seq on; it returns their ledger.
	recreate := func(seq, n int) *ledger {
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
		l := newLedger()
		l.produce(t, newProducer(t, brokers), topic, seq, n)
		return l
	}
	second := recreate(1000, 150)
	recreated := time.Now()
	want := merged(first, second.incarnation(1))
	waitUntil(t, 60*time.Second, "the new topic's records in the WAL's next incarnation", func() bool { return walRecords(w) == want.total() })
	t.Logf("the new topic's %d records were in custody %s after the topic was created again", second.total(), time.Since(recreated).Round(time.Millisecond))
	checkExactlyOnce(t, w, want)
	s := r.in.Stats()
	if s.TopicRecreations != 1 || len(s.Recreated) != 1 {
		t.Fatalf("recreations %d %+v, want one", s.TopicRecreations, s.Recreated)
	}
	rc := s.Recreated[0]
	if rc.Topic != topic || rc.ID == rc.PreviousID || len(rc.ID) != 32 || len(rc.PreviousID) != 32 ||
		rc.Incarnation != 1 || rc.HighWaters[0] != 99 || rc.At.IsZero() {
		t.Fatalf("recreation %+v, want %s under a new ID, incarnation 1, with partition 0's old high water 99", rc, topic)
	}
	// The commit is the new topic's own: no offset of the old one
	// reached it.
	waitUntil(t, 30*time.Second, "the new topic's offsets to be committed", func() bool { return len(r.in.Stats().Partitions) == 1 && r.in.Stats().Partitions[0].Committed == 150 })
	checkCommitted(t, brokers, group, w, second.incarnation(1))
	if out := buf.String(); !containsAll(out, "level=WARN", "deleted and created again", "previous_id="+rc.PreviousID,
		"id="+rc.ID, "incarnation=1", `previous_last_offsets="0=99"`) || strings.Count(out, "deleted and created again") != 1 {
		t.Fatalf("the log does not report the recreation once:\n%s", out)
	}
	r.stop(t)

	// The WAL recorded the new ID: a restart does not report it again,
	// and goes on after the new topic's last offset.
	more := newLedger()
	more.produce(t, newProducer(t, brokers), topic, 2000, 50)
	second = merged(second, more)
	want = merged(first, second.incarnation(1))
	r = start(t, opts)
	waitUntil(t, 60*time.Second, "the restarted ingest to fetch", func() bool { return walRecords(w) == want.total() })
	time.Sleep(time.Second)
	if s := r.in.Stats(); s.TopicRecreations != 0 {
		t.Fatalf("the restart reported the recreation again: %+v", s.Recreated)
	}
	checkExactlyOnce(t, w, want)
	r.stop(t)

	// Recreated while offload is stopped: the start finds it, against
	// the ID the WAL recorded, and takes the new topic from offset 0.
	third := recreate(3000, 120)
	want = merged(want, third.incarnation(2))
	r = start(t, opts)
	waitUntil(t, 60*time.Second, "the topic recreated while stopped to be consumed", func() bool { return walRecords(w) == want.total() })
	if s := r.in.Stats(); s.TopicRecreations != 1 || s.Recreated[0].PreviousID != rc.ID || s.Recreated[0].Incarnation != 2 {
		t.Fatalf("recreation while stopped: %+v, want the previous ID %s and incarnation 2", s.Recreated, rc.ID)
	}
	checkExactlyOnce(t, w, want)
	r.stop(t)
}

// incarnation returns l's records filed under incarnation inc of their
// topic, as the WAL keeps a recreated topic's.
func (l *ledger) incarnation(inc uint32) *ledger {
	out := newLedger()
	l.mu.Lock()
	defer l.mu.Unlock()
	for tp, recs := range l.parts {
		tp.Incarnation = inc
		out.parts[tp] = append(out.parts[tp], recs...)
		out.n += len(recs)
	}
	return out
}

// merged returns the records of ls in one ledger, each partition's in the
// order of ls.
func merged(ls ...*ledger) *ledger {
	out := newLedger()
	for _, l := range ls {
		l.mu.Lock()
		for tp, recs := range l.parts {
			out.parts[tp] = append(out.parts[tp], recs...)
			out.n += len(recs)
		}
		l.mu.Unlock()
	}
	return out
}
