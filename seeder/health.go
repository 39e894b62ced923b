package seeder

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/eagle-p2p/eagle/seeder/seederpb"
)

// closedChan is what Unhealthy returns for a seeder that is not healthy.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Causes of calls left for the next seeder.
var (
	errHung    = errors.New("the seeder stopped answering health checks")
	errRemoved = errors.New("the seeder left the seeder set")
)

// connGen is one connection to a seeder. Its ctx is cancelled (with the
// cause) when the connection is given up for a new one, which cuts the
// calls in flight on it short.
type connGen struct {
	conn   *grpc.ClientConn
	stub   seederpb.MetaInfoServiceClient
	health healthpb.HealthClient
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// seederConn is the Client's connection to one seeder and what it knows
// of the seeder's health. A watcher goroutine follows the connection's
// state and runs the health checks.
type seederConn struct {
	c    *Client
	addr string
	// target and authority are what the connection dials.
	target    string
	authority string

	// stop ends the watcher, which closes done when it returns.
	stop context.CancelFunc
	ctx  context.Context
	done chan struct{}

	mu  sync.Mutex
	gen *connGen
	// healthy: connected, and the last health check (if any since the
	// check failed) passed. down: known to have failed (refused, lost,
	// hung, not serving) and not healthy since; a seeder never reached
	// yet is neither healthy nor down.
	healthy, down bool
	// checkFailed: the last health check failed or went unanswered.
	checkFailed bool
	// unhealthyCh is closed when healthy turns false.
	unhealthyCh chan struct{}
	// removed: gone from the set; refs counts the calls using it, the
	// last of which closes the connection of a removed seeder.
	removed bool
	refs    int
}

// newSeederConn creates the connection to the seeder at addr. Its watcher
// is not started yet. c.mu is held.
func (c *Client) newSeederConn(addr string, t dialTarget) (*seederConn, error) {
	target := addr
	if t.passthrough {
		// An IP address: no resolver.
		target = "passthrough:///" + addr
	}
	s := &seederConn{c: c, addr: addr, target: target, authority: t.authority, done: make(chan struct{}), unhealthyCh: closedChan}
	g, err := s.dial()
	if err != nil {
		return nil, err
	}
	s.gen = g
	s.ctx, s.stop = context.WithCancel(c.ctx)
	return s, nil
}

// dial opens a new connection generation and starts connecting it.
func (s *seederConn) dial() (*connGen, error) {
	opts := s.c.dialOpts
	var conn *grpc.ClientConn
	var err error
	if s.authority != "" {
		// Server certificates that name the seeder name still verify.
		conn, err = grpc.NewClient(s.target, append(opts[:len(opts):len(opts)], grpc.WithAuthority(s.authority))...)
	}
	if conn == nil {
		// No name, or credentials that fix a server name of their own.
		conn, err = grpc.NewClient(s.target, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("seeder: connection to %q: %w", s.addr, err)
	}
	conn.Connect()
	ctx, cancel := context.WithCancelCause(context.Background())
	return &connGen{
		conn:   conn,
		stub:   seederpb.NewMetaInfoServiceClient(conn),
		health: healthpb.NewHealthClient(conn),
		ctx:    ctx,
		cancel: cancel,
	}, nil
}

// acquire returns the current connection for a call, which must release
// it; false if the seeder was removed.
func (s *seederConn) acquire() (*connGen, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed || s.gen == nil {
		return nil, false
	}
	s.refs++
	return s.gen, true
}

func (s *seederConn) release() {
	s.mu.Lock()
	s.refs--
	var g *connGen
	if s.removed && s.refs == 0 {
		g, s.gen = s.gen, nil
	}
	s.mu.Unlock()
	if g != nil {
		g.close(errRemoved)
		s.c.forget(s)
	}
}

func (g *connGen) close(cause error) error {
	g.cancel(cause)
	return g.conn.Close()
}

// remove takes the seeder out of the set: its watcher stops, its
// connection closes once the calls in flight on it have ended (a seeder
// leaving a Service may still answer them), and it is no longer healthy.
func (s *seederConn) remove() {
	s.stop()
	<-s.done
	s.mu.Lock()
	s.removed = true
	var g *connGen
	if s.refs == 0 {
		g, s.gen = s.gen, nil
	}
	s.setHealthLocked(false, false)
	s.mu.Unlock()
	if g != nil {
		g.close(errRemoved)
		s.c.forget(s)
	}
}

// forget drops a removed seeder whose connection is closed.
func (c *Client) forget(s *seederConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.retired, s)
}

// closeNow closes the connection, cutting calls in flight short; the
// watcher must have stopped.
func (s *seederConn) closeNow(cause error) error {
	s.mu.Lock()
	s.removed = true
	g := s.gen
	s.gen = nil
	s.setHealthLocked(false, false)
	s.mu.Unlock()
	if g == nil {
		return nil
	}
	return g.close(cause)
}

// markDown records that a call could not connect to the seeder in time,
// so that later calls try it last.
func (s *seederConn) markDown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.healthy && !s.removed {
		s.down = true
	}
}

func (s *seederConn) isHealthy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthy
}

func (s *seederConn) isDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

func (s *seederConn) unhealthy() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unhealthyCh
}

// refresh updates the health from the connection's state now: a call
// that just got an answer need not wait for the watcher to see the
// connection ready.
func (s *seederConn) refresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != nil && !s.removed && !s.checkFailed && s.gen.conn.GetState() == connectivity.Ready {
		s.setHealthLocked(true, false)
	}
}

