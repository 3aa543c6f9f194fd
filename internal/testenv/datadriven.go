package testenv

import (
	"path/filepath"
	"testing"
)

// RunFiles runs run as a subtest, named by the file's base name, for each
// file matching pattern (e.g. "testdata/*.txt"; the test then calls
// datadriven.RunTest on path). It fails when no file matches, so that a
// moved or misnamed testdata directory cannot pass by running nothing.
func RunFiles(t *testing.T, pattern string, run func(t *testing.T, path string)) {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata matches %s: %v", pattern, err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) { run(t, path) })
	}
}
