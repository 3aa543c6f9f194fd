package harness

import (
	"fmt"
	"regexp"

	"github.com/offload/offload/internal/config"
)

// eventIDInRaw finds the event id in a dead letter's raw bytes.
var eventIDInRaw = regexp.MustCompile(`"event_id":"([^"]+)"`)

// tally counts the warehouse's rows and the DLQ against what was produced.
func (h *harness) tally(valid, malformed map[string]struct{}) error {
	lost, duplicated, unexpected, err := h.srv.Tally(valid)
	if err != nil {
		return err
	}
	h.res.Loaded = h.loadedRows()
	h.res.Lost += lost
	h.res.Duplicated += duplicated
	h.res.UnexpectedRows += unexpected

	c, err := config.Load(h.cfgPath, h.d.environ(nil))
	if err != nil {
		return err
	}
	entries, err := h.o.DeadLetters(c)
	if err != nil {
		return fmt.Errorf("cannot list the dead letters: %w", err)
	}
	dead := map[string]int64{}
	for _, d := range entries {
		h.res.DLQ++
		m := eventIDInRaw.FindSubmatch(d.Raw)
		if m == nil {
			h.res.UnexpectedDLQ++
			continue
		}
		if _, ok := malformed[string(m[1])]; !ok {
			h.res.UnexpectedDLQ++
			continue
		}
		dead[string(m[1])]++
	}
	for _, n := range dead {
		h.res.Duplicated += n - 1
	}
	h.res.Lost += int64(len(malformed) - len(dead))
	return nil
}
