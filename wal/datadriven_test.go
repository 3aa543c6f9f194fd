package wal

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestDataDriven runs the WAL as a state machine from testdata/datadriven.
// Regenerate the expected output with
//
//	go test ./wal -run TestDataDriven -rewrite
//
// Commands:
//
//	append topic=a part=0 offsets=0-9[,12,15-17] [key=nil|empty|<text>] [ts=<ms>]
//	    Appends one batch; record values are "v<offset>", keys "k<offset>"
//	    unless key= says otherwise, timestamps 1000+offset unless ts= says.
//	read [cursor=a/0:5 | cursor=(a/0:5,b/1:0)] max=10 [verbose]
//	    Reads from the cursor and then, with `next`, from the returned one.
//	read next max=10
//	truncate a/0:8 [b/1:3 ...]
//	stats
//	highwater a/0
//	reopen
//	verify
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata/datadriven", func(t *testing.T, path string) {
		fs := vfs.NewMem()
		w := mustOpen(t, fs)
		defer func() { _ = w.Close() }()
		var next Cursor
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "append":
				var topic, offsets string
				var part int
				d.ScanArgs(t, "topic", &topic)
				d.ScanArgs(t, "part", &part)
				d.ScanArgs(t, "offsets", &offsets)
				rs, err := parseRecords(offsets)
				if err != nil {
					d.Fatalf(t, "%v", err)
				}
				if d.HasArg("key") {
					var key string
					d.ScanArgs(t, "key", &key)
					for i := range rs {
						switch key {
						case "nil":
							rs[i].Key = nil
						case "empty":
							rs[i].Key = []byte{}
						default:
							rs[i].Key = []byte(key)
						}
					}
				}
				if d.HasArg("ts") {
					var ts int64
					d.ScanArgs(t, "ts", &ts)
					for i := range rs {
						rs[i].Timestamp = ts
					}
				}
				res, err := w.Append(TopicPartition{Topic: topic, Partition: int32(part)}, rs)
				if err != nil {
					return fmt.Sprintf("error: %v\n", err)
				}
				return fmt.Sprintf("appended=%d duplicates=%d bytes=%d\n", res.Appended, res.Duplicates, res.Bytes)

			case "read":
				var max int
				d.ScanArgs(t, "max", &max)
				cursor := Cursor{}
				switch {
				case d.HasArg("next"):
					cursor = next
				case d.HasArg("cursor"):
					arg, _ := d.Arg("cursor")
					for _, v := range arg.Vals {
						tp, off, err := parsePosition(v)
						if err != nil {
							d.Fatalf(t, "%v", err)
						}
						cursor[tp] = off
					}
				}
				verbose := d.HasArg("verbose")
				var b strings.Builder
				n, err := w.Read(cursor, max, func(e Entry) error {
					fmt.Fprintf(&b, "%s %s (%d records)\n", e.TopicPartition, rangesOf(e.Records), len(e.Records))
					for _, r := range e.Records {
						if verbose {
							k := "nil"
							if r.Key != nil {
								k = strconv.Quote(string(r.Key))
							}
							fmt.Fprintf(&b, "  %d ts=%d key=%s value=%q\n", r.Offset, r.Timestamp, k, r.Value)
						}
						if want := fmt.Sprintf("v%d", r.Offset); string(r.Value) != want {
							fmt.Fprintf(&b, "  BAD VALUE at %d: %q\n", r.Offset, r.Value)
						}
					}
					return nil
				})
				if err != nil {
					fmt.Fprintf(&b, "error: %v\n", err)
				}
				next = n
				fmt.Fprintf(&b, "next: %s\n", fmtCursor(n))
				return b.String()

			case "truncate":
				c := Cursor{}
				for _, arg := range d.CmdArgs {
					tp, off, err := parsePosition(arg.Key)
					if err != nil {
						d.Fatalf(t, "%v", err)
					}
					c[tp] = off
				}
				freed, err := w.Truncate(c)
				if err != nil {
					return fmt.Sprintf("error: %v\n", err)
				}
				return fmt.Sprintf("freed=%d\n", freed)

			case "stats":
				var b strings.Builder
				for _, s := range w.Stats() {
					fmt.Fprintf(&b, "%s first=%d high=%d entries=%d records=%d bytes=%d\n",
						s.TopicPartition, s.FirstOffset, s.HighWater, s.Entries, s.Records, s.Bytes)
				}
				fmt.Fprintf(&b, "total bytes=%d\n", w.Bytes())
				return b.String()

			case "highwater":
				tp, _, err := parsePosition(d.CmdArgs[0].Key + ":0")
				if err != nil {
					d.Fatalf(t, "%v", err)
				}
				return fmt.Sprintf("%d\n", w.HighWater(tp))

			case "reopen":
				if err := w.Close(); err != nil {
					return fmt.Sprintf("error: %v\n", err)
				}
				var err error
				if w, err = Open("wal", testOptions(t, fs)); err != nil {
					d.Fatalf(t, "reopen: %v", err)
				}
				return "ok\n"

			case "verify":
				rep, err := w.Verify()
				if err != nil {
					return fmt.Sprintf("error: %v\n", err)
				}
				var b strings.Builder
				fmt.Fprintf(&b, "entries=%d records=%d bytes=%d corruptions=%d\n", rep.Entries, rep.Records, rep.Bytes, len(rep.Corruptions))
				for _, c := range rep.Corruptions {
					fmt.Fprintf(&b, "  %v\n", c)
				}
				return b.String()

			default:
				d.Fatalf(t, "unknown command %q", d.Cmd)
				return ""
			}
		})
	})
}

