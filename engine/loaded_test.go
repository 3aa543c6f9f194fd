package engine

import (
	"testing"
	"time"

	"github.com/offload/offload/wal"
)

// walHeld returns how many records the WAL holds for tp.
func walHeld(h *harness, tp wal.TopicPartition) int64 {
	for _, s := range h.w.Stats() {
		if s.TopicPartition == tp {
			return int64(s.Records)
		}
	}
	return 0
}

// TestLoadedKeepsWALUntilShipped checks Loaded and KeepUntilLoaded: the
// offsets of consumed records count as loaded only once every batch
// holding them is shipped, the WAL keeps them until then (across a
// restart too), and records that add no row to the outbox do not wait.
func TestLoadedKeepsWALUntilShipped(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.KeepUntilLoaded = true })
	tp := wpart("orders", 0)
	check := func(what string, loaded, held int64) {
		t.Helper()
		if got, ok := h.e.Loaded()[tp]; !ok || got != loaded {
			t.Errorf("%s: Loaded = %d (present %v), want %d", what, got, ok, loaded)
		}
		if got := walHeld(h, tp); got != held {
			t.Errorf("%s: the WAL holds %d records, want %d", what, got, held)
		}
	}
	h.add("orders", 0, ev("a", "s1", "1", at(0)), ev("b", "s1", "2", at(time.Second)), ev("c", "s1", "3", at(2*time.Second)))
	h.drain()
	check("consumed into the open batch", 0, 3)
	a := h.sealOne()
	check("sealed", 0, 3)
	h.add("orders", 0, ev("d", "s1", "4", at(3*time.Second)), ev("e", "s1", "5", at(4*time.Second)))
	h.drain()
	check("a second batch open", 0, 5)
	if err := h.e.Park(a.ID, "test"); err != nil {
		t.Fatal(err)
	}
	check("the first batch parked", 0, 5)
	if err := h.e.RetryParked(a.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.e.MarkShipped(a.ID); err != nil {
		t.Fatal(err)
	}
	check("the first batch shipped", 3, 2)
	h.reopen()
	check("reopened", 3, 2)
	b := h.sealOne()
	if err := h.e.MarkShipped(b.ID); err != nil {
		t.Fatal(err)
	}
	check("everything shipped", 5, 0)
	// A record that only goes to the dead-letter table leaves the open
	// batch without rows: nothing of it waits for the warehouse.
	h.add("orders", 0, "not json")
	h.drain()
	check("a dead letter", 6, 0)
	// Rows after it: the open batch's range starts at the dead letter,
	// which Loaded does not take back.
	h.add("orders", 0, ev("f", "s1", "6", at(5*time.Second)))
	h.drain()
	check("rows after the dead letter", 6, 1)
}

// TestLoadedCustodyTruncates checks that without KeepUntilLoaded the WAL
// is truncated once consumed, while Loaded still waits for the load.
func TestLoadedCustodyTruncates(t *testing.T) {
	h := newHarness(t, nil)
	tp := wpart("orders", 0)
	h.add("orders", 0, ev("a", "s1", "1", at(0)), ev("b", "s1", "2", at(time.Second)))
	h.drain()
	if got := walHeld(h, tp); got != 0 {
		t.Errorf("the WAL holds %d consumed records, want 0", got)
	}
	if got := h.e.Loaded()[tp]; got != 0 {
		t.Errorf("Loaded = %d before the load, want 0", got)
	}
}
