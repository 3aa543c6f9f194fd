package loader

import (
	"regexp"
	"testing"
	"time"

	"github.com/offload/offload/internal/snowtest"
)

// TestHungWarehouseIsUnanswered: a warehouse that holds the load's COPY
// shows as Unanswered within the load timeout, the attempt's failure marks
// the warehouse failing, and the next load clears both.
func TestHungWarehouseIsUnanswered(t *testing.T) {
	w := newWarehouse(t)
	sink := w.sink(t, AuthPassword)
	e := testOutbox(t, 1, 5)
	hang := w.srv.Inject(snowtest.Fault{Kind: snowtest.FaultHang, SQL: regexp.MustCompile(`^COPY INTO`), Hang: time.Minute})
	opts := fastOptions(e, sink, t.TempDir())
	opts.UnansweredAfter, opts.LoadTimeout = 300*time.Millisecond, 3*time.Second
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	var hung, failing Status
	start := time.Now()
	runUntil(t, l, func() bool {
		st := l.Status()
		if hung.Unanswered == 0 && st.Unanswered > 0 {
			hung = st
			if took := time.Since(start); took > opts.LoadTimeout {
				t.Errorf("unanswered shown after %s, later than the load timeout %s", took, opts.LoadTimeout)
			}
		}
		if !failing.WarehouseFailing && st.WarehouseFailing {
			failing = st
		}
		return st.Loaded == 1
	})
	if hang.Hits() != 1 {
		t.Fatalf("the hang fault hit %d requests, want 1", hang.Hits())
	}
	if hung.State != StateLoading || hung.Unanswered < opts.UnansweredAfter || hung.Unanswered > opts.LoadTimeout {
		t.Fatalf("status while the COPY hung: state %s, unanswered %s", hung.State, hung.Unanswered)
	}
	if failing.Retries != 1 || failing.LastError == "" {
		t.Fatalf("status after the hung attempt timed out: %+v", failing)
	}
	if st := l.Status(); st.Unanswered != 0 || st.WarehouseFailing || st.Loaded != 1 {
		t.Fatalf("status after the load: %+v", st)
	}
}

// TestUnansweredLimit: the limit is the floor, or three times the slowest
// of the last loads when that is longer.
func TestUnansweredLimit(t *testing.T) {
	l := &Loader{opts: Options{UnansweredAfter: 30 * time.Second}}
	if got := l.unansweredLimit(); got != 30*time.Second {
		t.Fatalf("no loads yet: %s, want the floor 30s", got)
	}
	l.recentTook = []time.Duration{2 * time.Second, 25 * time.Second, 4 * time.Second}
	if got := l.unansweredLimit(); got != 75*time.Second {
		t.Fatalf("slowest load 25s: %s, want 1m15s", got)
	}
}
