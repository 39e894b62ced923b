package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"
	"golang.org/x/time/rate"

	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/p2p"
)

// benchCentral measures what Eagle is compared with: a central pull-through
// cache (distribution/v3 in proxy mode, filesystem storage) in front of
// originURL, whose uplink is capped at limit, and n clients that GET the
// blob at path from it at once. It returns each client's completion time
// in seconds from the common start.
func benchCentral(ctx context.Context, originURL, path string, want digest.Digest, size int64, n int, limit p2p.Rate) ([]float64, error) {
	dir, err := os.MkdirTemp("", "eagle-bench-central-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	reg, err := origin.Start(ctx, origin.Options{Dir: dir, ProxyRemoteURL: originURL})
	if err != nil {
		return nil, err
	}
	defer reg.Close()
	up, err := newShaper(reg.Host, limit)
	if err != nil {
		return nil, err
	}
	defer up.Close()
	urls := make([]string, n)
	for i := range urls {
		urls[i] = "http://" + up.Addr() + path
	}
	return pullAll(ctx, urls, want, size)
}

// shaper is a TCP relay on 127.0.0.1 in front of a server, whose traffic
// towards the clients all shares one token bucket: the server's uplink.
// Requests towards the server pass unpaced.
type shaper struct {
	lis     net.Listener
	backend string
	lim     *rate.Limiter
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newShaper(backend string, limit p2p.Rate) (*shaper, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("shaper: %w", err)
	}
	s := &shaper{lis: lis, backend: backend, lim: limit.Limiter(), conns: make(map[net.Conn]struct{})}
	if s.lim == nil {
		s.lim = rate.NewLimiter(rate.Inf, 0)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Go(s.serve)
	return s, nil
}

// Addr is the relay's host:port.
func (s *shaper) Addr() string { return s.lis.Addr().String() }

func (s *shaper) serve() {
	for {
		c, err := s.lis.Accept()
		if err != nil {
			return
		}
		if !s.track(c) {
			return
		}
		s.wg.Go(func() { s.relay(c) })
	}
}

// track remembers c so that Close can cut it; false once closed.
func (s *shaper) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		c.Close()
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *shaper) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

func (s *shaper) relay(client net.Conn) {
	defer s.untrack(client)
	var d net.Dialer
	server, err := d.DialContext(s.ctx, "tcp", s.backend)
	if err != nil {
		return
	}
	if !s.track(server) {
		return
	}
	defer s.untrack(server)
	var inner sync.WaitGroup
	inner.Go(func() {
		io.Copy(server, client)
		if tc, ok := server.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	})
	s.pacedCopy(client, server)
	if tc, ok := client.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	// The client side ends when the client closes; a relay whose server
	// finished should not hold it open.
	client.Close()
	inner.Wait()
}

// pacedCopy copies src to dst, taking every byte from the shared bucket.
func (s *shaper) pacedCopy(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	burst := s.lim.Burst()
	for {
		n, rerr := src.Read(buf)
		for off := 0; off < n; {
			chunk := n - off
			if burst > 0 {
				chunk = min(chunk, burst)
			}
			if err := s.lim.WaitN(s.ctx, chunk); err != nil {
				return
			}
			if _, err := dst.Write(buf[off : off+chunk]); err != nil {
				return
			}
			off += chunk
		}
		if rerr != nil {
			return
		}
	}
}

// Close stops the relay and cuts its connections.
func (s *shaper) Close() error {
	s.mu.Lock()
	s.cancel()
	conns := s.conns
	s.conns = map[net.Conn]struct{}{}
	s.mu.Unlock()
	err := s.lis.Close()
	for c := range conns {
		c.Close()
	}
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
