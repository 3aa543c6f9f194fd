package window

import (
	"cmp"
	"encoding/binary"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/offload/offload/engine/event"
)

// Set holds the open and recently emitted windows of every key. It is a
// pure state machine: no goroutines, no clock, no I/O. It is not safe for
// concurrent use; the engine's micro-batch loop owns it.
type Set struct {
	opts     Options
	size     int64 // nanoseconds
	lateness int64 // nanoseconds, >= 0

	// windows finds a window by slotHash; windows whose hashes collide are
	// chained through state.next.
	windows map[uint64]*state
	n       int
	seed    uint64
	// buckets group the windows by start, ascending.
	buckets []*bucket
	// intern holds one copy of each key string in use, so windows share
	// them: less memory, and the strings compared on every lookup stay in
	// the CPU cache.
	intern map[string]string

	changed []*state   // windows changed since the last Changed (each once)
	purged  []WindowID // windows purged since the last Purged

	seen    bool  // an event was added or restored
	maxTime int64 // highest event time seen, Unix nanoseconds
	// wmSeen and wmMax are seen and maxTime as of the last Advance (or
	// Restore): the watermark in force during a micro-batch.
	wmSeen    bool
	wmMax     int64
	overflows int64
}

// bucket holds the windows with one start.
type bucket struct {
	start   int64
	windows []*state
	dirty   []*state // windows with Dirty set (each once)
}

type state struct {
	Window
	hash      uint64 // slotHash
	start     int64  // Window.Start in Unix nanoseconds
	next      *state // next window with the same hash
	bucket    *bucket
	inDirty   bool
	inChanged bool
	purged    bool
}

// NewSet returns an empty Set. It applies EnsureDefaults to a copy of opts
// and panics if Validate fails: validate the configuration before starting.
func NewSet(opts Options) *Set {
	opts.EnsureDefaults()
	if err := opts.Validate("window"); err != nil {
		panic("window: NewSet: " + err.Error())
	}
	s := &Set{opts: opts, size: int64(opts.Size), lateness: int64(opts.lateness()), seed: rand.Uint64()}
	s.reset()
	return s
}

func (s *Set) reset() {
	s.windows = make(map[uint64]*state)
	s.n = 0
	s.buckets = nil
	s.intern = make(map[string]string)
	s.changed, s.purged = nil, nil
	s.seen, s.maxTime = false, 0
	s.wmSeen, s.wmMax = false, 0
}

// Options returns the Set's options, defaults applied.
func (s *Set) Options() Options { return s.opts }

// slotHash hashes a window's identity for the in-memory index only: the
// seed is random per Set and nothing derived from the hash is ever output
// or stored. (Four maphash.String calls cost twice as much.)
func (s *Set) slotHash(k *Key, start int64) uint64 {
	h := s.seed
	h = strHash(h, k.StoreID)
	h = strHash(h, k.Currency)
	h = strHash(h, k.EventType)
	h = strHash(h, k.Channel)
	return mix64(h^uint64(start), 0x9e3779b97f4a7c15)
}

// strHash folds v into h, wyhash-style: eight bytes at a time, the last
// (partial) word read with overlapping loads rather than byte by byte. The
// length goes in too, so ("ab", "c") and ("a", "bc") differ.
func strHash(h uint64, v string) uint64 {
	const k0, k1 = 0xa0761d6478bd642f, 0xe7037ed1a0b428db
	all := unsafe.Slice(unsafe.StringData(v), len(v))
	b, n := all, len(all)
	var w uint64
	switch {
	case n == 0:
	case n < 4:
		w = uint64(b[0])<<16 | uint64(b[n>>1])<<8 | uint64(b[n-1])
	case n <= 8:
		w = uint64(binary.LittleEndian.Uint32(b))<<32 | uint64(binary.LittleEndian.Uint32(b[n-4:]))
	default:
		for len(b) > 8 {
			h = mix64(h^binary.LittleEndian.Uint64(b)^k0, k1)
			b = b[8:]
		}
		w = binary.LittleEndian.Uint64(all[n-8:]) // the last 8 bytes, overlapping
	}
	return mix64(h^w^k0, k1^uint64(n))
}

