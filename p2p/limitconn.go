package p2p

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/anacrolix/torrent"
	"golang.org/x/time/rate"
)

// readLimitedConn paces what a peer connection reads with the host-wide
// download limiter. The engine does this itself rather than hand the
// limiter to anacrolix, because anacrolix also reads the limiter as a
// signal to accept no new peer connections whenever its bucket is empty,
// which on a node downloading at its cap is nearly always: a node that came
// late then found every peer refusing it and waited a whole announce
// interval for more.
type readLimitedConn struct {
	net.Conn
	l         *rate.Limiter
	closeOnce sync.Once
	closed    chan struct{}
}

func limitReads(c net.Conn, l *rate.Limiter) net.Conn {
	if l == nil {
		return c
	}
	return &readLimitedConn{Conn: c, l: l, closed: make(chan struct{})}
}

// Read reads at most a burst, then waits until the limiter allows what
// was read (or the connection is closed).
func (c *readLimitedConn) Read(b []byte) (int, error) {
	b = b[:min(len(b), c.l.Burst())]
	n, err := c.Conn.Read(b)
	if n > 0 {
		if d := c.l.ReserveN(time.Now(), n).Delay(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-c.closed:
				t.Stop()
			}
		}
	}
	return n, err
}

// Close closes the connection and ends a wait in Read.
func (c *readLimitedConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// writeLimitedConn paces what a peer connection writes with the host-wide
// upload limiter, first come first served. The engine does this itself
// rather than hand the limiter to anacrolix, because anacrolix shares it
// unfairly: a connection that finds the bucket short gives its reservation
// back and retries on a timer, while connections that are awake take the
// tokens, so one connection could get nothing for seconds. On a seeder
// that left a piece only it had, offered to that one peer, undelivered
// while the whole swarm waited for it.
type writeLimitedConn struct {
	net.Conn
	l         *rate.Limiter
	closeOnce sync.Once
	closed    chan struct{}
}

func limitWrites(c net.Conn, l *rate.Limiter) net.Conn {
	if l == nil {
		return c
	}
	return &writeLimitedConn{Conn: c, l: l, closed: make(chan struct{})}
}

// Write writes b a burst at a time, each once the limiter allows it (or
// until the connection is closed).
func (c *writeLimitedConn) Write(b []byte) (int, error) {
	var n int
	for len(b) > 0 {
		chunk := b[:min(len(b), c.l.Burst())]
		if d := c.l.ReserveN(time.Now(), len(chunk)).Delay(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-c.closed:
				t.Stop()
				return n, net.ErrClosed
			}
		}
		m, err := c.Conn.Write(chunk)
		n += m
		if err != nil {
			return n, err
		}
		b = b[m:]
	}
	return n, nil
}

// Close closes the connection and ends a wait in Write.
func (c *writeLimitedConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// wrappingListener wraps every connection it accepts.
type wrappingListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l wrappingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

// wrappingDialer wraps every connection it dials.
type wrappingDialer struct {
	torrent.Dialer
	wrap func(net.Conn) net.Conn
}

func (d wrappingDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := d.Dialer.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return d.wrap(c), nil
}
