package server

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"mahfooz/internal/mlsinterop/pb"
	"mahfooz/internal/mlsinterop/runner"
)

const configDir = "../../../mls/testdata/interop-configs"

// serve runs a new Server on 127.0.0.1:0 over real gRPC and returns a client.
func serve(t testing.TB) pb.MLSClientClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterMLSClientServer(srv, New(Options{}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-done
	})
	return pb.NewMLSClientClient(conn)
}

func loadConfig(t *testing.T, name string) *runner.Config {
	t.Helper()
	cfg, err := runner.LoadConfig(filepath.Join(configDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Scripts) == 0 {
		t.Fatalf("%s has no scripts", name)
	}
	return cfg
}

func TestScenarios(t *testing.T) {
	suites := []uint32{1, 2, 3, 7, 0xF001}
	files := []string{"welcome_join.json", "application.json", "commit.json", "external_join.json", "external_proposals.json", "branch.json", "reinit.json"}
	two := []pb.MLSClientClient{serve(t), serve(t)}
	one := []pb.MLSClientClient{serve(t)}
	for _, file := range files {
		cfg := loadConfig(t, file)
		for _, name := range cfg.Names() {
			for _, suite := range suites {
				for _, encrypt := range []bool{false, true} {
					for _, topo := range []struct {
						name    string
						clients []pb.MLSClientClient
					}{{"two", two}, {"one", one}} {
						t.Run(fmt.Sprintf("%s/%s/suite=%d/encrypt=%v/%s", file, name, suite, encrypt, topo.name), func(t *testing.T) {
							ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
							defer cancel()
							if err := runner.Run(ctx, topo.clients, suite, cfg.Scripts[name], encrypt); err != nil {
								t.Fatal(err)
							}
						})
					}
				}
			}
		}
	}
}
