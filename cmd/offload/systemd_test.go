package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on the shipped unit,
// alone and with the preflight drop-in (deploy/systemd/preflight.conf),
// whose [Service] lines systemd adds to the unit's. verify insists that
// ExecStart's binary exists, so the test checks a copy that names the
// binary built for the tests instead of /usr/bin/offload.
func TestSystemdUnitVerifies(t *testing.T) {
	dropIn, err := os.ReadFile("../../deploy/systemd/preflight.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(dropIn, []byte("\nExecStartPre=/usr/bin/offload check --config /etc/offload/offload.yaml\n")) {
		t.Fatal("the drop-in does not run offload check; update this test")
	}
	t.Run("unit", func(t *testing.T) { verifyUnit(t, nil) })
	t.Run("preflight drop-in", func(t *testing.T) { verifyUnit(t, dropIn) })
}

// verifyUnit runs systemd-analyze verify on the unit with dropIn's lines
// added at its end (the drop-in's only section is [Service]).
func verifyUnit(t *testing.T, dropIn []byte) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	unit, err := os.ReadFile("../../deploy/systemd/offload.service")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("/usr/bin/offload ")) {
		t.Fatal("the unit no longer runs /usr/bin/offload; update this test")
	}
	bin, err := filepath.Abs(offloadBin)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "offload.service")
	unit = append(unit, dropIn...)
	if err := os.WriteFile(p, bytes.ReplaceAll(unit, []byte("/usr/bin/offload "), []byte(bin+" ")), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, analyze, "verify", p).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
