package window

import (
	"strconv"
	"strings"
	"time"

	"github.com/offload/offload/engine/event"
)

// Key identifies a series of windows: the grouping columns.
type Key struct {
	StoreID, Currency, EventType, Channel string
}

// compare orders keys by StoreID, Currency, EventType, then Channel.
func (k Key) compare(o Key) int {
	if c := strings.Compare(k.StoreID, o.StoreID); c != 0 {
		return c
	}
	if c := strings.Compare(k.Currency, o.Currency); c != 0 {
		return c
	}
	if c := strings.Compare(k.EventType, o.EventType); c != 0 {
		return c
	}
	return strings.Compare(k.Channel, o.Channel)
}

// WindowID identifies one window: its key and start.
type WindowID struct {
	Key
	Start time.Time // UTC
}

func compareID(ak Key, as time.Time, bk Key, bs time.Time) int {
	if c := as.Compare(bs); c != 0 {
		return c
	}
	return ak.compare(bk)
}

// Window is the state of one tumbling window, as the engine persists it.
type Window struct {
	Key
	// Start is the window's start in UTC, a multiple of Options.Size since
	// the Unix epoch. The window holds events with Start <= EventTime <
	// End().
	Start     time.Time
	Count     int64
	SumAmount event.Decimal
	// SumBase and BaseCount cover only the events that had a base-currency
	// amount (the rates table may lack a currency).
	SumBase   event.Decimal
	BaseCount int64
	// Min and Max are over Amount; both are 0 while Count is 0.
	Min, Max event.Decimal
	// Customers estimates the distinct CustomerIDs (hashed with
	// CustomerHash); events without one do not add to it.
	Customers Sketch
	// Version is the version of the last emission, 0 before the first.
	Version int64
	// Dirty says the window changed since it was last emitted (or was never
	// emitted).
	Dirty bool

	size time.Duration // set by the Set; see End
}

// End returns the end of the window (exclusive): Start plus the Set's
// window size. It is only meaningful for windows a Set returned or
// restored.
func (w *Window) End() time.Time { return w.Start.Add(w.size) }

// ID returns the window's identity.
func (w *Window) ID() WindowID { return WindowID{Key: w.Key, Start: w.Start} }

// emitted returns the row Advance hands out for w.
func (w *Window) emitted() Emitted {
	return Emitted{
		Key:               w.Key,
		Start:             w.Start,
		End:               w.End(),
		Count:             w.Count,
		SumAmount:         w.SumAmount,
		SumBase:           w.SumBase,
		BaseCount:         w.BaseCount,
		Min:               w.Min,
		Max:               w.Max,
		DistinctCustomers: w.Customers.Estimate(),
		Version:           w.Version,
	}
}

// Emitted is one emission of a window: the row the engine writes to the
// outbox and the warehouse upserts on (Key, Start), keeping the highest
// Version.
type Emitted struct {
	Key
	Start, End        time.Time // UTC
	Count             int64
	SumAmount         event.Decimal
	SumBase           event.Decimal
	BaseCount         int64
	Min, Max          event.Decimal
	DistinctCustomers int64
	// Version is 1 for the first emission of a window and one more for
	// each re-emission after late events changed it.
	Version int64
}

// Lateness is Add's verdict on an event.
type Lateness int

const (
	// OnTime: the event's time is at or past the watermark.
	OnTime Lateness = iota
	// Late: the event's time is below the watermark but its window is still
	// kept; the window is updated and will be emitted (again) at the next
	// Advance if it has ended by then.
	Late
	// TooLate: the event's window has passed End + Lateness <= watermark
	// and is (or, at the next Advance, will be) purged; no window changes.
	TooLate
)

func (l Lateness) String() string {
	switch l {
	case OnTime:
		return "on_time"
	case Late:
		return "late"
	case TooLate:
		return "too_late"
	}
	return "Lateness(" + strconv.Itoa(int(l)) + ")"
}
