package gen

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/engine/event"
)

// TestGenerator produces to an in-process Kafka and reads everything back:
// the summary counts what arrived, every valid event passes offload's own
// decoder, every malformed record is rejected, duplicates are exact
// copies, and stores are skewed.
func TestGenerator(t *testing.T) {
	for _, schema := range []string{SchemaCanonical, SchemaShop, SchemaCSV} {
		t.Run(schema, func(t *testing.T) { testGenerator(t, schema) })
	}
}

func testGenerator(t *testing.T, schema string) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	g := New(Options{Count: 5000, Seed: 42, DuplicateShare: 0.05, LateShare: 0.05, MalformedShare: 0.02, Schema: schema})
	sum, err := g.Run(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Valid+sum.Malformed != 5000 || sum.Produced != sum.Valid+sum.Malformed+sum.Duplicates ||
		sum.Duplicates < 150 || sum.Malformed < 50 || sum.Late < 150 || int64(len(g.ValidIDs())) != sum.Valid {
		t.Fatalf("summary %+v, %d valid ids", sum, len(g.ValidIDs()))
	}
	dec, err := event.NewDecoder(event.Config{Mapping: Mapping(schema), HashKey: []byte("gen-test-key-0123456"), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	malformedIDs := g.MalformedIDs()
	if int64(len(malformedIDs)) != sum.Malformed {
		t.Fatalf("%d malformed ids, summary %+v", len(malformedIDs), sum)
	}
	malformedID := regexp.MustCompile(`evt-[^",]+`)
	var ev event.Event
	seen := map[string]int{}
	stores := map[string]int{}
	var got, accepted, rejected int64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for got < sum.Produced && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			got++
			switch res := dec.Decode(r.Value, &ev); res.Verdict {
			case event.Accepted:
				accepted++
				seen[ev.EventID]++
				stores[ev.StoreID]++
			case event.Rejected:
				rejected++
				if _, ok := malformedIDs[malformedID.FindString(string(r.Value))]; !ok {
					t.Errorf("a malformed record whose id MalformedIDs does not hold: %s", r.Value)
				}
			default:
				t.Fatalf("verdict %v for %s", res.Verdict, r.Value)
			}
		})
	}
	if got != sum.Produced || rejected != sum.Malformed || accepted != sum.Valid+sum.Duplicates || int64(len(seen)) != sum.Valid {
		t.Fatalf("read %d records: %d accepted (%d distinct), %d rejected; summary %+v", got, accepted, len(seen), rejected, sum)
	}
	// Zipf: the most popular store gets far more than an even share.
	top := 0
	for _, n := range stores {
		top = max(top, n)
	}
	if even := int(sum.Valid) / 200; top < 5*even {
		t.Fatalf("top store has %d events, an even share is %d: no skew", top, even)
	}
}

// TestGeneratorStopsBetweenBatches stops a paced run at random moments:
// the batch under way is finished, so ValidIDs holds exactly the valid
// events Kafka has, as the summary counts them.
func TestGeneratorStopsBetweenBatches(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("orders"), kgo.ConsumeTopics("orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var sum Summary
	valid := map[string]struct{}{}
	for i := range 20 {
		g := New(Options{Rate: 20000, Batch: 500, Seed: uint64(i), RunID: fmt.Sprint("r", i)})
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(5+i)*time.Millisecond)
		s, err := g.Run(ctx, cl)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if ids := g.ValidIDs(); int64(len(ids)) != s.Valid {
			t.Fatalf("run %d: %d valid ids, summary %+v", i, len(ids), s)
		} else {
			maps.Copy(valid, ids)
		}
		sum.Produced += s.Produced
	}
	rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got int64
	var ev event.Event
	dec, err := event.NewDecoder(event.Config{Mapping: Mapping(SchemaCanonical), HashKey: []byte("gen-test-key-0123456"), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	for got < sum.Produced && rctx.Err() == nil {
		cl.PollFetches(rctx).EachRecord(func(r *kgo.Record) {
			got++
			if dec.Decode(r.Value, &ev).Verdict == event.Accepted {
				delete(valid, ev.EventID)
			}
		})
	}
	if got != sum.Produced || len(valid) != 0 {
		t.Fatalf("read %d records of %d produced; %d valid ids never reached Kafka", got, sum.Produced, len(valid))
	}
	quiet, cancelQuiet := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancelQuiet()
	if polled := cl.PollRecords(quiet, 1); len(polled.Records()) > 0 {
		t.Fatalf("records beyond the %d the summaries count", sum.Produced)
	}
}
