package window

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defaults.
const (
	DefaultSize     = time.Minute
	DefaultLateness = 5 * time.Minute
	// MaxLateness bounds Options.Lateness: every window of the last
	// Lateness/Size periods of every key is kept in memory.
	MaxLateness = 7 * 24 * time.Hour
)

// NoLateness, as Options.Lateness, asks for no allowed lateness at all
// (the zero value means DefaultLateness): the watermark is the highest
// event time seen, a window is emitted and purged as soon as an event at or
// past its end arrives, and only events of the newest window can still
// change anything.
const NoLateness time.Duration = -1

// Options configures a Set.
type Options struct {
	// Size is the length of a tumbling window. Windows start at multiples
	// of Size since the Unix epoch, in UTC. Between 1s and 24h and a
	// divisor of 24h, so windows start at the same clock times every day.
	// Default DefaultSize (1m).
	Size time.Duration
	// Lateness is how far the watermark trails the highest event time seen,
	// and so both how long a window waits before it is first emitted and
	// how long after that late events still correct it. Between 0 and
	// MaxLateness; 0 means DefaultLateness (5m), use NoLateness for none.
	Lateness time.Duration
}

// EnsureDefaults replaces zero values with the defaults.
func (o *Options) EnsureDefaults() {
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.Lateness == 0 {
		o.Lateness = DefaultLateness
	}
}

// Validate checks o (after EnsureDefaults) and returns every problem, each
// naming its option as prefix+".window" or prefix+".lateness" (prefix is
// the configuration section, e.g. "engine") with the allowed values.
func (o Options) Validate(prefix string) error {
	var errs []string
	if o.Size < time.Second || o.Size > 24*time.Hour || (24*time.Hour)%o.Size != 0 {
		errs = append(errs, fmt.Sprintf("%s: %s must divide a day and lie between 1s and 24h (e.g. 1m, 5m, 1h)",
			optName(prefix, "window"), o.Size))
	}
	if (o.Lateness < 0 && o.Lateness != NoLateness) || o.Lateness > MaxLateness {
		errs = append(errs, fmt.Sprintf("%s: %s is out of range; use 0s to 168h",
			optName(prefix, "lateness"), o.Lateness))
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, "\n"))
}

// lateness is the effective lateness.
func (o Options) lateness() time.Duration {
	if o.Lateness < 0 {
		return 0
	}
	return o.Lateness
}

func optName(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
