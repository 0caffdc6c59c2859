package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"mahfooz/internal/mlsinterop/pb"
)

const configDir = "../../../mls/testdata/interop-configs"

func configFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(configDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no interop configs found in %s", configDir)
	}
	return files
}

func TestLoadConfigAllFiles(t *testing.T) {
	used := map[Action]int{}
	for _, path := range configFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cfg, err := LoadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Scripts) == 0 {
				t.Fatal("config has no scripts")
			}
			for _, name := range cfg.Names() {
				script := cfg.Scripts[name]
				if len(script) == 0 {
					t.Errorf("script %q is empty", name)
				}
				for i, step := range script {
					if !step.Action.Known() {
						t.Errorf("script %q step %d: unknown action %q", name, i, step.Action)
					}
					if _, err := step.Params(); err != nil {
						t.Errorf("script %q step %d (%s): %v", name, i, step.Action, err)
					}
					used[step.Action]++
				}
				if len(script.Actors()) == 0 {
					t.Errorf("script %q has no actors", name)
				}
			}
			if err := cfg.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Logf("actions used by the configs: %v", used)
}

func TestParseConfigErrors(t *testing.T) {
	if _, err := ParseConfig([]byte(`{"scripts": {"x": [{"actor": "alice"}]}}`)); err == nil {
		t.Error("step without action accepted")
	}
	if _, err := ParseConfig([]byte(`{"scripts": {"x": [{"action": 3}]}}`)); err == nil {
		t.Error("non-string action accepted")
	}

	for name, tc := range map[string]struct {
		js   string
		step int
	}{
		"unknown action":    {`[{"action": "createGroup", "actor": "a"}, {"action": "frobnicate", "actor": "a"}]`, 1},
		"forward reference": {`[{"action": "createGroup", "actor": "a"}, {"action": "addProposal", "actor": "a", "keyPackage": 2}, {"action": "createKeyPackage", "actor": "b"}]`, 1},
		"wrong output":      {`[{"action": "createGroup", "actor": "a"}, {"action": "addProposal", "actor": "a", "keyPackage": 0}]`, 1},
		"missing actor":     {`[{"action": "createGroup"}]`, 0},
		"unassigned role":   {`[{"action": "createGroup", "actor": "a"}, {"action": "fullCommit", "actor": "a", "members": ["zed"]}]`, 1},
		"bad proposal type": {`[{"action": "createGroup", "actor": "a"}, {"action": "commit", "actor": "a", "byValue": [{"proposalType": "nope"}]}]`, 1},
		"bad parameters":    {`[{"action": "createGroup", "actor": "a", "members": "bob"}]`, 0},
	} {
		cfg, err := ParseConfig([]byte(`{"scripts": {"s": ` + tc.js + `}}`))
		if err != nil {
			t.Fatalf("%s: parse: %v", name, err)
		}
		err = cfg.Validate()
		var se *StepError
		if !errors.As(err, &se) || se.Index != tc.step {
			t.Errorf("%s: Validate() = %v, want a *StepError at step %d", name, err, tc.step)
		}
	}
}

func TestActors(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join(configDir, "external_join.json"))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Scripts["with_more_members"].Actors()
	want := []string{"alice", "bob", "charlie", "diana", "ellen"}
	if !slices.Equal(got, want) {
		t.Errorf("Actors() = %v, want %v", got, want)
	}
}

// ---------------------------------------------------------------------------
// Fake MLSClient server.
//
// fakeMLS DOES NO MLS AT ALL: it hands out counters as state/transaction IDs
// and builds placeholder byte strings ("kp:bob", "commit:...", hashes of
// those as epoch authenticators) that are just consistent enough for the
// runner's cross-client checks to pass. It exists only to prove the runner's
// wiring and step sequencing; the real MLS implementation is plugged in
// behind the same gRPC service separately.
// ---------------------------------------------------------------------------

type recordedCall struct {
	Server string
	Method string
	Req    proto.Message
}

type callLog struct {
	mu    sync.Mutex
	calls []recordedCall
}

func (l *callLog) add(server, method string, req proto.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, recordedCall{server, method, proto.Clone(req)})
}

func (l *callLog) snapshot() []recordedCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

type fakeMLS struct {
	pb.UnimplementedMLSClientServer
	name string
	log  *callLog

	// corruptJoinAuth makes JoinGroup report a wrong epoch authenticator.
	corruptJoinAuth bool

	mu      sync.Mutex
	next    uint32
	states  map[uint32]bool
	txs     map[uint32]string
	pending map[uint32][]byte
	commits uint32
}

