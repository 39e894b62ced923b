package p2p

import (
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// loopbackPair returns both ends of a loopback TCP connection, closed at
// the end of the test.
func loopbackPair(t *testing.T) (near, far net.Conn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	near, err = net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { near.Close() })
	far, err = lis.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { far.Close() })
	return near, far
}

// tcpPair returns one end of a loopback TCP connection whose far end is
// read and discarded until the test ends.
func tcpPair(t *testing.T) net.Conn {
	t.Helper()
	near, far := loopbackPair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(io.Discard, far)
	}()
	t.Cleanup(func() {
		far.Close()
		<-done
	})
	return near
}

// Connections sharing an upload limiter are served in turn: one that
// writes a little while another writes all it can waits about one chunk,
// not until the busy one is done; and together they keep to the limit.
func TestWriteLimitedConnsTakeTurns(t *testing.T) {
	const limit = 1 << 20 // 1 MiB/s
	l := rate.NewLimiter(limit, 64<<10)
	busy := limitConn(tcpPair(t), nil, l)
	quiet := limitConn(tcpPair(t), nil, l)
	chunk := make([]byte, 16<<10)
	start := time.Now()
	busyDone := make(chan error, 1)
	go func() {
		for range 64 { // 1 MiB
			if _, err := busy.Write(chunk); err != nil {
				busyDone <- err
				return
			}
		}
		busyDone <- nil
	}()
	time.Sleep(200 * time.Millisecond)
	t0 := time.Now()
	if _, err := quiet.Write(chunk); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(t0); waited > 250*time.Millisecond {
		t.Errorf("a 16 KiB write waited %v behind a busy connection; want about one chunk's time (16 ms)", waited)
	}
	if err := <-busyDone; err != nil {
		t.Fatal(err)
	}
	// 1 MiB + 16 KiB at 1 MiB/s with a 64 KiB burst: at least ~0.95 s.
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("1 MiB + 16 KiB went out in %v under a 1 MiB/s limit", took)
	}
}

// Closing a connection ends a write waiting for the limiter.
func TestWriteLimitedConnCloseEndsWait(t *testing.T) {
	l := rate.NewLimiter(1<<10, 16<<10) // 1 KiB/s: a 32 KiB write waits ~16 s
	c := limitConn(tcpPair(t), nil, l)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, 32<<10))
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("a write cut short by Close reported no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a write waiting for the limiter")
	}
}
