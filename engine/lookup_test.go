package engine

import (
	"math"
	"testing"
	"time"
)

// lookedAhead steps the first micro-batch of h and returns the read-ahead
// it leaves, which must hold the next micro-batch of n records.
func lookedAhead(h *harness, n int) *readAhead {
	h.t.Helper()
	h.step()
	ra := h.e.ahead
	if ra == nil || ra.records != n {
		h.t.Fatalf("the next micro-batch was not read ahead: %+v", ra)
	}
	return ra
}

// lookupOf returns the lookup the read-ahead made for event id.
func lookupOf(t *testing.T, ra *readAhead, id string) *lookup {
	t.Helper()
	for i := range ra.decoded {
		if ra.decoded[i].ev.EventID == id {
			if l := &ra.decoded[i].look; l.state != lookNone && l.key == keyOf(id) {
				return l
			}
			t.Fatalf("event %s was not looked up: %+v", id, ra.decoded[i].look)
		}
	}
	t.Fatalf("event %s is not in the read-ahead", id)
	return nil
}

// TestLookupsMadeAhead: a micro-batch read ahead looks its ids up beside
// the commit of the one before, so a lookup may miss that one's ids; its
// copies of them, of earlier micro-batches' ids and of its own are
// duplicates all the same.
func TestLookupsMadeAhead(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.BatchRecords = 2 })
	h.add("orders", 0, ev("a", "s1", "1", at(0)), ev("b", "s1", "1", at(time.Second)))
	h.add("orders", 0, ev("a", "s1", "1", at(0)), ev("c", "s1", "1", at(2*time.Second)))
	h.add("orders", 0, ev("b", "s1", "1", at(time.Second)), ev("d", "s1", "1", at(3*time.Second)))
	h.add("orders", 0, ev("e", "s1", "1", at(4*time.Second)), ev("e", "s1", "1", at(4*time.Second)))
	ra := lookedAhead(h, 2)
	if _, ok := ra.since[keyOf("a")]; !ok || ra.changes != h.e.keys.changes {
		t.Fatalf("the read-ahead does not hold the first micro-batch's ids (%d) at the store's changes %d (%d)", len(ra.since), h.e.keys.changes, ra.changes)
	}
	// As the lookup finds it when it runs before the commit.
	lookupOf(t, ra, "a").state = lookAbsent
	h.drain()
	h.checkDedupe(5, 3)
}

// TestLookupsAheadOfAChange: when the key store changes after a
// micro-batch was read ahead by more than the micro-batch before it
// committed, its lookups are not trusted: the store is read again.
func TestLookupsAheadOfAChange(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.BatchRecords = 1 })
	h.add("orders", 0, ev("a", "s1", "1", at(0)))
	h.add("orders", 0, ev("x", "s1", "1", at(time.Second)))
	ra := lookedAhead(h, 1)
	if l := lookupOf(t, ra, "x"); l.state != lookAbsent {
		t.Fatalf("x looked up as %d, want absent", l.state)
	}
	if err := h.e.keys.commit([]keyTime{{keyOf("x"), at(time.Second).UnixMicro()}}, h.e.keys.horizon, h.e.keys.seq); err != nil {
		t.Fatal(err)
	}
	h.drain()
	if st := h.e.Stats(); st.Accepted != 1 || st.Deduplicated != 1 {
		t.Fatalf("%d accepted, %d deduplicated; want 1 and 1", st.Accepted, st.Deduplicated)
	}
}

// TestLookupAtAnotherHorizon: a lookup made at a horizon other than the
// micro-batch's does not answer for it: an id held below the micro-batch's
// horizon is not a duplicate, whatever the lookup found.
func TestLookupAtAnotherHorizon(t *testing.T) {
	h := newHarness(t, nil)
	h.add("orders", 0, ev("a", "s1", "1", at(0)))
	h.drain()
	k, us := keyOf("a"), at(0).UnixMicro()
	b := h.e.newBatch()
	b.looked, b.lookedAt, b.horizon = true, math.MinInt64, us+1
	if held, err := h.e.held(b, k, us, lookup{key: k, state: lookHeld}); err != nil || held {
		t.Fatalf("held at a horizon above the id: %v, %v; want false", held, err)
	}
	// At the micro-batch's horizon the lookup's answer stands, unread.
	b.lookedAt = b.horizon
	reads := h.e.keys.lookups.Load()
	if held, err := h.e.held(b, k, us, lookup{key: k, state: lookHeld}); err != nil || !held || h.e.keys.lookups.Load() != reads {
		t.Fatalf("a lookup made at the micro-batch's horizon: %v, %v, %d reads; want it to stand (true) unread",
			held, err, h.e.keys.lookups.Load()-reads)
	}
}
