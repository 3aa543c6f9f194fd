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
	// Incarnation is the WAL's incarnation the new topic's records go to
	// (wal.TopicPartition.Incarnation).
	Incarnation uint32
	// At is when the new ID was first fetched.
	At time.Time
	// HighWaters are the WAL's high waters of the old topic's partitions
	// at that moment: the last offsets of it taken into custody (the new
	// topic starts again at offset 0; docs/OPERATIONS.md, A recreated
	// topic).
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

// noteTopicID compares id with the Kafka topic ID the WAL recorded for
// topic's latest incarnation (in a previous run too). The same ID, or none
// recorded yet, is recorded for the assigned partitions the WAL holds
// (those without state get it at a later call, after their first append).
// The ID of an earlier incarnation is a fetch from before the recreation
// and changes nothing. Any other ID is a topic deleted and created again:
// the WAL starts its next incarnation, the change is reported once (log,
// counter, Stats), offsets of the old topic are no longer committed, and
// the topic's consumption is restarted (restartRecreated) so that the new
// topic is read from its first offset.
func (in *Ingest) noteTopicID(topic string, id [16]byte) {
	cur, curID := in.opts.WAL.Incarnation(topic)
	in.mu.Lock()
	var partitions []int32
	for tp := range in.parts {
		if tp.Topic == topic {
			partitions = append(partitions, tp.Partition)
		}
	}
	in.mu.Unlock()
	slices.Sort(partitions)
	if curID == id || curID == ([16]byte{}) {
		for _, p := range partitions {
			tp := wal.TopicPartition{Topic: topic, Incarnation: cur, Partition: p}
			if err := in.opts.WAL.SetTopicID(tp, id); err != nil {
				in.warnEvery("topic id "+tp.String(), "ingest: cannot record the partition's topic ID in the WAL; trying again at the next fetch",
					"partition", tp.String(), "err", err)
			}
		}
		return
	}
	if _, earlier := in.opts.WAL.IncarnationOf(topic, id); earlier || len(partitions) == 0 {
		return
	}
	hws := map[int32]int64{}
	for _, p := range partitions {
		hws[p] = in.opts.WAL.HighWater(wal.TopicPartition{Topic: topic, Incarnation: cur, Partition: p})
	}
	inc, err := in.opts.WAL.Recreate(topic, id, partitions)
	if err != nil {
		// Until it succeeds, the new topic's records are not taken
		// (route): they stay in Kafka.
		in.warnEvery("recreate "+topic, "ingest: cannot start the WAL's next incarnation of a recreated topic; its new records are not taken until it can, trying again at the next fetch",
			"topic", topic, "err", err)
		return
	}
	r := TopicRecreation{Topic: topic, PreviousID: hex.EncodeToString(curID[:]), ID: hex.EncodeToString(id[:]),
		Incarnation: inc, At: time.Now(), HighWaters: hws}
	in.mu.Lock()
	for tp := range in.pending {
		// Offsets of the deleted topic must not reach the new one's
		// committed offsets.
		if tp.Topic == topic {
			delete(in.pending, tp)
		}
	}
	for tp, ps := range in.parts {
		if tp.Topic == topic {
			ps.committed, ps.hw = -1, -1
		}
	}
	in.refetch[topic] = true
	in.recreations = append(slices.DeleteFunc(in.recreations, func(o TopicRecreation) bool { return o.Topic == topic }), r)
	in.mu.Unlock()
	in.recreated.Add(1)
	in.log.Warn("ingest: the topic was deleted and created again (new topic ID): the old topic's records in the WAL are "+
		"loaded as they are, the new topic is consumed from its first offset as the WAL's next incarnation (docs/OPERATIONS.md, A recreated topic)",
		"topic", topic, "previous_id", r.PreviousID, "id", r.ID, "incarnation", inc, "previous_last_offsets", highWaters(r.HighWaters))
}

// route tells where the records of topic fetched under the topic ID id
// go: the WAL incarnation, whether it is the latest (whose offsets are
// committed to Kafka), and false when they are not taken now. Those are
// the records of a new topic ID not yet made an incarnation, and those of
// a recreated topic whose consumption is about to restart from its first
// offset (they were fetched from where the old topic stopped). Records
// fetched under an earlier incarnation's ID before the topic was deleted
// go to that incarnation. A fetch without an ID (a broker older than
// Kafka 3.1) goes to the latest.
func (in *Ingest) route(topic string, id [16]byte) (inc uint32, latest, ok bool) {
	in.mu.Lock()
	refetching := in.refetch[topic]
	in.mu.Unlock()
	cur, curID := in.opts.WAL.Incarnation(topic)
	if id == ([16]byte{}) || curID == ([16]byte{}) || id == curID {
		return cur, true, !refetching
	}
	if inc, found := in.opts.WAL.IncarnationOf(topic, id); found {
		return inc, false, true
	}
	return 0, false, false
}

// restartRecreated removes the recreated topics from consuming and adds
// them again: franz-go never adopts a new topic ID for a topic it
// consumes (it fails its fetches with UNKNOWN_TOPIC_ID until the topic is
// purged and re-added). The rebalance this causes assigns the partitions
// again, and adjustOffsets starts the new incarnation at its first
// offset. The loop calls it between polls, with no rebalance blocked.
func (in *Ingest) restartRecreated() {
	in.mu.Lock()
	topics := slices.Sorted(maps.Keys(in.refetch))
	clear(in.refetch)
	in.mu.Unlock()
	if len(topics) == 0 {
		return
	}
	in.cl.PurgeTopicsFromConsuming(topics...)
	in.cl.AddConsumeTopics(topics...)
	in.log.Info("ingest: consuming the recreated topics again from their first offset", "topics", topics)
}

// walPartition returns the WAL's partition of topic's latest incarnation.
func (in *Ingest) walPartition(topic string, partition int32) wal.TopicPartition {
	inc, _ := in.opts.WAL.Incarnation(topic)
	return wal.TopicPartition{Topic: topic, Incarnation: inc, Partition: partition}
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
