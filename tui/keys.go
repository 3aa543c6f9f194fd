package tui

import "github.com/charmbracelet/bubbles/key"

// keyMap holds the dashboard's key bindings; it feeds the help bubble.
type keyMap struct {
	Up, Down  key.Binding
	Retry     key.Binding
	Pause     key.Binding
	Warehouse key.Binding
	Sort      key.Binding
	Filter    key.Binding
	Help      key.Binding
	Quit      key.Binding
}

func newKeyMap() keyMap {
	return keyMap{
		Up:        key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "select parked")),
		Down:      key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "select parked")),
		Retry:     key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "retry")),
		Pause:     key.NewBinding(key.WithKeys("p"), key.WithHelp("p", "pause/resume")),
		Warehouse: key.NewBinding(key.WithKeys("w"), key.WithHelp("w", "warehouse"), key.WithDisabled()),
		Sort:      key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "sort")),
		Filter:    key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter")),
		Help:      key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Quit:      key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
	}
}

// ShortHelp implements help.KeyMap.
func (k keyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Pause, k.Retry, k.Warehouse, k.Sort, k.Filter, k.Help, k.Quit}
}

// FullHelp implements help.KeyMap.
func (k keyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{
		{k.Up, k.Down, k.Retry},
		{k.Pause, k.Warehouse},
		{k.Sort, k.Filter},
		{k.Help, k.Quit},
	}
}
