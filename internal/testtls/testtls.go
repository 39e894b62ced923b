// Package testtls gives tests, benchmarks and the demo cluster membership:
// one cluster CA per process and member certificates from it, so that
// every in-process cluster runs its internal planes with mutual TLS on,
// as a production cluster does.
package testtls

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/mtls"
)

var (
	caOnce sync.Once
	ca     *mtls.CA
	caErr  error
)

// CA is the process's cluster CA, made on first use.
func CA() (*mtls.CA, error) {
	caOnce.Do(func() { ca, caErr = mtls.NewCA("eagle test cluster CA", 24*time.Hour) })
	return ca, caErr
}

// WriteMember writes a member certificate for name into dir and returns
// the Config that loads it.
func WriteMember(dir, name string) (mtls.Config, error) {
	c, err := CA()
	if err != nil {
		return mtls.Config{}, err
	}
	return c.WriteMember(dir, name)
}

// Member writes a member certificate for name into a directory the test
// removes and returns the Config that loads it.
func Member(tb testing.TB, name string) mtls.Config {
	tb.Helper()
	cfg, err := WriteMember(filepath.Join(tb.TempDir(), "tls"), name)
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// Credentials loads a member's credentials for name.
func Credentials(tb testing.TB, name string) *mtls.Credentials {
	tb.Helper()
	creds, err := mtls.Load(Member(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	return creds
}

// Server serves h on 127.0.0.1 over TLS to cluster members only, as a
// tracker's announce route is served, and returns the https base URL and
// the server's credentials. Cleanup stops it.
func Server(tb testing.TB, h http.Handler) (string, *mtls.Credentials) {
	tb.Helper()
	creds := Credentials(tb, "server")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: creds.RequireMember(h), TLSConfig: creds.ServerConfigOptionalClient(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(tls.NewListener(lis, srv.TLSConfig)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("test TLS server: %v", err)
		}
	}()
	tb.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "https://" + lis.Addr().String(), creds
}
