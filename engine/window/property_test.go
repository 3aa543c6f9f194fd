package window

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/offload/offload/engine/event"
)

// scenario is a random stream of events in arrival order, cut into
// micro-batches.
type scenario struct {
	opts    Options
	events  []event.Event
	batches []int // end index of each micro-batch
}

func genScenario(rng *rand.Rand) scenario {
	sizes := []time.Duration{time.Second, 10 * time.Second, time.Minute}
	lates := []time.Duration{NoLateness, 5 * time.Second, 30 * time.Second, 2 * time.Minute}
	sc := scenario{opts: Options{Size: sizes[rng.IntN(len(sizes))], Lateness: lates[rng.IntN(len(lates))]}}
	sc.opts.EnsureDefaults()
	lat := sc.opts.lateness()

	n := 1 + rng.IntN(600)
	span := time.Duration(1+rng.IntN(20)) * time.Minute
	stores := []string{"s1", "s2", "s3"}
	types := []string{event.EventOrderPlaced, event.EventRefund}
	customers := 1 + rng.IntN(400)
	if rng.IntN(5) == 0 {
		// A hot spell: busy windows with sketches past the sparse limit.
		n, span, customers = 1000+rng.IntN(2000), time.Duration(1+rng.IntN(3))*time.Minute, 300+rng.IntN(3000)
		stores, types = stores[:1], types[:1]
	}
	type arrival struct {
		ev event.Event
		at time.Duration
	}
	arr := make([]arrival, n)
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for i := range arr {
		off := time.Duration(rng.Int64N(int64(span)))
		ev := event.Event{
			StoreID:   stores[rng.IntN(len(stores))],
			Currency:  "EUR",
			EventType: types[rng.IntN(len(types))],
			Channel:   event.ChannelWeb,
			Amount:    event.Decimal(rng.Int64N(1_000_000)),
			EventTime: t0.Add(off),
		}
		if rng.IntN(10) < 7 {
			ev.BaseAmount, ev.HasBaseAmount = event.Decimal(rng.Int64N(1_000_000)), true
		}
		if rng.IntN(10) > 0 {
			ev.CustomerID = fmt.Sprintf("c%d", rng.IntN(customers))
		}
		// Arrival delay: mostly small, some within the lateness, some well
		// past it.
		var delay time.Duration
		switch r := rng.IntN(10); {
		case r < 7:
			delay = time.Duration(rng.Int64N(int64(2 * time.Second)))
		case r < 9:
			delay = time.Duration(rng.Int64N(int64(lat + sc.opts.Size + 1)))
		default:
			delay = time.Duration(rng.Int64N(int64(3*(lat+sc.opts.Size) + 1)))
		}
		arr[i] = arrival{ev, off + delay}
	}
	slices.SortStableFunc(arr, func(a, b arrival) int { return int(a.at - b.at) })
	for _, a := range arr {
		sc.events = append(sc.events, a.ev)
	}
	for i := 0; i < n; {
		i += 1 + rng.IntN(max(1, n/5))
		sc.batches = append(sc.batches, min(i, n))
	}
	return sc
}

// expectVerdicts judges every event by the rules in doc.go, independently of
// the Set: against the watermark as of the end of the previous micro-batch.
func expectVerdicts(sc scenario) []Lateness {
	size, lat := int64(sc.opts.Size), int64(sc.opts.lateness())
	out := make([]Lateness, len(sc.events))
	var maxT, wmMax int64
	seen, wmSeen := false, false
	from := 0
	for _, to := range sc.batches {
		for i := from; i < to; i++ {
			t := sc.events[i].EventTime.UnixNano()
			end := floorDiv(t, size)*size + size
			switch {
			case !wmSeen || t >= wmMax-lat:
				out[i] = OnTime
			case end+lat <= wmMax-lat:
				out[i] = TooLate
			default:
				out[i] = Late
			}
			if !seen || t > maxT {
				seen, maxT = true, t
			}
		}
		if seen {
			wmSeen, wmMax = true, maxT
		}
		from = to
	}
	return out
}

// expected is a window recomputed directly from its events.
type expected struct {
	Emitted
	sketch Sketch
}

func expectWindows(sc scenario, verdicts []Lateness) map[WindowID]*expected {
	out := map[WindowID]*expected{}
	for i, ev := range sc.events {
		if verdicts[i] == TooLate {
			continue
		}
		start := ev.EventTime.Truncate(sc.opts.Size) // aligned to the zero time, which is aligned to a day
		id := WindowID{Key{ev.StoreID, ev.Currency, ev.EventType, ev.Channel}, start}
		w := out[id]
		if w == nil {
			w = &expected{Emitted: Emitted{Key: id.Key, Start: start, End: start.Add(sc.opts.Size), Min: ev.Amount, Max: ev.Amount}}
			out[id] = w
		}
		w.Count++
		w.SumAmount += ev.Amount
		if ev.HasBaseAmount {
			w.SumBase += ev.BaseAmount
			w.BaseCount++
		}
		w.Min, w.Max = min(w.Min, ev.Amount), max(w.Max, ev.Amount)
		if ev.CustomerID != "" {
			w.sketch.Add(CustomerHash(ev.CustomerID))
		}
		w.DistinctCustomers = w.sketch.Estimate()
	}
	return out
}

// runResult is everything a run hands to the engine, per micro-batch.
type runResult struct {
	verdicts []Lateness
	batches  [][]Emitted
	changed  [][]WindowID // Changed after each micro-batch
	purged   [][]WindowID // Purged after each micro-batch
	final    *Set
}

