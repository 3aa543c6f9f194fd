package engine

import (
	"encoding/json"
	"maps"

	"github.com/offload/offload/wal"
)

// This file keeps, with `kafka.delivery: end-to-end`, the records that fed
// the windows still open out of what Loaded lets Kafka commit, so that an
// appliance that lost its data directory re-reads every event of those
// windows and emits them whole (docs/ARCHITECTURE.md, "End-to-end
// delivery").

// holdKey is a window start and a partition.
type holdKey struct {
	start int64 // the windows' start, Unix nanoseconds
	tp    wal.TopicPartition
}

// holdWindow notes that the record at offset of tp fed a window starting
// at start, in a batch that keeps window holds. Records of a partition
// come in offset order, so the first noted is the lowest.
func (b *batch) holdWindow(start int64, tp wal.TopicPartition, offset int64) {
	k := holdKey{start, tp}
	if _, ok := b.windowHolds[k]; !ok {
		b.windowHolds[k] = offset
	}
}

// holdEmitted moves the holds of the windows the micro-batch emitted into
// the open batch o, where they stay until o is shipped, and drops the
// holds of the windows the micro-batch purged: a window's records are
// held until its last emission is shipped.
func (e *Engine) holdEmitted(b *batch, o *openBatch) {
	if b.windowHolds == nil {
		return
	}
	o.holds = maps.Clone(e.open.holds)
	if len(b.emitted) > 0 {
		emitted := map[int64]bool{}
		for i := range b.emitted {
			emitted[b.emitted[i].Start.UnixNano()] = true
		}
		for k, first := range b.windowHolds {
			if !emitted[k.start] {
				continue
			}
			if o.holds == nil {
				o.holds = map[wal.TopicPartition]int64{}
			}
			if old, ok := o.holds[k.tp]; !ok || first < old {
				o.holds[k.tp] = first
			}
		}
	}
	for k := range b.windowHolds {
		if !e.windows.Kept(k.start) {
			delete(b.windowHolds, k)
		}
	}
}

// heldRanges returns ranges with each partition's first offset lowered to
// its hold, for Loaded.
func heldRanges(ranges map[wal.TopicPartition]offsetRange, holds map[wal.TopicPartition]int64) map[wal.TopicPartition]offsetRange {
	if len(holds) == 0 {
		return ranges
	}
	out := maps.Clone(ranges)
	if out == nil {
		out = map[wal.TopicPartition]offsetRange{}
	}
	for tp, first := range holds {
		r, ok := out[tp]
		if !ok {
			r = offsetRange{first, first}
		}
		r.first = min(r.first, first)
		out[tp] = r
	}
	return out
}

// holdJSON is one entry of engine_state.window_holds (with the windows'
// start), engine_state.open_holds and outbox_batches.holds (without).
type holdJSON struct {
	Start       int64  `json:"window_start_ns,omitempty"`
	Topic       string `json:"topic"`
	Incarnation uint32 `json:"incarnation,omitempty"`
	Partition   int32  `json:"partition"`
	First       int64  `json:"first"`
}

// formatWindowHolds renders window holds as JSON, or NULL when there is
// none.
func formatWindowHolds(m map[holdKey]int64) any {
	if len(m) == 0 {
		return nil
	}
	hs := make([]holdJSON, 0, len(m))
	for k, first := range m {
		hs = append(hs, holdJSON{Start: k.start, Topic: k.tp.Topic, Incarnation: k.tp.Incarnation, Partition: k.tp.Partition, First: first})
	}
	return marshalHolds(hs)
}

// formatHolds renders a batch's holds as JSON sorted by topic and
// partition, or NULL when there is none.
func formatHolds(m map[wal.TopicPartition]int64) any {
	if len(m) == 0 {
		return nil
	}
	hs := make([]holdJSON, 0, len(m))
	for _, tp := range sortedPartitions(m) {
		hs = append(hs, holdJSON{Topic: tp.Topic, Incarnation: tp.Incarnation, Partition: tp.Partition, First: m[tp]})
	}
	return marshalHolds(hs)
}

func marshalHolds(hs []holdJSON) string {
	b, err := json.Marshal(hs)
	if err != nil {
		panic("BUG: engine: cannot marshal holds: " + err.Error())
	}
	return string(b)
}

// parseWindowHolds parses engine_state.window_holds ("" for NULL).
func parseWindowHolds(s string) (map[holdKey]int64, error) {
	out := map[holdKey]int64{}
	hs, err := unmarshalHolds(s)
	for _, h := range hs {
		out[holdKey{h.Start, wal.TopicPartition{Topic: h.Topic, Incarnation: h.Incarnation, Partition: h.Partition}}] = h.First
	}
	return out, err
}

// parseHolds parses a batch's holds ("" for NULL).
func parseHolds(s string) (map[wal.TopicPartition]int64, error) {
	hs, err := unmarshalHolds(s)
	if len(hs) == 0 {
		return nil, err
	}
	out := make(map[wal.TopicPartition]int64, len(hs))
	for _, h := range hs {
		out[wal.TopicPartition{Topic: h.Topic, Incarnation: h.Incarnation, Partition: h.Partition}] = h.First
	}
	return out, err
}

func unmarshalHolds(s string) ([]holdJSON, error) {
	if s == "" {
		return nil, nil
	}
	var hs []holdJSON
	err := json.Unmarshal([]byte(s), &hs)
	return hs, err
}
