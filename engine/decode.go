package engine

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/offload/offload/engine/event"
)

// decodeWorkers is how many goroutines decode a micro-batch's records.
// Decoding is the largest part of a micro-batch's CPU and each record
// decodes on its own, so on a box with two or more cores both decode
// (docs/PERFORMANCE.md).
var decodeWorkers = min(runtime.GOMAXPROCS(0), 2)

// minParallelDecode is the fewest records worth decoding on more than one
// goroutine.
const minParallelDecode = 2048

// decoderSet holds one decoder per topic. Decoders keep scratch state, so
// each decoding goroutine has a set of its own.
type decoderSet map[string]*event.Decoder

// newDecoderSets builds n decoder sets for topics.
func newDecoderSets(topics map[string]event.Config, n int) ([]decoderSet, error) {
	sets := make([]decoderSet, n)
	for i := range sets {
		sets[i] = make(decoderSet, len(topics))
		for name, cfg := range topics {
			d, err := event.NewDecoder(cfg)
			if err != nil {
				return nil, fmt.Errorf("engine: topic %s: %w", name, err)
			}
			sets[i][name] = d
		}
	}
	return sets, nil
}

// decoded is one record's decoding: the event (complete only when
// accepted) and the verdict.
type decoded struct {
	ev   event.Event
	res  event.Result
	look lookup
}

// decodeBatch decodes every record of b into out, in WAL order, and
// returns out resized to the batch, with each accepted event's id looked
// up in the key store at horizon h (lookUp). Records of a topic without a
// decoder get a zero Result; process routes them to the dead letters.
// Events' items live in one arena per goroutine, so decoding allocates
// little.
func (e *Engine) decodeBatch(b *batch, out []decoded, h int64) []decoded {
	if cap(out) < b.records {
		out = make([]decoded, b.records)
	}
	out = out[:b.records]
	workers := len(e.decoders)
	if b.records < minParallelDecode {
		workers = 1
	}
	// Record i of the batch is entry idx[i].en, record idx[i].rec.
	type at struct{ en, rec int }
	idx := make([]at, 0, b.records)
	for en := range b.entries {
		for rec := range b.entries[en].Records {
			idx = append(idx, at{en, rec})
		}
	}
	var wg sync.WaitGroup
	chunk := (len(idx) + workers - 1) / workers
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, len(idx))
		if lo >= hi {
			break
		}
		set := e.decoders[w]
		wg.Go(func() {
			e.keys.mu.RLock()
			defer e.keys.mu.RUnlock()
			var items []event.Item
			for i := lo; i < hi; i++ {
				en := &b.entries[idx[i].en]
				dec := set[en.TopicPartition.Topic]
				if dec == nil {
					out[i] = decoded{}
					continue
				}
				d := &out[i]
				if cap(items)-len(items) < 16 {
					items = make([]event.Item, 0, 4096)
				}
				d.ev.Items = items[len(items):len(items):cap(items)]
				d.res = dec.Decode(en.Records[idx[i].rec].Value, &d.ev)
				e.lookUp(d, h)
				if n := len(d.ev.Items); n > 0 && cap(d.ev.Items) == cap(items)-len(items) {
					items = items[:len(items)+n] // appended in place: keep them
				}
			}
		})
	}
	wg.Wait()
	return out
}
