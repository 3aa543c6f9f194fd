package tui

import (
	"context"
	"errors"
	"io"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/offload/offload/internal/admin"
)

// Config is what the dashboard runs with.
type Config struct {
	// Addr is the admin API's base address, e.g. http://127.0.0.1:7070.
	Addr string
	// Token is the admin bearer token; empty allows no actions.
	Token string
	// Interval is the time between status polls.
	Interval time.Duration
	// In and Out are the terminal.
	In  io.Reader
	Out io.Writer
	// Getenv reads NO_COLOR and TERM.
	Getenv func(string) string
}

// Run shows the dashboard until the operator quits or ctx ends; either
// is a normal end.
func Run(ctx context.Context, cfg Config) error {
	r := lipgloss.NewRenderer(cfg.Out)
	if Plain(cfg.Getenv) {
		r.SetColorProfile(termenv.Ascii)
	}
	m := New(Options{Client: admin.NewClient(cfg.Addr, cfg.Token), Addr: cfg.Addr, Interval: cfg.Interval, Renderer: r})
	opts := []tea.ProgramOption{tea.WithContext(ctx), tea.WithInput(cfg.In), tea.WithOutput(cfg.Out)}
	if cfg.Getenv("TERM") != "dumb" {
		opts = append(opts, tea.WithAltScreen())
	}
	_, err := tea.NewProgram(m, opts...).Run()
	if errors.Is(err, tea.ErrInterrupted) || (ctx.Err() != nil && errors.Is(err, ctx.Err())) {
		return nil
	}
	return err
}

// Plain reports whether the terminal wants plain text: NO_COLOR set
// (https://no-color.org) or TERM=dumb.
func Plain(getenv func(string) string) bool {
	return getenv("NO_COLOR") != "" || getenv("TERM") == "dumb"
}
