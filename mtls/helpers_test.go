package mtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newTestCA makes a CA or fails the test.
func newTestCA(t *testing.T, name string) *CA {
	t.Helper()
	ca, err := NewCA(name, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// member writes member name's files into dir and loads them, looking at the
// files on every handshake (interval 0) so that rotation tests need not
// wait.
func member(t *testing.T, ca *CA, dir, name string) (*Credentials, Config) {
	t.Helper()
	cfg, err := ca.WriteMember(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := load(cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	return c, cfg
}

// keyPair issues a certificate from ca with explicit validity and usages,
// for clients and servers that this package's Load would refuse.
func keyPair(t *testing.T, ca *CA, name string, notBefore, notAfter time.Time, usages ...x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.issue(name, nil, notBefore, notAfter, usages)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

var bothUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

// handshake is what the test server saw of one connection.
type handshake struct {
	cs  tls.ConnectionState
	err error
}

// startServer accepts TLS connections on 127.0.0.1 until the test ends. For
// each it completes the handshake, reports it on the returned channel, and on
// success writes "ok" and closes.
func startServer(t *testing.T, cfg *tls.Config) (string, <-chan handshake) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan handshake, 256)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			raw, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer raw.Close()
				raw.SetDeadline(time.Now().Add(10 * time.Second))
				conn := tls.Server(raw, cfg)
				err := conn.Handshake()
				results <- handshake{conn.ConnectionState(), err}
				if err == nil {
					conn.Write([]byte("ok"))
					conn.Close()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		wg.Wait()
	})
	return lis.Addr().String(), results
}

// dial connects to addr with cfg and reads the server's "ok", so that a
// server's refusal of the client certificate (sent after the client's side
// of a TLS 1.3 handshake is complete) shows up as an error here.
func dial(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	conn := c.(*tls.Conn)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(conn)
	if err != nil {
		return conn.ConnectionState(), err
	}
	if !bytes.Equal(b, []byte("ok")) {
		return conn.ConnectionState(), errors.New("server did not say ok")
	}
	return conn.ConnectionState(), nil
}

// next returns the server's view of the next connection.
func next(t *testing.T, results <-chan handshake) handshake {
	t.Helper()
	select {
	case h := <-results:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("the server saw no connection")
		return handshake{}
	}
}
