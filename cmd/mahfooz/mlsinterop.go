package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"mahfooz/internal/mlsinterop/pb"
	"mahfooz/internal/mlsinterop/server"
)

func init() {
	commands["mls-interop"] = command{
		summary: "serve the MLS working group's interop gRPC service for its test-runner",
		run:     runMLSInterop,
	}
}

// stopGrace is how long a stop waits for RPCs in flight before cutting them off.
const stopGrace = 5 * time.Second

func runMLSInterop(args []string) error {
	fs := flag.NewFlagSet("mls-interop", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:50051", "`address` to serve the MLSClient gRPC service on")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: mahfooz mls-interop [--listen ADDR]\n\n"+
			"Serves the MLS working group's interop service (MLSClient, from\n"+
			"github.com/mlswg/mls-implementations) over plaintext gRPC, for its\n"+
			"test-runner, until interrupted. Credentials are accepted unchecked:\n"+
			"never expose it beyond a test network.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("mls-interop: unexpected argument %q", fs.Arg(0))
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("mls-interop: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serveMLSInterop(ctx, lis, slog.New(slog.NewTextHandler(os.Stderr, nil)))
}

// serveMLSInterop serves the interop service on lis until ctx is done.
func serveMLSInterop(ctx context.Context, lis net.Listener, log *slog.Logger) error {
	srv := grpc.NewServer()
	pb.RegisterMLSClientServer(srv, server.New(server.Options{}))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	log.Info("serving MLSClient", "addr", lis.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("mls-interop: %w", err)
	case <-ctx.Done():
	}
	log.Info("stopping")
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		srv.Stop()
		<-stopped
	}
	return nil
}