func newFake(name string, log *callLog) *fakeMLS {
	return &fakeMLS{
		name:    name,
		log:     log,
		next:    100,
		states:  map[uint32]bool{},
		txs:     map[uint32]string{},
		pending: map[uint32][]byte{},
	}
}

func epochAuth(commit []byte) []byte {
	h := sha256.Sum256(commit)
	return h[:]
}

func (f *fakeMLS) newID() uint32 { f.next++; return f.next }

func (f *fakeMLS) state(id uint32) error {
	if !f.states[id] {
		return status.Errorf(codes.NotFound, "unknown state %d", id)
	}
	return nil
}

func (f *fakeMLS) Name(_ context.Context, req *pb.NameRequest) (*pb.NameResponse, error) {
	f.log.add(f.name, "Name", req)
	return &pb.NameResponse{Name: "fake-" + f.name}, nil
}

func (f *fakeMLS) SupportedCiphersuites(_ context.Context, req *pb.SupportedCiphersuitesRequest) (*pb.SupportedCiphersuitesResponse, error) {
	f.log.add(f.name, "SupportedCiphersuites", req)
	return &pb.SupportedCiphersuitesResponse{Ciphersuites: []uint32{1, 2, 3}}, nil
}

func (f *fakeMLS) CreateGroup(_ context.Context, req *pb.CreateGroupRequest) (*pb.CreateGroupResponse, error) {
	f.log.add(f.name, "CreateGroup", req)
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.newID()
	f.states[id] = true
	return &pb.CreateGroupResponse{StateId: id}, nil
}

func (f *fakeMLS) CreateKeyPackage(_ context.Context, req *pb.CreateKeyPackageRequest) (*pb.CreateKeyPackageResponse, error) {
	f.log.add(f.name, "CreateKeyPackage", req)
	f.mu.Lock()
	defer f.mu.Unlock()
	tx := f.newID()
	f.txs[tx] = string(req.GetIdentity())
	return &pb.CreateKeyPackageResponse{
		TransactionId: tx,
		KeyPackage:    []byte("kp:" + string(req.GetIdentity())),
	}, nil
}

func (f *fakeMLS) StorePSK(_ context.Context, req *pb.StorePSKRequest) (*pb.StorePSKResponse, error) {
	f.log.add(f.name, "StorePSK", req)
	f.mu.Lock()
	defer f.mu.Unlock()
	id := req.GetStateOrTransactionId()
	if _, ok := f.txs[id]; !ok && !f.states[id] {
		return nil, status.Errorf(codes.NotFound, "unknown state or transaction %d", id)
	}
	return &pb.StorePSKResponse{}, nil
}

func (f *fakeMLS) AddProposal(_ context.Context, req *pb.AddProposalRequest) (*pb.ProposalResponse, error) {
	f.log.add(f.name, "AddProposal", req)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.state(req.GetStateId()); err != nil {
		return nil, err
	}
	return &pb.ProposalResponse{Proposal: append([]byte("add:"), req.GetKeyPackage()...)}, nil
}

func (f *fakeMLS) ExternalPSKProposal(_ context.Context, req *pb.ExternalPSKProposalRequest) (*pb.ProposalResponse, error) {
	f.log.add(f.name, "ExternalPSKProposal", req)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.state(req.GetStateId()); err != nil {
		return nil, err
	}
	return &pb.ProposalResponse{Proposal: fmt.Appendf(nil, "psk:%x", req.GetPskId())}, nil
}

func (f *fakeMLS) Commit(_ context.Context, req *pb.CommitRequest) (*pb.CommitResponse, error) {
	f.log.add(f.name, "Commit", req)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.state(req.GetStateId()); err != nil {
		return nil, err
	}
	f.commits++
	commit := fmt.Appendf(nil, "commit:%s:%d:%d", f.name, req.GetStateId(), f.commits)
	for _, p := range req.GetByReference() {
		commit = append(append(commit, '|'), p...)
	}
	for _, d := range req.GetByValue() {
		commit = append(append(append(commit, '|'), d.GetProposalType()...), d.GetKeyPackage()...)
	}
	f.pending[req.GetStateId()] = commit
	resp := &pb.CommitResponse{Commit: commit, Welcome: append([]byte("welcome|"), commit...)}
	if req.GetExternalTree() {
		resp.RatchetTree = []byte("tree")
	}
	return resp, nil
}

