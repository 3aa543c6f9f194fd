package window

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/internal/testenv"
)

// testDay is the date of times given as hh:mm:ss in testdata.
var testDay = time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)

// TestDataDriven runs the files in testdata/. Regenerate the expected output
// with -rewrite. Commands:
//
//	new [window=DUR] [lateness=DUR|none]
//	  a fresh Set (and an empty simulated database); prints the options or
//	  the Validate errors.
//	add [time=T store=S cur=C type=T channel=C amount=D base=D customer=ID]
//	  one event from the arguments, or one per input line (same key=value
//	  words); prints each verdict. T is hh:mm:ss[.fff] on 2024-05-01 or
//	  RFC 3339. Defaults: store=s1 cur=EUR type=order_placed channel=web
//	  amount=1, no base amount, no customer.
//	advance
//	  ends the micro-batch like the engine: Advance, then upserts Changed,
//	  deletes Purged and stores MaxEventTime into the simulated database,
//	  and checks that the database now equals the Set. Prints the
//	  watermark, the emitted rows and what was persisted.
//	watermark
//	  prints MaxEventTime and Watermark.
//	windows
//	  prints every window the Set holds.
//	restore
//	  a restart: a new Set restored from the simulated database (sketches
//	  through MarshalBinary/UnmarshalBinary), checked equal to the Set as
//	  of the last advance; anything added since is lost, as an uncommitted
//	  transaction would be. Later commands use the new Set.
func TestDataDriven(t *testing.T) {
	testenv.RunFiles(t, "testdata/*.txt", func(t *testing.T, path string) {
		h := newHarness(Options{})
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			return h.run(t, td)
		})
	})
}

// harness is a Set plus the database an engine would keep for it.
type harness struct {
	opts      Options
	set       *Set
	db        map[string]dbRow // by windowName
	dbMax     time.Time
	committed string // dumpSet at the last advance
}

// dbRow is a persisted window: what the engine stores in DuckDB.
type dbRow struct {
	w      Window // Customers left empty
	sketch []byte
}

func newHarness(o Options) *harness {
	h := &harness{}
	h.reset(o)
	return h
}

func (h *harness) reset(o Options) {
	o.EnsureDefaults()
	h.opts = o
	h.set = NewSet(o)
	h.db = map[string]dbRow{}
	h.dbMax = time.Time{}
	h.committed = dumpSet(h.set)
}

// advance ends a micro-batch as the engine does: Advance, then upsert
// Changed, delete Purged and store MaxEventTime in the database, which must
// then equal the Set.
func (h *harness) advance(t testing.TB) (em []Emitted, purged, nChanged, nPurged int) {
	t.Helper()
	em, purged, changed, ids := h.advanceIDs(t)
	return em, purged, len(changed), len(ids)
}

// advanceIDs is advance returning the identities Changed and Purged listed.
func (h *harness) advanceIDs(t testing.TB) (em []Emitted, purged int, changedIDs, purgedIDs []WindowID) {
	t.Helper()
	em, purged = h.set.Advance()
	changed := h.set.Changed()
	ids := h.set.Purged()
	if len(ids) != purged {
		t.Fatalf("Advance purged %d but Purged lists %d", purged, len(ids))
	}
	for _, w := range changed {
		sk, err := w.Customers.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		row := dbRow{w: *w, sketch: sk}
		row.w.Customers = Sketch{}
		h.db[windowName(w.Key, w.Start)] = row
	}
	for _, id := range ids {
		delete(h.db, windowName(id.Key, id.Start))
	}
	h.dbMax = h.set.MaxEventTime()
	h.committed = dumpSet(h.set)
	if got := dumpSet(h.restored(t)); got != h.committed {
		t.Fatalf("database differs from the Set after advance:\ndatabase:\n%sset:\n%s", got, h.committed)
	}
	for _, w := range changed {
		changedIDs = append(changedIDs, w.ID())
	}
	return em, purged, changedIDs, ids
}

// restart replaces the Set by one restored from the database, checked
// equal to the Set as of the last advance. It reports whether adds since
// then were lost.
func (h *harness) restart(t testing.TB) (lost bool) {
	t.Helper()
	s := h.restored(t)
	if got := dumpSet(s); got != h.committed {
		t.Fatalf("restored state differs from the last commit:\nrestored:\n%scommitted:\n%s", got, h.committed)
	}
	lost = dumpSet(h.set) != h.committed
	h.set = s
	return lost
}

