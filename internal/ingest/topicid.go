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

// noteTopicIDs records the topic ID of every topic in fetches. A topic
// whose fetches fail with UNKNOWN_TOPIC_ID may have been deleted and
// created again: franz-go keeps fetching it under the ID it knew, so its
// current ID is asked of Kafka's metadata (at most every topicIDEvery per
// topic) and a change reported.
func (in *Ingest) noteTopicIDs(fetches kgo.Fetches) {
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
				in.noteTopicID(t.Topic, t.TopicID)
			}
		}
	}
	for topic := range unknown {
		if ok, _ := in.idChecks.allow(topic); ok {
			in.checkTopicID(topic)
		}
	}
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

// noteTopicID records topic's id; a change is logged and counted.
func (in *Ingest) noteTopicID(topic string, id [16]byte) {
	in.mu.Lock()
	prev, known := in.topicIDs[topic]
	if known && prev == id {
		in.mu.Unlock()
		return
	}
	in.topicIDs[topic] = id
	if !known {
		in.mu.Unlock()
		return
	}
	r := TopicRecreation{Topic: topic, PreviousID: hex.EncodeToString(prev[:]), ID: hex.EncodeToString(id[:]),
		At: time.Now(), HighWaters: map[int32]int64{}}
	for tp := range in.parts {
		if tp.Topic == topic {
			r.HighWaters[tp.Partition] = in.opts.WAL.HighWater(tp)
		}
	}
	in.recreations = append(slices.DeleteFunc(in.recreations, func(o TopicRecreation) bool { return o.Topic == topic }), r)
	in.mu.Unlock()
	in.recreated.Add(1)
	in.log.Error("ingest: the topic was deleted and created again (new topic ID): its new records are not consumed until "+
		"offload restarts, and then those at or below the WAL's high water are taken for re-deliveries and dropped "+
		"(docs/OPERATIONS.md, A recreated topic)",
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
