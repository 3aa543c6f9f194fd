package tui

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/muesli/termenv"

	"github.com/offload/offload/internal/admin"
)

// feed feeds msgs to m in order, dropping the commands.
func feed(m Model, msgs ...tea.Msg) Model {
	for _, msg := range msgs {
		next, _ := m.Update(msg)
		m = next.(Model)
	}
	return m
}

// views are the dashboard's states, each built from fixtures.
func views(t *testing.T, p termenv.Profile, width, height int) map[string]Model {
	size := tea.WindowSizeMsg{Width: width, Height: height}
	m := newTestModel(&fakeClient{}, p)
	healthy := loadStatus(t, "healthy")
	earlier := healthy
	earlier.UptimeSeconds -= 1
	earlier.WAL.Bytes -= 64 << 10
	earlier.Rates.IngestRecords, earlier.Rates.EngineRecords, earlier.Rates.LoaderRows = 3900, 3850, 0
	warm := feed(m, size, statusMsg{status: earlier}, statusMsg{status: healthy})
	helpOpen := feed(warm, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("?")})
	quarantined := loadStatus(t, "healthy")
	quarantined.Loader.QuarantinedFiles = 3
	quarantined.Loader.LastQuarantinedFile = "/var/lib/offload/quarantine/outbox/edge-berlin-3-9a1e.rows.20261127T081457.123456789Z.parquet"
	// The warehouse has held the load's request for 70 s: more than loads
	// take, so the status says it is not answering.
	hung := loadStatus(t, "healthy")
	hung.State = "warehouse_unavailable"
	hung.Loader.UnansweredSeconds, hung.Loader.Message = 70, "warehouse not answering for 1m10s"
	return map[string]Model{
		"end_to_end":     feed(warm, statusMsg{status: endToEnd(t)}),
		"warehouse_hung": feed(warm, statusMsg{status: hung}),
		"connecting":     feed(m, size),
		"healthy":        warm,
		"warehouse_down": feed(warm, statusMsg{status: loadStatus(t, "warehouse_down")}),
		"parked":         feed(warm, statusMsg{status: loadStatus(t, "parked")}),
		"disconnected":   feed(warm, statusMsg{err: errors.New(`Get "http://127.0.0.1:7070/api/v1/status": dial tcp 127.0.0.1:7070: connect: connection refused`)}),
		"demo":           feed(warm, statusMsg{status: loadStatus(t, "demo")}),
		"quarantined":    feed(warm, statusMsg{status: quarantined}),
		"help":           helpOpen,
		"filtered":       feed(warm, keys("/", "pay", "enter", "s")...),
	}
}

// endToEnd is the healthy fixture with kafka.delivery: end-to-end: the
// records of orders/1 have waited 2h1m for their warehouse load, the
// others seconds or nothing.
func endToEnd(t *testing.T) admin.Status {
	st := loadStatus(t, "healthy")
	st.Kafka.Delivery = "end-to-end"
	ages := map[string]float64{"orders/0": 2.4, "orders/1": 7260.5, "orders/2": 0.4}
	for i, p := range st.Kafka.Partitions {
		st.Kafka.Partitions[i].UncommittedAgeSeconds = ages[fmt.Sprintf("%s/%d", p.Topic, p.Partition)]
	}
	return st
}

