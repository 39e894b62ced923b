package seeder_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/seeder/seederpb"
)

// A program that already runs a gRPC server, with a health service of its
// own, embeds a seeder in it: Register adds the metainfo service and
// nothing else, and the program reports the seeder's health on its own
// health service. (A program without a gRPC server calls sd.Serve(lis)
// instead, which brings the health service along.)
func ExampleSeeder_Register() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "eagle-seeder-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ca, err := mtls.NewCA("example cluster CA", time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	member, err := ca.WriteMember(filepath.Join(dir, "tls"), "seeder")
	if err != nil {
		log.Fatal(err)
	}

	sd, err := seeder.New(ctx, seeder.SeederConfig{
		DataDir: dir,
		P2P:     p2p.Config{ListenAddr: "127.0.0.1:0", Trackers: []string{"https://tracker.example:7080/announce"}},
		Service: seeder.Config{AllowedUpstreams: []string{"registry.example.com"}},
		TLS:     member,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sd.Close()

	// The program's own server, for cluster members, with the options a
	// seeder needs.
	creds, err := mtls.Load(member)
	if err != nil {
		log.Fatal(err)
	}
	g := grpc.NewServer(append(seeder.ServerOptions(), grpc.Creds(credentials.NewTLS(creds.ServerConfig())))...)
	defer g.Stop()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)

	sd.Register(g)
	hs.SetServingStatus(seederpb.MetaInfoService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	var services []string
	for name := range g.GetServiceInfo() {
		services = append(services, name)
	}
	slices.Sort(services)
	fmt.Println(services)
	// Output: [eagle.seeder.v1.MetaInfoService grpc.health.v1.Health]
}
