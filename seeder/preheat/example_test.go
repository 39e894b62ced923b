package preheat_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/seeder/preheat"
)

// A seeder process serves the preheat API beside its gRPC service,
// warming blobs at their owners among the cluster's seeders; the registry's
// notifications and "eagle preheat" post to it.
func ExampleService_Handler() {
	client, err := seeder.NewClient(seeder.ClientConfig{Seeders: []string{"eagle-seeder.eagle.svc:7070"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	svc, err := preheat.New(preheat.Config{
		Secret:           "from-a-secret-file",
		AllowedUpstreams: []string{"registry.example.com"},
		Registries:       []preheat.Registry{{Host: "registry.example.com", Username: "preheat-robot", PasswordFile: "/etc/eagle/registry-password"}},
		Platforms:        []string{"linux/amd64"},
	}, client)
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	srv := &http.Server{Addr: ":7072", Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second}
	_ = srv // srv.ListenAndServe() in the seeder's main
}

// An operator's tool asks a seeder to preheat an image and follows the job.
func ExampleClient() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cl := &preheat.Client{URL: "http://seeder-0.eagle.svc:7072", Secret: "from-a-secret-file"}
	job, err := cl.Submit(ctx, preheat.Request{Image: "registry.example.com/team/app:1.2", Platforms: []string{"linux/arm64"}})
	if err != nil {
		log.Fatal(err)
	}
	job, err = cl.Wait(ctx, job.ID, time.Second, func(j preheat.Job) { fmt.Println(j.State) })
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(job.State, len(job.Blobs))
}
