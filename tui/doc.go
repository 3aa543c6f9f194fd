// Package tui is `offload top`: a terminal dashboard attached to a running
// appliance's admin API (docs/API.md).
//
// It owns the presentation only. It polls GET /api/v1/status through a
// Client and sends the operator's actions (pause or resume the loader,
// retry a parked batch, in the demo take the warehouse down or up) as
// POSTs with the bearer token. It must not reach into the pipeline
// directly, and it never displays the token.
//
// The Model is pure: it changes only in Update, from messages (a status
// poll's answer, a clock tick, an action's answer, keys, the window size),
// and talks to the appliance only through the tea.Cmds it returns, so tests
// drive it with a fake Client and a fixed clock.
package tui
