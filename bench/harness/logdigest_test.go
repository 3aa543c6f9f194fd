package harness

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestWriteLogDigest: a failed run's digest names the log, shows each
// distinct warning or error once at its first line with its count
// (however early it came), the last lines, and cuts a long line.
func TestWriteLogDigest(t *testing.T) {
	var log strings.Builder
	log.WriteString(`time=T0 level=ERROR msg="loader: the warehouse refused the batch for good; parked" batch=b0 err="Table not found"` + "\n")
	for i := range 100 {
		fmt.Fprintf(&log, "time=T%d level=INFO msg=\"loader: batch loaded\" batch=b%d\n", i+1, i)
		fmt.Fprintf(&log, "time=T%d level=WARN msg=\"loader: load failed; will retry\" batch=b%d\n", i+1, i)
	}
	log.WriteString("time=T200 level=WARN msg=unquoted " + strings.Repeat("x", 2*digestLineBytes) + "\n")
	log.WriteString("time=T201 level=INFO msg=\"the last line\"\n")
	dir := t.TempDir()
	path := daemonLog(dir)
	if err := os.WriteFile(path, []byte(log.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	WriteLogDigest(&b, dir)
	out := b.String()
	for _, want := range []string{
		path + " (203 lines)",
		`[1×] time=T0 level=ERROR msg="loader: the warehouse refused the batch for good; parked" batch=b0 err="Table not found"`,
		`[100×] time=T1 level=WARN msg="loader: load failed; will retry" batch=b0`,
		"[1×] time=T200 level=WARN msg=unquoted xxx",
		"its last 40 lines:",
		`  time=T201 level=INFO msg="the last line"`,
		"  time=T82 level=INFO",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the digest lacks %q:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"batch=b1\n", "time=T81 level=INFO", strings.Repeat("x", digestLineBytes)} {
		if strings.Contains(out, unwanted) {
			t.Errorf("the digest holds %q:\n%s", unwanted, out)
		}
	}

	b.Reset()
	WriteLogDigest(&b, t.TempDir())
	if b.Len() != 0 {
		t.Errorf("a run that failed before the daemon started has no log to digest, yet: %s", b.String())
	}
}
