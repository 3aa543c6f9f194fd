package ingest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/offload/offload/internal/testenv"
)

// TestIntegrationRealKafka runs the custody check against a real Apache
// Kafka broker (scripts/kafka-broker.sh): a topic with several partitions
// created with kadm, records produced while Ingest runs, one stop and
// restart mid-stream, then every offset in the WAL exactly once and the
// group's commits at the WAL's high water + 1. The static variant restarts
// as the same group instance (how offload runs: kafka.client_id is its
// instance id).
func TestIntegrationRealKafka(t *testing.T) {
	brokers := strings.Split(testenv.Brokers(t), ",")
	for _, static := range []bool{false, true} {
		name := "dynamic"
		if static {
			name = "static"
		}
		t.Run(name, func(t *testing.T) { testRealKafka(t, brokers, static) })
	}
}

func testRealKafka(t *testing.T, brokers []string, static bool) {
	suffix := time.Now().UnixNano()
	topic, group := fmt.Sprintf("ingest-it-%d", suffix), fmt.Sprintf("ingest-it-%d", suffix)

	p := newProducer(t, brokers)
	createTestTopic(t, kadm.NewClient(p), topic, group, 6)

	w := openWAL(t, t.TempDir())
	defer w.Close()
	l := newLedger()
	l.produce(t, p, topic, 0, 10000)
	if len(l.parts) != 6 {
		t.Fatalf("produced to %d partitions, want 6", len(l.parts))
	}

	options := func() Options {
		o := baseOptions(t, brokers, w, group, topic)
		if static {
			o.InstanceID = fmt.Sprintf("edge-%d", suffix)
			o.SessionTimeout = 10 * time.Second
		}
		return o
	}
	r := start(t, options())
	waitUntil(t, 60*time.Second, "first records", func() bool { return walRecords(w) > 0 })
	waitUntil(t, 10*time.Second, "Ready", r.in.Ready)
	l.produce(t, p, topic, 10000, 5000)
	r.stop(t)
	first := r.in.Stats()

	l.produce(t, p, topic, 15000, 5000)
	r = start(t, options())
	waitUntil(t, 60*time.Second, "all records", func() bool { return walRecords(w) == l.total() })
	r.stop(t)
	second := r.in.Stats()

	checkExactlyOnce(t, w, l)
	checkCommitted(t, brokers, group, w, l)
	if got := first.Records + second.Records; got != uint64(l.total()) || first.Duplicates+second.Duplicates != 0 {
		t.Errorf("appended %d+%d records with %d+%d duplicates, want %d and none",
			first.Records, second.Records, first.Duplicates, second.Duplicates, l.total())
	}
}
