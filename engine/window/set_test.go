package window

import (
	"math"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/offload/offload/engine/event"
)

func ev(t string, store string, amount event.Decimal) *event.Event {
	tm, err := parseTime(t)
	if err != nil {
		panic(err)
	}
	return &event.Event{StoreID: store, Currency: "EUR", EventType: event.EventOrderPlaced, Channel: event.ChannelWeb, Amount: amount, EventTime: tm}
}

// TestKeysDoNotAliasEvents: a window's key strings are the Set's own, so
// a window does not pin, or change with, the decoder's buffer.
func TestKeysDoNotAliasEvents(t *testing.T) {
	buf := []byte("store-1EURorder_placedweb")
	str := func(i, j int) string { return unsafe.String(&buf[i], j-i) }
	e := &event.Event{StoreID: str(0, 7), Currency: str(7, 10), EventType: str(10, 22), Channel: str(22, 25),
		EventTime: testDay.Add(12 * time.Hour), Amount: 1}
	s := NewSet(Options{})
	s.Add(e)
	copy(buf, strings.Repeat("x", len(buf)))
	w := s.Windows()[0]
	if w.Key != (Key{"store-1", "EUR", "order_placed", "web"}) {
		t.Fatalf("window key changed with the event's buffer: %+v", w.Key)
	}
	// Equal strings of two windows share one copy.
	s.Add(&event.Event{StoreID: "store-1", Currency: "EUR", EventType: "refund", Channel: "web", EventTime: e.EventTime})
	ws := s.Windows()
	if unsafe.StringData(ws[0].StoreID) != unsafe.StringData(ws[1].StoreID) {
		t.Fatal("store id not interned")
	}
}

// TestHashChain: windows whose index hashes collide are all found, and
// removing any of them keeps the others.
func TestHashChain(t *testing.T) {
	for remove := range 3 {
		s := NewSet(Options{})
		var ws []*state
		for i, store := range []string{"a", "b", "c"} {
			w := &state{Window: Window{Key: Key{StoreID: store}}, start: int64(i)}
			s.insert(w, 42)
			ws = append(ws, w)
		}
		for _, w := range ws {
			if got := s.lookup(&w.Key, w.start, 42); got != w {
				t.Fatalf("lookup %s: got %v", w.StoreID, got)
			}
		}
		s.remove(ws[remove])
		for i, w := range ws {
			got := s.lookup(&w.Key, w.start, 42)
			if (i == remove) != (got == nil) || (got != nil && got != w) {
				t.Fatalf("after removing %d: lookup %d got %v", remove, i, got)
			}
		}
		if s.Len() != 2 {
			t.Fatalf("Len %d", s.Len())
		}
	}
}

func TestSumsSaturate(t *testing.T) {
	s := NewSet(Options{})
	big := event.Decimal(math.MaxInt64 / 2)
	for range 3 {
		s.Add(ev("12:00:00", "s", big))
	}
	if w := s.Windows()[0]; w.SumAmount != math.MaxInt64 || w.Count != 3 || s.Overflows() != 1 {
		t.Fatalf("sum %d count %d overflows %d", w.SumAmount, w.Count, s.Overflows())
	}
}

func TestRestoreEdgeCases(t *testing.T) {
	s := NewSet(Options{})
	s.Add(ev("12:00:00", "s", 1))
	s.Add(ev("12:30:00", "s", 2))
	// Windows past end + lateness (not purged before the crash, e.g. the
	// engine persisted before Advance): the next Advance emits the dirty one
	// and purges both. A duplicate identity: the last copy wins.
	ws := []Window{*s.Windows()[0], *s.Windows()[0], *s.Windows()[1]}
	ws[0].Count = 99
	ws[1].Dirty = false
	ws[1].Version = 3
	r := NewSet(Options{})
	r.Restore(ws, s.MaxEventTime())
	if r.Len() != 2 {
		t.Fatalf("Len %d", r.Len())
	}
	if len(r.Changed()) != 0 || len(r.Purged()) != 0 {
		t.Fatal("Restore reported changes")
	}
	em, purged := r.Advance()
	if len(em) != 0 || purged != 1 {
		t.Fatalf("emitted %v, purged %d", em, purged)
	}
	if ids := r.Purged(); len(ids) != 1 || ids[0].Start.Hour() != 12 || ids[0].Start.Minute() != 0 {
		t.Fatalf("purged %v", ids)
	}
	// The restored slice is not aliased.
	ws[2].Count = 1000
	if r.Windows()[0].Count != 1 {
		t.Fatal("Restore aliases its input")
	}
	// Dirty restored windows past their end are emitted.
	ws[1].Dirty = true
	r.Restore(ws, s.MaxEventTime())
	em, purged = r.Advance()
	if len(em) != 1 || em[0].Version != 4 || em[0].Count != 1 || purged != 1 {
		t.Fatalf("emitted %+v, purged %d", em, purged)
	}
}

