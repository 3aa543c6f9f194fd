package memflush

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a test clock moved by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// TestWrote: a flush at the first write after an interval written with
// fewer than half a memtable's bytes, none after one written with more,
// none within an interval; a failed flush is only logged.
func TestWrote(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	flushes := 0
	var fail error
	f := newFlusher(func() error { flushes++; return fail }, 1<<20, c.now, slog.New(slog.DiscardHandler), "test")

	f.Wrote(100 << 10)
	c.t = c.t.Add(Interval - time.Nanosecond)
	f.Wrote(100 << 10)
	if flushes != 0 {
		t.Fatalf("%d flushes within the first interval, want 0", flushes)
	}
	c.t = c.t.Add(time.Nanosecond)
	f.Wrote(100 << 10) // 300 KiB in the interval that ended: under 512 KiB
	if flushes != 1 {
		t.Fatalf("%d flushes after a slow interval, want 1", flushes)
	}
	f.Wrote(100 << 10)
	if flushes != 1 {
		t.Fatalf("%d flushes after a second write in the new interval, want 1", flushes)
	}

	f.Wrote(400 << 10) // 500 KiB since the last flush's interval started, with the next write's 100 KiB
	c.t = c.t.Add(Interval)
	f.Wrote(100 << 10)
	if flushes != 1 {
		t.Fatalf("%d flushes after an interval with 600 KiB written, want still 1", flushes)
	}

	c.t = c.t.Add(time.Hour) // idle, then one write
	fail = errors.New("disk gone")
	f.Wrote(1)
	if flushes != 2 {
		t.Fatalf("%d flushes after an idle hour, want 2", flushes)
	}
}

// TestWroteConcurrent: writers racing at an interval's end flush once.
func TestWroteConcurrent(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	var flushes atomic.Int64
	f := newFlusher(func() error { flushes.Add(1); return nil }, 1<<20, c.now, slog.New(slog.DiscardHandler), "test")
	c.t = c.t.Add(Interval)
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				f.Wrote(10)
			}
		}()
	}
	for range 8 {
		<-done
	}
	if n := flushes.Load(); n != 1 {
		t.Fatalf("%d flushes, want 1", n)
	}
}