// run drives a Set through the scenario like the engine, with the
// simulated database. With restarts, it sometimes restarts after a
// commit, and sometimes crashes in the middle of a micro-batch and
// re-processes it after the restart.
func run(t testing.TB, sc scenario, restarts *rand.Rand) runResult {
	h := newHarness(sc.opts)
	var res runResult
	from := 0
	for _, to := range sc.batches {
		if restarts != nil && restarts.IntN(4) == 0 {
			// Crash part-way: the adds are lost and re-done.
			for _, ev := range sc.events[from : from+restarts.IntN(to-from+1)] {
				h.set.Add(&ev)
			}
			h.restart(t)
		}
		for i := from; i < to; i++ {
			res.verdicts = append(res.verdicts, h.set.Add(&sc.events[i]))
		}
		em, _, changed, purged := h.advanceIDs(t)
		res.batches = append(res.batches, em)
		res.changed = append(res.changed, changed)
		res.purged = append(res.purged, purged)
		if restarts != nil && restarts.IntN(4) == 0 {
			if h.restart(t) {
				t.Fatal("restart right after a commit lost state")
			}
		}
		from = to
	}
	res.final = h.set
	return res
}

// TestProperty checks, on random streams in random order cut into random
// micro-batches: the verdicts follow the rules; each window's emitted
// versions are 1, 2, 3, ...; the last emission of every window whose end
// the watermark has passed, and the live state of every other window,
// equal a direct recomputation over the events that were not TooLate;
// restarts and crashes change nothing; and two runs emit the same rows in
// the same order.
func TestProperty(t *testing.T) {
	iters := 300
	if testing.Short() {
		iters = 50
	}
	var nVerdict [3]int
	var nEvents, nEmitted, nReemitted, nDense int
	defer func() {
		t.Logf("%d scenarios, %d events: %d on time, %d late, %d too late; %d emissions, %d of them re-emissions; %d dense sketches at the end",
			iters, nEvents, nVerdict[OnTime], nVerdict[Late], nVerdict[TooLate], nEmitted, nReemitted, nDense)
	}()
	for seed := range uint64(iters) {
		sc := genScenario(rand.New(rand.NewPCG(seed, 1)))
		want := expectVerdicts(sc)
		nEvents += len(sc.events)
		for _, v := range want {
			nVerdict[v]++
		}
		res := run(t, sc, nil)
		if !slices.Equal(res.verdicts, want) {
			t.Fatalf("seed %d: verdicts differ from the rules", seed)
		}
		// Same events, same batches, with restarts and crashes: the same rows.
		res2 := run(t, sc, rand.New(rand.NewPCG(seed, 2)))
		if !slices.Equal(res2.verdicts, want) {
			t.Fatalf("seed %d: verdicts differ with restarts", seed)
		}
		if !reflect.DeepEqual(res.batches, res2.batches) {
			t.Fatalf("seed %d: emitted rows differ with restarts", seed)
		}
		if !reflect.DeepEqual(res.changed, res2.changed) || !reflect.DeepEqual(res.purged, res2.purged) {
			t.Fatalf("seed %d: Changed or Purged differ with restarts", seed)
		}
		if got, want := dumpSet(res2.final), dumpSet(res.final); got != want {
			t.Fatalf("seed %d: final state differs with restarts:\n%s\nwant:\n%s", seed, got, want)
		}

		exp := expectWindows(sc, want)
		last := map[WindowID]Emitted{}
		for _, batch := range res.batches {
			for i, e := range batch {
				if i > 0 && compareID(batch[i-1].Key, batch[i-1].Start, e.Key, e.Start) >= 0 {
					t.Fatalf("seed %d: emitted rows out of order", seed)
				}
				id := WindowID{e.Key, e.Start}
				if e.Version != last[id].Version+1 {
					t.Fatalf("seed %d: %v emitted version %d after %d", seed, id, e.Version, last[id].Version)
				}
				last[id] = e
				nEmitted++
				if e.Version > 1 {
					nReemitted++
				}
			}
		}
		wm := res.final.Watermark()
		live := map[WindowID]*Window{}
		for _, w := range res.final.Windows() {
			live[w.ID()] = w
			if !w.Customers.IsSparse() {
				nDense++
			}
		}
		for id, e := range exp {
			if !e.End.After(wm) {
				got, ok := last[id]
				if !ok {
					t.Fatalf("seed %d: window %v ended (watermark %v) but was never emitted", seed, id, wm)
				}
				want := e.Emitted
				want.Version = got.Version
				if got != want {
					t.Fatalf("seed %d: last emission of %v\n got %+v\nwant %+v", seed, id, got, want)
				}
			} else if _, ok := last[id]; ok {
				t.Fatalf("seed %d: window %v emitted before the watermark %v passed its end", seed, id, wm)
			}
			if !e.End.Add(sc.opts.lateness()).After(wm) {
				if _, ok := live[id]; ok {
					t.Fatalf("seed %d: window %v not purged", seed, id)
				}
				continue
			}
			w, ok := live[id]
			if !ok {
				t.Fatalf("seed %d: window %v purged early", seed, id)
			}
			if w.Count != e.Count || w.SumAmount != e.SumAmount || w.SumBase != e.SumBase || w.BaseCount != e.BaseCount ||
				w.Min != e.Min || w.Max != e.Max || !w.Customers.Equal(e.sketch) || w.Version != last[id].Version || w.Dirty != e.End.After(wm) {
				t.Fatalf("seed %d: live window %v\n got %s\nwant %+v", seed, id, fmtWindow(w), e.Emitted)
			}
		}
		for id := range live {
			if exp[id] == nil {
				t.Fatalf("seed %d: window %v has no non-too-late events", seed, id)
			}
		}
	}
}
