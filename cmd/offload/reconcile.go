package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/offload/offload/internal/appliance"
	"github.com/offload/offload/loader"
)

// runReconcile compares the batches this appliance shipped, the
// warehouse's load ledger (rows and control totals per batch) and what
// the warehouse's transactions table holds. Exit 0 only when all match.
func runReconcile(args []string, stdout, stderr io.Writer) error {
	eng, w, fs, err := openEngineOffline("reconcile", args, stderr, nil)
	if err != nil {
		return err
	}
	defer closeOffline(eng, w)
	c, err := loadConfig(fs.Lookup("config").Value.String())
	if err != nil {
		return err
	}
	if c.Warehouse.Type == "" {
		return usageError{errors.New("warehouse.type is not set: there is no warehouse to reconcile with")}
	}
	shipped, err := eng.ShippedBatches()
	if err != nil {
		return err
	}
	local := make(map[string]int64, len(shipped))
	for _, b := range shipped {
		local[b.ID] = b.Rows
	}
	sink, err := appliance.NewSink(c, quietLogger())
	if err != nil {
		return err
	}
	defer sink.Close()
	rec, ok := sink.(loader.Reconciler)
	if !ok {
		return fmt.Errorf("reconcile: warehouse.type %s has no ledger to reconcile with", c.Warehouse.Type)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ledger, err := rec.Ledger(ctx, c.ApplianceID)
	if err != nil {
		return fmt.Errorf("reconcile: cannot read the load ledger: %w", err)
	}
	held, err := rec.Held(ctx, c.ApplianceID)
	if err != nil {
		return fmt.Errorf("reconcile: cannot read the transactions table: %w", err)
	}
	found := loader.Reconcile(local, ledger, held)
	if len(found) == 0 {
		fmt.Fprintf(stdout, "all match: %d batches shipped, %d in the ledger, rows and control totals equal to the warehouse's\n", len(local), len(ledger))
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BATCH\tKIND\tWHAT")
	for _, d := range found {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Batch, d.Kind, d.What)
	}
	_ = tw.Flush()
	fmt.Fprintf(stdout, "%d discrepancies (%d batches shipped, %d in the ledger)\n", len(found), len(local), len(ledger))
	return errFound
}
