package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// boundedCommand is exec.Command for a subprocess that must finish within
// limit: past it, the test that ran it fails, naming the command, instead
// of the whole package at go test's timeout with no test named. At the
// limit its process group gets SIGQUIT, on which offload, and any daemon
// it started, print their goroutines to their stderr and exit; whatever
// the group still holds when the test ends is killed.
func boundedCommand(t *testing.T, limit time.Duration, name string, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		t.Logf("%s %v did not finish within %s: its process group gets SIGQUIT", filepath.Base(name), args, limit)
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGQUIT)
	}
	cmd.WaitDelay = 30 * time.Second
	t.Cleanup(func() {
		cancel()
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	return cmd
}
