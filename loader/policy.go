package loader

import (
	"fmt"
	"strings"
	"time"
)

// ShippingWindow is a daily period of local time when loads may start,
// "HH:MM-HH:MM"; one whose end is before its start spans midnight
// ("22:00-04:00").
type ShippingWindow struct {
	Start, End time.Duration // since local midnight
}

// ParseShippingWindow parses "HH:MM-HH:MM".
func ParseShippingWindow(s string) (ShippingWindow, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return ShippingWindow{}, fmt.Errorf("shipping window %q: want HH:MM-HH:MM, e.g. 01:00-05:00", s)
	}
	start, err := clock(a)
	if err != nil {
		return ShippingWindow{}, fmt.Errorf("shipping window %q: %w", s, err)
	}
	end, err := clock(b)
	if err != nil {
		return ShippingWindow{}, fmt.Errorf("shipping window %q: %w", s, err)
	}
	if start == end {
		return ShippingWindow{}, fmt.Errorf("shipping window %q is empty; leave shipping windows out to ship at any time", s)
	}
	return ShippingWindow{Start: start, End: end}, nil
}

func clock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not HH:MM (00:00 to 23:59)", s)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

func (w ShippingWindow) String() string {
	f := func(d time.Duration) string { return fmt.Sprintf("%02d:%02d", int(d.Hours()), int(d.Minutes())%60) }
	return f(w.Start) + "-" + f(w.End)
}

// contains tells whether the local time of day d falls in the window.
func (w ShippingWindow) contains(d time.Duration) bool {
	if w.Start < w.End {
		return d >= w.Start && d < w.End
	}
	return d >= w.Start || d < w.End
}

// nextOpen returns whether loads may start at now under windows (none:
// always) and, if not, when the next window opens.
func nextOpen(windows []ShippingWindow, now time.Time) (bool, time.Time) {
	if len(windows) == 0 {
		return true, time.Time{}
	}
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	d := now.Sub(midnight)
	var next time.Time
	for _, w := range windows {
		if w.contains(d) {
			return true, time.Time{}
		}
		at := midnight.Add(w.Start)
		if !at.After(now) {
			at = time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, now.Location()).Add(w.Start)
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return false, next
}

// pacer spreads uploads so they average at most rate bytes a second: a
// batch of n bytes delays the next one by n/rate. Batches go whole (the
// driver uploads from a file), so the rate holds over several batches,
// not within one.
type pacer struct {
	rate int64 // bytes/s; 0: no limit
	next time.Time
}

// book reserves an upload of n bytes and returns when it may start,
// given now.
func (p *pacer) book(now time.Time, n int64) time.Time {
	if p.rate <= 0 {
		return now
	}
	start := now
	if p.next.After(now) {
		start = p.next
	}
	p.next = start.Add(time.Duration(float64(n) / float64(p.rate) * float64(time.Second)))
	return start
}
