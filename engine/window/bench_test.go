package window

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/offload/offload/engine/event"
)

// eventGen produces a stream of events arriving at rate events per second
// of event time: stores with Zipf-skewed popularity, 4 event types, 3
// channels, 2 currencies, customers drawn from a pool, a jitter of up to
// 2 s, and 1% of events up to 15 minutes late (a third of them too late
// with the default lateness).
type eventGen struct {
	rng        *rand.Rand
	zipf       *rand.Zipf
	stores     []string
	customers  []string
	rate       float64
	n          int
	t0         time.Time
	types      []string
	channels   []string
	currencies []string
	arena      []byte
}

func newEventGen(stores, customers int, rate float64) *eventGen {
	rng := rand.New(rand.NewPCG(1, 2))
	g := &eventGen{
		rng:        rng,
		zipf:       rand.NewZipf(rng, 1.1, 1, uint64(stores-1)),
		rate:       rate,
		t0:         time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
		types:      []string{event.EventOrderPlaced, event.EventPaymentCaptured, event.EventRefund, event.EventCancel},
		channels:   []string{event.ChannelWeb, event.ChannelApp, event.ChannelPOS},
		currencies: []string{"EUR", "USD"},
	}
	for i := range stores {
		g.stores = append(g.stores, fmt.Sprintf("store-%04d", i))
	}
	for i := range customers {
		g.customers = append(g.customers, fmt.Sprintf("cust-%07d", i))
	}
	return g
}

// fill overwrites evs with the next events of the stream. Customer ids
// are copied into an arena, as the decoder carves them from its block, so
// they are in the cache like a just decoded event's.
func (g *eventGen) fill(evs []event.Event) {
	rng := g.rng
	g.arena = g.arena[:0]
	for i := range evs {
		t := g.t0.Add(time.Duration(float64(g.n) / g.rate * float64(time.Second)))
		g.n++
		t = t.Add(-time.Duration(rng.Int64N(int64(2 * time.Second))))
		if rng.IntN(100) == 0 {
			t = t.Add(-time.Duration(rng.Int64N(int64(15 * time.Minute))))
		}
		evs[i] = event.Event{
			StoreID:       g.stores[g.zipf.Uint64()],
			EventType:     g.types[rng.IntN(len(g.types))],
			Channel:       g.channels[rng.IntN(len(g.channels))],
			Currency:      g.currencies[rng.IntN(len(g.currencies))],
			CustomerID:    g.carve(g.customers[rng.IntN(len(g.customers))]),
			Amount:        event.Decimal(rng.Int64N(5_000_000)),
			BaseAmount:    event.Decimal(rng.Int64N(5_000_000)),
			HasBaseAmount: true,
			EventTime:     t,
		}
	}
}

func (g *eventGen) carve(v string) string {
	if cap(g.arena)-len(g.arena) < len(v) {
		g.arena = make([]byte, 0, 1<<20) // the old one stays with its events
	}
	g.arena = append(g.arena, v...)
	b := g.arena[len(g.arena)-len(v):]
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// BenchmarkAdd measures Add plus, after every micro-batch of 10,000
// events, Advance, Changed and Purged: the package's whole share of the
// engine's per-event work, at 5,000 events per second of event time. Each
// micro-batch is generated with the timer stopped, so its events are as
// fresh in the cache as the engine's just decoded ones; the windows are
// not. Twelve minutes of event time (3.6M events, more than 2*Lateness +
// Size) warm the Set up untimed, so the figures are for a Set holding its
// steady-state number of windows; what differs between the cases is how
// many windows that is and how many customers each has.
func BenchmarkAdd(b *testing.B) {
	const rate = 5000
	for _, bc := range []struct {
		name              string
		stores, customers int
	}{
		// 1000 stores (24,000 keys), 100k customers: ~150k small, sparse
		// windows, far more than the CPU caches hold.
		{"keys=24000", 1000, 100_000},
		// 20 stores (480 keys), 10k customers: a few thousand windows, the
		// busiest with dense sketches.
		{"keys=480", 20, 10_000},
		// 2 stores (48 keys), 200 customers: a few hundred windows, all in
		// cache.
		{"keys=48", 2, 200},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const batch = 10_000
			g := newEventGen(bc.stores, bc.customers, rate)
			evs := make([]event.Event, batch)
			s := NewSet(Options{})
			for range 12 * 60 * rate / batch {
				g.fill(evs)
				for i := range evs {
					s.Add(&evs[i])
				}
				s.Advance()
				s.Changed()
				s.Purged()
			}
			var emitted, late, tooLate, changed int
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += batch {
				b.StopTimer()
				g.fill(evs)
				b.StartTimer()
				for i := range evs[:min(batch, b.N-done)] {
					switch s.Add(&evs[i]) {
					case Late:
						late++
					case TooLate:
						tooLate++
					}
				}
				em, _ := s.Advance()
				emitted += len(em)
				changed += len(s.Changed())
				s.Purged()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(s.Len()), "windows")
			dense := 0
			for _, w := range s.Windows() {
				if !w.Customers.IsSparse() {
					dense++
				}
			}
			b.ReportMetric(float64(dense), "dense")
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
			if b.N >= 1_000_000 {
				b.Logf("N=%d: %d late, %d too late, %d emitted, %d changed, %d windows held", b.N, late, tooLate, emitted, changed, s.Len())
			}
		})
	}
}

// BenchmarkAddHot is Add alone on a cache-resident working set (48 keys,
// 200 customers, one event-time minute): the CPU cost of an Add without
// memory stalls.
func BenchmarkAddHot(b *testing.B) {
	g := newEventGen(2, 200, 1e9) // 4096 events span 4 µs of event time
	evs := make([]event.Event, 4096)
	g.fill(evs)
	for i := range evs {
		evs[i].EventTime = g.t0.Add(time.Duration(i) * time.Microsecond)
	}
	s := NewSet(Options{})
	for i := range evs {
		s.Add(&evs[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s.Add(&evs[i&4095])
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkSketchMarshal is the per-window cost of persisting a changed
// window's sketch, which the engine pays for every window Changed returns.
func BenchmarkSketchMarshal(b *testing.B) {
	for _, n := range []int{1, 10, 100, 256, 10_000} {
		s := sketchOf(hashes(0, n))
		b.Run(fmt.Sprintf("distinct=%d", n), func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			for range b.N {
				buf, _ = s.AppendBinary(buf[:0])
			}
			b.ReportMetric(float64(len(buf)), "bytes")
		})
	}
}

// BenchmarkSketchUnmarshal is the per-window cost of Restore's input.
func BenchmarkSketchUnmarshal(b *testing.B) {
	for _, n := range []int{10, 256, 10_000} {
		data, _ := sketchOf(hashes(0, n)).MarshalBinary()
		b.Run(fmt.Sprintf("distinct=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var s Sketch
			for range b.N {
				if err := s.UnmarshalBinary(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
