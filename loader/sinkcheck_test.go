package loader

import (
	"context"
	"strings"
	"testing"

	"github.com/offload/offload/engine"
)

// The checks every sink's tests run against their server: each takes the
// sink and functions that act on or read the server.

// checkOutage: with the warehouse away (away) the loader retries and
// opens its circuit; once it is back (back) the backlog drains, and check
// asserts the delivery contract.
func checkOutage(t *testing.T, sink Sink, away func(), back func() error, check func(want map[string]bool)) {
	t.Helper()
	e := testOutbox(t, 2, 20)
	want := outboxEventIDs(t, e)
	away()
	l, err := New(fastOptions(e, sink, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	st := runUntilOpen(l)
	if st.State != StateOpen || st.LastError == "" || st.Retries < 3 {
		t.Fatalf("with the warehouse away: %+v", st)
	}
	if err := back(); err != nil {
		t.Fatal(err)
	}
	l.Resume()
	runUntil(t, l, outboxEmpty(e))
	check(want)
}

// checkParks: a transactions table that cannot take the rows (made by
// breakTable) is a permanent error: the batch is parked with the
// warehouse's message (holding wantErr), none of its rows (counted by
// rows) reach the table; after fixTable and a retry it loads, and check
// asserts the delivery contract.
func checkParks(t *testing.T, sink Sink, breakTable, fixTable func(), rows func() string, wantErr string, check func(want map[string]bool)) {
	t.Helper()
	e := testOutbox(t, 1, 60)
	breakTable()
	l, err := New(fastOptions(e, sink, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, l, func() bool { return l.Status().Parked == 1 })
	bs, _ := e.SealedBatches()
	if len(bs) != 1 || bs[0].State != engine.BatchParked || !strings.Contains(bs[0].Error, wantErr) {
		t.Fatalf("outbox: %+v, want a batch parked with %q", bs, wantErr)
	}
	if n := rows(); n != "0" {
		t.Fatalf("%s rows of a parked batch reached the warehouse", n)
	}
	fixTable()
	if err := l.RetryParked(bs[0].ID); err != nil {
		t.Fatal(err)
	}
	want := outboxEventIDs(t, e)
	runUntil(t, l, outboxEmpty(e))
	check(want)
}

// checkReconcile: reconcile finds the ledger, the table and the batches
// e shipped equal; after lose deletes one row it reports one mismatch.
func checkReconcile(t *testing.T, e *engine.Engine, sink Reconciler, lose func()) {
	t.Helper()
	ctx := context.Background()
	bs, err := e.ShippedBatches()
	if err != nil {
		t.Fatal(err)
	}
	shipped := map[string]int64{}
	for _, b := range bs {
		shipped[b.ID] = b.Rows
	}
	ledger, err := sink.Ledger(ctx, "lt")
	if err != nil {
		t.Fatal(err)
	}
	reconcile := func() []Discrepancy {
		held, err := sink.Held(ctx, "lt")
		if err != nil {
			t.Fatal(err)
		}
		return Reconcile(shipped, ledger, held)
	}
	if found := reconcile(); len(shipped) == 0 || len(found) != 0 {
		t.Fatalf("%d batches shipped; reconcile found %v", len(shipped), found)
	}
	lose()
	if found := reconcile(); len(found) != 1 || found[0].Kind != "mismatch" {
		t.Fatalf("reconcile after a row was deleted: %v", found)
	}
}
