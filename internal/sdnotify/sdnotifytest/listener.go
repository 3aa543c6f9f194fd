// Package sdnotifytest is the service manager's end of the notify protocol,
// for tests: a unixgram socket to put in NOTIFY_SOCKET and the datagrams
// that arrive on it.
package sdnotifytest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Listener receives notify datagrams until the test ends.
type Listener struct {
	conn *net.UnixConn
	done chan struct{} // closed when the reading goroutine returns

	mu      sync.Mutex
	msgs    []string      // every datagram so far, in arrival order
	next    int           // index in msgs of the next one Next returns
	closed  bool          // no datagram will arrive any more
	arrived chan struct{} // closed and replaced on each arrival and on close
}

// Listen opens a unixgram socket in a fresh temporary directory and closes
// it when the test ends. The directory comes from os.MkdirTemp rather than
// t.TempDir: a socket path must fit in 108 bytes, and t.TempDir's holds the
// test's name.
func Listen(t testing.TB) *Listener {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdnotify")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "notify.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	l := &Listener{conn: conn, done: make(chan struct{}), arrived: make(chan struct{})}
	go l.read()
	t.Cleanup(func() {
		conn.Close()
		<-l.done
	})
	return l
}

func (l *Listener) read() {
	defer close(l.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := l.conn.Read(buf)
		l.mu.Lock()
		if err != nil { // closed by the test's cleanup
			l.closed = true
		} else {
			l.msgs = append(l.msgs, string(buf[:n]))
		}
		close(l.arrived)
		l.arrived = make(chan struct{})
		l.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Socket is the socket's path, the value for NOTIFY_SOCKET.
func (l *Listener) Socket() string { return l.conn.LocalAddr().String() }

// Next returns the oldest datagram Next has not returned yet, waiting up to
// timeout for one to arrive.
func (l *Listener) Next(timeout time.Duration) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		if l.next < len(l.msgs) {
			m := l.msgs[l.next]
			l.next++
			l.mu.Unlock()
			return m, nil
		}
		if l.closed {
			l.mu.Unlock()
			return "", errors.New("sdnotifytest: the listener is closed")
		}
		arrived := l.arrived
		l.mu.Unlock()
		select {
		case <-arrived:
		case <-deadline.C:
			return "", fmt.Errorf("sdnotifytest: no notify message within %s (received so far: %q)", timeout, l.Messages())
		}
	}
}

// Messages returns every datagram received so far, including those Next has
// not returned yet.
func (l *Listener) Messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}