func TestOptionsDefaults(t *testing.T) {
	var o Options
	o.EnsureDefaults()
	if o.Size != time.Minute || o.Lateness != 5*time.Minute {
		t.Fatalf("%+v", o)
	}
	if err := o.Validate("engine"); err != nil {
		t.Fatal(err)
	}
	if err := (Options{Size: time.Minute, Lateness: NoLateness}).Validate(""); err != nil {
		t.Fatal(err)
	}
	err := Options{Size: 7 * time.Minute, Lateness: -2}.Validate("")
	if err == nil || !strings.Contains(err.Error(), "window: 7m0s") || !strings.Contains(err.Error(), "lateness: -2ns") {
		t.Fatalf("%v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("NewSet accepted invalid options")
		}
	}()
	NewSet(Options{Size: 7 * time.Minute})
}

func TestLatenessString(t *testing.T) {
	for l, want := range map[Lateness]string{OnTime: "on_time", Late: "late", TooLate: "too_late", 7: "Lateness(7)"} {
		if l.String() != want {
			t.Errorf("%d: %s", l, l.String())
		}
	}
}

// TestBeforeEpoch: windows align below zero too.
func TestBeforeEpoch(t *testing.T) {
	s := NewSet(Options{})
	s.Add(&event.Event{EventTime: time.Unix(-30, 0)})
	if w := s.Windows()[0]; !w.Start.Equal(time.Unix(-60, 0)) || !w.End().Equal(time.Unix(0, 0)) {
		t.Fatalf("window [%v, %v)", w.Start, w.End())
	}
}

// TestStartOfAndKept: StartOf is the start of an event's window, and Kept
// says true for the starts of the windows the Set holds and false for
// those Advance purged.
func TestStartOfAndKept(t *testing.T) {
	s := NewSet(Options{Size: time.Minute, Lateness: 2 * time.Minute})
	var starts []int64
	for i := range 10 {
		e := &event.Event{StoreID: "s1", Currency: "EUR", EventType: "order_placed", Channel: "web",
			EventTime: testDay.Add(time.Duration(i)*time.Minute + 30*time.Second), Amount: 1}
		start := s.StartOf(e.EventTime)
		if want := testDay.Add(time.Duration(i) * time.Minute).UnixNano(); start != want {
			t.Fatalf("StartOf(%s) = %d, want %d", e.EventTime, start, want)
		}
		if !s.Kept(start) {
			t.Fatalf("before the event at %s: Kept(its start) = false", e.EventTime)
		}
		s.Add(e)
		s.Advance()
		starts = append(starts, start)
	}
	held := map[int64]bool{}
	for _, w := range s.Windows() {
		held[w.Start.UnixNano()] = true
	}
	for _, start := range starts {
		if s.Kept(start) != held[start] {
			t.Errorf("Kept(%s) = %v, the Set holds its window: %v", time.Unix(0, start).UTC(), s.Kept(start), held[start])
		}
	}
	if len(held) == 0 || len(held) == len(starts) {
		t.Fatalf("%d of %d windows held: nothing to tell apart", len(held), len(starts))
	}
	if got := s.StartOf(time.Unix(-1, 0)); got != -int64(time.Minute) {
		t.Errorf("StartOf(1 s before the epoch) = %d, want %d", got, -int64(time.Minute))
	}
}
