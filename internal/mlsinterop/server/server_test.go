package server

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"mahfooz/internal/mlsinterop/pb"
	"mahfooz/internal/mlsinterop/runner"
	"mahfooz/mls"
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

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Cipher suites the scenarios run with: the four of RFC 9420 this package
// implements among 1–7 that interop peers commonly offer, and the default
// post-quantum hybrid suite.
var (
	allSuites   = []uint32{1, 2, 3, 7, 0xF001}
	shortSuites = []uint32{0xF001}
)

// scenarioFiles are the interop configs run here. Every script of each runs on
// every suite, with encrypt_handshake off and on, once with two servers
// playing the actors alternately (so every message crosses between servers)
// and once with one server playing them all. Suites in reduced run only the
// two-server, encrypted mode: P-384 is slow under the race detector.
var scenarioFiles = []struct {
	file    string
	reduced []uint32
}{
	{file: "welcome_join.json"},
	{file: "application.json"},
	{file: "commit.json"},
	{file: "external_join.json", reduced: []uint32{7}},
	{file: "external_proposals.json", reduced: []uint32{7}},
	{file: "branch.json", reduced: []uint32{7}},
	{file: "reinit.json", reduced: []uint32{7}},
}

type mode struct {
	encrypt bool
	servers string // "two" or "one"
}

func modes(reduced bool) []mode {
	if reduced {
		return []mode{{true, "two"}}
	}
	return []mode{{false, "two"}, {true, "two"}, {false, "one"}, {true, "one"}}
}

func TestScenarios(t *testing.T) {
	suites := allSuites
	if testing.Short() {
		suites = shortSuites
	}
	for _, sf := range scenarioFiles {
		t.Run(sf.file, func(t *testing.T) {
			t.Parallel()
			cfg, err := runner.LoadConfig(filepath.Join(configDir, sf.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Scripts) == 0 {
				t.Fatalf("%s has no scripts", sf.file)
			}
			clients := map[string][]pb.MLSClientClient{
				"two": {serve(t), serve(t)},
				"one": {serve(t)},
			}
			for _, name := range cfg.Names() {
				for _, suite := range suites {
					for _, m := range modes(containsSuite(sf.reduced, suite)) {
						t.Run(fmt.Sprintf("%s/suite=%#x/encrypt=%v/%s", name, suite, m.encrypt, m.servers), func(t *testing.T) {
							if err := runner.Run(testContext(t), clients[m.servers], suite, cfg.Scripts[name], m.encrypt); err != nil {
								t.Fatal(err)
							}
						})
					}
				}
			}
		})
	}
}

func containsSuite(list []uint32, s uint32) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: code %v (%v), want %v", what, got, err, want)
	}
}

// TestIDs checks that states, transactions and signers share one ID space and
// that a state gets a new ID, retiring the old, when its epoch changes.
func TestIDs(t *testing.T) {
	c, ctx := serve(t), testContext(t)
	cg, err := c.CreateGroup(ctx, &pb.CreateGroupRequest{GroupId: []byte("g"), CipherSuite: 1, Identity: []byte("alice")})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := c.CreateKeyPackage(ctx, &pb.CreateKeyPackageRequest{CipherSuite: 1, Identity: []byte("bob")})
	if err != nil {
		t.Fatal(err)
	}
	sg, err := c.CreateExternalSigner(ctx, &pb.CreateExternalSignerRequest{CipherSuite: 1, Identity: []byte("ds")})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[uint32]bool{cg.GetStateId(): true, kp.GetTransactionId(): true, sg.GetSignerId(): true}
	if len(ids) != 3 {
		t.Fatalf("IDs collide: state %d, transaction %d, signer %d", cg.GetStateId(), kp.GetTransactionId(), sg.GetSignerId())
	}
	if _, err := c.Commit(ctx, &pb.CommitRequest{StateId: cg.GetStateId()}); err != nil {
		t.Fatal(err)
	}
	hpc, err := c.HandlePendingCommit(ctx, &pb.HandlePendingCommitRequest{StateId: cg.GetStateId()})
	if err != nil {
		t.Fatal(err)
	}
	if ids[hpc.GetStateId()] {
		t.Errorf("new epoch reused ID %d", hpc.GetStateId())
	}
	_, err = c.StateAuth(ctx, &pb.StateAuthRequest{StateId: cg.GetStateId()})
	wantCode(t, "StateAuth on the retired ID", err, codes.NotFound)
	sa, err := c.StateAuth(ctx, &pb.StateAuthRequest{StateId: hpc.GetStateId()})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sa.GetStateAuthSecret(), hpc.GetEpochAuthenticator()) {
		t.Error("StateAuth differs from the epoch authenticator HandlePendingCommit reported")
	}
}

