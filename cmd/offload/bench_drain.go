package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/offload/offload/bench/drain"
)

// runDrainBench runs the drain profile (bench/drain), prints its table,
// writes the JSON file if asked, and fails the command when delivery was
// not exactly once.
func runDrainBench(o drain.Options, stdout io.Writer, jsonOut string) error {
	if err := o.Validate(); err != nil {
		return usageError{err}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := drain.Run(ctx, o)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	printDrain(stdout, res)
	if err := writeJSON(jsonOut, res); err != nil {
		return err
	}
	if !res.ExactlyOnce {
		return errFound
	}
	return nil
}

func printDrain(w io.Writer, r drain.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	row := func(name, value string) { fmt.Fprintf(tw, "%s\t%s\t\n", name, value) }
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
	row("profile", r.Profile)
	row("events (valid), partitions", fmt.Sprintf("%d (%d), %d", r.Events, r.ValidEvents, r.Partitions))
	row("drain: in the WAL, events/s", f(r.DrainKafkaEventsPerSec))
	row("drain: through the engine, events/s", f(r.DrainEngineEventsPerSec))
	row("drain: loaded, events/s", f(r.DrainLoadedEventsPerSec))
	row("appliance CPU per event", fmt.Sprintf("%.2f µs (%.1f s)", r.ApplianceCPUUsPerEvent, r.ApplianceCPUSeconds))
	row("appliance peak RSS", fmt.Sprintf("%d MiB", r.AppliancePeakRSSBytes>>20))
	row("bare consumer, events/s", f(r.BareConsumerEventsPerSec))
	row("ratio (loaded / bare consumer)", fmt.Sprintf("%.3f", r.Ratio))
	row("steady phase", fmt.Sprintf("%d events at %s/s", r.SteadyEvents, f(r.SteadyRate)))
	row("produce → durable p50/p99 ms", fmt.Sprintf("%.0f / %.0f", r.P50DurableMs, r.P99DurableMs))
	row("produce → warehouse p50/p99 ms", fmt.Sprintf("%.0f / %.0f", r.P50WarehouseMs, r.P99WarehouseMs))
	row("loads; shipped / raw bytes", fmt.Sprintf("%d; %.1f %%", r.Loads, 100*r.BytesShippedRatio))
	row("deduplicated; dead-lettered", fmt.Sprintf("%d; %d", r.Deduplicated, r.DeadLettered))
	row("dedupe index: keys, event time held", fmt.Sprintf("%d, %s of %s", r.Dedupe.Keys,
		secondsText(r.Dedupe.HeldSeconds), secondsText(r.Dedupe.WindowSeconds)))
	row("exactly once", onceText(r.ExactlyOnce, r.Missing, r.Extra))
	_ = tw.Flush()
}

// secondsText writes seconds as a duration rounded to the second.
func secondsText(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}
