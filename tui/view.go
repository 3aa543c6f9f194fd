package tui

import (
	"fmt"
	"strings"
)

// View implements tea.Model. Every line fits the width and the whole fits
// the height: the body gives way first, the status and help lines stay
// at the bottom; ? opens the full help there.
func (m Model) View() string {
	st := m.styles
	if m.pollErr != nil {
		st = st.stale()
	}
	footer := append([]string{m.statusLine()}, strings.Split(m.bottomLine(), "\n")...)
	bodyHeight := max(0, m.height-1-len(footer))
	var body []string
	if m.status != nil {
		body = m.dashboard(st, bodyHeight)
	}
	body = body[:min(len(body), bodyHeight)]
	for len(body) < bodyHeight {
		body = append(body, "")
	}
	lines := append([]string{m.header(st)}, body...)
	lines = append(lines, footer...)
	lines = lines[max(0, len(lines)-max(m.height, 1)):]
	for i, l := range lines {
		lines[i] = fit(l, m.width)
	}
	return strings.Join(lines, "\n")
}

func (m Model) header(st styles) string {
	title := st.title.Render("offload top")
	if m.status == nil {
		return title + " · " + m.addr
	}
	s := m.status
	h := fmt.Sprintf("%s · %s · %s · up %s · %s", title, s.ApplianceID, s.Version, age(s.UptimeSeconds),
		st.applianceState(s.State).Render(s.State))
	if d := s.Demo; d != nil {
		warehouse := st.ok.Render("up")
		if !d.WarehouseUp {
			warehouse = st.bad.Render("down")
		}
		h += " · demo warehouse " + warehouse
	}
	return h
}

// dashboard lays the panels out in height lines: the fixed lines first,
// then the partitions' lag and the parked batches share what is left.
func (m Model) dashboard(st styles, height int) []string {
	lines := m.throughput(st)
	lines = append(lines, m.backlog(st), m.disk(st))
	lines = append(lines, m.loader(st)...)
	lines = append(lines, m.windows(st), m.dedupe(st), m.dlq(st))
	lines = append(lines, m.unmapped(st)...)
	lines = append(lines, m.walQuarantine(st)...)
	lines = append(lines, m.recreatedTopics(st)...)
	rest := height - len(lines)
	parked := m.parkedPanel(st, 0)
	if n := len(parked); n > 1 {
		parked = m.parkedPanel(st, min(n, max(2, rest/2)))
	}
	if rest-len(parked) < 2 {
		return append(lines, parked...)
	}
	lines = append(lines, m.lagPanel(st, rest-len(parked))...)
	return append(lines, parked...)
}

// statusLine says whether the data is live, or what the last action did.
func (m Model) statusLine() string {
	st := m.styles
	switch {
	case m.pollErr != nil:
		return st.bad.Render(fmt.Sprintf("disconnected — retrying in %ds", countdown(m.nextPoll.Sub(m.now())))) +
			" (" + m.pollErr.Error() + ")"
	case m.message != "" && m.messageBad:
		return st.bad.Render(m.message)
	case m.message != "":
		return st.ok.Render(m.message)
	case m.status == nil:
		return st.dim.Render("connecting to " + m.addr + "…")
	}
	return st.dim.Render(fmt.Sprintf("updated %s · every %s", m.polledAt.UTC().Format("15:04:05"), m.interval))
}

func (m Model) bottomLine() string {
	if m.filtering {
		return m.styles.label.Render("filter topic: ") + m.filter + "█" + m.styles.dim.Render("  (enter keep · esc clear)")
	}
	return m.help.View(m.bindings())
}
