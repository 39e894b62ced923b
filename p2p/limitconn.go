package p2p

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/eagle-p2p/eagle/mtls"
	"golang.org/x/time/rate"
)

// limitedConn paces a peer connection with host-wide limiters shared by
// all of the engine's connections, each taking its turn (a reservation is
// never given back):
//
//   - reads with the download limiter. The engine does this itself rather
//     than hand the limiter to anacrolix, because anacrolix also reads the
//     limiter as a signal to accept no new peer connections whenever its
//     bucket is empty, which on a node downloading at its cap is nearly
//     always: a node that came late then found every peer refusing it and
//     waited a whole announce interval for more.
//   - a seeder's writes with its upload limiter, first come first served.
//     anacrolix shares its upload limiter unfairly: a connection that finds
//     the bucket short gives its reservation back and retries on a timer,
//     while connections that are awake take the tokens, so one connection
//     could get nothing for seconds. On a seeder that left a piece only it
//     had, offered to that one peer, undelivered while the whole swarm
//     waited for it.
type limitedConn struct {
	net.Conn
	read, write *rate.Limiter // nil: not limited
	closeOnce   sync.Once
	closed      chan struct{}
}

// limitConn wraps c to pace its reads and writes with the given limiters
// (nil: that direction is not limited).
func limitConn(c net.Conn, read, write *rate.Limiter) net.Conn {
	if read == nil && write == nil {
		return c
	}
	return &limitedConn{Conn: c, read: read, write: write, closed: make(chan struct{})}
}

// take reserves n bytes of l and waits for them; false if the connection
// was closed first.
func (c *limitedConn) take(l *rate.Limiter, n int) bool {
	d := l.ReserveN(time.Now(), n).Delay()
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.closed:
		return false
	}
}

// Read reads at most a burst, then waits until the limiter allows what
// was read (or the connection is closed).
func (c *limitedConn) Read(b []byte) (int, error) {
	if c.read == nil {
		return c.Conn.Read(b)
	}
	b = b[:min(len(b), c.read.Burst())]
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.take(c.read, n)
	}
	return n, err
}

// Write writes b a burst at a time, each once the limiter allows it (or
// until the connection is closed).
func (c *limitedConn) Write(b []byte) (int, error) {
	if c.write == nil {
		return c.Conn.Write(b)
	}
	var n int
	for len(b) > 0 {
		chunk := b[:min(len(b), c.write.Burst())]
		if !c.take(c.write, len(chunk)) {
			return n, net.ErrClosed
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

// Close closes the connection and ends a wait in Read or Write.
func (c *limitedConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// peerTLSHandshakeTimeout bounds the TLS handshake of a peer connection:
// a peer that accepts and never answers (a tarpit) holds a dial slot for
// at most this long, and one that connects and says nothing is closed
// after it (see peerMux).
const peerTLSHandshakeTimeout = 3 * time.Second

// prepare does to a new TCP connection what anacrolix does to the
// connections it makes itself, and cannot once they are wrapped: no
// TIME_WAIT pile-up from peers coming and going.
func prepare(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}

// wrappingDialer dials peer connections, in mutual TLS with the cluster's
// credentials when creds is set, and wraps each.
type wrappingDialer struct {
	torrent.Dialer
	creds *mtls.Credentials // nil: plaintext
	wrap  func(net.Conn) net.Conn
}

func (d wrappingDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := d.Dialer.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	prepare(c)
	if d.creds != nil {
		if c, err = clientTLS(ctx, c, d.creds.ClientConfig(), addr); err != nil {
			return nil, err
		}
	}
	return d.wrap(c), nil
}

// clientTLS shakes hands on c as the client, within
// peerTLSHandshakeTimeout; on failure it closes c.
func clientTLS(ctx context.Context, c net.Conn, cfg *tls.Config, addr string) (*tls.Conn, error) {
	tc := tls.Client(c, cfg)
	hctx, cancel := context.WithTimeout(ctx, peerTLSHandshakeTimeout)
	defer cancel()
	err := tc.HandshakeContext(hctx)
	if err == nil && len(cfg.NextProtos) > 0 && tc.ConnectionState().NegotiatedProtocol != cfg.NextProtos[0] {
		err = fmt.Errorf("the peer does not speak %s", cfg.NextProtos[0])
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("p2p: TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}
