package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// pgProxy is a TCP proxy in front of a PostgreSQL-protocol server that
// can refuse connections, drop the open ones, and lose the answer to a
// COMMIT the server has applied: it forwards the COMMIT, waits for the
// server's answer, and closes the client's connection instead of passing
// it on.
type pgProxy struct {
	ln         net.Listener
	target     string
	refuse     atomic.Bool
	loseCommit atomic.Int64 // COMMITs whose answer to lose
	lost       atomic.Int64 // answers lost
	commits    atomic.Int64 // COMMITs seen

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newPgProxy(t testing.TB, target string) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// addr is the proxy's host:port.
func (p *pgProxy) addr() *net.TCPAddr { return p.ln.Addr().(*net.TCPAddr) }

func (p *pgProxy) close() {
	_ = p.ln.Close()
	p.dropAll()
	p.wg.Wait()
}

// dropAll closes every open connection.
func (p *pgProxy) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *pgProxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *pgProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refuse.Load() {
			_ = c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.track(c, true)
		p.track(s, true)
		p.wg.Add(1)
		go p.pipe(c, s)
	}
}

// pipe relays one session: client to server message by message (to see
// COMMIT), server to client as bytes.
func (p *pgProxy) pipe(c, s net.Conn) {
	defer p.wg.Done()
	defer func() {
		_ = c.Close()
		_ = s.Close()
		p.track(c, false)
		p.track(s, false)
	}()
	var losing atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			n, err := s.Read(buf)
			if n > 0 && losing.Load() {
				// The server answered the COMMIT: it is applied. The
				// client never hears of it.
				p.lost.Add(1)
				_ = c.Close()
				return
			}
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				_ = c.Close()
				return
			}
		}
	}()
	defer func() { <-done }()
	// The startup message has no type byte.
	if err := relay(c, s, false, nil); err != nil {
		return
	}
	for {
		err := relay(c, s, true, func(typ byte, body []byte) {
			if typ == 'Q' && strings.EqualFold(string(bytes.TrimRight(body, "\x00")), "commit") {
				p.commits.Add(1)
				if p.loseCommit.Add(-1) >= 0 {
					losing.Store(true)
				} else {
					p.loseCommit.Add(1)
				}
			}
		})
		if err != nil {
			_ = s.Close()
			return
		}
	}
}

// relay copies one message from c to s, calling see (if set) before it
// is forwarded.
func relay(c, s net.Conn, typed bool, see func(typ byte, body []byte)) error {
	var head []byte
	if typed {
		head = make([]byte, 5)
	} else {
		head = make([]byte, 4)
	}
	if _, err := io.ReadFull(c, head); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint32(head[len(head)-4:])) - 4
	if n < 0 || n > 1<<30 {
		return errors.New("bad message length")
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c, body); err != nil {
		return err
	}
	if see != nil {
		see(head[0], body)
	}
	if _, err := s.Write(append(head, body...)); err != nil {
		return err
	}
	return nil
}