func (h *harness) run(t *testing.T, td *datadriven.TestData) string {
	var b strings.Builder
	switch td.Cmd {
	case "new":
		var o Options
		for _, a := range td.CmdArgs {
			d, err := parseDur(a.Vals[0])
			if err != nil {
				return err.Error() + "\n"
			}
			switch a.Key {
			case "window":
				o.Size = d
			case "lateness":
				o.Lateness = d
			default:
				t.Fatalf("new: unknown argument %s", a.Key)
			}
		}
		o.EnsureDefaults()
		if err := o.Validate("engine"); err != nil {
			return err.Error() + "\n"
		}
		h.reset(o)
		fmt.Fprintf(&b, "window=%s lateness=%s\n", o.Size, o.lateness())

	case "add":
		var lines [][]string
		if len(td.CmdArgs) > 0 {
			var words []string
			for _, a := range td.CmdArgs {
				words = append(words, a.Key+"="+strings.Join(a.Vals, ","))
			}
			lines = append(lines, words)
		}
		for _, l := range strings.Split(td.Input, "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				lines = append(lines, strings.Fields(l))
			}
		}
		for _, words := range lines {
			ev, err := parseEvent(words)
			if err != nil {
				t.Fatalf("%s: %v", td.Pos, err)
			}
			v := h.set.Add(&ev)
			fmt.Fprintf(&b, "%s %s -> %s\n", fmtTime(ev.EventTime), fmtKey(Key{ev.StoreID, ev.Currency, ev.EventType, ev.Channel}), v)
		}

	case "advance":
		em, purged, nChanged, nPurged := h.advance(t)
		fmt.Fprintf(&b, "watermark %s\n", fmtTime(h.set.Watermark()))
		for _, e := range em {
			b.WriteString(fmtEmitted(e) + "\n")
		}
		fmt.Fprintf(&b, "persist: upsert %d, delete %d, purged %d, held %d\n", nChanged, nPurged, purged, h.set.Len())

	case "watermark":
		fmt.Fprintf(&b, "max event time %s, watermark %s\n", fmtTime(h.set.MaxEventTime()), fmtTime(h.set.Watermark()))

	case "windows":
		ws := h.set.Windows()
		if len(ws) == 0 {
			b.WriteString("(none)\n")
		}
		for _, w := range ws {
			b.WriteString(fmtWindow(w) + "\n")
		}

	case "restore":
		lost := h.restart(t)
		s := h.set
		fmt.Fprintf(&b, "restored %d windows, max event time %s, watermark %s", s.Len(), fmtTime(s.MaxEventTime()), fmtTime(s.Watermark()))
		if lost {
			b.WriteString(" (uncommitted adds lost)")
		}
		b.WriteString("\n")

	default:
		t.Fatalf("%s: unknown command %s", td.Pos, td.Cmd)
	}
	return b.String()
}

// restored returns a new Set restored from the simulated database.
func (h *harness) restored(t testing.TB) *Set {
	t.Helper()
	var ws []Window
	for _, r := range h.db {
		w := r.w
		if err := w.Customers.UnmarshalBinary(r.sketch); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	// The database returns rows in any order.
	sort.Slice(ws, func(i, j int) bool { return windowName(ws[i].Key, ws[i].Start) > windowName(ws[j].Key, ws[j].Start) })
	s := NewSet(h.opts)
	s.Restore(ws, h.dbMax)
	return s
}

// dumpSet prints everything that makes up a Set's persisted state.
func dumpSet(s *Set) string {
	var b strings.Builder
	fmt.Fprintf(&b, "max %s\n", fmtTime(s.MaxEventTime()))
	for _, w := range s.Windows() {
		sk, _ := w.Customers.MarshalBinary()
		fmt.Fprintf(&b, "%s end=%s sketch=%s\n", fmtWindow(w), fmtTime(w.End()), hex.EncodeToString(sk))
	}
	return b.String()
}

func windowName(k Key, start time.Time) string {
	return start.UTC().Format(time.RFC3339Nano) + "|" + fmtKey(k)
}

func parseDur(s string) (time.Duration, error) {
	if s == "none" {
		return NoLateness, nil
	}
	return time.ParseDuration(s)
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse("15:04:05.999999999", s)
	if err != nil {
		return time.Time{}, err
	}
	return testDay.Add(t.Sub(time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC))), nil
}

func parseEvent(words []string) (event.Event, error) {
	ev := event.Event{StoreID: "s1", Currency: "EUR", EventType: "order_placed", Channel: "web", Amount: event.DecimalUnit}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return ev, fmt.Errorf("%q is not key=value", w)
		}
		var err error
		switch k {
		case "time":
			ev.EventTime, err = parseTime(v)
		case "store":
			ev.StoreID = v
		case "cur":
			ev.Currency = v
		case "type":
			ev.EventType = v
		case "channel":
			ev.Channel = v
		case "amount":
			ev.Amount, err = event.ParseDecimal(v)
		case "base":
			ev.BaseAmount, err = event.ParseDecimal(v)
			ev.HasBaseAmount = true
		case "customer":
			ev.CustomerID = v
		default:
			err = fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return ev, err
		}
	}
	if ev.EventTime.IsZero() {
		return ev, fmt.Errorf("no time")
	}
	return ev, nil
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	t = t.UTC()
	if d := t.Sub(testDay); d >= 0 && d < 24*time.Hour {
		return t.Format("15:04:05.999")
	}
	return t.Format("2006-01-02T15:04:05.999")
}

func fmtKey(k Key) string {
	return k.StoreID + "/" + k.Currency + "/" + k.EventType + "/" + k.Channel
}

func fmtWindow(w *Window) string {
	s := fmt.Sprintf("[%s,%s) %s count=%d sum=%s base=%s/%d min=%s max=%s customers=%d v%d",
		fmtTime(w.Start), fmtTime(w.End()), fmtKey(w.Key), w.Count, w.SumAmount, w.SumBase, w.BaseCount,
		w.Min, w.Max, w.Customers.Estimate(), w.Version)
	if w.Dirty {
		s += " dirty"
	}
	return s
}

func fmtEmitted(e Emitted) string {
	return fmt.Sprintf("emit [%s,%s) %s v%d count=%d sum=%s base=%s/%d min=%s max=%s customers=%d",
		fmtTime(e.Start), fmtTime(e.End), fmtKey(e.Key), e.Version, e.Count, e.SumAmount, e.SumBase, e.BaseCount,
		e.Min, e.Max, e.DistinctCustomers)
}
