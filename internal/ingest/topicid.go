package ingest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/wal"
)

// TopicRecreation is a topic seen under a new Kafka topic ID: deleted and
// created again under the same name (Kafka 2.8 and later give every topic
// an ID; fetch responses carry it from Kafka 3.1).
type TopicRecreation struct {
	Topic string
	// PreviousID and ID are the topic IDs before and after, in hex.
	PreviousID, ID string
	// At is when the new ID was first fetched.
	At time.Time
	// HighWaters are the WAL's high waters of the topic's partitions at
	// that moment: the new topic's records at or below them are taken for
	// re-deliveries and dropped (docs/OPERATIONS.md, A recreated topic).
	HighWaters map[int32]int64
}

// noteTopicIDs compares the topic ID of every topic in fetches with the
// one the WAL recorded for its partitions, reports a change and records
// the ID (see noteTopicID), and returns the IDs it saw by topic. The
// topics just assigned are checked against Kafka's metadata (a topic
// recreated while offload was stopped may bring no record above the
// WAL's high water to tell). A topic whose fetches fail with
// UNKNOWN_TOPIC_ID may have been deleted and created again: franz-go
// keeps fetching it under the ID it knew, so its current ID is asked of
// the metadata too (at most every topicIDEvery per topic).
func (in *Ingest) noteTopicIDs(fetches kgo.Fetches) map[string][16]byte {
	ids := map[string][16]byte{}
	in.mu.Lock()
	assigned := in.checkIDs
	in.checkIDs = map[string]bool{}
	in.mu.Unlock()
	for topic := range assigned {
		in.checkTopicID(topic)
	}
	unknown := map[string]bool{}
	for _, f := range fetches {
		for _, t := range f.Topics {
			// A failed fetch echoes the ID it asked for: only an
			// answered one tells the topic's ID.
			answered := false
			for _, p := range t.Partitions {
				answered = answered || p.Err == nil
				if errors.Is(p.Err, kerr.UnknownTopicID) {
					unknown[t.Topic] = true
				}
			}
			if answered && t.TopicID != ([16]byte{}) {
				ids[t.Topic] = t.TopicID
			}
		}
	}
	for topic, id := range ids {
		in.noteTopicID(topic, id)
	}
	for topic := range unknown {
		if ok, _ := in.idChecks.allow(topic); ok {
			in.checkTopicID(topic)
		}
	}
	return ids
}

// checkTopicID asks Kafka's metadata for topic's ID and notes it.
func (in *Ingest) checkTopicID(topic string) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	md, err := kadm.NewClient(in.cl).Metadata(ctx, topic)
	if err != nil {
		in.log.Warn("ingest: cannot read the topic's metadata to check its topic ID; checking again later", "topic", topic, "err", err)
		return
	}
	if td, ok := md.Topics[topic]; ok && td.Err == nil && td.ID != (kadm.TopicID{}) {
		in.noteTopicID(topic, td.ID)
	}
}

// noteTopicID compares id with the topic ID the WAL recorded for topic's
// assigned partitions (in a previous run too), reports a different one
// once (log, counter, Stats) and records id for the partitions the WAL
// holds (those without state get it at a later call, after their first
// append).
func (in *Ingest) noteTopicID(topic string, id [16]byte) {
	in.mu.Lock()
	var tps []wal.TopicPartition
	for tp := range in.parts {
		if tp.Topic == topic {
			tps = append(tps, tp)
		}
	}
	in.mu.Unlock()
	var prev [16]byte
	changed := false
	hws := map[int32]int64{}
	for _, tp := range tps {
		hws[tp.Partition] = in.opts.WAL.HighWater(tp)
		if stored, ok := in.opts.WAL.TopicID(tp); ok && stored != ([16]byte{}) && stored != id {
			prev, changed = stored, true
		}
		if err := in.opts.WAL.SetTopicID(tp, id); err != nil {
			in.warnEvery("topic id "+tp.String(), "ingest: cannot record the partition's topic ID in the WAL; trying again at the next fetch",
				"partition", tp.String(), "err", err)
		}
	}
	if !changed {
		return
	}
	r := TopicRecreation{Topic: topic, PreviousID: hex.EncodeToString(prev[:]), ID: hex.EncodeToString(id[:]),
		At: time.Now(), HighWaters: hws}
	in.mu.Lock()
	in.recreations = append(slices.DeleteFunc(in.recreations, func(o TopicRecreation) bool { return o.Topic == topic }), r)
	in.mu.Unlock()
	in.recreated.Add(1)
	in.log.Error("ingest: the topic was deleted and created again (new topic ID): its records at or below the WAL's "+
		"high water are taken for re-deliveries of the old topic and not loaded, and while offload runs on it the new "+
		"topic is not consumed: restart offload (docs/OPERATIONS.md, A recreated topic)",
		"topic", topic, "previous_id", r.PreviousID, "id", r.ID, "wal_high_waters", highWaters(r.HighWaters))
}

// highWaters formats per-partition high waters for a log line:
// "0=41 1=-1", by partition.
func highWaters(m map[int32]int64) string {
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d=%d", p, m[p]))
	}
	return strings.Join(parts, " ")
}
