// Package tablelock keeps the table locks of the project's warehouse test
// servers (internal/snowtest, internal/redshifttest): which session holds
// which table until its transaction ends. How a session waits, and for
// how long, is each server's own, as it is each warehouse's.
package tablelock

import "sync"

// Locks maps tables to the session holding them. Its methods are safe for
// concurrent use.
type Locks[S comparable] struct {
	mu       sync.Mutex
	holders  map[string]S
	released chan struct{} // closed, and replaced, whenever locks are released
}

// New returns a set of locks that no session holds.
func New[S comparable]() *Locks[S] {
	return &Locks[S]{holders: map[string]S{}, released: make(chan struct{})}
}

// TryLock takes every one of tables for s, unless another session holds
// one of them: then it takes none and returns that holder, and a channel
// closed at the next release.
func (l *Locks[S]) TryLock(s S, tables ...string) (holder S, ok bool, released <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var none S
	for _, t := range tables {
		if h, held := l.holders[t]; held && h != s {
			return h, false, l.released
		}
	}
	for _, t := range tables {
		l.holders[t] = s
	}
	return none, true, nil
}

// Release ends every lock s holds: its transaction ended.
func (l *Locks[S]) Release(s S) {
	l.mu.Lock()
	defer l.mu.Unlock()
	freed := false
	for t, h := range l.holders {
		if h == s {
			delete(l.holders, t)
			freed = true
		}
	}
	if freed {
		close(l.released)
		l.released = make(chan struct{})
	}
}
