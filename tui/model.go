package tui

import (
	"context"
	"time"

	"github.com/charmbracelet/bubbles/help"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/offload/offload/internal/admin"
)

// maxBackoff caps the wait between polls while the appliance does not
// answer, so a restarted appliance shows up again within seconds.
const maxBackoff = 5 * time.Second

// Options configure a Model.
type Options struct {
	// Client reaches the appliance.
	Client Client
	// Addr is the appliance's address, shown while connecting.
	Addr string
	// Interval is the time between status polls.
	Interval time.Duration
	// Renderer draws the styles; its colour profile decides whether
	// there is colour at all.
	Renderer *lipgloss.Renderer
	// Now is the clock for countdowns; time.Now when nil.
	Now func() time.Time
}

// statusMsg is the answer to one status poll.
type statusMsg struct {
	status admin.Status
	err    error
}

// pollMsg asks for the next poll; seq drops polls that a newer one replaced.
type pollMsg struct{ seq int }

// tickMsg redraws the countdowns once a second.
type tickMsg time.Time

// actionResultMsg is the answer to an operator's action.
type actionResultMsg struct {
	action string
	result string
	err    error
}

// Model is the dashboard's state. It is a value: Update returns the next one.
type Model struct {
	client   Client
	addr     string
	interval time.Duration
	now      func() time.Time
	styles   styles
	keys     keyMap
	help     help.Model

	width, height int

	status   *admin.Status // last known status; nil before the first answer
	polledAt time.Time     // when status arrived
	rates    stageRates
	polling  bool
	pollSeq  int
	pollErr  error // the last poll's error; nil while connected
	failures int   // polls failed in a row
	nextPoll time.Time

	sortByName bool
	filter     string
	filtering  bool
	selectedID string // the parked batch under the cursor
	message    string // the last action's answer
	messageBad bool
}

// New returns a dashboard that polls through opts.Client.
func New(opts Options) Model {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Renderer == nil {
		opts.Renderer = lipgloss.DefaultRenderer()
	}
	st := newStyles(opts.Renderer)
	h := help.New()
	h.Styles = st.helpStyles()
	return Model{
		client: opts.Client, addr: opts.Addr, interval: opts.Interval, now: opts.Now,
		styles: st, keys: newKeyMap(), help: h, width: 80, height: 24, polling: true,
	}
}

// Init starts the first poll and the clock.
func (m Model) Init() tea.Cmd {
	return tea.Batch(m.fetch(), tick())
}

// Update implements tea.Model.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.help.Width = msg.Width
	case statusMsg:
		return m.receive(msg)
	case pollMsg:
		if msg.seq != m.pollSeq || m.polling {
			return m, nil
		}
		m.polling = true
		return m, m.fetch()
	case tickMsg:
		return m, tick()
	case actionResultMsg:
		m.message, m.messageBad = msg.action+": "+msg.result, false
		if msg.err != nil {
			m.message, m.messageBad = msg.action+" failed: "+msg.err.Error(), true
		}
		return m.refresh()
	case tea.KeyMsg:
		if m.filtering {
			return m.editFilter(msg)
		}
		return m.handleKey(msg)
	}
	return m, nil
}

// receive takes a poll's answer and schedules the next poll: after the
// interval when it succeeded, after a growing backoff when it failed.
func (m Model) receive(msg statusMsg) (tea.Model, tea.Cmd) {
	m.polling = false
	delay := m.interval
	if msg.err != nil {
		m.pollErr = msg.err
		m.failures++
		for i := 1; i < m.failures && delay < maxBackoff; i++ {
			delay *= 2
		}
		delay = min(delay, max(maxBackoff, m.interval))
	} else {
		m.pollErr, m.failures = nil, 0
		m.rates = m.rates.add(m.status, msg.status)
		m.status, m.polledAt = &msg.status, m.now()
		m.keepSelection()
	}
	m.nextPoll = m.now().Add(delay)
	m.pollSeq++
	seq := m.pollSeq
	return m, tea.Tick(delay, func(time.Time) tea.Msg { return pollMsg{seq: seq} })
}

// refresh polls now, so an action's effect shows without waiting.
func (m Model) refresh() (tea.Model, tea.Cmd) {
	if m.polling {
		return m, nil
	}
	m.polling = true
	m.pollSeq++
	return m, m.fetch()
}

func (m Model) fetch() tea.Cmd {
	client := m.client
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), admin.RequestTimeout)
		defer cancel()
		st, err := client.Status(ctx)
		return statusMsg{status: st, err: err}
	}
}

func tick() tea.Cmd {
	return tea.Tick(time.Second, func(t time.Time) tea.Msg { return tickMsg(t) })
}
