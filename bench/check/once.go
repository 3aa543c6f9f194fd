package check

import "database/sql"

// TallyOnce reads (event id, copies) rows and counts the valid events
// missing, the copies beyond one of each (duplicated), and the copies of
// no valid event (unexpected). It closes rows.
func TallyOnce(rows *sql.Rows, valid map[string]struct{}) (missing, duplicated, unexpected int64, err error) {
	defer rows.Close()
	return TallyCopies(func(yield func(string, int64) bool) error {
		for rows.Next() {
			var id string
			var n int64
			if err := rows.Scan(&id, &n); err != nil {
				return err
			}
			if !yield(id, n) {
				return nil
			}
		}
		return rows.Err()
	}, valid)
}

// TallyCopies is TallyOnce over the (event id, copies) pairs each yields:
// for a warehouse read through an API rather than database/sql.
func TallyCopies(each func(yield func(id string, n int64) bool) error, valid map[string]struct{}) (missing, duplicated, unexpected int64, err error) {
	seen := 0
	err = each(func(id string, n int64) bool {
		if _, ok := valid[id]; ok {
			seen++
			duplicated += n - 1
		} else {
			unexpected += n
		}
		return true
	})
	if err != nil {
		return 0, 0, 0, err
	}
	return int64(len(valid) - seen), duplicated, unexpected, nil
}
