package main

import (
	"encoding/json"
	"os/exec"
	"testing"
)

// TestDemoHeadless runs `offload demo --no-tui --json` for a few seconds:
// everything embedded, and the summary says every valid event reached the
// warehouse exactly once, duplicates were dropped and malformed records
// dead-lettered.
func TestDemoHeadless(t *testing.T) {
	out, err := exec.Command(offloadBin, "demo", "--duration", "12s", "--no-tui", "--json", "--rate", "400", "--dir", t.TempDir()).Output()
	if err != nil {
		t.Fatalf("offload demo: %v\n%s", err, out)
	}
	var s demoSummary
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, out)
	}
	if !s.ExactlyOnce || s.Produced < 1000 || s.Loaded != s.Valid || s.Deduplicated != s.Duplicates ||
		s.DeadLettered != s.Malformed || s.Missing != 0 || s.Extra != 0 {
		t.Fatalf("summary: %+v", s)
	}
}