// setHealthLocked records the seeder's health; s.mu is held.
func (s *seederConn) setHealthLocked(healthy, down bool) {
	s.down = down
	if healthy == s.healthy {
		return
	}
	s.healthy = healthy
	if healthy {
		s.unhealthyCh = make(chan struct{})
		return
	}
	close(s.unhealthyCh)
	s.unhealthyCh = closedChan
}

// setHealth records the state of connection g, if it is still the
// current one, and logs changes.
func (s *seederConn) setHealth(g *connGen, st connectivity.State) {
	s.mu.Lock()
	if s.gen != g || s.removed {
		s.mu.Unlock()
		return
	}
	wasHealthy, wasDown := s.healthy, s.down
	healthy := st == connectivity.Ready && !s.checkFailed
	down := !healthy && (s.down || s.checkFailed || st == connectivity.TransientFailure || wasHealthy)
	s.setHealthLocked(healthy, down)
	s.mu.Unlock()
	switch {
	case healthy && !wasHealthy:
		s.c.log.Debug("seeder healthy", "seeder", s.addr)
	case down && !wasDown:
		s.c.log.Info("seeder down", "seeder", s.addr, "state", st.String(), "health_check_failed", s.checkFailed)
		s.c.resolveSoon()
	}
}

// watch follows the seeder's connection until the seeder is removed or
// the Client closed: it keeps the connection connecting (a lost transport
// leaves a gRPC connection idle), records its state, and checks the
// seeder's health every health interval while connected. A check that
// goes unanswered gives the connection up for a new one, cutting the
// calls in flight on it short.
func (s *seederConn) watch() {
	defer s.c.wg.Done()
	defer close(s.done)
	interval := s.c.opts.healthInterval
	var nextCheck time.Time
	for {
		s.mu.Lock()
		g := s.gen
		s.mu.Unlock()
		if g == nil {
			return
		}
		st := g.conn.GetState()
		if st == connectivity.Idle {
			g.conn.Connect()
		}
		if st == connectivity.Ready && interval > 0 && !time.Now().Before(nextCheck) {
			hung := s.check(g)
			if s.ctx.Err() != nil {
				return
			}
			nextCheck = time.Now().Add(interval)
			if hung {
				s.redial(g)
				// Check the new connection as soon as it is up.
				nextCheck = time.Time{}
				continue
			}
			st = g.conn.GetState()
		}
		s.setHealth(g, st)
		wctx, cancel := s.ctx, context.CancelFunc(func() {})
		if st == connectivity.Ready && interval > 0 {
			wctx, cancel = context.WithDeadline(s.ctx, nextCheck)
		}
		g.conn.WaitForStateChange(wctx, st)
		cancel()
		if s.ctx.Err() != nil {
			return
		}
	}
}

// check asks the seeder's health service whether the MetaInfoService
// serves, and records the answer. It reports whether the seeder left the
// question unanswered: hung. A seeder without the health service (an
// UNIMPLEMENTED answer) counts as serving: it answered.
func (s *seederConn) check(g *connGen) (hung bool) {
	ctx, cancel := context.WithTimeout(s.ctx, s.c.opts.healthTimeout)
	defer cancel()
	resp, err := g.health.Check(ctx, &healthpb.HealthCheckRequest{Service: seederpb.MetaInfoService_ServiceDesc.ServiceName})
	failed := false
	switch status.Code(err) {
	case codes.OK:
		failed = resp.GetStatus() != healthpb.HealthCheckResponse_SERVING
	case codes.Unimplemented, codes.NotFound:
	case codes.DeadlineExceeded:
		failed, hung = true, s.ctx.Err() == nil
	default:
		// The connection broke: its state says so.
	}
	if s.ctx.Err() != nil {
		return false
	}
	s.mu.Lock()
	if s.gen == g {
		s.checkFailed = failed
	}
	s.mu.Unlock()
	if failed {
		s.c.log.Debug("seeder health check failed", "seeder", s.addr, "error", err, "status", resp.GetStatus().String())
	}
	return hung
}

// redial replaces the hung connection g with a new one: grpc would keep
// the old one "ready" until keepalive gives up on it. The calls in flight
// on g move on to the next seeder.
func (s *seederConn) redial(g *connGen) {
	s.setHealth(g, connectivity.TransientFailure)
	ng, err := s.dial()
	if err != nil {
		s.c.log.Error("seeder reconnect", "seeder", s.addr, "error", err)
		return
	}
	s.mu.Lock()
	if s.gen != g || s.removed {
		s.mu.Unlock()
		ng.close(errRemoved)
		return
	}
	s.gen = ng
	s.mu.Unlock()
	s.c.log.Info("seeder stopped answering; reconnecting", "seeder", s.addr)
	g.close(errHung)
}

// waitReady waits until conn is ready, at most timeout. A connection that
// failed (refused, reset, handshake failed) fails at once.
func waitReady(ctx context.Context, conn *grpc.ClientConn, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		st := conn.GetState()
		switch st {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure:
			return fmt.Errorf("%w: cannot connect", errLeft)
		case connectivity.Shutdown:
			return fmt.Errorf("%w: connection closed", errLeft)
		case connectivity.Idle:
			conn.Connect()
		}
		if !conn.WaitForStateChange(wctx, st) {
			if err := ctx.Err(); err != nil {
				return err
			}
			return fmt.Errorf("%w: not connected within %v", errLeft, timeout)
		}
	}
}
