package check

import "database/sql"

// TallyOnce reads (event id, copies) rows and counts the valid events
// missing, the copies beyond one of each (duplicated), and the copies of
// no valid event (unexpected). It closes rows.
func TallyOnce(rows *sql.Rows, valid map[string]struct{}) (missing, duplicated, unexpected int64, err error) {
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			return 0, 0, 0, err
		}
		if _, ok := valid[id]; ok {
			seen++
			duplicated += n - 1
		} else {
			unexpected += n
		}
	}
	return int64(len(valid) - seen), duplicated, unexpected, rows.Err()
}
