package ingest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/offload/offload/wal"
)

// TestTopicRecreationDetected deletes the consumed topic and creates it
// again under the same name while ingest runs: the new topic ID is
// detected, counted, listed in the stats with the WAL's high water at that
// moment, and logged once as an error that says what happens to the new
// topic's records; the failing fetches under the old ID do not spin.
func TestTopicRecreationDetected(t *testing.T) {
	brokers := newCluster(t, kfake.SeedTopics(1, "orders"))
	w := openWAL(t, t.TempDir())
	defer w.Close()
	l := newLedger()
	p := newProducer(t, brokers)
	l.produce(t, p, "orders", 0, 100)
	opts := baseOptions(t, brokers, w, "g1", "orders")
	log, buf := testLogger(t)
	opts.Logger = log
	r := start(t, opts)
	waitUntil(t, 20*time.Second, "the WAL to hold the first topic's records", func() bool { return walRecords(w) == 100 })
	if s := r.in.Stats(); s.TopicRecreations != 0 || len(s.Recreated) != 0 {
		t.Fatalf("a recreation before any: %+v", s)
	}

	adm := kadm.NewClient(p)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := adm.DeleteTopic(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	// A new producer: p holds the deleted topic's ID.
	newLedger().produce(t, newProducer(t, brokers), "orders", 1000, 150)
	waitUntil(t, 30*time.Second, "the recreation to be counted", func() bool { return r.in.Stats().TopicRecreations == 1 })
	// The fetches under the old ID fail at once; the loop waits between
	// such polls instead of spinning.
	before := r.in.Stats().FetchErrors
	time.Sleep(2 * time.Second)
	if n := r.in.Stats().FetchErrors - before; n > uint64(2*(2*time.Second/errorPause)) {
		t.Fatalf("%d fetch errors in 2s: the loop spins on the failing fetches", n)
	}
	s := r.in.Stats()
	if len(s.Recreated) != 1 {
		t.Fatalf("recreated topics %+v, want one", s.Recreated)
	}
	rc := s.Recreated[0]
	if rc.Topic != "orders" || rc.ID == rc.PreviousID || len(rc.ID) != 32 || len(rc.PreviousID) != 32 ||
		rc.HighWaters[0] != 99 || rc.At.IsZero() {
		t.Fatalf("recreation %+v, want orders under a new ID with partition 0's high water 99", rc)
	}
	if hw := w.HighWater(wal.TopicPartition{Topic: "orders", Partition: 0}); hw < 99 {
		t.Fatalf("WAL high water %d", hw)
	}
	if out := buf.String(); !containsAll(out, "level=ERROR", "deleted and created again", "previous_id="+rc.PreviousID,
		"id="+rc.ID, `wal_high_waters="0=99"`) || strings.Count(out, "deleted and created again") != 1 {
		t.Fatalf("the log does not report the recreation once:\n%s", out)
	}
}
