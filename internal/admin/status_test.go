package admin

import (
	"fmt"
	"testing"
	"time"

	"github.com/offload/offload/loader"
)

// TestWarehouseMessage: the loader's status says the warehouse is
// unavailable while it does not answer, while a retryable failure is
// waited out or the circuit is open, and while the attempt after such a
// failure runs; a load in flight on a healthy warehouse, a retry after a
// local failure and the other states say nothing.
func TestWarehouseMessage(t *testing.T) {
	now := time.Date(2026, 11, 27, 8, 15, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		st   loader.Status
		want string
	}{
		{"loading", loader.Status{State: loader.StateLoading}, ""},
		{"hung", loader.Status{State: loader.StateLoading, Unanswered: 70 * time.Second}, "warehouse not answering for 1m10s"},
		{"retrying", loader.Status{State: loader.StateRetrying, WarehouseFailing: true, RetryAt: now.Add(18 * time.Second)},
			"warehouse failing: retry in 18s (see last_error)"},
		{"local retry", loader.Status{State: loader.StateRetrying, RetryAt: now.Add(time.Second)}, ""},
		{"open", loader.Status{State: loader.StateOpen, WarehouseFailing: true},
			"warehouse failing: circuit open after repeated failures (see last_error)"},
		{"probe", loader.Status{State: loader.StateLoading, WarehouseFailing: true}, "warehouse failing: trying again (see last_error)"},
		{"idle", loader.Status{State: loader.StateIdle}, ""},
		{"paused", loader.Status{State: loader.StatePaused, WarehouseFailing: true}, ""},
	} {
		if got := warehouseMessage(&c.st, now); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// TestTopFields: the status names the unmapped fields most rows carried,
// most first, ties by name, at most MaxUnmappedFieldsShown.
func TestTopFields(t *testing.T) {
	by := map[string]int64{"b": 5, "a": 5, "c": 9}
	for i := range MaxUnmappedFieldsShown {
		by[fmt.Sprintf("z%02d", i)] = 1
	}
	got := topFields(by)
	if len(got) != MaxUnmappedFieldsShown || got[0] != (FieldCount{"c", 9}) || got[1] != (FieldCount{"a", 5}) || got[2] != (FieldCount{"b", 5}) || got[3].Name != "z00" {
		t.Fatalf("top fields %v", got)
	}
	if got := topFields(nil); got == nil || len(got) != 0 {
		t.Fatalf("no fields: %#v; want an empty list (JSON [])", got)
	}
}
