package testenv

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestRunFiles checks that each matching file runs once, as a subtest
// named by its base name, and that the others do not.
func TestRunFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"b.txt", "a.txt", "rates.csv"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var ran []string
	RunFiles(t, filepath.Join(dir, "*.txt"), func(t *testing.T, path string) {
		if filepath.Base(path) != t.Name()[len("TestRunFiles/"):] {
			t.Errorf("subtest %s runs %s", t.Name(), path)
		}
		ran = append(ran, filepath.Base(path))
	})
	if want := []string{"a.txt", "b.txt"}; !slices.Equal(ran, want) {
		t.Fatalf("ran %v, want %v", ran, want)
	}
}
