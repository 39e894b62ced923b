package main

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"

	"golang.org/x/time/rate"
)

// relay is a TCP relay that stands for the origin's uplink: every byte
// from the target to the relay's clients, all connections together, is
// paced at one rate. Bytes towards the target are not paced.
type relay struct {
	lis net.Listener
	lim *rate.Limiter

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	target string
	conns  map[net.Conn]struct{}
}

// relayChunk is the most one paced write carries: small enough that
// concurrent connections share the rate smoothly.
const relayChunk = 32 << 10

// newRelay listens on addr ("host:0" for any port) and relays each
// connection to the target that setTarget names, the bytes back paced at
// bytesPerSec.
func newRelay(addr string, bytesPerSec int64) (*relay, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &relay{
		lis: lis,
		lim: rate.NewLimiter(rate.Limit(bytesPerSec), relayChunk),
		ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{},
	}
	r.wg.Go(r.accept)
	return r, nil
}

// setTarget sets the address the relay connects its clients to.
func (r *relay) setTarget(addr string) {
	r.mu.Lock()
	r.target = addr
	r.mu.Unlock()
}

// Addr is the relay's listen address.
func (r *relay) Addr() string { return r.lis.Addr().String() }

func (r *relay) accept() {
	for {
		c, err := r.lis.Accept()
		if err != nil {
			return
		}
		r.wg.Go(func() { r.serve(c) })
	}
}

func (r *relay) track(c net.Conn, add bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if add {
		if r.ctx.Err() != nil {
			return false
		}
		r.conns[c] = struct{}{}
	} else {
		delete(r.conns, c)
	}
	return true
}

func (r *relay) serve(c net.Conn) {
	defer c.Close()
	r.mu.Lock()
	target := r.target
	r.mu.Unlock()
	var d net.Dialer
	t, err := d.DialContext(r.ctx, "tcp", target)
	if err != nil {
		return
	}
	defer t.Close()
	if !r.track(c, true) {
		return
	}
	defer r.track(c, false)
	if !r.track(t, true) {
		return
	}
	defer r.track(t, false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(t, c)
		t.(*net.TCPConn).CloseWrite()
	}()
	buf := make([]byte, relayChunk)
	for {
		n, err := t.Read(buf)
		if n > 0 {
			if werr := r.lim.WaitN(r.ctx, n); werr != nil {
				break
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				c.(*net.TCPConn).CloseWrite()
			}
			break
		}
	}
	c.Close()
	t.Close()
	<-done
}

// Close stops the relay and every connection through it, and waits for
// them.
func (r *relay) Close() error {
	r.mu.Lock()
	r.cancel()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	err := r.lis.Close()
	r.wg.Wait()
	return err
}
