package server

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mahfooz/internal/mlsinterop/pb"
	"mahfooz/mls"
)

// --- RPCs: proposals ---

// AddProposal proposes adding the owner of a KeyPackage.
func (s *Server) AddProposal(_ context.Context, req *pb.AddProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	kp, err := parseKeyPackage(req.GetKeyPackage())
	if err != nil {
		return nil, err
	}
	msg, ref, err := st.group.ProposeAdd(kp, nil)
	return st.propose(msg, ref, err)
}

// UpdateProposal proposes new leaf keys for this member.
func (s *Server) UpdateProposal(_ context.Context, req *pb.UpdateProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	msg, ref, err := st.group.ProposeUpdate(nil)
	return st.propose(msg, ref, err)
}

// RemoveProposal proposes removing the member with the given identity.
func (s *Server) RemoveProposal(_ context.Context, req *pb.RemoveProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	leaf, err := leafOf(st.group.Members(), req.GetRemovedId())
	if err != nil {
		return nil, err
	}
	msg, ref, err := st.group.ProposeRemove(leaf, nil)
	return st.propose(msg, ref, err)
}

// ExternalPSKProposal proposes injecting an external PSK.
func (s *Server) ExternalPSKProposal(_ context.Context, req *pb.ExternalPSKProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	msg, ref, err := st.group.ProposePSK(mls.PreSharedKeyID{PSKType: mls.PSKTypeExternal, PSKID: req.GetPskId()}, nil)
	return st.propose(msg, ref, err)
}

// ResumptionPSKProposal proposes injecting the resumption PSK of an earlier epoch.
func (s *Server) ResumptionPSKProposal(_ context.Context, req *pb.ResumptionPSKProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	msg, ref, err := st.group.ProposePSK(mls.PreSharedKeyID{
		PSKType:    mls.PSKTypeResumption,
		Usage:      mls.ResumptionPSKUsageApplication,
		PSKGroupID: st.group.GroupID(),
		PSKEpoch:   req.GetEpochId(),
	}, nil)
	return st.propose(msg, ref, err)
}

// GroupContextExtensionsProposal proposes new group context extensions.
func (s *Server) GroupContextExtensionsProposal(_ context.Context, req *pb.GroupContextExtensionsProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	exts, err := extensions(req.GetExtensions())
	if err != nil {
		return nil, err
	}
	msg, ref, err := st.group.ProposeGroupContextExtensions(exts, nil)
	return st.propose(msg, ref, err)
}

// ReInitProposal proposes reinitializing the group.
func (s *Server) ReInitProposal(_ context.Context, req *pb.ReInitProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	r, err := reInit(req.GetGroupId(), req.GetCipherSuite(), req.GetExtensions())
	if err != nil {
		return nil, err
	}
	msg, ref, err := st.group.ProposeReInit(*r, nil)
	return st.propose(msg, ref, err)
}

func reInit(groupID []byte, suite uint32, exts []*pb.Extension) (*mls.ReInit, error) {
	cs, err := cipherSuite(suite)
	if err != nil {
		return nil, err
	}
	e, err := extensions(exts)
	if err != nil {
		return nil, err
	}
	return &mls.ReInit{GroupID: groupID, Version: mls.ProtocolVersionMLS10, CipherSuite: cs, Extensions: e}, nil
}

// proposalScope is what turning a ProposalDescription into a proposal needs to
// know of the group.
type proposalScope struct {
	cs      mls.CipherSuite
	groupID mls.GroupID
	members func() ([]mls.Member, error)
}

// proposal builds the proposal a ProposalDescription describes.
func (s *Server) proposal(d *pb.ProposalDescription, scope proposalScope) (*mls.Proposal, error) {
	psk := func(id mls.PreSharedKeyID) (*mls.Proposal, error) {
		nonce, err := s.nonce(scope.cs)
		if err != nil {
			return nil, err
		}
		id.PSKNonce = nonce
		return &mls.Proposal{Type: mls.ProposalTypePSK, PreSharedKey: &mls.PreSharedKey{PSK: id}}, nil
	}
	switch string(d.GetProposalType()) {
	case "add":
		kp, err := parseKeyPackage(d.GetKeyPackage())
		if err != nil {
			return nil, err
		}
		return &mls.Proposal{Type: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *kp}}, nil
	case "remove":
		members, err := scope.members()
		if err != nil {
			return nil, err
		}
		leaf, err := leafOf(members, d.GetRemovedId())
		if err != nil {
			return nil, err
		}
		return &mls.Proposal{Type: mls.ProposalTypeRemove, Remove: &mls.Remove{Removed: leaf}}, nil
	case "externalPSK":
		return psk(mls.PreSharedKeyID{PSKType: mls.PSKTypeExternal, PSKID: d.GetPskId()})
	case "resumptionPSK":
		return psk(mls.PreSharedKeyID{PSKType: mls.PSKTypeResumption, Usage: mls.ResumptionPSKUsageApplication,
			PSKGroupID: scope.groupID, PSKEpoch: d.GetEpochId()})
	case "groupContextExtensions":
		exts, err := extensions(d.GetExtensions())
		if err != nil {
			return nil, err
		}
		return &mls.Proposal{Type: mls.ProposalTypeGroupContextExtensions,
			GroupContextExtensions: &mls.GroupContextExtensions{Extensions: exts}}, nil
	case "reinit":
		r, err := reInit(d.GetGroupId(), d.GetCipherSuite(), d.GetExtensions())
		if err != nil {
			return nil, err
		}
		return &mls.Proposal{Type: mls.ProposalTypeReInit, ReInit: r}, nil
	}
	return nil, invalid("unknown proposal type %q", d.GetProposalType())
}

