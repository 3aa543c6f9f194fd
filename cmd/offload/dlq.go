package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/internal/appliance"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/wal"
)

func runDLQ(args []string, stdout, stderr io.Writer) error {
	return dispatch(args, stdout, stderr,
		command{name: "list", run: runDLQList}, command{name: "export", run: runDLQExport}, command{name: "replay", run: runDLQReplay})
}

// openEngineOffline opens the engine of a stopped appliance for the dlq
// and outbox commands: the configuration gives the data directory and, for
// replay, the decoding settings to re-apply. extra adds the command's own
// flags; the parsed flag set is returned for its positional arguments.
func openEngineOffline(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*engine.Engine, *wal.WAL, *flag.FlagSet, error) {
	fs := newFlags(name, stderr)
	path := fs.String("config", "", "configuration file (YAML) of the appliance")
	if extra != nil {
		extra(fs)
	}
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, nil, err
	}
	if *path == "" {
		return nil, nil, nil, usageError{errors.New("--config FILE is required")}
	}
	c, err := loadConfig(*path)
	if err != nil {
		return nil, nil, nil, err
	}
	log := quietLogger()
	w, err := wal.Open(appliance.WALDir(c.DataDir), wal.Options{Logger: log})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w (if offload is running, stop it first)", err)
	}
	eng, err := openEngine(c, w, log)
	if err != nil {
		_ = w.Close()
		return nil, nil, nil, fmt.Errorf("%w (if offload is running, stop it first)", err)
	}
	return eng, w, fs, nil
}

// dlqFilterFlags adds the dlq commands' selection flags.
func dlqFilterFlags(fs *flag.FlagSet, f *engine.DLQFilter) {
	fs.StringVar(&f.Code, "code", "", "only entries with this reason code")
	fs.StringVar(&f.Topic, "topic", "", "only entries from this topic")
}

func openEngine(c *config.Config, w *wal.WAL, log *slog.Logger) (*engine.Engine, error) {
	opts, err := appliance.EngineOptions(c, w, log)
	if err != nil {
		return nil, err
	}
	return engine.Open(opts)
}

func closeOffline(eng *engine.Engine, w *wal.WAL) {
	_ = eng.Close()
	_ = w.Close()
}

func runDLQList(args []string, stdout, stderr io.Writer) error {
	var limit *int
	var after int64
	var f engine.DLQFilter
	eng, w, _, err := openEngineOffline("dlq list", args, stderr, func(fs *flag.FlagSet) {
		dlqFilterFlags(fs, &f)
		limit = fs.Int("limit", 50, "how many entries at most, oldest first")
		fs.Int64Var(&after, "after", 0, "only entries with an id above this (to page on)")
	})
	if err != nil {
		return err
	}
	defer closeOffline(eng, w)
	f.Limit, f.AfterID = *limit, after
	entries, err := eng.DLQList(f)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAT\tSOURCE\tSTAGE\tCODE\tREASON\tREPLAYED\tRAW")
	for _, e := range entries {
		replayed := ""
		if !e.ReplayedAt.IsZero() {
			replayed = e.ReplayedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s/%d@%d\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.At.UTC().Format(time.RFC3339),
			e.Topic, e.Partition, e.Offset, e.Stage, e.Code, e.Reason, replayed, engine.Preview(e.Raw))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d entries shown\n", len(entries))
	if len(entries) == f.Limit {
		fmt.Fprintf(stdout, "more may follow: --after %d\n", entries[len(entries)-1].ID)
	}
	return nil
}

func runDLQExport(args []string, stdout, stderr io.Writer) error {
	var out *string
	var f engine.DLQFilter
	eng, w, _, err := openEngineOffline("dlq export", args, stderr, func(fs *flag.FlagSet) {
		dlqFilterFlags(fs, &f)
		out = fs.String("out", "-", "file to write JSON lines to (- for stdout)")
	})
	if err != nil {
		return err
	}
	defer closeOffline(eng, w)
	var n int
	err = writeOutput(*out, stdout, func(dst io.Writer) (err error) {
		n, err = eng.DLQExport(dst, f)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "exported %d dead-letter entries\n", n)
	return nil
}

func runDLQReplay(args []string, stdout, stderr io.Writer) error {
	var f engine.DLQFilter
	eng, w, _, err := openEngineOffline("dlq replay", args, stderr, func(fs *flag.FlagSet) { dlqFilterFlags(fs, &f) })
	if err != nil {
		return err
	}
	defer closeOffline(eng, w)
	res, err := eng.DLQReplay(f)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "replayed %d entries: %d accepted, %d duplicates, %d filtered, %d still rejected (kept in the dead-letter table)\n",
		res.Attempted, res.Accepted, res.Duplicates, res.Filtered, res.StillRejected)
	codes := make([]string, 0, len(res.StillRejectedByCode))
	for c := range res.StillRejectedByCode {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		fmt.Fprintf(stdout, "  still rejected: %-22s %d\n", c, res.StillRejectedByCode[c])
	}
	return nil
}
