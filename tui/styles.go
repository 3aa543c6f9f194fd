package tui

import (
	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/lipgloss"
)

// styles are the dashboard's lipgloss styles, all from one renderer so a
// plain terminal (NO_COLOR, TERM=dumb) gets plain text everywhere.
type styles struct {
	title    lipgloss.Style
	label    lipgloss.Style
	ok       lipgloss.Style
	warn     lipgloss.Style
	bad      lipgloss.Style
	dim      lipgloss.Style
	selected lipgloss.Style
	spark    lipgloss.Style
}

func newStyles(r *lipgloss.Renderer) styles {
	return styles{
		title:    r.NewStyle().Bold(true),
		label:    r.NewStyle().Foreground(lipgloss.Color("6")),
		ok:       r.NewStyle().Foreground(lipgloss.Color("2")),
		warn:     r.NewStyle().Foreground(lipgloss.Color("3")),
		bad:      r.NewStyle().Foreground(lipgloss.Color("1")).Bold(true),
		dim:      r.NewStyle().Faint(true),
		selected: r.NewStyle().Reverse(true),
		spark:    r.NewStyle().Foreground(lipgloss.Color("4")),
	}
}

// stale returns the styles for last known data while disconnected: every
// colour gives way to dim, so nothing looks live.
func (s styles) stale() styles {
	return styles{title: s.dim, label: s.dim, ok: s.dim, warn: s.dim, bad: s.dim, dim: s.dim, selected: s.selected, spark: s.dim}
}

// helpStyles dresses the help bubble from the same renderer.
func (s styles) helpStyles() help.Styles {
	return help.Styles{
		Ellipsis:       s.dim,
		ShortKey:       s.label,
		ShortDesc:      s.dim,
		ShortSeparator: s.dim,
		FullKey:        s.label,
		FullDesc:       s.dim,
		FullSeparator:  s.dim,
	}
}

// applianceState colours the appliance's state (docs/API.md).
func (s styles) applianceState(state string) lipgloss.Style {
	switch state {
	case "ok":
		return s.ok
	case "degraded", "warehouse_unavailable", "starting":
		return s.warn
	case "not_ready", "paused_for_budget":
		return s.bad
	}
	return s.title
}

// loaderState colours the loader's state.
func (s styles) loaderState(state string) lipgloss.Style {
	switch state {
	case "idle", "loading":
		return s.ok
	case "paused", "window", "retrying":
		return s.warn
	case "open", "stopped":
		return s.bad
	}
	return s.title
}
