package snowtest

import (
	"regexp"
	"sync/atomic"
	"time"
)

// FaultKind says what an injected fault does.
type FaultKind int

const (
	// FaultHTTPStatus answers with Fault.Status (a 5xx, 429, ...) and a
	// non-Snowflake body, as a load balancer in trouble does.
	FaultHTTPStatus FaultKind = iota + 1
	// FaultHang holds the request for Fault.Hang, or until the client
	// gives up, then answers it normally if the client is still there.
	FaultHang
	// FaultDropConnection closes the connection without executing the
	// request or answering it.
	FaultDropConnection
	// FaultResponseLost executes the request (a COMMIT is applied) and then
	// closes the connection without answering: the client cannot know.
	FaultResponseLost
	// FaultSessionExpired expires the session's token, so the request gets
	// 390112 and the driver has to renew the session.
	FaultSessionExpired
	// FaultStatementError fails a query request with 000603 (an internal
	// error) without executing it; when the statement is a COMMIT the open
	// transaction is rolled back, as when a real commit fails.
	FaultStatementError
	// FaultInsufficientPrivileges fails a query request with 003001
	// ("Insufficient privileges"), Snowflake's answer to a statement the
	// role may not run, without executing it: a missing grant.
	FaultInsufficientPrivileges
	// FaultSlow runs a query request's statement Fault.Hang late, holding
	// its session meanwhile, whether or not the client is still waiting:
	// a warehouse that queues a statement (a COMMIT too) and runs it to
	// its end after the client gave up. A client still there gets the
	// answer.
	FaultSlow
)

// Fault describes a fault to inject. A request matches when its endpoint
// is Endpoint (any endpoint when empty) and, when SQL is set, it is a
// query request whose statement text matches SQL.
type Fault struct {
	Kind     FaultKind
	Endpoint string
	SQL      *regexp.Regexp
	// Times is how many matching requests the fault hits; 0 means once.
	Times int
	// Status is the HTTP status for FaultHTTPStatus.
	Status int
	// Hang is how long FaultHang holds a request, or FaultSlow delays
	// its statement.
	Hang time.Duration
}

// Injected is a fault added to a server; it counts the requests it hit.
type Injected struct {
	Fault
	left atomic.Int64
	hits atomic.Int64
}

// Hits returns how many requests the fault has hit so far.
func (f *Injected) Hits() int { return int(f.hits.Load()) }

// Inject adds a fault. Faults are tried in the order they were added; the
// first matching one with hits left applies.
func (s *Server) Inject(f Fault) *Injected {
	in := &Injected{Fault: f}
	in.left.Store(int64(max(f.Times, 1)))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, in)
	return in
}

// ClearFaults removes every fault not yet used up.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

func (s *Server) matchFault(endpoint, sqlText string) *Injected {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.Endpoint != "" && f.Endpoint != endpoint {
			continue
		}
		if f.SQL != nil && (endpoint != EndpointQuery || !f.SQL.MatchString(sqlText)) {
			continue
		}
		if f.left.Load() <= 0 {
			continue
		}
		f.left.Add(-1)
		f.hits.Add(1)
		return f
	}
	return nil
}
