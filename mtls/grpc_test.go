package mtls_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/eagle-p2p/eagle/mtls"
)

// TestGRPC checks the configurations through gRPC's transport credentials,
// which clone them and require the "h2" protocol to be negotiated.
func TestGRPC(t *testing.T) {
	dir := t.TempDir()
	ca, err := mtls.NewCA("cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	load := func(ca *mtls.CA, dir, name string) *mtls.Credentials {
		cfg, err := ca.WriteMember(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		c, err := mtls.Load(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	seeder := load(ca, dir, "seeder-0")
	agent := load(ca, dir, "agent-1")
	foreign, err := mtls.NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	intruder := load(foreign, t.TempDir(), "agent-1")

	var mu sync.Mutex
	var callers []string
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(seeder.ServerConfig())),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if p, ok := peer.FromContext(ctx); ok {
				if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
					mu.Lock()
					callers = append(callers, mtls.MemberName(ti.State))
					mu.Unlock()
				}
			}
			return h(ctx, req)
		}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	defer func() {
		srv.Stop()
		<-done
	}()

	check := func(c *mtls.Credentials) error {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(c.ClientConfig())))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := check(agent); err != nil {
		t.Fatalf("member: %v", err)
	}
	if err := check(intruder); err == nil {
		t.Error("a certificate from another CA was let in")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(callers) != 1 || callers[0] != "agent-1" {
		t.Errorf("callers %q, want [agent-1]", callers)
	}
}
