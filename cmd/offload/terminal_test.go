package main

import (
	"strings"
	"testing"
)

// TestDemoNeedsATerminal: without a terminal the dashboard would end at
// once; the demo refuses to start and says how to run it headless.
func TestDemoNeedsATerminal(t *testing.T) {
	code, _, errOut := runCLI("demo", "--dir", t.TempDir())
	if code != 2 || !strings.Contains(errOut, "--no-tui --duration") {
		t.Fatalf("demo without a terminal: exit %d\n%s", code, errOut)
	}
}

// TestTopNeedsATerminal: offload top without a terminal says where the
// status is instead of ending without a word.
func TestTopNeedsATerminal(t *testing.T) {
	code, _, errOut := runCLI("top", "--addr", "http://127.0.0.1:1")
	if code != 2 || !strings.Contains(errOut, "curl -s http://127.0.0.1:1/api/v1/status") {
		t.Fatalf("top without a terminal: exit %d\n%s", code, errOut)
	}
}
