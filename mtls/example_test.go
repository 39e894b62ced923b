package mtls_test

import (
	"crypto/tls"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/eagle-p2p/eagle/mtls"
)

// A seeder admits only members on its listener; an agent dials it with its
// own member certificate. In a binary, the Configs come from YAML
// (tls: {ca: ..., cert: ..., key: ...}) and the files from "eagle certs" or
// cert-manager.
func Example() {
	dir, err := os.MkdirTemp("", "mtls-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ca, err := mtls.NewCA("example cluster CA", 24*time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	seederCfg, err := ca.WriteMember(dir, "seeder-0")
	if err != nil {
		log.Fatal(err)
	}
	agentCfg, err := ca.WriteMember(dir, "agent-1")
	if err != nil {
		log.Fatal(err)
	}

	// Server side.
	seeder, err := mtls.Load(seederCfg)
	if err != nil {
		log.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", seeder.ServerConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer lis.Close()
	seen := make(chan string)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			seen <- err.Error()
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			seen <- err.Error()
			return
		}
		seen <- "seeder sees " + mtls.MemberName(tc.ConnectionState())
	}()

	// Client side.
	agent, err := mtls.Load(agentCfg)
	if err != nil {
		log.Fatal(err)
	}
	conn, err := tls.Dial("tcp", lis.Addr().String(), agent.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Println("agent sees", mtls.MemberName(conn.ConnectionState()))
	fmt.Println(<-seen)
	// Output:
	// agent sees seeder-0
	// seeder sees agent-1
}
