package loader

import "context"

// CheckResult is one preflight check's outcome (offload check).
type CheckResult struct {
	Name   string // what was checked, e.g. "snowflake: login"
	OK     bool
	Detail string // on failure: the warehouse's message and the statement that failed; never a secret
	Fix    string // on failure: what the operator should do
}

// Checker is a Sink that can prove, without touching production tables, that loads will work.
type Checker interface {
	Check(ctx context.Context) []CheckResult
}
