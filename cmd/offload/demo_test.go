package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoHeadless runs `offload demo --no-tui --json` for a few seconds:
// everything embedded, and the summary says every valid event reached the
// warehouse exactly once, duplicates were dropped and malformed records
// dead-lettered. It runs once per in-process warehouse type; the redshift
// and bigquery runs last the 30 s in which windows close (10 s windows,
// 15 s lateness) and must ship them. Its --dir does not exist yet: the demo creates it
// and says so.
func TestDemoHeadless(t *testing.T) {
	for warehouse, duration := range map[string]string{"snowflake": "12s", "redshift": "30s", "bigquery": "30s"} {
		t.Run(warehouse, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "new", "demo")
			cmd := exec.Command(offloadBin, "demo", "--warehouse", warehouse, "--duration", duration, "--no-tui", "--json",
				"--rate", "400", "--dir", dir)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("offload demo: %v\n%s\n%s", err, out, stderr.String())
			}
			if want := "created the data directory " + dir; !strings.Contains(stderr.String(), want) {
				t.Fatalf("stderr does not say %q:\n%s", want, stderr.String())
			}
			var s demoSummary
			if err := json.Unmarshal(out, &s); err != nil {
				t.Fatalf("summary is not JSON: %v\n%s", err, out)
			}
			if !s.ExactlyOnce || s.Produced < 1000 || s.Loaded != s.Valid || s.Deduplicated != s.Duplicates ||
				s.DeadLettered != s.Malformed || s.Missing != 0 || s.Extra != 0 || (warehouse != "snowflake" && s.Windows == 0) {
				t.Fatalf("summary: %+v", s)
			}
		})
	}
}