func mix64(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// lookup returns the window of k and start, or nil.
func (s *Set) lookup(k *Key, start int64, h uint64) *state {
	for w := s.windows[h]; w != nil; w = w.next {
		if w.start == start && w.Key == *k {
			return w
		}
	}
	return nil
}

// Add folds one accepted event into its window and returns its verdict
// (see doc.go, "Semantics"):
//
//   - OnTime: EventTime >= Watermark(); the window is updated.
//   - Late: EventTime < Watermark() but End + Lateness > Watermark(); the
//     window is updated, marked dirty and emitted again, with the next
//     Version, at the next Advance once it has ended.
//   - TooLate: End + Lateness <= Watermark(); no window is touched. The
//     engine still keeps the clean row and counts the event.
//
// The watermark is the one in force since the last Advance: events of
// one micro-batch are judged alike whatever their order within it (a
// micro-batch reads partition after partition, and a partition read
// first must not make the others late). An event raises MaxEventTime,
// which moves the watermark at the next Advance.
func (s *Set) Add(ev *event.Event) Lateness {
	t := ev.EventTime.UnixNano()
	start := s.startOf(t)
	verdict := OnTime
	if s.wmSeen {
		if wm := s.wmMax - s.lateness; t < wm {
			if !s.heldAt(start, wm) {
				return TooLate
			}
			verdict = Late
		}
	}
	if !s.seen || t > s.maxTime {
		s.seen, s.maxTime = true, t
	}

	k := Key{ev.StoreID, ev.Currency, ev.EventType, ev.Channel}
	h := s.slotHash(&k, start)
	w := s.lookup(&k, start, h)
	if w == nil {
		w = &state{
			Window: Window{Key: s.internKey(k), Start: time.Unix(0, start).UTC(), size: time.Duration(s.size),
				Min: ev.Amount, Max: ev.Amount},
			start: start,
		}
		s.insert(w, h)
	}
	w.Count++
	w.SumAmount = s.add(w.SumAmount, ev.Amount)
	if ev.HasBaseAmount {
		w.SumBase = s.add(w.SumBase, ev.BaseAmount)
		w.BaseCount++
	}
	if ev.Amount < w.Min {
		w.Min = ev.Amount
	}
	if ev.Amount > w.Max {
		w.Max = ev.Amount
	}
	if ev.CustomerID != "" {
		w.Customers.Add(CustomerHash(ev.CustomerID))
	}
	s.markDirty(w)
	s.markChanged(w)
	return verdict
}

// insert adds w, whose Key, Start and start are set, to the index and its
// bucket. A window with the same identity must not exist.
func (s *Set) insert(w *state, h uint64) {
	w.hash = h
	w.next = s.windows[h]
	s.windows[h] = w
	s.n++
	i, found := slices.BinarySearchFunc(s.buckets, w.start, func(b *bucket, t int64) int { return cmp.Compare(b.start, t) })
	if !found {
		s.buckets = slices.Insert(s.buckets, i, &bucket{start: w.start})
	}
	w.bucket = s.buckets[i]
	w.bucket.windows = append(w.bucket.windows, w)
}

// remove takes w out of the index (not out of its bucket).
func (s *Set) remove(w *state) {
	p := s.windows[w.hash]
	if p == w {
		if w.next == nil {
			delete(s.windows, w.hash)
		} else {
			s.windows[w.hash] = w.next
		}
	} else {
		for p.next != w {
			p = p.next
		}
		p.next = w.next
	}
	w.next = nil
	s.n--
}

// internKey returns k with every string replaced by the Set's copy, made
// on first use. Copying matters beyond sharing: an event's strings point
// into 16 KiB blocks of the decoder, which a window kept for minutes would
// otherwise pin.
func (s *Set) internKey(k Key) Key {
	return Key{s.internString(k.StoreID), s.internString(k.Currency), s.internString(k.EventType), s.internString(k.Channel)}
}

func (s *Set) internString(v string) string {
	if c, ok := s.intern[v]; ok {
		return c
	}
	c := strings.Clone(v)
	s.intern[c] = c
	return c
}

func (s *Set) markDirty(w *state) {
	w.Dirty = true
	if !w.inDirty {
		w.inDirty = true
		w.bucket.dirty = append(w.bucket.dirty, w)
	}
}

func (s *Set) markChanged(w *state) {
	if !w.inChanged {
		w.inChanged = true
		s.changed = append(s.changed, w)
	}
}

// add returns a+b, saturated at the Decimal range (and counted) instead of
// wrapping around.
func (s *Set) add(a, b event.Decimal) event.Decimal {
	c := a + b
	if (c > a) != (b > 0) {
		s.overflows++
		if b > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return c
}

// Advance ends a micro-batch. It emits every dirty window whose End <=
// Watermark(), with Version incremented (the first emission is 1) and Dirty
// cleared, in order of Start then Key (StoreID, Currency, EventType,
// Channel); then it purges every window whose End + Lateness <=
// Watermark() and returns how many. Emitting first means no window is
// purged without its last state having been emitted.
func (s *Set) Advance() (emitted []Emitted, purged int) {
	if !s.seen {
		return nil, 0
	}
	s.wmSeen, s.wmMax = true, s.maxTime
	wm := s.maxTime - s.lateness

	// Only buckets that have ended can emit, and only their dirty windows.
	for _, b := range s.buckets {
		if b.start+s.size > wm {
			break
		}
		if len(b.dirty) == 0 {
			continue
		}
		// In Key order, which is also the order they are marked changed in,
		// so that nothing depends on the order of the dirty list (after
		// Restore, the order of the persisted rows).
		slices.SortFunc(b.dirty, func(x, y *state) int { return x.Key.compare(y.Key) })
		for _, w := range b.dirty {
			w.Version++
			w.Dirty, w.inDirty = false, false
			emitted = append(emitted, w.emitted())
			s.markChanged(w)
		}
		clear(b.dirty)
		b.dirty = b.dirty[:0]
	}

	n := 0
	for ; n < len(s.buckets); n++ {
		b := s.buckets[n]
		if s.heldAt(b.start, wm) {
			break
		}
		for _, w := range b.windows {
			s.remove(w)
			w.purged = true
			w.bucket = nil
			s.purged = append(s.purged, w.ID())
			purged++
		}
	}
	clear(s.buckets[:n])
	s.buckets = slices.Delete(s.buckets, 0, n)
	if purged > 0 && len(s.intern) > 1024 && len(s.intern) > 8*s.n {
		s.compactIntern()
	}
	return emitted, purged
}

// compactIntern drops interned strings no window uses any more.
func (s *Set) compactIntern() {
	m := make(map[string]string, 4*s.n/3)
	for _, b := range s.buckets {
		for _, w := range b.windows {
			for _, v := range [...]string{w.StoreID, w.Currency, w.EventType, w.Channel} {
				m[v] = v
			}
		}
	}
	s.intern = m
}

// Watermark returns the watermark in force: the highest event time seen
// as of the last Advance minus Lateness, or the zero time before it.
func (s *Set) Watermark() time.Time {
	if !s.wmSeen {
		return time.Time{}
	}
	return time.Unix(0, s.wmMax-s.lateness).UTC()
}

// MaxEventTime returns the highest event time seen (the engine persists it
// for Restore), or the zero time before any event.
func (s *Set) MaxEventTime() time.Time {
	if !s.seen {
		return time.Time{}
	}
	return time.Unix(0, s.maxTime).UTC()
}

// Changed returns the windows created, updated or emitted since the last
// call, for the engine to upsert in the same transaction as the
// micro-batch, in the order they first changed (a deterministic function
// of the events and micro-batches since the last Restore; not sorted, as
// sorting thousands of windows per micro-batch costs more than the
// changes). Windows purged since are left out (they are in Purged). The
// pointers are to the Set's state: read them before the next Add, Advance
// or Restore, and do not modify them.
func (s *Set) Changed() []*Window {
	var out []*Window
	for _, w := range s.changed {
		w.inChanged = false
		if !w.purged {
			if out == nil {
				out = make([]*Window, 0, len(s.changed))
			}
			out = append(out, &w.Window)
		}
	}
	clear(s.changed)
	s.changed = s.changed[:0]
	return out
}

// Purged returns the windows purged since the last call, in order of Start
// then Key, for the engine to delete. A window may be listed that Changed
// never returned (created and purged between two calls); deleting it is a
// no-op.
func (s *Set) Purged() []WindowID {
	out := s.purged
	s.purged = nil
	slices.SortFunc(out, func(a, b WindowID) int { return compareID(a.Key, a.Start, b.Key, b.Start) })
	return out
}

// Windows returns every window the Set holds, in order of Start then Key,
// with the same rules as Changed's result. For status pages and tests.
func (s *Set) Windows() []*Window {
	out := make([]*Window, 0, s.n)
	for _, b := range s.buckets {
		first := len(out)
		for _, w := range b.windows {
			out = append(out, &w.Window)
		}
		slices.SortFunc(out[first:], func(x, y *Window) int { return x.Key.compare(y.Key) })
	}
	return out
}

// Restore replaces the Set's state with persisted windows and the
// persisted MaxEventTime (the zero time if no event was ever added), as
// they were committed after the last Advance. The windows are copied, so
// ws may be reused; End is recomputed from the Set's Size, so Restore must
// be given the Size the windows were built with. Windows that are already
// past End + Lateness are kept until the next Advance, which emits them if
// Dirty and purges them. If two windows share a Key and Start the last
// wins. Changed and Purged start empty.
func (s *Set) Restore(ws []Window, maxEventTime time.Time) {
	s.reset()
	if !maxEventTime.IsZero() {
		s.seen, s.maxTime = true, maxEventTime.UnixNano()
		s.wmSeen, s.wmMax = true, s.maxTime
	}
	for i := range ws {
		in := &ws[i]
		start := in.Start.UnixNano()
		k := s.internKey(in.Key)
		h := s.slotHash(&k, start)
		if old := s.lookup(&k, start, h); old != nil {
			s.remove(old)
			b := old.bucket
			b.windows = slices.DeleteFunc(b.windows, func(w *state) bool { return w == old })
			b.dirty = slices.DeleteFunc(b.dirty, func(w *state) bool { return w == old })
		}
		w := &state{Window: *in, start: start}
		w.Key = k
		w.Start = time.Unix(0, start).UTC()
		w.Customers = in.Customers.Clone()
		w.size = time.Duration(s.size)
		s.insert(w, h)
		if w.Dirty {
			s.markDirty(w)
		}
	}
}

// StartOf returns the start, in Unix nanoseconds, of the windows an
// event at t belongs to.
func (s *Set) StartOf(t time.Time) int64 { return s.startOf(t.UnixNano()) }

func (s *Set) startOf(t int64) int64 { return floorDiv(t, s.size) * s.size }

// Kept reports whether the windows that start at start (Unix nanoseconds)
// are still held under the watermark in force: Advance purges them once
// End + Lateness <= Watermark(). Before the first Advance every window is
// kept.
func (s *Set) Kept(start int64) bool {
	return !s.wmSeen || s.heldAt(start, s.wmMax-s.lateness)
}

// heldAt reports whether the windows that start at start are held under
// the watermark wm: their End + Lateness lies after it. Add finds an
// event of windows no longer held too late, and Advance purges them.
func (s *Set) heldAt(start, wm int64) bool { return start+s.size+s.lateness > wm }

// Len returns the number of windows held.
func (s *Set) Len() int { return s.n }

// Overflows returns how many times a sum saturated at the Decimal range
// (about ±922 trillion) instead of wrapping; the engine exports it as a
// counter. It is not persisted.
func (s *Set) Overflows() int64 { return s.overflows }

// floorDiv returns a/b rounded towards negative infinity (b > 0), so
// windows before 1970 align too.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
