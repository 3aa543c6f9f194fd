package harness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// The digest of the daemon's log that the chaos tests print when a run
// fails: CI keeps a test's output, not its run directory, so what
// explains a failure must be in the output (docs/RELIABILITY.md, "When a
// chaos run fails").
const (
	digestProblems  = 30  // distinct warning and error messages shown
	digestTail      = 40  // last lines shown
	digestLineBytes = 600 // a longer line is cut
)

// logLevel and logMsg find a slog text line's level and message.
var (
	logLevel = regexp.MustCompile(`\blevel=(WARN|ERROR)\b`)
	logMsg   = regexp.MustCompile(`\bmsg=("(?:[^"\\]|\\.)*"|\S+)`)
)

// daemonLog is the daemon's log file in a run's directory (Options.Dir).
func daemonLog(dir string) string { return filepath.Join(dir, "offload.log") }

// WriteLogDigest writes to w what the daemon's log in the run directory
// dir says, for a failed run: each distinct warning or error message
// once, at its first line, with how often it came (a failure usually
// begins long before the end), then the log's last lines. It writes
// nothing when there is no log (the run failed before the daemon's
// first start). The log holds no secret: the daemon never logs one
// (docs/ARCHITECTURE.md).
func WriteLogDigest(w io.Writer, dir string) {
	path := daemonLog(dir)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		fmt.Fprintf(w, "cannot read the daemon's log: %v\n", err)
		return
	}
	defer f.Close()
	type problem struct {
		first string
		n     int
	}
	var (
		order    []string
		problems = map[string]*problem{}
		tail     []string
		lines    int
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := truncate(sc.Text(), digestLineBytes)
		lines++
		if tail = append(tail, line); len(tail) > digestTail {
			tail = tail[1:]
		}
		if !logLevel.MatchString(line) {
			continue
		}
		key := line
		if m := logMsg.FindStringSubmatch(line); m != nil {
			key = m[1]
		}
		if p, ok := problems[key]; ok {
			p.n++
			continue
		}
		if len(order) < digestProblems {
			order = append(order, key)
			problems[key] = &problem{first: line, n: 1}
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(w, "cannot read the daemon's log to its end: %v\n", err)
	}
	fmt.Fprintf(w, "the daemon's log %s (%d lines): its warnings and errors, each message once at its first line:\n", path, lines)
	for _, k := range order {
		fmt.Fprintf(w, "  [%d×] %s\n", problems[k].n, problems[k].first)
	}
	fmt.Fprintf(w, "its last %d lines:\n", len(tail))
	for _, l := range tail {
		fmt.Fprintf(w, "  %s\n", l)
	}
}
