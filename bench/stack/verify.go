package stack

import "time"

// WaitLoaded waits (bounded) until the warehouse holds n distinct events.
// It asks less and less often, up to every 2 s: each question is a query
// job, and on the BigQuery emulator every job makes the next ones, the
// loader's commits among them, slower (docs/LOADER.md, "BigQuery emulator
// gaps").
func (s *Stack) WaitLoaded(n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for pause := 100 * time.Millisecond; time.Now().Before(deadline); pause = min(2*pause, 2*time.Second) {
		if _, events := s.Warehouse.Loaded(); events >= int64(n) {
			return true
		}
		time.Sleep(pause)
	}
	return false
}

// Verified is the warehouse checked against the valid events produced.
type Verified struct {
	Loaded, Windows, Missing, Extra int64
	ExactlyOnce                     bool
}

// Verify checks that the warehouse holds each valid event exactly once and
// nothing else.
func (s *Stack) Verify(valid map[string]struct{}) (Verified, error) {
	v := Verified{Windows: s.Warehouse.Windows()}
	v.Loaded, _ = s.Warehouse.Loaded()
	missing, duplicated, unexpected, err := s.Warehouse.Tally(valid)
	if err != nil {
		return v, err
	}
	v.Missing, v.Extra = missing, duplicated+unexpected
	v.ExactlyOnce = v.Missing == 0 && v.Extra == 0 && v.Loaded == int64(len(valid))
	return v, nil
}
