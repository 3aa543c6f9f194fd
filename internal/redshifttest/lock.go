package redshifttest

import (
	"regexp"
	"strings"
	"time"
)

// lockWait bounds how long LOCK waits for a table another session holds;
// then it fails as PostgreSQL's lock_timeout does (SQLSTATE 55P03).
const lockWait = time.Minute

// lockRE is Redshift's LOCK [TABLE] name [, ...].
var lockRE = regexp.MustCompile(`(?is)^\s*LOCK\s+(?:TABLE\s+)?(.+?)\s*;?\s*$`)

// lock runs the LOCK statement q for ss: an exclusive lock on each table,
// held until the transaction ends (Server.locks); a table another session
// holds is waited for, up to lockWait. Redshift's implicit write locks are
// not modelled (doc.go).
func (ss *session) lock(q string) error {
	m := lockRE.FindStringSubmatch(q)
	if m == nil {
		return &pgError{"42601", "syntax error in LOCK: " + q}
	}
	var tables []string
	for _, t := range strings.Split(m[1], ",") {
		tables = append(tables, strings.ToUpper(strings.TrimSpace(t)))
	}
	deadline := time.NewTimer(lockWait)
	defer deadline.Stop()
	for {
		_, ok, released := ss.srv.locks.TryLock(ss, tables...)
		if ok {
			return nil
		}
		select {
		case <-released:
		case <-deadline.C:
			return &pgError{"55P03", "could not obtain lock on relation " + strings.Join(tables, ", ") + " within " + lockWait.String()}
		}
	}
}
