package runner

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"mahfooz/internal/mlsinterop/pb"
)

// DefaultRPCTimeout is the per-RPC deadline used by the upstream runner.
const DefaultRPCTimeout = 120 * time.Second

// StepError reports the failure of one scenario step.
type StepError struct {
	Index  int    // 0-based step index in the script
	Action Action // the step's action
	Actor  string // the step's "actor" (may be empty)
	Err    error
}

func (e *StepError) Error() string {
	if e.Actor == "" {
		return fmt.Sprintf("step %d (%s): %v", e.Index, e.Action, e.Err)
	}
	return fmt.Sprintf("step %d (%s, actor %s): %v", e.Index, e.Action, e.Actor, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// RPC describes one completed call, for transcripts and debugging.
type RPC struct {
	Actor    string
	Method   string
	Request  proto.Message
	Response proto.Message
}

// Session runs scripts against a fixed assignment of actors to clients. It
// holds the runner's per-run bookkeeping (state IDs, transaction IDs, signer
// IDs, per-step outputs), which is reset by each call to Run.
type Session struct {
	// Clients maps every actor of the script (see Script.Actors) to the
	// client that plays it. Several actors may share one client.
	Clients map[string]pb.MLSClientClient
	// CipherSuite is the suite the run starts with (reinit steps may switch
	// to another suite that all assigned clients support).
	CipherSuite uint32
	// EncryptHandshake is passed to CreateGroup, JoinGroup and ExternalJoin.
	EncryptHandshake bool
	// RPCTimeout bounds each RPC; zero means DefaultRPCTimeout.
	RPCTimeout time.Duration
	// Rand supplies group IDs and external PSKs; nil means crypto/rand.
	Rand io.Reader
	// OnRPC, if set, is called after every successful RPC.
	OnRPC func(RPC)

	suite         uint32
	stateID       map[string]uint32
	transactionID map[string]uint32
	signerID      map[string]uint32
	supported     map[string]map[uint32]bool
	cache         []map[string][]byte
}

// Run executes script against clients with the given ciphersuite. Actors
// (sorted by name) are assigned to clients round-robin, so a single client
// plays every actor. The error, if any, is a *StepError naming the failed
// step's index and action.
func Run(ctx context.Context, clients []pb.MLSClientClient, suite uint32, script Script, encryptHandshake bool) error {
	if len(clients) == 0 {
		return errors.New("runner: no clients")
	}
	s := &Session{
		Clients:          Assign(script.Actors(), clients),
		CipherSuite:      suite,
		EncryptHandshake: encryptHandshake,
	}
	return s.Run(ctx, script)
}

// Assign maps actors to clients round-robin: actors[i] plays
// clients[i%len(clients)].
func Assign(actors []string, clients []pb.MLSClientClient) map[string]pb.MLSClientClient {
	m := make(map[string]pb.MLSClientClient, len(actors))
	if len(clients) == 0 {
		return m
	}
	for i, a := range actors {
		m[a] = clients[i%len(clients)]
	}
	return m
}

// Run executes the script's steps in order and stops at the first failure.
func (s *Session) Run(ctx context.Context, script Script) error {
	s.suite = s.CipherSuite
	s.stateID = map[string]uint32{}
	s.transactionID = map[string]uint32{}
	s.signerID = map[string]uint32{}
	s.supported = map[string]map[uint32]bool{}
	s.cache = make([]map[string][]byte, len(script))
	for i := range s.cache {
		s.cache[i] = map[string][]byte{}
	}
	for i, step := range script {
		err := ctx.Err()
		if err == nil {
			err = s.runStep(ctx, i, step)
		}
		if err != nil {
			return &StepError{Index: i, Action: step.Action, Actor: step.Actor, Err: err}
		}
	}
	return nil
}

func (s *Session) store(index int, key string, msg []byte) {
	s.cache[index][key] = msg
}

func (s *Session) get(index int, key string) ([]byte, error) {
	if index >= 0 && index < len(s.cache) {
		if msg, ok := s.cache[index][key]; ok {
			return msg, nil
		}
	}
	return nil, fmt.Errorf("no message for key %s at step %d", key, index)
}

func (s *Session) getAll(key string, indexes []int) ([][]byte, error) {
	out := make([][]byte, len(indexes))
	for i, ix := range indexes {
		var err error
		if out[i], err = s.get(ix, key); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Session) random(n int) ([]byte, error) {
	r := s.Rand
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return b, err
}

// newUUID returns a random (version 4) UUID string; upstream uses
// uuid.New().String() for group IDs.
func (s *Session) newUUID() ([]byte, error) {
	b, err := s.random(16)
	if err != nil {
		return nil, err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return []byte(h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]), nil
}

// newGroupID is the group ID for a reinit: the group ID created at step 0,
// with "++" appended when changeID is set.
func (s *Session) newGroupID(changeID bool) ([]byte, error) {
	id, err := s.get(0, keyGroupID)
	if err != nil {
		return nil, err
	}
	id = slices.Clone(id)
	if changeID {
		id = append(id, "++"...)
	}
	return id, nil
}

// changeCipherSuite switches to another suite supported by every assigned
// client (upstream picks an arbitrary one; this picks the smallest).
func (s *Session) changeCipherSuite(ctx context.Context) error {
	var common map[uint32]bool
	for _, actor := range sortedKeys(s.Clients) {
		sup, ok := s.supported[actor]
		if !ok {
			resp, err := call(ctx, s, actor, "SupportedCiphersuites", &pb.SupportedCiphersuitesRequest{}, pb.MLSClientClient.SupportedCiphersuites)
			if err != nil {
				return err
			}
			sup = map[uint32]bool{}
			for _, cs := range resp.GetCiphersuites() {
				sup[cs] = true
			}
			s.supported[actor] = sup
		}
		if common == nil {
			common = map[uint32]bool{}
			for cs := range sup {
				common[cs] = true
			}
			continue
		}
		for cs := range common {
			if !sup[cs] {
				delete(common, cs)
			}
		}
	}
	delete(common, s.suite)
	if len(common) == 0 {
		return errors.New("no remaining supported ciphersuite")
	}
	s.suite = sortedKeys(common)[0]
	return nil
}

func (s *Session) client(actor string) (pb.MLSClientClient, error) {
	c, ok := s.Clients[actor]
	if !ok || c == nil {
		return nil, fmt.Errorf("no client assigned to actor %q", actor)
	}
	return c, nil
}

type rpcFunc[Req, Resp proto.Message] func(pb.MLSClientClient, context.Context, Req, ...grpc.CallOption) (Resp, error)

// call performs one RPC on the actor's client under the per-RPC deadline.
func call[Req, Resp proto.Message](ctx context.Context, s *Session, actor, method string, req Req, fn rpcFunc[Req, Resp]) (Resp, error) {
	var zero Resp
	c, err := s.client(actor)
	if err != nil {
		return zero, err
	}
	timeout := s.RPCTimeout
	if timeout <= 0 {
		timeout = DefaultRPCTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := fn(c, cctx, req)
	if err != nil {
		return zero, fmt.Errorf("%s [%s]: %w", method, actor, err)
	}
	if s.OnRPC != nil {
		s.OnRPC(RPC{Actor: actor, Method: method, Request: req, Response: resp})
	}
	return resp, nil
}

func toProtoExtensions(exts []Extension) []*pb.Extension {
	if exts == nil {
		return nil
	}
	out := make([]*pb.Extension, len(exts))
	for i, e := range exts {
		out[i] = &pb.Extension{ExtensionType: e.ExtensionType, ExtensionData: e.ExtensionData}
	}
	return out
}

func (s *Session) proposalDescription(ctx context.Context, d ProposalDescription) (*pb.ProposalDescription, error) {
	out := &pb.ProposalDescription{ProposalType: []byte(d.ProposalType)}
	var err error
	switch d.ProposalType {
	case "add":
		out.KeyPackage, err = s.get(d.KeyPackage, keyKeyPackage)
	case "remove":
		out.RemovedId = []byte(d.Removed)
	case "externalPSK":
		out.PskId, err = s.get(d.PSKID, keyPSKID)
	case "resumptionPSK":
		out.EpochId = uint64(d.EpochID)
	case "groupContextExtensions":
		out.Extensions = toProtoExtensions(d.Extensions)
	case "reinit":
		out.Extensions = toProtoExtensions(d.Extensions)
		if d.ChangeCipherSuite {
			if err := s.changeCipherSuite(ctx); err != nil {
				return nil, err
			}
		}
		out.CipherSuite = s.suite
		out.GroupId, err = s.newGroupID(d.ChangeGroupID)
	default:
		err = fmt.Errorf("unknown proposal type [%s]", d.ProposalType)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Session) proposalDescriptions(ctx context.Context, ds []ProposalDescription) ([]*pb.ProposalDescription, error) {
	out := make([]*pb.ProposalDescription, len(ds))
	for i, d := range ds {
		var err error
		if out[i], err = s.proposalDescription(ctx, d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func mismatch(role, who string) error {
	return fmt.Errorf("%s [%s] failed to agree on epoch authenticator", role, who)
}

func (s *Session) runStep(ctx context.Context, index int, step Step) error {
	params, err := step.Params()
	if err != nil {
		return err
	}
	actor := step.Actor

	switch p := params.(type) {
	case *CreateGroupParams:
		return s.createGroup(ctx, index, actor, p)

	case nil:
		switch step.Action {
		case ActionCreateKeyPackage:
			resp, err := call(ctx, s, actor, "CreateKeyPackage", &pb.CreateKeyPackageRequest{
				CipherSuite: s.suite,
				Identity:    []byte(actor),
			}, pb.MLSClientClient.CreateKeyPackage)
			if err != nil {
				return err
			}
			s.transactionID[actor] = resp.GetTransactionId()
			s.store(index, keyKeyPackage, resp.GetKeyPackage())
			s.store(index, "init_priv", resp.GetInitPriv())
			s.store(index, "encryption_priv", resp.GetEncryptionPriv())
			s.store(index, "signature_priv", resp.GetSignaturePriv())

		case ActionUpdateProposal:
			resp, err := call(ctx, s, actor, "UpdateProposal", &pb.UpdateProposalRequest{
				StateId: s.stateID[actor],
			}, pb.MLSClientClient.UpdateProposal)
			if err != nil {
				return err
			}
			s.store(index, keyProposal, resp.GetProposal())

		case ActionHandlePendingCommit:
			resp, err := call(ctx, s, actor, "HandlePendingCommit", &pb.HandlePendingCommitRequest{
				StateId: s.stateID[actor],
			}, pb.MLSClientClient.HandlePendingCommit)
			if err != nil {
				return err
			}
			s.stateID[actor] = resp.GetStateId()
		}

	case *JoinGroupParams:
		welcome, err := s.get(p.Welcome, keyWelcome)
		if err != nil {
			return err
		}
		txID, ok := s.transactionID[actor]
		if !ok {
			return fmt.Errorf("malformed step: no transaction for %s", actor)
		}
		resp, err := call(ctx, s, actor, "JoinGroup", &pb.JoinGroupRequest{
			TransactionId:    txID,
			Welcome:          welcome,
			EncryptHandshake: s.EncryptHandshake,
			Identity:         []byte(actor),
		}, pb.MLSClientClient.JoinGroup)
		if err != nil {
			return err
		}
		s.stateID[actor] = resp.GetStateId()

	case *ExternalJoinParams:
		return s.externalJoin(ctx, index, actor, p)

	case *InstallExternalPSKParams:
		pskID, err := s.random(32)
		if err != nil {
			return err
		}
		pskSecret, err := s.random(32)
		if err != nil {
			return err
		}
		s.store(index, keyPSKID, pskID)
		s.store(index, keyPSKSecret, pskSecret)
		for _, name := range p.Clients {
			var id uint32
			if sid, ok := s.stateID[name]; ok {
				id = sid
			} else if tx, ok := s.transactionID[name]; ok {
				id = tx
			}
			if _, err := call(ctx, s, name, "StorePSK", &pb.StorePSKRequest{
				StateOrTransactionId: id,
				PskId:                pskID,
				PskSecret:            pskSecret,
			}, pb.MLSClientClient.StorePSK); err != nil {
				return err
			}
		}

	case *GroupInfoParams:
		resp, err := call(ctx, s, actor, "GroupInfo", &pb.GroupInfoRequest{
			StateId:      s.stateID[actor],
			ExternalTree: p.ExternalTree,
		}, pb.MLSClientClient.GroupInfo)
		if err != nil {
			return err
		}
		s.store(index, keyGroupInfo, resp.GetGroupInfo())
		s.store(index, keyRatchetTree, resp.GetRatchetTree())

	case *AddProposalParams:
		kp, err := s.get(p.KeyPackage, keyKeyPackage)
		if err != nil {
			return err
		}
		resp, err := call(ctx, s, actor, "AddProposal", &pb.AddProposalRequest{
			StateId:    s.stateID[actor],
			KeyPackage: kp,
		}, pb.MLSClientClient.AddProposal)
		if err != nil {
			return err
		}
		s.store(index, keyProposal, resp.GetProposal())

	case *RemoveProposalParams:
		resp, err := call(ctx, s, actor, "RemoveProposal", &pb.RemoveProposalRequest{
			StateId:   s.stateID[actor],
			RemovedId: []byte(p.Removed),
		}, pb.MLSClientClient.RemoveProposal)
		if err != nil {
			return err
		}
		s.store(index, keyProposal, resp.GetProposal())

	case *ExternalPSKProposalParams:
		pskID, err := s.get(p.PSKID, keyPSKID)
		if err != nil {
			return err
		}
		resp, err := call(ctx, s, actor, "ExternalPSKProposal", &pb.ExternalPSKProposalRequest{
			StateId: s.stateID[actor],
			PskId:   pskID,
		}, pb.MLSClientClient.ExternalPSKProposal)
		if err != nil {
			return err
		}
		s.store(index, keyProposal, resp.GetProposal())

	case *ResumptionPSKProposalParams:
		resp, err := call(ctx, s, actor, "ResumptionPSKProposal", &pb.ResumptionPSKProposalRequest{
			StateId: s.stateID[actor],
			EpochId: uint64(p.EpochID),
		}, pb.MLSClientClient.ResumptionPSKProposal)
		if err != nil {
			return err
		}
		s.store(index, keyProposal, resp.GetProposal())

	case *GroupContextExtensionsProposalParams:
		resp, err := call(ctx, s, actor, "GroupContextExtensionsProposal", &pb.GroupContextExtensionsProposalRequest{
			StateId:    s.stateID[actor],
			Extensions: toProtoExtensions(p.Extensions),
		}, pb.MLSClientClient.GroupContextExtensionsProposal)
		if err != nil {
			return err
		}
		s.store(index, keyProposal, resp.GetProposal())

	case *FullCommitParams:
		return s.fullCommit(ctx, index, actor, p)

	case *CommitParams:
		byRef, err := s.getAll(keyProposal, p.ByReference)
		if err != nil {
			return err
		}
		byVal, err := s.proposalDescriptions(ctx, p.ByValue)
		if err != nil {
			return err
		}
		resp, err := call(ctx, s, actor, "Commit", &pb.CommitRequest{
			StateId:      s.stateID[actor],
			ByReference:  byRef,
			ByValue:      byVal,
			ForcePath:    p.ForcePath,
			ExternalTree: p.ExternalTree,
		}, pb.MLSClientClient.Commit)
		if err != nil {
			return err
		}
		s.store(index, keyCommit, resp.GetCommit())
		s.store(index, keyWelcome, resp.GetWelcome())
		if p.ExternalTree {
			s.store(index, keyRatchetTree, resp.GetRatchetTree())
		}

	case *HandleCommitParams:
		commit, err := s.get(p.Commit, keyCommit)
		if err != nil {
			return err
		}
		byRef, err := s.getAll(keyProposal, p.ByReference)
		if err != nil {
			return err
		}
		resp, err := call(ctx, s, actor, "HandleCommit", &pb.HandleCommitRequest{
			StateId:  s.stateID[actor],
			Proposal: byRef,
			Commit:   commit,
		}, pb.MLSClientClient.HandleCommit)
		if err != nil {
			return err
		}
		s.stateID[actor] = resp.GetStateId()

	case *ProtectParams:
		ad, pt := []byte(p.AuthenticatedData), []byte(p.Plaintext)
		resp, err := call(ctx, s, actor, "Protect", &pb.ProtectRequest{
			StateId:           s.stateID[actor],
			AuthenticatedData: ad,
			Plaintext:         pt,
		}, pb.MLSClientClient.Protect)
		if err != nil {
			return err
		}
		s.store(index, keyAuthenticatedData, ad)
		s.store(index, keyPlaintext, pt)
		s.store(index, keyCiphertext, resp.GetCiphertext())

	case *UnprotectParams:
		ct, err := s.get(p.Ciphertext, keyCiphertext)
		if err != nil {
			return err
		}
		resp, err := call(ctx, s, actor, "Unprotect", &pb.UnprotectRequest{
			StateId:    s.stateID[actor],
			Ciphertext: ct,
		}, pb.MLSClientClient.Unprotect)
		if err != nil {
			return err
		}
		wantAD, err := s.get(p.Ciphertext, keyAuthenticatedData)
		if err != nil {
			return err
		}
		wantPT, err := s.get(p.Ciphertext, keyPlaintext)
		if err != nil {
			return err
		}
		if !bytes.Equal(wantAD, resp.GetAuthenticatedData()) {
			return errors.New("incorrect authenticated data")
		}
		if !bytes.Equal(wantPT, resp.GetPlaintext()) {
			return errors.New("incorrect plaintext")
		}
		s.store(index, keyAuthenticatedData, resp.GetAuthenticatedData())
		s.store(index, keyPlaintext, resp.GetPlaintext())

	case *ReInitParams:
		return s.reinit(ctx, p)

	case *BranchParams:
		return s.branch(ctx, actor, p)

	case *NewMemberAddProposalParams:
		gi, err := call(ctx, s, actor, "GroupInfo", &pb.GroupInfoRequest{
			StateId: s.stateID[actor],
		}, pb.MLSClientClient.GroupInfo)
		if err != nil {
			return err
		}
		resp, err := call(ctx, s, p.Joiner, "NewMemberAddProposal", &pb.NewMemberAddProposalRequest{
			GroupInfo: gi.GetGroupInfo(),
			Identity:  []byte(p.Joiner),
		}, pb.MLSClientClient.NewMemberAddProposal)
		if err != nil {
			return err
		}
		s.transactionID[p.Joiner] = resp.GetTransactionId()
		s.store(index, keyProposal, resp.GetProposal())
		s.store(index, "init_priv", resp.GetInitPriv())
		s.store(index, "encryption_priv", resp.GetEncryptionPriv())
		s.store(index, "signature_priv", resp.GetSignaturePriv())

	case *AddExternalSignerParams:
		signer, err := call(ctx, s, p.Signer, "CreateExternalSigner", &pb.CreateExternalSignerRequest{
			CipherSuite: s.suite,
			Identity:    []byte(p.Signer),
		}, pb.MLSClientClient.CreateExternalSigner)
		if err != nil {
			return err
		}
		s.signerID[p.Signer] = signer.GetSignerId()
		resp, err := call(ctx, s, actor, "AddExternalSigner", &pb.AddExternalSignerRequest{
			StateId:        s.stateID[actor],
			ExternalSender: signer.GetExternalSender(),
		}, pb.MLSClientClient.AddExternalSigner)
		if err != nil {
			return err
		}
		s.store(index, keyProposal, resp.GetProposal())

	case *ExternalSignerProposalParams:
		gi, err := call(ctx, s, p.Member, "GroupInfo", &pb.GroupInfoRequest{
			StateId:      s.stateID[p.Member],
			ExternalTree: true,
		}, pb.MLSClientClient.GroupInfo)
		if err != nil {
			return err
		}
		desc, err := s.proposalDescription(ctx, p.Description)
		if err != nil {
			return err
		}
		resp, err := call(ctx, s, actor, "ExternalSignerProposal", &pb.ExternalSignerProposalRequest{
			SignerId:    s.signerID[actor],
			GroupInfo:   gi.GetGroupInfo(),
			RatchetTree: gi.GetRatchetTree(),
			Description: desc,
		}, pb.MLSClientClient.ExternalSignerProposal)
		if err != nil {
			return err
		}
		s.store(index, keyProposal, resp.GetProposal())

	default:
		return fmt.Errorf("unknown action: %s", step.Action)
	}
	return nil
}

// createGroup: CreateGroup at the actor; if "members" are given, each member
// makes a KeyPackage, the creator commits Adds for all of them by value and
// applies it (HandlePendingCommit), and each member joins from the Welcome
// (without an external ratchet tree).
func (s *Session) createGroup(ctx context.Context, index int, actor string, p *CreateGroupParams) error {
	groupID, err := s.newUUID()
	if err != nil {
		return err
	}
	cg, err := call(ctx, s, actor, "CreateGroup", &pb.CreateGroupRequest{
		GroupId:          groupID,
		CipherSuite:      s.suite,
		EncryptHandshake: s.EncryptHandshake,
		Identity:         []byte(actor),
	}, pb.MLSClientClient.CreateGroup)
	if err != nil {
		return err
	}
	s.stateID[actor] = cg.GetStateId()
	s.store(index, keyGroupID, groupID)
	if len(p.Members) == 0 {
		return nil
	}

	txIDs := make([]uint32, len(p.Members))
	adds := make([]*pb.ProposalDescription, len(p.Members))
	for i, m := range p.Members {
		kp, err := call(ctx, s, m, "CreateKeyPackage", &pb.CreateKeyPackageRequest{
			CipherSuite: s.suite,
			Identity:    []byte(m),
		}, pb.MLSClientClient.CreateKeyPackage)
		if err != nil {
			return err
		}
		txIDs[i] = kp.GetTransactionId()
		adds[i] = &pb.ProposalDescription{ProposalType: []byte("add"), KeyPackage: kp.GetKeyPackage()}
	}
	commit, err := call(ctx, s, actor, "Commit", &pb.CommitRequest{
		StateId: s.stateID[actor],
		ByValue: adds,
	}, pb.MLSClientClient.Commit)
	if err != nil {
		return err
	}
	pending, err := call(ctx, s, actor, "HandlePendingCommit", &pb.HandlePendingCommitRequest{
		StateId: s.stateID[actor],
	}, pb.MLSClientClient.HandlePendingCommit)
	if err != nil {
		return err
	}
	s.stateID[actor] = pending.GetStateId()
	for i, m := range p.Members {
		join, err := call(ctx, s, m, "JoinGroup", &pb.JoinGroupRequest{
			TransactionId:    txIDs[i],
			Welcome:          commit.GetWelcome(),
			EncryptHandshake: s.EncryptHandshake,
			Identity:         []byte(m),
		}, pb.MLSClientClient.JoinGroup)
		if err != nil {
			return err
		}
		if !bytes.Equal(join.GetEpochAuthenticator(), pending.GetEpochAuthenticator()) {
			return mismatch("joiner", m)
		}
		s.stateID[m] = join.GetStateId()
	}
	return nil
}

// externalJoin: the actor exports GroupInfo (and the tree if externalTree),
// the joiner commits externally, and the actor plus "members" process it.
func (s *Session) externalJoin(ctx context.Context, index int, actor string, p *ExternalJoinParams) error {
	gi, err := call(ctx, s, actor, "GroupInfo", &pb.GroupInfoRequest{
		StateId:      s.stateID[actor],
		ExternalTree: p.ExternalTree,
	}, pb.MLSClientClient.GroupInfo)
	if err != nil {
		return err
	}
	s.store(index, keyGroupInfo, gi.GetGroupInfo())
	s.store(index, keyRatchetTree, gi.GetRatchetTree())

	psks := make([]*pb.PreSharedKey, len(p.PSKs))
	for i, ix := range p.PSKs {
		id, err := s.get(ix, keyPSKID)
		if err != nil {
			return err
		}
		secret, err := s.get(ix, keyPSKSecret)
		if err != nil {
			return err
		}
		psks[i] = &pb.PreSharedKey{PskId: id, PskSecret: secret}
	}
	ej, err := call(ctx, s, p.Joiner, "ExternalJoin", &pb.ExternalJoinRequest{
		GroupInfo:        gi.GetGroupInfo(),
		RatchetTree:      gi.GetRatchetTree(),
		EncryptHandshake: s.EncryptHandshake,
		Identity:         []byte(p.Joiner),
		RemovePrior:      p.RemovePrior,
		Psks:             psks,
	}, pb.MLSClientClient.ExternalJoin)
	if err != nil {
		return err
	}
	s.stateID[p.Joiner] = ej.GetStateId()
	s.store(index, keyCommit, ej.GetCommit())
	s.store(index, keyEpochAuthenticator, ej.GetEpochAuthenticator())

	for _, m := range append(slices.Clone(p.Members), actor) {
		hc, err := call(ctx, s, m, "HandleCommit", &pb.HandleCommitRequest{
			StateId: s.stateID[m],
			Commit:  ej.GetCommit(),
		}, pb.MLSClientClient.HandleCommit)
		if err != nil {
			return err
		}
		if !bytes.Equal(hc.GetEpochAuthenticator(), ej.GetEpochAuthenticator()) {
			return mismatch("member", m)
		}
		s.stateID[m] = hc.GetStateId()
	}
	return nil
}

// fullCommit: Commit + HandlePendingCommit at the actor, HandleCommit (with
// the by-reference proposals) at each of "members", JoinGroup at each of
// "joiners"; all must report the committer's epoch authenticator.
func (s *Session) fullCommit(ctx context.Context, index int, actor string, p *FullCommitParams) error {
	byRef, err := s.getAll(keyProposal, p.ByReference)
	if err != nil {
		return err
	}
	byVal, err := s.proposalDescriptions(ctx, p.ByValue)
	if err != nil {
		return err
	}
	commit, err := call(ctx, s, actor, "Commit", &pb.CommitRequest{
		StateId:      s.stateID[actor],
		ByReference:  byRef,
		ByValue:      byVal,
		ForcePath:    p.ForcePath,
		ExternalTree: p.ExternalTree,
	}, pb.MLSClientClient.Commit)
	if err != nil {
		return err
	}
	s.store(index, keyWelcome, commit.GetWelcome())
	s.store(index, keyCommit, commit.GetCommit())
	if p.ExternalTree {
		s.store(index, keyRatchetTree, commit.GetRatchetTree())
	}

	pending, err := call(ctx, s, actor, "HandlePendingCommit", &pb.HandlePendingCommitRequest{
		StateId: s.stateID[actor],
	}, pb.MLSClientClient.HandlePendingCommit)
	if err != nil {
		return err
	}
	s.stateID[actor] = pending.GetStateId()
	epochAuth := pending.GetEpochAuthenticator()
	s.store(index, keyEpochAuthenticator, epochAuth)

	for _, m := range p.Members {
		hc, err := call(ctx, s, m, "HandleCommit", &pb.HandleCommitRequest{
			StateId:  s.stateID[m],
			Proposal: byRef,
			Commit:   commit.GetCommit(),
		}, pb.MLSClientClient.HandleCommit)
		if err != nil {
			return err
		}
		if !bytes.Equal(hc.GetEpochAuthenticator(), epochAuth) {
			return mismatch("member", m)
		}
		s.stateID[m] = hc.GetStateId()
	}

	for _, j := range p.Joiners {
		txID, ok := s.transactionID[j]
		if !ok {
			return fmt.Errorf("malformed step: no transaction for %s", j)
		}
		req := &pb.JoinGroupRequest{
			TransactionId:    txID,
			Welcome:          commit.GetWelcome(),
			EncryptHandshake: s.EncryptHandshake,
			Identity:         []byte(j),
		}
		if p.ExternalTree {
			req.RatchetTree = commit.GetRatchetTree()
		}
		join, err := call(ctx, s, j, "JoinGroup", req, pb.MLSClientClient.JoinGroup)
		if err != nil {
			return err
		}
		if !bytes.Equal(join.GetEpochAuthenticator(), epochAuth) {
			return mismatch("joiner", j)
		}
		s.stateID[j] = join.GetStateId()
	}
	return nil
}

// reinit: ReInitProposal at the proposer (or an earlier external proposal),
// ReInitCommit + HandlePendingReInitCommit at the committer,
// HandleReInitCommit at everyone else, ReInitWelcome at the welcomer with the
// KeyPackages of everyone else, HandleReInitWelcome at everyone else.
func (s *Session) reinit(ctx context.Context, p *ReInitParams) error {
	notCommitter := map[string]bool{p.Welcomer: true}
	notWelcomer := map[string]bool{p.Committer: true}
	for _, m := range p.Members {
		notCommitter[m] = true
		notWelcomer[m] = true
	}
	if p.Proposer != "" {
		notCommitter[p.Proposer] = true
		notWelcomer[p.Proposer] = true
	}
	delete(notCommitter, p.Committer)
	delete(notWelcomer, p.Welcomer)

	newGroupID, err := s.newGroupID(p.ChangeGroupID)
	if err != nil {
		return err
	}
	if p.ChangeCipherSuite {
		if err := s.changeCipherSuite(ctx); err != nil {
			return err
		}
	}

	var proposal []byte
	if p.Proposer != "" {
		resp, err := call(ctx, s, p.Proposer, "ReInitProposal", &pb.ReInitProposalRequest{
			StateId:     s.stateID[p.Proposer],
			CipherSuite: s.suite,
			GroupId:     newGroupID,
			Extensions:  toProtoExtensions(p.Extensions),
		}, pb.MLSClientClient.ReInitProposal)
		if err != nil {
			return err
		}
		proposal = resp.GetProposal()
	} else if proposal, err = s.get(p.ExternalReinitProposal, keyProposal); err != nil {
		return err
	}

	commit, err := call(ctx, s, p.Committer, "ReInitCommit", &pb.CommitRequest{
		StateId:     s.stateID[p.Committer],
		ByReference: [][]byte{proposal},
	}, pb.MLSClientClient.ReInitCommit)
	if err != nil {
		return err
	}
	pending, err := call(ctx, s, p.Committer, "HandlePendingReInitCommit", &pb.HandlePendingCommitRequest{
		StateId: s.stateID[p.Committer],
	}, pb.MLSClientClient.HandlePendingReInitCommit)
	if err != nil {
		return err
	}
	reinitIDs := map[string]uint32{p.Committer: pending.GetReinitId()}
	keyPackages := map[string][]byte{p.Committer: pending.GetKeyPackage()}
	epochAuth := pending.GetEpochAuthenticator()

	for _, m := range sortedKeys(notCommitter) {
		resp, err := call(ctx, s, m, "HandleReInitCommit", &pb.HandleCommitRequest{
			StateId:  s.stateID[m],
			Proposal: [][]byte{proposal},
			Commit:   commit.GetCommit(),
		}, pb.MLSClientClient.HandleReInitCommit)
		if err != nil {
			return err
		}
		if !bytes.Equal(resp.GetEpochAuthenticator(), epochAuth) {
			return mismatch("member", m)
		}
		reinitIDs[m] = resp.GetReinitId()
		keyPackages[m] = resp.GetKeyPackage()
	}

	others := sortedKeys(notWelcomer)
	kpList := make([][]byte, 0, len(others))
	for _, m := range others {
		kpList = append(kpList, keyPackages[m])
	}
	welcome, err := call(ctx, s, p.Welcomer, "ReInitWelcome", &pb.ReInitWelcomeRequest{
		ReinitId:     reinitIDs[p.Welcomer],
		KeyPackage:   kpList,
		ForcePath:    p.ForcePath,
		ExternalTree: p.ExternalTree,
	}, pb.MLSClientClient.ReInitWelcome)
	if err != nil {
		return err
	}
	s.stateID[p.Welcomer] = welcome.GetStateId()
	var tree []byte
	if p.ExternalTree {
		tree = welcome.GetRatchetTree()
	}

	for _, m := range others {
		resp, err := call(ctx, s, m, "HandleReInitWelcome", &pb.HandleReInitWelcomeRequest{
			ReinitId:    reinitIDs[m],
			Welcome:     welcome.GetWelcome(),
			RatchetTree: tree,
		}, pb.MLSClientClient.HandleReInitWelcome)
		if err != nil {
			return err
		}
		if !bytes.Equal(resp.GetEpochAuthenticator(), welcome.GetEpochAuthenticator()) {
			return fmt.Errorf("member [%s] failed to agree on reinit epoch authenticator", m)
		}
		s.stateID[m] = resp.GetStateId()
	}
	return nil
}

// branch: each member makes a KeyPackage, the actor creates the branch group
// (new random group ID), each member joins it with HandleBranch. Afterwards
// the remembered state IDs are those of the new group.
func (s *Session) branch(ctx context.Context, actor string, p *BranchParams) error {
	txIDs := map[string]uint32{}
	var kps [][]byte
	for _, m := range p.Members {
		kp, err := call(ctx, s, m, "CreateKeyPackage", &pb.CreateKeyPackageRequest{
			CipherSuite: s.suite,
			Identity:    []byte(m),
		}, pb.MLSClientClient.CreateKeyPackage)
		if err != nil {
			return err
		}
		txIDs[m] = kp.GetTransactionId()
		kps = append(kps, kp.GetKeyPackage())
	}
	groupID, err := s.newUUID()
	if err != nil {
		return err
	}
	br, err := call(ctx, s, actor, "CreateBranch", &pb.CreateBranchRequest{
		StateId:      s.stateID[actor],
		GroupId:      groupID,
		Extensions:   toProtoExtensions(p.Extensions),
		KeyPackages:  kps,
		ForcePath:    p.ForcePath,
		ExternalTree: p.ExternalTree,
	}, pb.MLSClientClient.CreateBranch)
	if err != nil {
		return err
	}
	var tree []byte
	if p.ExternalTree {
		tree = br.GetRatchetTree()
	}
	s.stateID[actor] = br.GetStateId()

	for _, m := range p.Members {
		hb, err := call(ctx, s, m, "HandleBranch", &pb.HandleBranchRequest{
			StateId:       s.stateID[m],
			TransactionId: txIDs[m],
			Welcome:       br.GetWelcome(),
			RatchetTree:   tree,
		}, pb.MLSClientClient.HandleBranch)
		if err != nil {
			return err
		}
		if !bytes.Equal(hb.GetEpochAuthenticator(), br.GetEpochAuthenticator()) {
			return mismatch("member", m)
		}
		s.stateID[m] = hb.GetStateId()
	}
	return nil
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}
