package slowfs

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestSyncWaits: a file created, reopened or reused for writing waits
// the delay at each of its fsyncs; without the variable the file system
// is the operating system's.
func TestSyncWaits(t *testing.T) {
	const delay = 30 * time.Millisecond
	fs := New(vfs.NewMem(), delay)
	f, err := fs.Create("a", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	for name, sync := range map[string]func() error{
		"Sync":     f.Sync,
		"SyncData": f.SyncData,
		"SyncTo":   func() error { _, err := f.SyncTo(1); return err },
	} {
		began := time.Now()
		if err := sync(); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); took < delay {
			t.Errorf("%s took %s, want at least %s", name, took, delay)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g, err := fs.OpenReadWrite("a", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if began := time.Now(); g.Sync() != nil || time.Since(began) < delay {
		t.Errorf("a file reopened for writing did not wait at its fsync")
	}

	t.Setenv(FsyncDelayEnv, "")
	if got, err := FromEnv(slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil || got != vfs.Default {
		t.Errorf("FromEnv without %s = %v, %v; want vfs.Default", FsyncDelayEnv, got, err)
	}
}

// TestFromEnv: a delay is taken and logged; a value that is no duration
// is refused, naming the variable.
func TestFromEnv(t *testing.T) {
	var log strings.Builder
	t.Setenv(FsyncDelayEnv, "25ms")
	fs, err := FromEnv(slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := fs.(slowFS); !ok || s.delay != 25*time.Millisecond || !strings.Contains(log.String(), "every WAL fsync delayed") {
		t.Errorf("FromEnv = %#v, log %q", fs, log.String())
	}
	for _, bad := range []string{"soon", "-1s"} {
		t.Setenv(FsyncDelayEnv, bad)
		if _, err := FromEnv(slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), FsyncDelayEnv) {
			t.Errorf("%s=%s: %v, want an error naming the variable", FsyncDelayEnv, bad, err)
		}
	}
}
