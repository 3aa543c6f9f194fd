package tui

import (
	"strings"

	"github.com/offload/offload/internal/admin"
)

// historyLen is how many polls a sparkline remembers.
const historyLen = 60

// series keeps the last historyLen samples of one rate, oldest first.
type series []float64

func (s series) add(v float64) series {
	s = append(s, v)
	if len(s) > historyLen {
		s = s[len(s)-historyLen:]
	}
	return s
}

func (s series) last() float64 {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

var sparkBlocks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws the newest width samples of s, one block per sample,
// scaled between min(0, lowest) and the highest sample.
func sparkline(s series, width int) string {
	if width <= 0 || len(s) == 0 {
		return ""
	}
	if len(s) > width {
		s = s[len(s)-width:]
	}
	lo, hi := 0.0, 0.0
	for _, v := range s {
		lo, hi = min(lo, v), max(hi, v)
	}
	var b strings.Builder
	for _, v := range s {
		i := 0
		if hi > lo {
			i = int((v - lo) / (hi - lo) * float64(len(sparkBlocks)-1))
		}
		b.WriteRune(sparkBlocks[i])
	}
	return b.String()
}

// stageRates are the sparklines' samples, one per successful poll.
type stageRates struct {
	ingest, engine, loader series
	// walGrowth is the WAL's net growth in bytes per second between two
	// polls: appends minus what the engine consumed and retention freed.
	// The status has no append counter, and this is what eats the runway.
	walGrowth series
}

// add records cur, comparing it with prev (nil on the first poll) for the
// derived WAL growth. The appliance's uptime is the time base, so a
// restart (uptime going back) starts the derivation over.
func (r stageRates) add(prev *admin.Status, cur admin.Status) stageRates {
	r.ingest = r.ingest.add(cur.Rates.IngestRecords)
	r.engine = r.engine.add(cur.Rates.EngineRecords)
	r.loader = r.loader.add(cur.Rates.LoaderRows)
	if prev != nil && cur.UptimeSeconds > prev.UptimeSeconds {
		dt := cur.UptimeSeconds - prev.UptimeSeconds
		r.walGrowth = r.walGrowth.add(float64(cur.WAL.Bytes-prev.WAL.Bytes) / dt)
	}
	return r
}
