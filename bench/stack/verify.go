package stack

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
	if len(valid) == 0 && v.Loaded == 0 {
		// Stopped before anything was produced: no load made the
		// warehouse's tables.
		v.ExactlyOnce = true
		return v, nil
	}
	missing, duplicated, unexpected, err := s.Warehouse.Tally(valid)
	if err != nil {
		return v, err
	}
	v.Missing, v.Extra = missing, duplicated+unexpected
	v.ExactlyOnce = v.Missing == 0 && v.Extra == 0 && v.Loaded == int64(len(valid))
	return v, nil
}
