package p2p

import (
	"bufio"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/eagle-p2p/eagle/mtls"
)

// directALPN is the TLS application protocol a direct transfer asks for
// on the peer port (see direct.go). BitTorrent connections ask for none.
const directALPN = "eagle-direct/1"

// peerMux accepts the connections of the peer port and hands each to the
// protocol it speaks: the BitTorrent peer wire to anacrolix (wire), a
// direct transfer to the engine's HTTP server (direct). With mutual TLS the
// client's ALPN says which; in plaintext, the first byte (BitTorrent's
// handshake starts with 19, an HTTP request with a letter). Each
// connection is sorted on a goroutine of its own, under the handshake
// bound, so that a peer that connects and says nothing holds up no other.
type peerMux struct {
	lis   net.Listener
	creds *mtls.Credentials // nil: plaintext
	// wrapWire and wrapDirect wrap a sorted connection (pacing, and on a
	// seeder the super-seeding rewriter for the wire).
	wrapWire, wrapDirect func(net.Conn) net.Conn
	wire, direct         *chanListener

	wg        sync.WaitGroup
	closeOnce sync.Once
	// sorting are the connections being sorted, closed by Close.
	mu      sync.Mutex
	sorting map[net.Conn]struct{}
	closed  bool
}

func newPeerMux(lis net.Listener, creds *mtls.Credentials, wrapWire, wrapDirect func(net.Conn) net.Conn) *peerMux {
	m := &peerMux{lis: lis, creds: creds, wrapWire: wrapWire, wrapDirect: wrapDirect, sorting: make(map[net.Conn]struct{})}
	m.wire = newChanListener(lis.Addr(), m.Close)
	m.direct = newChanListener(lis.Addr(), m.Close)
	m.wg.Add(1)
	go m.acceptLoop()
	return m
}

func (m *peerMux) acceptLoop() {
	defer m.wg.Done()
	for {
		c, err := m.lis.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			m.wire.fail(err)
			m.direct.fail(err)
			return
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			c.Close()
			return
		}
		m.sorting[c] = struct{}{}
		m.wg.Add(1)
		m.mu.Unlock()
		go func() {
			defer m.wg.Done()
			m.sort(c)
			m.mu.Lock()
			delete(m.sorting, c)
			m.mu.Unlock()
		}()
	}
}

// sort finds out what c speaks and delivers it, or closes it.
func (m *peerMux) sort(c net.Conn) {
	prepare(c)
	c.SetDeadline(time.Now().Add(peerTLSHandshakeTimeout))
	direct := false
	if m.creds != nil {
		cfg := m.creds.ServerConfig()
		cfg.NextProtos = []string{directALPN}
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return
		}
		direct = tc.ConnectionState().NegotiatedProtocol == directALPN
		c = tc
	} else {
		br := bufio.NewReaderSize(c, 64)
		first, err := br.Peek(1)
		if err != nil {
			c.Close()
			return
		}
		direct = first[0] != wireProtocol[0]
		c = &peekedConn{Conn: c, r: br}
	}
	c.SetDeadline(time.Time{})
	if direct {
		// Not a *tls.Conn to the HTTP server, which would look up the
		// negotiated protocol in its TLSNextProto and close the
		// connection: it speaks HTTP/1.1.
		m.direct.deliver(m.wrapDirect(plainConn{c}))
	} else {
		m.wire.deliver(m.wrapWire(c))
	}
}

// Close stops accepting, ends both listeners and waits for the sorting
// goroutines.
func (m *peerMux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		err = m.lis.Close()
		m.wire.fail(net.ErrClosed)
		m.direct.fail(net.ErrClosed)
		m.mu.Lock()
		m.closed = true
		for c := range m.sorting {
			c.Close()
		}
		m.mu.Unlock()
		m.wg.Wait()
	})
	return err
}

// chanListener is a net.Listener fed by a peerMux.
type chanListener struct {
	addr    net.Addr
	conns   chan net.Conn
	done    chan struct{}
	once    sync.Once
	err     error
	onClose func() error
}

func newChanListener(addr net.Addr, onClose func() error) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{}), onClose: onClose}
}

// deliver hands c to Accept, or closes it once the listener is done.
func (l *chanListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// fail makes Accept return err from now on.
func (l *chanListener) fail(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.done)
	})
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// Close closes the whole mux: anacrolix closes its listener when its
// client closes, and the engine closes the mux then too.
func (l *chanListener) Close() error {
	l.fail(net.ErrClosed)
	return l.onClose()
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// peekedConn reads first what a sniffing reader buffered.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// plainConn hides a connection's type (see peerMux.sort).
type plainConn struct{ net.Conn }
