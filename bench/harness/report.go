package harness

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteReport writes the human-readable report.
func WriteReport(w io.Writer, r Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tkills\tfaults\texits\tseconds\tdetail")
	for _, s := range r.Scenarios {
		detail := s.Detail
		if s.Skipped != "" {
			detail = "SKIPPED: " + s.Skipped
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%s\n", s.Name, s.Kills, s.Faults, s.Exits, s.Seconds, truncate(detail, 90))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nkills %d (loader state at the kill: %v), daemon starts %d, %.0f s\n", r.Kills, r.KillMoments, r.DaemonStarts, r.Seconds)
	fmt.Fprintf(w, "produced %d records: %d valid events, %d duplicates, %d malformed\n", r.Produced, r.Valid, r.Duplicates, r.Malformed)
	fmt.Fprintf(w, "warehouse %d rows, DLQ %d; drained %.1f s after the producer stopped; reconcile ok: %v\n",
		r.Loaded, r.DLQ, r.DrainSeconds, r.ReconcileOK)
	if r.OutageDrainPerSec > 0 { // the warehouse-outage scenario ran
		fmt.Fprintf(w, "after a 20 s outage the backlog drained at %.0f events/s, %.1f× the rate produced\n", r.OutageDrainPerSec, r.OutageDrainRatio)
	}
	if r.DataDirsDeleted > 0 { // the disk-loss scenario ran
		fmt.Fprintf(w, "data directory deleted %d times: %d dead letters written again for records read again, %d ledger batches shipped from a deleted directory\n",
			r.DataDirsDeleted, r.DLQRewritten, r.LedgerOnlyBatches)
	}
	fmt.Fprintf(w, "lost %d  duplicated %d  unexpected_dlq %d  unexpected_rows %d\n", r.Lost, r.Duplicated, r.UnexpectedDLQ, r.UnexpectedRows)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
	if r.OK {
		fmt.Fprintln(w, "chaos: OK, nothing lost, nothing duplicated")
	} else {
		fmt.Fprintln(w, "chaos: FAILED")
	}
}

func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
