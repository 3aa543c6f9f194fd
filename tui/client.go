package tui

import (
	"context"

	"github.com/offload/offload/internal/admin"
)

// Client is how the dashboard talks to the appliance: *admin.Client for
// a real one.
type Client interface {
	// Status fetches GET /api/v1/status.
	Status(ctx context.Context) (admin.Status, error)
	// Post sends an action (a path such as /api/v1/loader/pause) and
	// returns the appliance's result message.
	Post(ctx context.Context, path string) (string, error)
}
