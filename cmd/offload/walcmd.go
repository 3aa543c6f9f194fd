package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/internal/appliance"
	"github.com/offload/offload/wal"
)

func runWAL(args []string, stdout, stderr io.Writer) error {
	return dispatch(args, stdout, stderr,
		command{name: "stats", run: runWALStats}, command{name: "verify", run: runWALVerify},
		command{name: "repair", run: runWALRepair}, command{name: "export", run: runWALExport})
}

// openWALOffline opens the WAL of --data-dir (or of --config's data_dir)
// read-only.
func openWALOffline(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*wal.WAL, error) {
	dir, err := offlineDataDir(name, args, stderr, extra)
	if err != nil {
		return nil, err
	}
	w, err := wal.Open(appliance.WALDir(dir), wal.Options{ReadOnly: true, Logger: quietLogger()})
	if errors.Is(err, wal.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w (if offload is running, stop it first)", err)
	}
	return w, nil
}

// offlineDataDir parses the flags of `offload wal NAME` and returns
// --data-dir, or --config's data_dir.
func offlineDataDir(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (string, error) {
	fs := newFlags("wal "+name, stderr)
	dataDir := fs.String("data-dir", "", "data directory (default: data_dir of --config)")
	cfg := fs.String("config", "", "configuration file, to take data_dir from")
	if extra != nil {
		extra(fs)
	}
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	dir := *dataDir
	if dir == "" && *cfg != "" {
		c, err := loadConfig(*cfg)
		if err != nil {
			return "", err
		}
		dir = c.DataDir
	}
	if dir == "" {
		return "", usageError{errors.New("--data-dir DIR (or --config FILE) is required")}
	}
	return dir, nil
}

// walStats is the JSON shape of `offload wal stats --json`.
type walStats struct {
	Records    uint64                   `json:"records"`
	Entries    uint64                   `json:"entries"`
	Bytes      uint64                   `json:"bytes"`
	DiskBytes  uint64                   `json:"disk_bytes"`
	Partitions map[string]partitionJSON `json:"partitions"`
}

type partitionJSON struct {
	FirstOffset int64  `json:"first_offset"`
	HighWater   int64  `json:"high_water"`
	Entries     uint64 `json:"entries"`
	Records     uint64 `json:"records"`
	Bytes       uint64 `json:"bytes"`
}

func runWALStats(args []string, stdout, stderr io.Writer) error {
	var asJSON *bool
	w, err := openWALOffline("stats", args, stderr, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print JSON")
	})
	if err != nil {
		return err
	}
	defer w.Close()
	st := walStats{Partitions: map[string]partitionJSON{}, DiskBytes: w.DiskUsage()}
	parts := w.Stats()
	for _, p := range parts {
		st.Records += p.Records
		st.Entries += p.Entries
		st.Bytes += p.Bytes
		st.Partitions[p.TopicPartition.String()] = partitionJSON{p.FirstOffset, p.HighWater, p.Entries, p.Records, p.Bytes}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "partition\tfirst offset\thigh water\tentries\trecords\tbytes\t")
	for _, p := range parts {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", p.TopicPartition, p.FirstOffset, p.HighWater, p.Entries, p.Records, p.Bytes)
	}
	fmt.Fprintf(tw, "total\t\t\t%d\t%d\t%d\t\n", st.Entries, st.Records, st.Bytes)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "disk usage: %d bytes\n", st.DiskBytes)
	return nil
}

func runWALVerify(args []string, stdout, stderr io.Writer) error {
	w, err := openWALOffline("verify", args, stderr, nil)
	var ce *wal.CorruptionError
	if errors.As(err, &ce) {
		fmt.Fprintf(stdout, "damaged: %v\n", ce)
		fmt.Fprintln(stdout, "verify: the WAL cannot be opened; it is damaged")
		return errFound
	}
	if err != nil {
		return err
	}
	defer w.Close()
	rep, err := w.Verify()
	if err != nil {
		return err
	}
	for _, c := range rep.Corruptions {
		fmt.Fprintf(stdout, "damaged: %v\n", c)
	}
	if len(rep.Corruptions) > 0 {
		fmt.Fprintf(stdout, "verify: %d damaged positions in %d entries (%d records, %d bytes) checked\n",
			len(rep.Corruptions), rep.Entries, rep.Records, rep.Bytes)
		return errFound
	}
	fmt.Fprintf(stdout, "verify: ok: %d entries, %d records, %d bytes checked\n", rep.Entries, rep.Records, rep.Bytes)
	return nil
}

