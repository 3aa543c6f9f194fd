package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/offload/offload/engine"
)

func runOutbox(args []string, stdout, stderr io.Writer) error {
	return dispatch(args, stdout, stderr, command{name: "list", run: runOutboxList}, command{name: "retry", run: runOutboxRetry})
}

// runOutboxList lists the sealed batches waiting for the warehouse and
// the parked ones, with the warehouse's error.
func runOutboxList(args []string, stdout, stderr io.Writer) error {
	eng, w, _, err := openEngineOffline("outbox list", args, stderr, nil)
	if err != nil {
		return err
	}
	defer closeOffline(eng, w)
	batches, err := eng.SealedBatches()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BATCH\tSTATE\tSEALED\tROWS\tWINDOW ROWS\tBYTES\tERROR")
	parked := 0
	for _, b := range batches {
		if b.State == engine.BatchParked {
			parked++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", b.ID, b.State, b.FirstSealedAt.UTC().Format(time.RFC3339),
			b.Rows, b.WindowRows, b.Bytes, strings.ReplaceAll(b.Error, "\n", " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d batches waiting, %d of them parked\n", len(batches), parked)
	return nil
}

// runOutboxRetry queues parked batches for the loader again, after the
// cause (a schema or privilege problem in the warehouse) has been fixed.
func runOutboxRetry(args []string, stdout, stderr io.Writer) error {
	var batches string
	var all bool
	eng, w, _, err := openEngineOffline("outbox retry", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&batches, "batch", "", "parked batch ids to retry, comma-separated (see offload outbox list)")
		fs.BoolVar(&all, "all-parked", false, "retry every parked batch")
	})
	if err != nil {
		return err
	}
	defer closeOffline(eng, w)
	var ids []string
	for _, id := range strings.Split(batches, ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	if all {
		bs, err := eng.SealedBatches()
		if err != nil {
			return err
		}
		for _, b := range bs {
			if b.State == engine.BatchParked {
				ids = append(ids, b.ID)
			}
		}
	}
	if len(ids) == 0 && !all {
		return usageError{errors.New("name the batches with --batch ID[,ID...] or give --all-parked")}
	}
	for _, id := range ids {
		if err := eng.RetryParked(id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s queued for the loader again\n", id)
	}
	fmt.Fprintf(stdout, "%d parked batches queued again\n", len(ids))
	return nil
}
