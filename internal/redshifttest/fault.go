package redshifttest

import (
	"regexp"
	"sync/atomic"
	"time"
)

// FaultKind is what an injected fault does.
type FaultKind int

const (
	// FaultDropConnection closes the session's connection when the
	// statement arrives, before running it.
	FaultDropConnection FaultKind = iota
	// FaultStatementError fails the statement with Fault.Code.
	FaultStatementError
	// FaultAnswerLost runs the statement (a COMMIT commits) and closes the
	// connection instead of answering.
	FaultAnswerLost
	// FaultSlow holds the statement for Fault.Hang, then runs it whatever
	// the client did meanwhile, as Redshift finishes a COMMIT whose
	// client gave up (timed out, or lost its connection) while it waited
	// in the commit queue; it answers if the connection is still there.
	FaultSlow
)

// Fault is a failure injected into the statements matching SQL.
type Fault struct {
	Kind FaultKind
	SQL  *regexp.Regexp
	// Code is the SQLSTATE of FaultStatementError [XX000].
	Code string
	// Times bounds how often it fires [1].
	Times int
	// Hang is how long FaultSlow holds the statement.
	Hang time.Duration
}

// Injection is an injected fault; Hits tells how often it fired.
type Injection struct {
	f       Fault
	left    atomic.Int64
	hits    atomic.Int64
	applied atomic.Int64
}

// Hits returns how many statements the fault hit.
func (in *Injection) Hits() int64 { return in.hits.Load() }

// Applied returns how many of the statements FaultAnswerLost or
// FaultSlow hit have run, their clients told or not.
func (in *Injection) Applied() int64 { return in.applied.Load() }

// fire tells whether the fault hits statement q, counting it.
func (in *Injection) fire(q string) bool {
	if !in.f.SQL.MatchString(q) {
		return false
	}
	if in.left.Add(-1) < 0 {
		in.left.Add(1)
		return false
	}
	in.hits.Add(1)
	return true
}
