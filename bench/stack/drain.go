package stack

import (
	"time"

	"github.com/offload/offload/internal/admin"
)

// drainStall is how long WaitDrained waits without progress: longer than
// the slowest test warehouse's request timeout (the BigQuery emulator's,
// bench/testwarehouse), so a slow commit that ends in a load still counts
// as progress.
const drainStall = 3 * time.Minute

// WaitDrained waits until the appliance whose status document status
// reads has taken in produced records and loaded all it accepted (the
// outbox empty, nothing sealed), as long as it makes progress: it stops
// after drainStall without a record taken in or a batch loaded, or when a
// batch is parked. It asks the appliance's status, never the warehouse:
// on the BigQuery emulator every query job makes the next ones, the
// loader's commits among them, slower (docs/LOADER.md, "BigQuery emulator
// gaps"). It reports whether the appliance drained.
func WaitDrained(status func() admin.Status, produced int64) bool {
	var last [2]int64
	stalled := time.Now().Add(drainStall)
	for time.Now().Before(stalled) {
		st := status()
		if drained(st, produced) {
			return true
		}
		if len(st.Outbox.ParkedBatches) > 0 {
			return false
		}
		if now := drainProgress(st); now != last {
			last, stalled = now, time.Now().Add(drainStall)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// drained reports whether st shows produced records taken in and every
// accepted one loaded.
func drained(st admin.Status, produced int64) bool {
	return st.Kafka.Records >= uint64(produced) && st.Engine.BacklogRecords == 0 &&
		st.Outbox.Rows == 0 && st.Outbox.SealedBatches == 0
}

// drainProgress is what grows while the appliance drains: records taken
// in by the engine and batches done by the loader.
func drainProgress(st admin.Status) [2]int64 {
	p := [2]int64{st.Engine.RecordsIn}
	if st.Loader != nil {
		p[1] = st.Loader.Loaded + st.Loader.AlreadyLoaded
	}
	return p
}
