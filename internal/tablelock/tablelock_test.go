package tablelock

import "testing"

// TestTryLockAndRelease: a session takes free tables, its own again, and
// none of a set of which another holds one; a release wakes the waiters
// and frees the tables.
func TestTryLockAndRelease(t *testing.T) {
	l := New[int]()
	if _, ok, _ := l.TryLock(1, "A", "B"); !ok {
		t.Fatal("free tables not taken")
	}
	if _, ok, _ := l.TryLock(1, "A"); !ok {
		t.Fatal("a holder cannot take its own table again")
	}
	h, ok, released := l.TryLock(2, "C", "B")
	if ok || h != 1 {
		t.Fatalf("TryLock of a held table: ok %v, holder %d", ok, h)
	}
	if _, ok, _ := l.TryLock(3, "C"); !ok {
		t.Fatal("a refused TryLock kept a table")
	}
	l.Release(1)
	select {
	case <-released:
	default:
		t.Fatal("Release did not wake the waiters")
	}
	if _, ok, _ := l.TryLock(2, "A", "B"); !ok {
		t.Fatal("released tables not free")
	}
}