// parseRecords parses "0-9,12,15-17" into rec(offset) records, in the
// order given (so tests can also build invalid batches).
func parseRecords(s string) ([]Record, error) {
	var out []Record
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part[1:], "-")
		lo = part[:1] + lo // a leading '-' is a sign, not a range
		from, err := strconv.ParseInt(lo, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad offsets %q: %v", s, err)
		}
		to := from
		if isRange {
			if to, err = strconv.ParseInt(hi, 10, 64); err != nil {
				return nil, fmt.Errorf("bad offsets %q: %v", s, err)
			}
		}
		if to < from {
			return nil, fmt.Errorf("bad offsets %q: empty range", s)
		}
		for off := from; off <= to; off++ {
			out = append(out, rec(off))
		}
	}
	return out, nil
}

// parsePosition parses "topic/partition:offset".
func parsePosition(s string) (TopicPartition, int64, error) {
	tps, offs, ok := strings.Cut(s, ":")
	topic, parts, ok2 := strings.Cut(tps, "/")
	if !ok || !ok2 {
		return TopicPartition{}, 0, fmt.Errorf("bad position %q, want topic/partition:offset", s)
	}
	part, err := strconv.ParseInt(parts, 10, 32)
	if err != nil {
		return TopicPartition{}, 0, fmt.Errorf("bad position %q: %v", s, err)
	}
	off, err := strconv.ParseInt(offs, 10, 64)
	if err != nil {
		return TopicPartition{}, 0, fmt.Errorf("bad position %q: %v", s, err)
	}
	return TopicPartition{Topic: topic, Partition: int32(part)}, off, nil
}

// rangesOf renders the offsets of rs compactly: "0-4,7,9-10".
func rangesOf(rs []Record) string {
	var b strings.Builder
	for i := 0; i < len(rs); {
		j := i
		for j+1 < len(rs) && rs[j+1].Offset == rs[j].Offset+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if i == j {
			fmt.Fprintf(&b, "%d", rs[i].Offset)
		} else {
			fmt.Fprintf(&b, "%d-%d", rs[i].Offset, rs[j].Offset)
		}
		i = j + 1
	}
	return b.String()
}

func fmtCursor(c Cursor) string {
	tps := make([]TopicPartition, 0, len(c))
	for tp := range c {
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, TopicPartition.Compare)
	parts := make([]string, len(tps))
	for i, tp := range tps {
		parts[i] = fmt.Sprintf("%s:%d", tp, c[tp])
	}
	return strings.Join(parts, " ")
}
