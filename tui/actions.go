package tui

import (
	"context"
	"net/url"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/offload/offload/internal/admin"
)

// The operator's keys and the actions they send.

func (m Model) handleKey(msg tea.KeyMsg) (tea.Model, tea.Cmd) {
	keys := m.bindings()
	switch {
	case key.Matches(msg, keys.Quit):
		return m, tea.Quit
	case key.Matches(msg, keys.Help):
		m.help.ShowAll = !m.help.ShowAll
	case key.Matches(msg, keys.Sort):
		m.sortByName = !m.sortByName
	case key.Matches(msg, keys.Filter):
		m.filtering = true
	case key.Matches(msg, keys.Up):
		m.moveSelection(-1)
	case key.Matches(msg, keys.Down):
		m.moveSelection(+1)
	case key.Matches(msg, keys.Retry):
		return m.retrySelected()
	case key.Matches(msg, keys.Pause):
		return m.togglePause()
	case key.Matches(msg, keys.Warehouse):
		if m.status.Demo.WarehouseUp {
			return m.act("warehouse down", "/api/v1/demo/warehouse/down")
		}
		return m.act("warehouse up", "/api/v1/demo/warehouse/up")
	}
	return m, nil
}

// bindings returns the key map with w enabled only under the demo.
func (m Model) bindings() keyMap {
	k := m.keys
	k.Warehouse.SetEnabled(m.status != nil && m.status.Demo != nil)
	return k
}

// editFilter edits the topic filter: typing narrows it, enter keeps it,
// esc clears it.
func (m Model) editFilter(msg tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch msg.Type {
	case tea.KeyCtrlC:
		return m, tea.Quit
	case tea.KeyEnter:
		m.filtering = false
	case tea.KeyEsc:
		m.filtering, m.filter = false, ""
	case tea.KeyBackspace:
		if r := []rune(m.filter); len(r) > 0 {
			m.filter = string(r[:len(r)-1])
		}
	case tea.KeyRunes, tea.KeySpace:
		m.filter += string(msg.Runes)
	}
	return m, nil
}

func (m Model) togglePause() (tea.Model, tea.Cmd) {
	switch {
	case m.status == nil:
		return m.say("no status yet", true)
	case m.status.Loader == nil:
		return m.say("no loader: the appliance has no warehouse", true)
	case m.status.Loader.State == "paused":
		return m.act("resume loader", "/api/v1/loader/resume")
	}
	return m.act("pause loader", "/api/v1/loader/pause")
}

func (m Model) retrySelected() (tea.Model, tea.Cmd) {
	if m.selectedID == "" {
		return m.say("no parked batch selected", true)
	}
	return m.act("retry "+m.selectedID, "/api/v1/batches/"+url.PathEscape(m.selectedID)+"/retry")
}

// act sends an action and notes that it is under way.
func (m Model) act(action, path string) (tea.Model, tea.Cmd) {
	m.message, m.messageBad = action+"…", false
	client := m.client
	return m, func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), admin.RequestTimeout)
		defer cancel()
		res, err := client.Post(ctx, path)
		return actionResultMsg{action: action, result: res, err: err}
	}
}

func (m Model) say(text string, bad bool) (tea.Model, tea.Cmd) {
	m.message, m.messageBad = text, bad
	return m, nil
}

// parked returns the parked batches of the last known status.
func (m Model) parked() []parkedRow {
	if m.status == nil {
		return nil
	}
	rows := make([]parkedRow, len(m.status.Outbox.ParkedBatches))
	for i, b := range m.status.Outbox.ParkedBatches {
		rows[i] = parkedRow{ParkedBatch: b, selected: b.ID == m.selectedID}
	}
	return rows
}

// keepSelection keeps the cursor on the same batch across polls, or on
// the first one when that batch left.
func (m *Model) keepSelection() {
	batches := m.status.Outbox.ParkedBatches
	for _, b := range batches {
		if b.ID == m.selectedID {
			return
		}
	}
	m.selectedID = ""
	if len(batches) > 0 {
		m.selectedID = batches[0].ID
	}
}

func (m *Model) moveSelection(step int) {
	rows := m.parked()
	for i, r := range rows {
		if r.selected {
			m.selectedID = rows[max(0, min(len(rows)-1, i+step))].ID
			return
		}
	}
}
