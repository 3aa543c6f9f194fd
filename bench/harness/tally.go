package harness

import (
	"fmt"
	"regexp"

	"github.com/offload/offload/engine"
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

	entries, err := h.deadLetters(h.d.extra)
	if err != nil {
		return err
	}
	h.tallyDeadLetters(malformed, append(h.deletedDLQ, entries))
	return nil
}

// deadLetters lists the dead letters of the stopped appliance, configured
// with the environment env.
func (h *harness) deadLetters(env []string) ([]engine.DLQEntry, error) {
	c, err := config.Load(h.cfgPath, h.d.environ(env))
	if err != nil {
		return nil, err
	}
	entries, err := h.o.DeadLetters(c)
	if err != nil {
		return nil, fmt.Errorf("cannot list the dead letters: %w", err)
	}
	return entries, nil
}

// tallyDeadLetters counts the dead letters of each data directory of the
// run (the deleted ones first, the last one's at the end) against the
// malformed records produced. Within a directory a record's second dead
// letter is a duplicate; across a deletion it is expected (its offset was
// not committed, so it was read again) and counted as rewritten.
func (h *harness) tallyDeadLetters(malformed map[string]struct{}, dirs [][]engine.DLQEntry) {
	seen := map[string]bool{}
	for _, entries := range dirs {
		dead := map[string]int64{}
		for _, d := range entries {
			m := eventIDInRaw.FindSubmatch(d.Raw)
			if m == nil {
				h.res.DLQ++
				h.res.UnexpectedDLQ++
				continue
			}
			if _, ok := malformed[string(m[1])]; !ok {
				h.res.DLQ++
				h.res.UnexpectedDLQ++
				continue
			}
			dead[string(m[1])]++
		}
		for id, n := range dead {
			h.res.Duplicated += n - 1
			h.res.DLQ += n
			if seen[id] {
				h.res.DLQ--
				h.res.DLQRewritten++
			}
			seen[id] = true
		}
	}
	h.res.Lost += int64(len(malformed) - len(seen))
}
