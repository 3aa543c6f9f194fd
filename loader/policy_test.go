package loader

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestShippingWindows(t *testing.T) {
	for _, bad := range []string{"", "01:00", "1-5", "25:00-26:00", "05:00-05:00", "aa:bb-01:00"} {
		if _, err := ParseShippingWindow(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	night, err := ParseShippingWindow("22:00-04:00")
	if err != nil {
		t.Fatal(err)
	}
	early, err := ParseShippingWindow(" 06:30 - 07:00 ")
	if err != nil {
		t.Fatal(err)
	}
	if night.String() != "22:00-04:00" || early.String() != "06:30-07:00" {
		t.Fatalf("String: %s %s", night, early)
	}
	day := func(h, m int) time.Time { return time.Date(2026, 3, 10, h, m, 0, 0, time.UTC) }
	for _, c := range []struct {
		now  time.Time
		open bool
		next time.Time
	}{
		{day(23, 0), true, time.Time{}},
		{day(3, 59), true, time.Time{}},
		{day(4, 0), false, day(6, 30)},
		{day(6, 30), true, time.Time{}},
		{day(7, 0), false, day(22, 0)},
		{day(21, 59), false, day(22, 0)},
	} {
		open, next := nextOpen([]ShippingWindow{night, early}, c.now)
		if open != c.open || !next.Equal(c.next) {
			t.Errorf("at %s: open %v next %s, want %v %s", c.now.Format("15:04"), open, next, c.open, c.next)
		}
	}
	if open, _ := nextOpen(nil, day(12, 0)); !open {
		t.Error("no windows must mean always open")
	}
	if _, next := nextOpen([]ShippingWindow{early}, day(8, 0)); !next.Equal(time.Date(2026, 3, 11, 6, 30, 0, 0, time.UTC)) {
		t.Errorf("next day's window: %s", next)
	}
}

func TestBackoffIsCappedFullJitter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base, limit := 100*time.Millisecond, 2*time.Second
	for attempt := 1; attempt <= 12; attempt++ {
		ceiling := min(limit, base<<(attempt-1))
		var top time.Duration
		for i := 0; i < 2000; i++ {
			d := backoff(attempt, base, limit, rng)
			if d < 0 || d > ceiling {
				t.Fatalf("attempt %d: %s outside [0, %s]", attempt, d, ceiling)
			}
			top = max(top, d)
		}
		if top < ceiling*9/10 {
			t.Fatalf("attempt %d: never above %s of %s: not full jitter", attempt, top, ceiling)
		}
	}
}

func TestBreaker(t *testing.T) {
	b := newBreaker(2, time.Minute)
	t0 := time.Unix(0, 0)
	if b.failure(t0) || b.state != CircuitClosed {
		t.Fatal("opened after one failure")
	}
	if !b.failure(t0) || b.state != CircuitOpen {
		t.Fatal("not open after two failures")
	}
	if ok, at := b.allow(t0.Add(30 * time.Second)); ok || !at.Equal(t0.Add(time.Minute)) {
		t.Fatalf("allowed during the cooldown (%v, %s)", ok, at)
	}
	if ok, _ := b.allow(t0.Add(time.Minute)); !ok || b.state != CircuitHalfOpen {
		t.Fatal("no probe after the cooldown")
	}
	if !b.failure(t0.Add(time.Minute)) {
		t.Fatal("a failed probe must open the circuit again")
	}
	b.allow(t0.Add(3 * time.Minute))
	b.success()
	if b.state != CircuitClosed || b.failures != 0 {
		t.Fatal("a good probe must close the circuit")
	}
}

func TestPacer(t *testing.T) {
	p := pacer{rate: 1000}
	t0 := time.Unix(0, 0)
	if got := p.book(t0, 500); !got.Equal(t0) {
		t.Fatalf("first upload waits until %s", got)
	}
	if got := p.book(t0, 2000); !got.Equal(t0.Add(500 * time.Millisecond)) {
		t.Fatalf("second upload at %s", got)
	}
	if got := p.book(t0.Add(10*time.Second), 1); !got.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("after a pause: %s", got)
	}
	if got := (&pacer{}).book(t0, 1<<40); !got.Equal(t0) {
		t.Fatal("no rate must mean no wait")
	}
}
