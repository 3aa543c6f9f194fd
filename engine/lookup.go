package engine

import "github.com/offload/offload/engine/event"

// lookup is what the key store answered for a decoded event's id, asked
// by the goroutines that decoded it: for a micro-batch read ahead, beside
// the commit of the one before it. process takes the answer instead of
// reading the store on the engine's goroutine, where the filters' probes
// and the reads that confirm their hits held up every micro-batch
// (docs/PERFORMANCE.md, "Ids looked up while decoding").
type lookup struct {
	key   dedupeKey // keyOf the event's id, unless state is lookNone
	state lookState
}

type lookState uint8

const (
	lookNone   lookState = iota // not looked up: not accepted, no id, or the read failed
	lookAbsent                  // not held at or after the horizon looked up at
	lookHeld                    // held at or after it
)

// lookUp looks d's id up in the key store at horizon h. A read that fails
// leaves d unanswered: process reads again and meets the error itself.
// Callers hold the store's mu for reading.
func (e *Engine) lookUp(d *decoded, h int64) {
	d.look = lookup{}
	if d.res.Verdict != event.Accepted || d.ev.EventID == "" {
		return
	}
	k := keyOf(d.ev.EventID)
	held, err := e.keys.contains(k, d.ev.EventTime.UnixMicro(), h)
	switch {
	case err != nil:
	case held:
		d.look = lookup{key: k, state: lookHeld}
	default:
		d.look = lookup{key: k, state: lookAbsent}
	}
}

// held reports whether the key store holds k, of an event at us, at or
// after b's horizon. The answer of the lookup made while decoding stands
// when it was made at that horizon over the store as it is now, or as it
// was before the micro-batch before committed: that one adds only the
// ids in b.since (a held id stays held: a commit forgets only ids below
// its own horizon, which is at most b's). Otherwise it reads the store.
func (e *Engine) held(b *batch, k dedupeKey, us int64, look lookup) (bool, error) {
	if look.state == lookNone || !b.looked || b.lookedAt != b.horizon {
		return e.keys.contains(k, us, b.horizon)
	}
	if look.state == lookHeld {
		return true, nil
	}
	if _, ok := b.since[k]; ok {
		return e.keys.contains(k, us, b.horizon)
	}
	return false, nil
}
