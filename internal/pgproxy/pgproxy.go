// Package pgproxy is a TCP proxy in front of a PostgreSQL-protocol server
// for offload's tests and fault harness: it refuses connections, drops
// the open ones, and loses the answer to a COMMIT the server has applied.
// It reads the client's messages (to see COMMIT) and passes the server's
// bytes through; it does not speak TLS (clients use sslmode disable).
package pgproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
)

// Proxy forwards connections to a PostgreSQL-protocol server. To lose a
// COMMIT's answer it forwards the COMMIT, waits for the server's answer,
// and closes the client's connection instead of passing it on.
type Proxy struct {
	ln     net.Listener
	target string
	// Refuse, while set, closes every new connection at once.
	Refuse atomic.Bool
	// LoseCommit is how many COMMITs' answers are still to be lost.
	LoseCommit atomic.Int64
	lost       atomic.Int64 // answers lost

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// New starts a proxy on 127.0.0.1 in front of target (host:port).
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address.
func (p *Proxy) Addr() *net.TCPAddr { return p.ln.Addr().(*net.TCPAddr) }

// Lost returns how many COMMIT answers were lost.
func (p *Proxy) Lost() int64 { return p.lost.Load() }

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.DropAll()
	p.wg.Wait()
}

// DropAll closes every open connection.
func (p *Proxy) DropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *Proxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.Refuse.Load() {
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
func (p *Proxy) pipe(c, s net.Conn) {
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
				if p.LoseCommit.Add(-1) >= 0 {
					losing.Store(true)
				} else {
					p.LoseCommit.Add(1)
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