func (f *fakeMLS) HandlePendingCommit(_ context.Context, req *pb.HandlePendingCommitRequest) (*pb.HandleCommitResponse, error) {
	f.log.add(f.name, "HandlePendingCommit", req)
	f.mu.Lock()
	defer f.mu.Unlock()
	commit, ok := f.pending[req.GetStateId()]
	if !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "no pending commit for state %d", req.GetStateId())
	}
	delete(f.pending, req.GetStateId())
	id := f.newID()
	f.states[id] = true
	return &pb.HandleCommitResponse{StateId: id, EpochAuthenticator: epochAuth(commit)}, nil
}

func (f *fakeMLS) HandleCommit(_ context.Context, req *pb.HandleCommitRequest) (*pb.HandleCommitResponse, error) {
	f.log.add(f.name, "HandleCommit", req)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.state(req.GetStateId()); err != nil {
		return nil, err
	}
	id := f.newID()
	f.states[id] = true
	return &pb.HandleCommitResponse{StateId: id, EpochAuthenticator: epochAuth(req.GetCommit())}, nil
}

func (f *fakeMLS) JoinGroup(_ context.Context, req *pb.JoinGroupRequest) (*pb.JoinGroupResponse, error) {
	f.log.add(f.name, "JoinGroup", req)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.txs[req.GetTransactionId()]; !ok {
		return nil, status.Errorf(codes.NotFound, "unknown transaction %d", req.GetTransactionId())
	}
	commit, ok := bytes.CutPrefix(req.GetWelcome(), []byte("welcome|"))
	if !ok {
		return nil, status.Error(codes.InvalidArgument, "not a welcome")
	}
	auth := epochAuth(commit)
	if f.corruptJoinAuth {
		auth = []byte("wrong")
	}
	id := f.newID()
	f.states[id] = true
	return &pb.JoinGroupResponse{StateId: id, EpochAuthenticator: auth}, nil
}

func (f *fakeMLS) Protect(_ context.Context, req *pb.ProtectRequest) (*pb.ProtectResponse, error) {
	f.log.add(f.name, "Protect", req)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.state(req.GetStateId()); err != nil {
		return nil, err
	}
	ct := append(append(slices.Clone(req.GetAuthenticatedData()), 0), req.GetPlaintext()...)
	return &pb.ProtectResponse{Ciphertext: ct}, nil
}

func (f *fakeMLS) Unprotect(_ context.Context, req *pb.UnprotectRequest) (*pb.UnprotectResponse, error) {
	f.log.add(f.name, "Unprotect", req)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.state(req.GetStateId()); err != nil {
		return nil, err
	}
	ad, pt, _ := bytes.Cut(req.GetCiphertext(), []byte{0})
	return &pb.UnprotectResponse{AuthenticatedData: ad, Plaintext: pt}, nil
}

// startFake serves f on 127.0.0.1:0 and returns a connected client.
func startFake(t *testing.T, f *fakeMLS) pb.MLSClientClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterMLSClientServer(srv, f)
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

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func methods(calls []recordedCall) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.Server + "." + c.Method
	}
	return out
}

func TestRunWelcomeJoin(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join(configDir, "welcome_join.json"))
	if err != nil {
		t.Fatal(err)
	}

	// Expected RPC sequence per script; actors sorted are [alice bob], so with
	// two clients alice is served by "c0" and bob by "c1".
	base := []string{"c0.CreateGroup", "c1.CreateKeyPackage", "c0.AddProposal"}
	commit := []string{"c0.Commit", "c0.HandlePendingCommit", "c1.JoinGroup"}
	want := map[string][]string{
		"no_path_secret":     slices.Concat(base, commit),
		"with_path_secret":   slices.Concat(base, commit),
		"with_external_tree": slices.Concat(base, commit),
		"with_psk":           slices.Concat(base, []string{"c0.StorePSK", "c1.StorePSK", "c0.ExternalPSKProposal"}, commit),
	}
	if len(want) != len(cfg.Scripts) {
		t.Fatalf("welcome_join.json has scripts %v; test expects %d", cfg.Names(), len(want))
	}

	for _, name := range cfg.Names() {
		for _, encrypt := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/encrypt=%v", name, encrypt), func(t *testing.T) {
				log := &callLog{}
				c0 := startFake(t, newFake("c0", log))
				c1 := startFake(t, newFake("c1", log))

				if err := Run(testContext(t), []pb.MLSClientClient{c0, c1}, 1, cfg.Scripts[name], encrypt); err != nil {
					t.Fatal(err)
				}
				calls := log.snapshot()
				if got := methods(calls); !slices.Equal(got, want[name]) {
					t.Fatalf("RPC sequence:\n got %v\nwant %v", got, want[name])
				}
				checkWelcomeJoinRequests(t, name, encrypt, calls)
			})
		}
	}
}

