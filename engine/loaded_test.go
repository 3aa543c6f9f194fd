package engine

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/offload/offload/engine/window"
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
// holding them is shipped and the windows they fed are emitted in a
// shipped batch and purged, the WAL keeps them until then (across a
// restart too), and records that add no row to the outbox do not wait.
// Without lateness each event, a minute after the one before, closes the
// window of the one before.
func TestLoadedKeepsWALUntilShipped(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.KeepUntilLoaded = true
		o.Window.Lateness = window.NoLateness
	})
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
	h.add("orders", 0, ev("a", "s1", "1", at(0)), ev("b", "s1", "2", at(time.Minute)), ev("c", "s1", "3", at(2*time.Minute)))
	h.drain()
	check("consumed into the open batch", 0, 3)
	a := h.sealOne()
	check("sealed", 0, 3)
	h.add("orders", 0, ev("d", "s1", "4", at(3*time.Minute)), ev("e", "s1", "5", at(4*time.Minute)))
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
	// c's window was emitted into the open batch (by d), which is not
	// shipped: c waits.
	// The WAL drops whole entries: a, b and c were appended as one.
	check("the first batch shipped", 2, 5)
	h.reopen()
	check("reopened", 2, 5)
	b := h.sealOne()
	if err := h.e.MarkShipped(b.ID); err != nil {
		t.Fatal(err)
	}
	// e's window is still open.
	check("everything shipped", 4, 2)
	// A record that only goes to the dead-letter table leaves the open
	// batch without rows: nothing of it waits for the warehouse, but e's
	// window still does.
	h.add("orders", 0, "not json")
	h.drain()
	check("a dead letter", 4, 3)
	// f closes e's window into the open batch.
	h.add("orders", 0, ev("f", "s1", "6", at(5*time.Minute)))
	h.drain()
	check("rows after the dead letter", 4, 4)
	c := h.sealOne()
	if err := h.e.MarkShipped(c.ID); err != nil {
		t.Fatal(err)
	}
	// Only f's window is open; the dead letter before it waits with it.
	check("e's window shipped", 6, 1)
}

// TestLoadedHoldsOpenWindows loses a data directory in end-to-end
// delivery: a new engine reads from Loaded what the first one had consumed
// (as Kafka would give it again) and then what follows, and every window
// that was open at the loss (held by the window set, or emitted in a batch
// not shipped) comes out of it whole: equal to the window computed over
// every event.
func TestLoadedHoldsOpenWindows(t *testing.T) {
	type rec struct {
		p     int32
		store string
		at    time.Duration
		value string
	}
	var recs []rec
	for i := range 120 {
		r := rec{p: int32(i % 2), store: fmt.Sprintf("s%d", i%3), at: time.Duration(i) * 10 * time.Second}
		r.value = ev(fmt.Sprintf("e%d", i), r.store, fmt.Sprint(i+1), at(r.at))
		recs = append(recs, r)
	}
	// The windows over every event: count and sum by store and start.
	want := map[string]string{}
	{
		type agg struct{ n, sum int }
		m := map[string]*agg{}
		for i, r := range recs {
			k := fmt.Sprintf("%s %d", r.store, at(r.at).Truncate(time.Minute).UnixMicro())
			if m[k] == nil {
				m[k] = &agg{}
			}
			m[k].n++
			m[k].sum += i + 1
		}
		for k, a := range m {
			want[k] = fmt.Sprintf("%d %d", a.n, a.sum)
		}
	}
	feed := func(h *harness, rs []rec) {
		for _, r := range rs {
			h.add("orders", r.p, r.value)
		}
		h.drain()
	}

	// The first engine: 8 records a micro-batch, a batch sealed and
	// shipped after each; the last one sealed but not shipped, and a
	// micro-batch in the open batch, when the disk is lost.
	const lost = 90
	a := newHarness(t, func(o *Options) { o.KeepUntilLoaded = true })
	for i := 0; i < lost; i += 8 {
		feed(a, recs[i:min(i+8, lost)])
		switch {
		case i+8 >= lost: // the last micro-batch stays in the open batch
		case i+16 >= lost:
			if err := a.e.SealNow(); err != nil {
				t.Fatal(err)
			}
		default:
			if err := a.e.MarkShipped(a.sealOne().ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	loaded := a.e.Loaded()
	open := map[string]bool{}
	for _, r := range a.rows(`SELECT store_id, epoch_us(window_start) FROM windows
		UNION SELECT w.store_id, epoch_us(w.window_start) FROM outbox_windows w LEFT JOIN outbox_batches b USING (batch_id)
		WHERE b.state IS DISTINCT FROM 'shipped'`) {
		open[r] = true
	}
	if len(open) < 10 {
		t.Fatalf("%d windows open at the loss: the test means little", len(open))
	}
	t.Logf("loaded at the loss %v; %d windows open", loaded, len(open))

	// The new engine reads from the loaded offsets, as Kafka gives the
	// records again, then the rest and an event an hour later that
	// closes every window.
	b := newHarness(t, func(o *Options) { o.KeepUntilLoaded = true })
	var reread []rec
	for i, r := range recs {
		next, ok := loaded[wpart("orders", r.p)]
		if !ok {
			t.Fatalf("nothing loaded for partition %d", r.p)
		}
		if int64(i/2) >= next { // offsets per partition: i/2
			reread = append(reread, r)
		}
	}
	for p := range int32(2) {
		b.next[wpart("orders", p)] = loaded[wpart("orders", p)]
	}
	feed(b, reread[:len(reread)-(len(recs)-lost)])
	feed(b, recs[lost:])
	b.add("orders", 0, ev("late", "s9", "1", at(time.Hour)))
	b.drain()
	got := map[string]string{}
	for _, r := range b.rows(`SELECT store_id, epoch_us(window_start), arg_max(count, version), arg_max(CAST(sum_amount AS BIGINT), version)
		FROM outbox_windows GROUP BY ALL`) {
		f := strings.Fields(r)
		got[f[0]+" "+f[1]] = f[2] + " " + f[3]
	}
	for k := range open {
		if got[k] != want[k] {
			t.Errorf("window %s, open at the loss: emitted after it with count and sum %q, want %q", k, got[k], want[k])
		}
	}
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
