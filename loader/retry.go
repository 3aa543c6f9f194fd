package loader

import (
	"math/rand/v2"
	"time"
)

// backoff returns how long to wait before retry number attempt (1 for the
// first retry): exponential from base, capped at limit, with full jitter
// (uniform in [0, min(limit, base·2^(attempt-1))]), so appliances that lost
// the warehouse together do not come back in step.
func backoff(attempt int, base, limit time.Duration, rng *rand.Rand) time.Duration {
	d := base
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return time.Duration(rng.Int64N(int64(d) + 1))
}

// Circuit states.
const (
	CircuitClosed   = "closed"    // loads go through
	CircuitOpen     = "open"      // no loads until the cooldown ends
	CircuitHalfOpen = "half-open" // one probe load decides
)

// breaker is a circuit breaker over retryable failures: Threshold
// consecutive failures open it; after Cooldown one probe is let through
// (half-open); the probe's success closes it, its failure opens it again.
type breaker struct {
	threshold int
	cooldown  time.Duration

	state    string
	failures int       // consecutive retryable failures
	openedAt time.Time // when it last opened
}

func newBreaker(threshold int, cooldown time.Duration) *breaker {
	return &breaker{threshold: threshold, cooldown: cooldown, state: CircuitClosed}
}

// allow tells whether a load may start now, moving open to half-open once
// the cooldown has passed, and otherwise when it may.
func (b *breaker) allow(now time.Time) (bool, time.Time) {
	if b.state == CircuitOpen {
		at := b.openedAt.Add(b.cooldown)
		if now.Before(at) {
			return false, at
		}
		b.state = CircuitHalfOpen
	}
	return true, time.Time{}
}

// success records a load that reached the warehouse.
func (b *breaker) success() {
	b.state, b.failures = CircuitClosed, 0
}

// failure records a retryable failure and tells whether the circuit is
// now open.
func (b *breaker) failure(now time.Time) bool {
	b.failures++
	if b.state == CircuitHalfOpen || b.failures >= b.threshold {
		b.state, b.openedAt = CircuitOpen, now
	}
	return b.state == CircuitOpen
}
