package harness

import (
	"testing"

	"github.com/offload/offload/engine"
)

// TestTallyDeadLetters: a malformed record dead-lettered again after a
// deleted data directory is counted once (and as rewritten), a second dead
// letter within one directory is a duplicate, a malformed record in no
// directory is lost, and a dead letter of anything else is unexpected.
func TestTallyDeadLetters(t *testing.T) {
	letter := func(id string) engine.DLQEntry {
		return engine.DLQEntry{Raw: []byte(`{"event_id":"` + id + `","amount":"x"}`)}
	}
	malformed := map[string]struct{}{"m1": {}, "m2": {}, "m3": {}, "m4": {}}
	f := func(dirs [][]engine.DLQEntry, want Result) {
		t.Helper()
		h := &harness{}
		h.tallyDeadLetters(malformed, dirs)
		if h.res.DLQ != want.DLQ || h.res.DLQRewritten != want.DLQRewritten || h.res.Duplicated != want.Duplicated ||
			h.res.Lost != want.Lost || h.res.UnexpectedDLQ != want.UnexpectedDLQ {
			t.Errorf("dlq %d rewritten %d duplicated %d lost %d unexpected %d, want %d %d %d %d %d",
				h.res.DLQ, h.res.DLQRewritten, h.res.Duplicated, h.res.Lost, h.res.UnexpectedDLQ,
				want.DLQ, want.DLQRewritten, want.Duplicated, want.Lost, want.UnexpectedDLQ)
		}
	}
	// One data directory, every record once.
	f([][]engine.DLQEntry{{letter("m1"), letter("m2"), letter("m3"), letter("m4")}}, Result{DLQ: 4})
	// Two deletions: m2 was read again after the first, m3 after both.
	f([][]engine.DLQEntry{{letter("m1"), letter("m2"), letter("m3")}, {letter("m2"), letter("m3")}, {letter("m3"), letter("m4")}},
		Result{DLQ: 4, DLQRewritten: 3})
	// Twice within one directory is a duplicate; m4 nowhere is lost; a
	// valid event's dead letter and one without an id are unexpected.
	f([][]engine.DLQEntry{{letter("m1")}, {letter("m2"), letter("m2"), letter("m3"), letter("valid-7"), {Raw: []byte("garbage")}}},
		Result{DLQ: 6, Duplicated: 1, Lost: 1, UnexpectedDLQ: 2})
}

// TestLedgerOnly: reconcile's report passes after a deleted data
// directory only when every discrepancy is a ledger batch this appliance
// did not ship.
func TestLedgerOnly(t *testing.T) {
	const extra = "in the warehouse's ledger but not shipped by this appliance"
	for _, c := range []struct {
		report string
		n      int
		ok     bool
	}{
		{"BATCH        KIND   WHAT\nchaos-0-1-9  extra  " + extra + "\nchaos-1-5-7  extra  " + extra + "\n2 discrepancies (4 batches shipped, 6 in the ledger)\n", 2, true},
		{"level=WARN msg=recovering\nBATCH        KIND   WHAT\nchaos-0-1-9  extra  " + extra + "\n1 discrepancies (4 batches shipped, 5 in the ledger)\n", 1, true},
		{"BATCH        KIND      WHAT\nchaos-0-1-9  extra     " + extra + "\nchaos-0-1-9  mismatch  ledger says 10 rows, the warehouse holds 9\n2 discrepancies (4 batches shipped, 5 in the ledger)\n", 0, false},
		{"BATCH        KIND     WHAT\nchaos-0-1-9  missing  shipped here but not in the warehouse's ledger\n1 discrepancies (4 batches shipped, 3 in the ledger)\n", 0, false},
		{"BATCH        KIND   WHAT\nchaos-0-1-9  extra  12 rows in the warehouse without a ledger row\n1 discrepancies (4 batches shipped, 4 in the ledger)\n", 0, false},
		{"reconcile: cannot read the load ledger: connection refused\n", 0, false},
	} {
		if n, ok := ledgerOnly(c.report); n != c.n || ok != c.ok {
			t.Errorf("ledgerOnly(%q) = %d, %v, want %d, %v", c.report, n, ok, c.n, c.ok)
		}
	}
}