// keys turns key names and typed text into key messages.
func keys(names ...string) []tea.Msg {
	var msgs []tea.Msg
	for _, n := range names {
		switch n {
		case "enter":
			msgs = append(msgs, tea.KeyMsg{Type: tea.KeyEnter})
		case "esc":
			msgs = append(msgs, tea.KeyMsg{Type: tea.KeyEsc})
		case "up":
			msgs = append(msgs, tea.KeyMsg{Type: tea.KeyUp})
		case "down":
			msgs = append(msgs, tea.KeyMsg{Type: tea.KeyDown})
		default:
			for _, r := range n {
				msgs = append(msgs, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
			}
		}
	}
	return msgs
}

// TestViewsGolden compares each state at 80×24 in plain text with
// testdata/TestViewsGolden/STATE.golden; go test ./tui/ -update rewrites them.
func TestViewsGolden(t *testing.T) {
	for name, m := range views(t, termenv.Ascii, 80, 24) {
		t.Run(name, func(t *testing.T) {
			golden.RequireEqual(t, []byte(m.View()))
		})
	}
}

// TestViewsFit checks every state fits the terminal, in colour and not,
// from 80×24 up and down.
func TestViewsFit(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {60, 15}, {132, 43}} {
		for _, p := range []termenv.Profile{termenv.Ascii, termenv.TrueColor} {
			for name, m := range views(t, p, size[0], size[1]) {
				lines := strings.Split(m.View(), "\n")
				if len(lines) > size[1] {
					t.Errorf("%s at %v: %d lines", name, size, len(lines))
				}
				for i, l := range lines {
					if w := lipgloss.Width(l); w > size[0] {
						t.Errorf("%s at %v: line %d is %d cells wide: %q", name, size, i+1, w, l)
					}
				}
			}
		}
	}
}

func TestPlainViewsHaveNoEscapes(t *testing.T) {
	for name, m := range views(t, termenv.Ascii, 80, 24) {
		if v := m.View(); strings.Contains(v, "\x1b") {
			t.Errorf("%s: plain view holds an escape sequence: %q", name, v)
		}
	}
	if v := views(t, termenv.ANSI256, 80, 24)["healthy"].View(); !strings.Contains(v, "\x1b[") {
		t.Error("colour view holds no escape sequence: the colour test above proves nothing")
	}
}

// TestDisconnectedDimsLastData checks the last known data stays on screen
// without its colours once the appliance stops answering.
func TestDisconnectedDimsLastData(t *testing.T) {
	vs := views(t, termenv.ANSI256, 80, 24)
	live, stale := vs["healthy"].View(), vs["disconnected"].View()
	ok := renderer(termenv.ANSI256).NewStyle().Foreground(lipgloss.Color("2")).Render("ok")
	if !strings.Contains(live, ok) {
		t.Fatalf("live view shows no green state %q", ok)
	}
	if strings.Contains(stale, ok) {
		t.Error("stale view still shows the state in green")
	}
	if !strings.Contains(stale, "edge-berlin-3") || !strings.Contains(stale, "orders/1") {
		t.Error("stale view lost the last known data")
	}
}

func TestPlain(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, c := range []struct {
		env  func(string) string
		want bool
	}{
		{env("TERM", "xterm-256color"), false},
		{env("TERM", "xterm-256color", "NO_COLOR", "1"), true},
		{env("TERM", "dumb"), true},
	} {
		if got := Plain(c.env); got != c.want {
			t.Errorf("Plain(TERM=%q NO_COLOR=%q) = %v", c.env("TERM"), c.env("NO_COLOR"), got)
		}
	}
}

// TestRetryCountdown checks the countdown runs between polls from the
// time the status arrived.
func TestRetryCountdown(t *testing.T) {
	now := testNow
	m := New(Options{Client: &fakeClient{}, Interval: time.Minute, Renderer: renderer(termenv.Ascii), Now: func() time.Time { return now }})
	m = feed(m, statusMsg{status: loadStatus(t, "warehouse_down")})
	if v := m.View(); !strings.Contains(v, "retry in 19s") {
		t.Fatalf("want retry in 19s, got:\n%s", v)
	}
	now = now.Add(10 * time.Second)
	m = feed(m, tickMsg(now))
	if v := m.View(); !strings.Contains(v, "retry in 9s") {
		t.Fatalf("want retry in 9s after 10s, got:\n%s", v)
	}
}

// TestWALQuarantineLine: the dashboard shows what `offload wal repair`
// moved to quarantine, and has no such line when nothing was moved.
func TestWALQuarantineLine(t *testing.T) {
	healthy := views(t, termenv.Ascii, 80, 24)["healthy"]
	if v := healthy.View(); strings.Contains(v, "quarantined") {
		t.Fatalf("a quarantine line without quarantined entries:\n%s", v)
	}
	st := loadStatus(t, "healthy")
	st.WAL.QuarantinedEntries, st.WAL.QuarantinedRecords, st.WAL.QuarantineDir = 3, 120, "/var/lib/offload/quarantine"
	v := feed(healthy, statusMsg{status: st}).View()
	if !strings.Contains(v, "WAL     quarantined: 3 entries (120 records) in /var/lib/offload/quarantine") {
		t.Fatalf("no quarantine line:\n%s", v)
	}
	if n := strings.Count(v, "\n") + 1; n > 24 {
		t.Errorf("the view is %d lines, more than the terminal's 24", n)
	}
}