// runWALRepair moves the WAL's damaged data to quarantine and keeps the
// rest (wal.Repair), printing what it moved. It exits 0 once the WAL is
// sound.
func runWALRepair(args []string, stdout, stderr io.Writer) error {
	dir, err := offlineDataDir("repair", args, stderr, nil)
	if err != nil {
		return err
	}
	rep, err := wal.Repair(appliance.WALDir(dir), appliance.QuarantineDir(dir), wal.Options{Logger: quietLogger()})
	if err != nil {
		return err
	}
	for _, d := range rep.Damage {
		fmt.Fprintf(stdout, "damaged: %s\n", d)
	}
	for _, m := range rep.Moved {
		fmt.Fprintf(stdout, "moved: %s\n", movedLine(m))
	}
	for _, h := range rep.HighWater {
		fmt.Fprintf(stdout, "high water: %s/%d now %d: %s\n", h.Topic, h.Partition, h.HighWater, h.Reason)
	}
	if rep.Quarantine == "" {
		fmt.Fprintf(stdout, "repair: the WAL is sound, nothing moved: %d entries, %d records\n", rep.KeptEntries, rep.KeptRecords)
		return nil
	}
	fmt.Fprintf(stdout, "repair: kept %d entries (%d records); moved %d entries (%d records) to %s\n",
		rep.KeptEntries, rep.KeptRecords, rep.Entries, rep.Records, rep.Quarantine)
	fmt.Fprintf(stdout, "repair: the damaged WAL directory as it was is in %s; nothing was deleted\n", filepath.Join(rep.Quarantine, "wal"))
	return nil
}

// movedLine describes one thing wal.Repair moved.
func movedLine(m wal.Moved) string {
	switch m.Kind {
	case wal.MovedKey:
		return fmt.Sprintf("stray key (%s): %s", m.KeyFile, m.Reason)
	case wal.MovedMeta:
		return fmt.Sprintf("%s/%d partition meta (rebuilt from the kept entries): %s", m.Topic, m.Partition, m.Reason)
	case wal.MovedFile:
		return fmt.Sprintf("unreadable file %s: %s", m.PebbleFile, m.Reason)
	}
	last, records := "end", "unknown number of"
	if m.LastOffset >= 0 {
		last = fmt.Sprint(m.LastOffset)
	}
	if m.Records >= 0 {
		records = fmt.Sprint(m.Records)
	}
	what := "entry"
	if m.Kind == wal.MovedRange {
		what = "unreadable run"
	}
	return fmt.Sprintf("%s/%d %s, offsets %d..%s, %s records: %s", m.Topic, m.Partition, what, m.FirstOffset, last, records, m.Reason)
}

// walRecordJSON is one line of `offload wal export`.
type walRecordJSON struct {
	Topic string `json:"topic"`
	// Incarnation tells apart topics deleted and created again under the
	// same name (docs/ARCHITECTURE.md); left out for the first.
	Incarnation uint32    `json:"incarnation,omitempty"`
	Partition   int32     `json:"partition"`
	Offset      int64     `json:"offset"`
	KafkaTime   time.Time `json:"kafka_time"`
	Appended    time.Time `json:"appended"`
	Key         string    `json:"key,omitempty"`
	// Value is the record's value with anything that looks like a card
	// number masked; ValueBase64 replaces it when the value is not UTF-8.
	Value       string `json:"value,omitempty"`
	ValueBase64 string `json:"value_base64,omitempty"`
}

// runWALExport writes the WAL's records as JSON lines, in WAL order, for
// inspection.
func runWALExport(args []string, stdout, stderr io.Writer) error {
	var topic, out *string
	w, err := openWALOffline("export", args, stderr, func(fs *flag.FlagSet) {
		topic = fs.String("topic", "", "only this topic's records")
		out = fs.String("out", "-", "file to write to (- for stdout)")
	})
	if err != nil {
		return err
	}
	defer w.Close()
	var n int
	err = writeOutput(*out, stdout, func(dst io.Writer) (err error) {
		n, err = exportWAL(w, *topic, dst)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "exported %d records\n", n)
	return nil
}

// exportWAL writes w's records (only topic's, unless topic is empty) to dst
// as JSON lines and returns how many it wrote.
func exportWAL(w *wal.WAL, topic string, dst io.Writer) (int, error) {
	bw := bufio.NewWriter(dst)
	enc := json.NewEncoder(bw)
	n := 0
	for cur := (wal.Cursor{}); ; {
		read := 0
		var err error
		cur, err = w.Read(cur, 10000, func(e wal.Entry) error {
			for _, r := range e.Records {
				read++
				if topic != "" && e.Topic != topic {
					continue
				}
				line := walRecordJSON{Topic: e.Topic, Incarnation: e.Incarnation, Partition: e.Partition, Offset: r.Offset,
					KafkaTime: time.UnixMilli(r.Timestamp).UTC(), Appended: e.AppendTime.UTC(), Key: string(r.Key)}
				if v := event.MaskRaw(r.Value); utf8.Valid(v) {
					line.Value = string(v)
				} else {
					line.ValueBase64 = base64.StdEncoding.EncodeToString(v)
				}
				if err := enc.Encode(line); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		if read == 0 {
			return n, bw.Flush()
		}
	}
}

// writeOutput runs write against the file at path, or against stdout when
// path is "-", and reports a failure to close the file as a failed write.
func writeOutput(path string, stdout io.Writer, write func(io.Writer) error) error {
	if path == "-" {
		return write(stdout)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = write(f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("cannot write %s: %w", path, cerr)
	}
	return err
}
