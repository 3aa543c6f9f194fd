package ingest

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/wal"
)

// This file follows the records that are durable in the WAL but whose
// offsets are not committed to Kafka: how long they wait (the status's and
// the metrics' oldest uncommitted age), and in `kafka.delivery: end-to-end`
// which of them may be committed (docs/ARCHITECTURE.md, "Delivery
// contract").

// markEvery is the least time between two durableMarks of a partition:
// appends closer together share one, so a long warehouse outage keeps
// at most one mark a second per partition in memory.
const markEvery = time.Second

// durableMark says that the records below next became durable no later
// than at.
type durableMark struct {
	next int64
	at   time.Time
}

// markDurable notes that tp's records below next are durable as of at.
// Callers hold mu.
func (in *Ingest) markDurable(tp wal.TopicPartition, next int64, at time.Time) {
	ps := in.parts[tp]
	if ps == nil || (ps.committed >= 0 && next <= ps.committed) {
		return
	}
	if n := len(ps.durable); n > 0 {
		last := &ps.durable[n-1]
		if next <= last.next {
			return
		}
		if at.Sub(last.at) < markEvery {
			last.next = next
			return
		}
	}
	ps.durable = append(ps.durable, durableMark{next: next, at: at})
}

// committedUpTo forgets the marks whose records are all below the
// committed offset next.
func (p *partState) committedUpTo(next int64) {
	i := 0
	for i < len(p.durable) && p.durable[i].next <= next {
		i++
	}
	p.durable = p.durable[i:]
}

// uncommittedAge is how long the oldest durable record not committed has
// waited, 0 if none.
func (p *partState) uncommittedAge(now time.Time) time.Duration {
	if len(p.durable) == 0 {
		return 0
	}
	return max(now.Sub(p.durable[0].at), 0)
}

// takeLoaded makes pending, in end-to-end delivery, the offsets Loaded
// accounts for that are past the committed ones. Only the latest
// incarnation of a topic is committed: Kafka keeps offsets by name.
func (in *Ingest) takeLoaded() {
	if in.opts.Loaded == nil {
		return
	}
	loaded := in.opts.Loaded()
	in.mu.Lock()
	defer in.mu.Unlock()
	for tp, ps := range in.parts {
		next, ok := loaded[in.walPartition(tp.Topic, tp.Partition)]
		if !ok || next <= ps.committed {
			continue
		}
		if cur, ok := in.pending[tp]; ok && cur.Offset >= next {
			continue
		}
		// The leader epoch of the record before next is not known
		// here; -1 skips franz-go's truncation check for it.
		in.pending[tp] = kgo.EpochOffset{Epoch: -1, Offset: next}
	}
}
