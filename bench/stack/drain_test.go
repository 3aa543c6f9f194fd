package stack

import (
	"testing"

	"github.com/offload/offload/internal/admin"
)

// TestWaitDrained: the wait ends as soon as the status shows every record
// taken in and nothing left to load, and gives up at once on a parked
// batch; a pipeline still busy keeps it waiting.
func TestWaitDrained(t *testing.T) {
	busy := admin.Status{}
	busy.Kafka.Records, busy.Engine.RecordsIn, busy.Outbox.Rows = 10, 10, 4
	done := admin.Status{}
	done.Kafka.Records, done.Engine.RecordsIn = 10, 10
	parked := busy
	parked.Outbox.ParkedBatches = []admin.ParkedBatch{{}}

	polls := 0
	if !WaitDrained(func() admin.Status {
		polls++
		if polls < 3 {
			return busy
		}
		return done
	}, 10) || polls != 3 {
		t.Errorf("drained after %d polls: want true after 3", polls)
	}
	if WaitDrained(func() admin.Status { return parked }, 10) {
		t.Error("a parked batch counted as drained")
	}
	if drained(done, 11) {
		t.Error("drained with a record not taken in yet")
	}
}