// TestRecreatedTopicLine: the dashboard shows a consumed topic that was
// deleted and created again, and has no such line otherwise.
func TestRecreatedTopicLine(t *testing.T) {
	healthy := views(t, termenv.Ascii, 80, 24)["healthy"]
	if v := healthy.View(); strings.Contains(v, "recreated") {
		t.Fatalf("a recreated-topic line without a recreated topic:\n%s", v)
	}
	st := loadStatus(t, "healthy")
	st.Kafka.RecreatedTopics = []admin.RecreatedTopic{{Topic: "orders", PreviousID: "91ac", ID: "a02c",
		At: time.Date(2026, 11, 27, 8, 14, 57, 0, time.UTC), HighWaters: map[int32]int64{0: 99}}}
	v := feed(healthy, statusMsg{status: st}).View()
	if !strings.Contains(v, "Kafka   topic orders recreated (new topic ID) at 08:14:57 UTC · see the log") {
		t.Fatalf("no recreated-topic line:\n%s", v)
	}
	if n := strings.Count(v, "\n") + 1; n > 24 {
		t.Errorf("the view is %d lines, more than the terminal's 24", n)
	}
}

// TestUnmappedFieldsLine: the dashboard names the unmapped fields the most
// rows carried, and has no such line when there are none.
func TestUnmappedFieldsLine(t *testing.T) {
	healthy := views(t, termenv.Ascii, 80, 24)["healthy"]
	if v := healthy.View(); strings.Contains(v, "unmapped") {
		t.Fatalf("an unmapped-fields line without unmapped fields:\n%s", v)
	}
	st := loadStatus(t, "healthy")
	st.Engine.UnmappedFields = []admin.FieldCount{{Name: "coupon", Rows: 1200}, {Name: "customer.tier", Rows: 40}}
	v := feed(healthy, statusMsg{status: st}).View()
	if !strings.Contains(v, "fields  unmapped · coupon 1,200, customer.tier 40") {
		t.Fatalf("no unmapped-fields line:\n%s", v)
	}
	if n := strings.Count(v, "\n") + 1; n > 24 {
		t.Errorf("the view is %d lines, more than the terminal's 24", n)
	}
}

// TestUncommittedAgeColumn: with kafka.delivery: end-to-end the lag panel
// shows each partition's uncommitted age and the oldest in its title; in
// custody mode, where offsets are committed within seconds, it shows the
// lag alone, even when the status document carries ages.
func TestUncommittedAgeColumn(t *testing.T) {
	vs := views(t, termenv.Ascii, 80, 24)
	v := vs["end_to_end"].View()
	for _, want := range []string{
		"lag (uncommitted age) 440 across 5 partitions · oldest 2h1m · sorted by lag",
		"orders/1 410 (2h1m)",
		"orders/0 29 (2s)",
		"payments/1 ? (0s)",
	} {
		if !strings.Contains(v, want) {
			t.Errorf("end-to-end view lacks %q:\n%s", want, v)
		}
	}
	custody := endToEnd(t)
	custody.Kafka.Delivery = "custody"
	for name, m := range map[string]Model{"healthy": vs["healthy"], "custody with ages": feed(vs["healthy"], statusMsg{status: custody})} {
		v := m.View()
		if strings.Contains(v, "uncommitted") || strings.Contains(v, "(2h1m)") {
			t.Errorf("%s: custody view shows uncommitted ages:\n%s", name, v)
		}
		if !strings.Contains(v, "lag 440 across 5 partitions · sorted by lag") || !strings.Contains(v, "orders/1 410  ") {
			t.Errorf("%s: custody view lost its lag panel:\n%s", name, v)
		}
	}
}
