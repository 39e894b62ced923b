// Package redistest runs a private redis-server (the Debian package
// redis-server) for tests and benchmarks of the Redis peer store: on
// 127.0.0.1, on a free port, in a directory of its own, with no
// persistence. Tests get the real Redis, not a fake.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ErrNotInstalled is returned by Start when redis-server is not in PATH.
var ErrNotInstalled = errors.New("redistest: redis-server not found in PATH (Debian package redis-server)")

// startTimeout bounds how long Start waits for the server to answer.
const startTimeout = 10 * time.Second

// Server is a running redis-server. Close stops it.
type Server struct {
	// Addr is its address, 127.0.0.1:<port>.
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // the process's exit, once done is closed
	log  *os.File
}

// Options configure a server.
type Options struct {
	// Dir is the server's working directory; its log goes to
	// Dir/redis.log. Required by Start; New defaults it to a temporary
	// directory.
	Dir string
	// TLSCert and TLSKey, PEM files, make the server speak TLS only, with
	// this certificate, and ask clients for none. Default plaintext.
	TLSCert, TLSKey string
}

// Start runs redis-server on 127.0.0.1 on a free port, with no RDB
// snapshots and no append-only file, and waits until it answers. The
// server runs until Close or until ctx is done.
func Start(ctx context.Context, o Options) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	if o.Dir == "" {
		return nil, errors.New("redistest: Options.Dir is required")
	}
	// The port is free when asked for; another process may take it before
	// the server binds it, so try a few.
	for attempt := 0; ; attempt++ {
		s, err := start(ctx, bin, o)
		if err == nil || attempt == 2 || ctx.Err() != nil {
			return s, err
		}
	}
}

func start(ctx context.Context, bin string, o Options) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := o.Dir
	logf, err := os.OpenFile(dir+"/redis.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{"--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no"}
	ready := func() error { return ping(addr) }
	if o.TLSCert == "" && o.TLSKey == "" {
		args = append(args, "--port", strconv.Itoa(port))
	} else {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(port),
			"--tls-cert-file", o.TLSCert, "--tls-key-file", o.TLSKey, "--tls-auth-clients", "no")
		// A TLS server is ready when it accepts; its handshake is the
		// client's test to pass.
		ready = func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that a terminal's signals reach only the
	// caller, which stops it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("redistest: %w", err)
	}
	s := &Server{Addr: addr, cmd: cmd, done: make(chan struct{}), log: logf}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		if ready() == nil {
			return s, nil
		}
		select {
		case <-s.done:
			logf.Close()
			b, _ := os.ReadFile(dir + "/redis.log")
			return nil, fmt.Errorf("redistest: redis-server on %s exited: %v; log:\n%s", addr, s.err, b)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("redistest: redis-server on %s did not answer within %v", addr, startTimeout)
		}
	}
}

// freePort returns a TCP port of 127.0.0.1 that nothing listens on.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ping sends PING in the inline protocol and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("redistest: PING answered %q", line)
	}
	return nil
}

// Close stops the server (SIGTERM, then SIGKILL after five seconds) and
// waits for it to exit.
func (s *Server) Close() error {
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	return s.log.Close()
}

// New starts a server with o for the test t and stops it when t ends; o.Dir
// defaults to a temporary directory. Without redis-server it skips t,
// saying so, unless the environment variable CI is set: there it fails,
// since CI must have it.
func New(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	s, err := Start(context.Background(), o)
	if errors.Is(err, ErrNotInstalled) && os.Getenv("CI") == "" {
		t.Skip("redis-server not found in PATH: install the Debian package redis-server to run this test")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