// checkWelcomeJoinRequests verifies that outputs of earlier steps are fed
// into later requests as the upstream runner does.
func checkWelcomeJoinRequests(t *testing.T, name string, encrypt bool, calls []recordedCall) {
	t.Helper()
	find := func(server, method string) []proto.Message {
		var out []proto.Message
		for _, c := range calls {
			if c.Server == server && c.Method == method {
				out = append(out, c.Req)
			}
		}
		return out
	}
	cg := find("c0", "CreateGroup")[0].(*pb.CreateGroupRequest)
	if cg.GetCipherSuite() != 1 || cg.GetEncryptHandshake() != encrypt || string(cg.GetIdentity()) != "alice" || len(cg.GetGroupId()) != 36 {
		t.Errorf("CreateGroup request = %v", cg)
	}
	kp := find("c1", "CreateKeyPackage")[0].(*pb.CreateKeyPackageRequest)
	if kp.GetCipherSuite() != 1 || string(kp.GetIdentity()) != "bob" {
		t.Errorf("CreateKeyPackage request = %v", kp)
	}
	add := find("c0", "AddProposal")[0].(*pb.AddProposalRequest)
	if string(add.GetKeyPackage()) != "kp:bob" || add.GetStateId() == 0 {
		t.Errorf("AddProposal request = %v", add)
	}
	commit := find("c0", "Commit")[0].(*pb.CommitRequest)
	wantRefs := [][]byte{[]byte("add:kp:bob")}
	if name == "with_psk" {
		psk := find("c0", "ExternalPSKProposal")[0].(*pb.ExternalPSKProposalRequest)
		stores := append(find("c0", "StorePSK"), find("c1", "StorePSK")...)
		for _, m := range stores {
			s := m.(*pb.StorePSKRequest)
			if len(s.GetPskId()) != 32 || len(s.GetPskSecret()) != 32 || !bytes.Equal(s.GetPskId(), psk.GetPskId()) {
				t.Errorf("StorePSK request = %v, ExternalPSKProposal psk_id %x", s, psk.GetPskId())
			}
		}
		// bob has no state yet, so his StorePSK must carry his transaction ID.
		bobTx := stores[1].(*pb.StorePSKRequest).GetStateOrTransactionId()
		joinTx := find("c1", "JoinGroup")[0].(*pb.JoinGroupRequest).GetTransactionId()
		if bobTx != joinTx {
			t.Errorf("bob's StorePSK used id %d, want transaction %d", bobTx, joinTx)
		}
		wantRefs = append(wantRefs, fmt.Appendf(nil, "psk:%x", psk.GetPskId()))
	}
	if !slices.EqualFunc(commit.GetByReference(), wantRefs, bytes.Equal) || len(commit.GetByValue()) != 0 {
		t.Errorf("Commit by_reference = %q, want %q", commit.GetByReference(), wantRefs)
	}
	if commit.GetForcePath() != (name == "with_path_secret") {
		t.Errorf("Commit force_path = %v", commit.GetForcePath())
	}
	if commit.GetExternalTree() != (name == "with_external_tree") {
		t.Errorf("Commit external_tree = %v", commit.GetExternalTree())
	}
	hpc := find("c0", "HandlePendingCommit")[0].(*pb.HandlePendingCommitRequest)
	if hpc.GetStateId() != commit.GetStateId() {
		t.Errorf("HandlePendingCommit state %d, Commit state %d", hpc.GetStateId(), commit.GetStateId())
	}
	join := find("c1", "JoinGroup")[0].(*pb.JoinGroupRequest)
	if string(join.GetIdentity()) != "bob" || join.GetEncryptHandshake() != encrypt || !bytes.HasPrefix(join.GetWelcome(), []byte("welcome|commit:")) {
		t.Errorf("JoinGroup request = %v", join)
	}
	if wantTree := name == "with_external_tree"; (string(join.GetRatchetTree()) == "tree") != wantTree {
		t.Errorf("JoinGroup ratchet_tree = %q (external tree wanted: %v)", join.GetRatchetTree(), wantTree)
	}
}

