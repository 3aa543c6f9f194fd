package durable

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteFile: a written file is whole under its name with no temporary
// file beside it; a failed write leaves neither, and an older file under
// the name is kept.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteFile(path, 0o600, func(w io.Writer) error { _, err := io.WriteString(w, "first"); return err }); err != nil {
		t.Fatal(err)
	}
	failed := errors.New("the writer failed")
	if err := WriteFile(path, 0o600, func(w io.Writer) error { _, _ = io.WriteString(w, "par"); return failed }); !errors.Is(err, failed) {
		t.Fatalf("WriteFile with a failing writer: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "first" {
		t.Fatalf("after a failed write: %q, %v; want the first file", b, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("directory holds %v (%v), want the file alone", entries, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	if err := WriteFile(filepath.Join(dir, "missing", "f"), 0o600, func(io.Writer) error { return nil }); err == nil {
		t.Fatal("a file in a missing directory was written")
	}
}
