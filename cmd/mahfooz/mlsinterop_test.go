package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"mahfooz/internal/mlsinterop/pb"
)

func TestMLSInteropServesUntilCancelled(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveMLSInterop(ctx, lis, slog.New(slog.NewTextHandler(io.Discard, nil))) }()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rpcCtx, rpcCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rpcCancel()
	resp, err := pb.NewMLSClientClient(conn).Name(rpcCtx, &pb.NameRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetName() != "mahfooz" {
		t.Errorf("Name = %q", resp.GetName())
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serveMLSInterop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serveMLSInterop did not return after cancellation")
	}
}

func TestMLSInteropRejectsArguments(t *testing.T) {
	if err := runMLSInterop([]string{"--listen", "127.0.0.1:0", "extra"}); err == nil {
		t.Error("stray argument accepted")
	}
}