// TestExternalTree checks that external_tree keeps the ratchet tree out of the
// Welcome and the GroupInfo and returns it beside them.
func TestExternalTree(t *testing.T) {
	c, ctx := serve(t), testContext(t)
	cg, err := c.CreateGroup(ctx, &pb.CreateGroupRequest{GroupId: []byte("g"), CipherSuite: 1, Identity: []byte("alice")})
	if err != nil {
		t.Fatal(err)
	}
	alice := cg.GetStateId()
	for _, external := range []bool{false, true} {
		gi, err := c.GroupInfo(ctx, &pb.GroupInfoRequest{StateId: alice, ExternalTree: external})
		if err != nil {
			t.Fatal(err)
		}
		msg, err := mls.UnmarshalMLSMessage(gi.GetGroupInfo())
		if err != nil || msg.GroupInfo == nil {
			t.Fatalf("GroupInfo: %v", err)
		}
		_, inside := msg.GroupInfo.Extensions.Find(mls.ExtensionTypeRatchetTree)
		if inside == external || (len(gi.GetRatchetTree()) > 0) != external {
			t.Errorf("external_tree=%v: tree in GroupInfo %v, beside it %d bytes", external, inside, len(gi.GetRatchetTree()))
		}
	}

	kp, err := c.CreateKeyPackage(ctx, &pb.CreateKeyPackageRequest{CipherSuite: 1, Identity: []byte("bob")})
	if err != nil {
		t.Fatal(err)
	}
	commit, err := c.Commit(ctx, &pb.CommitRequest{StateId: alice, ExternalTree: true,
		ByValue: []*pb.ProposalDescription{{ProposalType: []byte("add"), KeyPackage: kp.GetKeyPackage()}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(commit.GetRatchetTree()) == 0 {
		t.Fatal("Commit with external_tree returned no tree")
	}
	join := &pb.JoinGroupRequest{TransactionId: kp.GetTransactionId(), Welcome: commit.GetWelcome(), Identity: []byte("bob")}
	_, err = c.JoinGroup(ctx, join)
	wantCode(t, "JoinGroup without the external tree", err, codes.InvalidArgument)
	join.RatchetTree = commit.GetRatchetTree()
	joined, err := c.JoinGroup(ctx, join)
	if err != nil {
		t.Fatal(err)
	}
	hpc, err := c.HandlePendingCommit(ctx, &pb.HandlePendingCommitRequest{StateId: alice})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(joined.GetEpochAuthenticator(), hpc.GetEpochAuthenticator()) {
		t.Error("joiner and committer disagree on the epoch authenticator")
	}
}

// TestErrors checks the status codes of misuse and of bad input.
func TestErrors(t *testing.T) {
	c, ctx := serve(t), testContext(t)
	_, err := c.StateAuth(ctx, &pb.StateAuthRequest{StateId: 999})
	wantCode(t, "unknown state", err, codes.NotFound)
	_, err = c.CreateGroup(ctx, &pb.CreateGroupRequest{GroupId: []byte("g"), CipherSuite: 4, Identity: []byte("a")})
	wantCode(t, "unsupported suite", err, codes.InvalidArgument)

	cg, err := c.CreateGroup(ctx, &pb.CreateGroupRequest{GroupId: []byte("g"), CipherSuite: 1, Identity: []byte("alice")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.HandlePendingCommit(ctx, &pb.HandlePendingCommitRequest{StateId: cg.GetStateId()})
	wantCode(t, "HandlePendingCommit without a commit", err, codes.FailedPrecondition)
	_, err = c.RemoveProposal(ctx, &pb.RemoveProposalRequest{StateId: cg.GetStateId(), RemovedId: []byte("nobody")})
	wantCode(t, "removing a stranger", err, codes.InvalidArgument)

	kp, err := c.CreateKeyPackage(ctx, &pb.CreateKeyPackageRequest{CipherSuite: 1, Identity: []byte("bob")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.JoinGroup(ctx, &pb.JoinGroupRequest{TransactionId: kp.GetTransactionId(), Welcome: []byte{0, 1, 0, 3}})
	wantCode(t, "truncated Welcome", err, codes.InvalidArgument)

	pr, err := c.Protect(ctx, &pb.ProtectRequest{StateId: cg.GetStateId(), Plaintext: []byte("hi")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commit(ctx, &pb.CommitRequest{StateId: cg.GetStateId()}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Protect(ctx, &pb.ProtectRequest{StateId: cg.GetStateId(), Plaintext: []byte("hi")})
	wantCode(t, "Protect with a commit pending", err, codes.FailedPrecondition)

	tampered := bytes.Clone(pr.GetCiphertext())
	tampered[len(tampered)-1] ^= 1
	_, err = c.Unprotect(ctx, &pb.UnprotectRequest{StateId: cg.GetStateId(), Ciphertext: tampered})
	wantCode(t, "tampered ciphertext", err, codes.InvalidArgument)
}