func TestRunSingleClientPlaysAllActors(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join(configDir, "welcome_join.json"))
	if err != nil {
		t.Fatal(err)
	}
	log := &callLog{}
	c := startFake(t, newFake("only", log))
	var rpcs []string
	s := &Session{
		Clients:     Assign(cfg.Scripts["no_path_secret"].Actors(), []pb.MLSClientClient{c}),
		CipherSuite: 1,
		OnRPC:       func(r RPC) { rpcs = append(rpcs, r.Actor+":"+r.Method) },
	}
	if err := s.Run(testContext(t), cfg.Scripts["no_path_secret"]); err != nil {
		t.Fatal(err)
	}
	want := []string{"alice:CreateGroup", "bob:CreateKeyPackage", "alice:AddProposal", "alice:Commit", "alice:HandlePendingCommit", "bob:JoinGroup"}
	if !slices.Equal(rpcs, want) {
		t.Errorf("transcript = %v, want %v", rpcs, want)
	}
}

func TestRunApplicationInOrder(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join(configDir, "application.json"))
	if err != nil {
		t.Fatal(err)
	}
	log := &callLog{}
	c := startFake(t, newFake("only", log))
	if err := Run(testContext(t), []pb.MLSClientClient{c}, 1, cfg.Scripts["in_order"], false); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"only.CreateGroup", "only.CreateKeyPackage", "only.Commit", "only.HandlePendingCommit", "only.JoinGroup",
		"only.Protect", "only.Protect", "only.Protect", "only.Unprotect", "only.Unprotect", "only.Unprotect",
	}
	calls := log.snapshot()
	if got := methods(calls); !slices.Equal(got, want) {
		t.Fatalf("RPC sequence:\n got %v\nwant %v", got, want)
	}
	// createGroup with members commits the Adds by value.
	commit := calls[2].Req.(*pb.CommitRequest)
	if len(commit.GetByValue()) != 1 || string(commit.GetByValue()[0].GetProposalType()) != "add" || string(commit.GetByValue()[0].GetKeyPackage()) != "kp:bob" {
		t.Errorf("createGroup Commit = %v", commit)
	}
}

func TestRunReportsFailingStep(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join(configDir, "welcome_join.json"))
	if err != nil {
		t.Fatal(err)
	}
	log := &callLog{}
	good := startFake(t, newFake("c0", log))
	bad := newFake("c1", log)
	bad.corruptJoinAuth = true
	err = Run(testContext(t), []pb.MLSClientClient{good, startFake(t, bad)}, 1, cfg.Scripts["no_path_secret"], false)
	var se *StepError
	if !errors.As(err, &se) || se.Index != 3 || se.Action != ActionFullCommit {
		t.Fatalf("err = %v, want a StepError at step 3 (fullCommit)", err)
	}
	if !strings.Contains(err.Error(), "joiner [bob] failed to agree on epoch authenticator") {
		t.Errorf("err = %v", err)
	}

	// An RPC error is reported with its step, too.
	script, err := ParseConfig([]byte(`{"scripts": {"s": [
		{"action": "createGroup", "actor": "alice"},
		{"action": "handlePendingCommit", "actor": "alice"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	err = Run(testContext(t), []pb.MLSClientClient{good}, 1, script.Scripts["s"], false)
	if !errors.As(err, &se) || se.Index != 1 || se.Action != ActionHandlePendingCommit || status.Code(errors.Unwrap(se.Err)) != codes.FailedPrecondition {
		t.Errorf("err = %v, want step 1 (handlePendingCommit) FailedPrecondition", err)
	}

	// Unknown actions fail at run time like upstream.
	script, err = ParseConfig([]byte(`{"scripts": {"s": [{"action": "createGroup", "actor": "a"}, {"action": "nope", "actor": "a"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	err = Run(testContext(t), []pb.MLSClientClient{good}, 1, script.Scripts["s"], false)
	if !errors.As(err, &se) || se.Index != 1 || !strings.Contains(err.Error(), "unknown action") {
		t.Errorf("err = %v, want unknown action at step 1", err)
	}
}
