package harness

import (
	"strings"
	"testing"
)

// TestWriteReport: the report shows each scenario (a skipped one says
// why), the counts CI reads, every error, and the verdict.
func TestWriteReport(t *testing.T) {
	r := Result{Kills: 3, Scenarios: []Scenario{{Name: "kills", Kills: 3}, {Name: "disk-full", Skipped: "no tmpfs"}},
		Produced: 10, Valid: 8, ReconcileOK: true, OK: true}
	var b strings.Builder
	WriteReport(&b, r)
	for _, want := range []string{"kills      3", "SKIPPED: no tmpfs", "lost 0  duplicated 0  unexpected_dlq 0  unexpected_rows 0",
		"chaos: OK, nothing lost, nothing duplicated"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, b.String())
		}
	}
	r.OK, r.Lost, r.Errors = false, 2, []string{"kills: the daemon stopped by itself"}
	b.Reset()
	WriteReport(&b, r)
	for _, want := range []string{"lost 2", "error: kills: the daemon stopped by itself", "chaos: FAILED"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the failed report lacks %q:\n%s", want, b.String())
		}
	}
}