// --- RPCs: commits ---

// Commit commits the given proposals by reference (which this member caches
// first if it has not yet), and no other cached one, and the described ones by
// value. The group stays in its epoch until HandlePendingCommit.
func (s *Server) Commit(_ context.Context, req *pb.CommitRequest) (*pb.CommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commit(req)
}

func (s *Server) commit(req *pb.CommitRequest) (*pb.CommitResponse, error) {
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	if st.group.HasPendingCommit() {
		return nil, status.Error(codes.FailedPrecondition, "a commit is already pending")
	}
	refs, err := st.receiveProposals(req.GetByReference())
	if err != nil {
		return nil, err
	}
	scope := proposalScope{cs: st.group.CipherSuite(), groupID: st.group.GroupID(),
		members: func() ([]mls.Member, error) { return st.group.Members(), nil }}
	opts := mls.CommitOptions{ProposalRefs: refs, ForcePath: req.GetForcePath(), RatchetTree: new(!req.GetExternalTree())}
	for _, d := range req.GetByValue() {
		p, err := s.proposal(d, scope)
		if err != nil {
			return nil, err
		}
		opts.Proposals = append(opts.Proposals, p)
	}
	res, err := st.group.Commit(opts)
	if err != nil {
		return nil, mlsError(err)
	}
	resp := &pb.CommitResponse{Commit: res.Commit.Bytes()}
	if res.Welcome != nil {
		resp.Welcome = res.Welcome.Bytes()
	}
	if req.GetExternalTree() {
		resp.RatchetTree, _ = st.group.PendingRatchetTree()
	}
	return resp, nil
}

// HandleCommit applies another member's commit, caching the proposals it
// refers to first.
func (s *Server) HandleCommit(_ context.Context, req *pb.HandleCommitRequest) (*pb.HandleCommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, st, err := s.handleCommit(req)
	if err != nil {
		return nil, err
	}
	return &pb.HandleCommitResponse{StateId: id, EpochAuthenticator: st.group.EpochAuthenticator()}, nil
}

func (s *Server) handleCommit(req *pb.HandleCommitRequest) (uint32, *state, error) {
	st, err := s.state(req.GetStateId())
	if err != nil {
		return 0, nil, err
	}
	if _, err := st.receiveProposals(req.GetProposal()); err != nil {
		return 0, nil, err
	}
	msg, err := parseMessage(req.GetCommit(), 0)
	if err != nil {
		return 0, nil, err
	}
	if ct := contentType(msg); ct != mls.ContentTypeCommit {
		return 0, nil, invalid("not a commit (content type %d)", ct)
	}
	old := s.remember(st)
	r, err := st.group.Process(msg)
	if err != nil {
		return 0, nil, mlsError(fmt.Errorf("commit: %w", err))
	}
	if r.ContentType != mls.ContentTypeCommit {
		return 0, nil, invalid("not a commit (content type %d)", r.ContentType)
	}
	st.keep(old)
	return s.advance(req.GetStateId(), st), st, nil
}

// HandlePendingCommit moves the group into the epoch of its own pending commit.
func (s *Server) HandlePendingCommit(_ context.Context, req *pb.HandlePendingCommitRequest) (*pb.HandleCommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, st, err := s.handlePendingCommit(req.GetStateId())
	if err != nil {
		return nil, err
	}
	return &pb.HandleCommitResponse{StateId: id, EpochAuthenticator: st.group.EpochAuthenticator()}, nil
}

func (s *Server) handlePendingCommit(id uint32) (uint32, *state, error) {
	st, err := s.state(id)
	if err != nil {
		return 0, nil, err
	}
	if !st.group.HasPendingCommit() {
		return 0, nil, status.Error(codes.FailedPrecondition, "no pending commit")
	}
	old := s.remember(st)
	if _, err := st.group.MergePendingCommit(); err != nil {
		return 0, nil, mlsError(err)
	}
	st.keep(old)
	return s.advance(id, st), st, nil
}
