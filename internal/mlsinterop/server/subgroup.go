package server

import (
	"bytes"
	"context"

	"mahfooz/internal/mlsinterop/pb"
	"mahfooz/mls"
)

// --- RPCs: reinitialization (RFC 9420 §11.2) ---

// ReInitCommit commits a ReInit proposal.
func (s *Server) ReInitCommit(_ context.Context, req *pb.CommitRequest) (*pb.CommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commit(req)
}

// HandlePendingReInitCommit applies this member's own ReInit commit and offers
// a KeyPackage for the successor group.
func (s *Server) HandlePendingReInitCommit(_ context.Context, req *pb.HandlePendingCommitRequest) (*pb.HandleReInitCommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, st, err := s.handlePendingCommit(req.GetStateId())
	if err != nil {
		return nil, err
	}
	return s.startReInit(st)
}

// HandleReInitCommit applies another member's ReInit commit and offers a
// KeyPackage for the successor group.
func (s *Server) HandleReInitCommit(_ context.Context, req *pb.HandleCommitRequest) (*pb.HandleReInitCommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, st, err := s.handleCommit(req)
	if err != nil {
		return nil, err
	}
	return s.startReInit(st)
}

func (s *Server) startReInit(st *state) (*pb.HandleReInitCommitResponse, error) {
	r := st.group.PendingReInit()
	if r == nil {
		return nil, invalid("the commit did not reinitialize the group")
	}
	kp, priv, err := s.newKeyPackage(r.CipherSuite, st.identity)
	if err != nil {
		return nil, err
	}
	id := s.newID()
	s.reinits[id] = &reinit{old: st.group, identity: st.identity, encrypt: st.encrypt, psks: st.psks.clone(), kp: kp, priv: priv}
	return &pb.HandleReInitCommitResponse{
		ReinitId:           id,
		KeyPackage:         mls.NewKeyPackageMessage(kp).Bytes(),
		EpochAuthenticator: st.group.EpochAuthenticator(),
	}, nil
}

// ReInitWelcome creates the successor group, adding the other members.
func (s *Server) ReInitWelcome(_ context.Context, req *pb.ReInitWelcomeRequest) (*pb.CreateSubgroupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ri, ok := s.reinits[req.GetReinitId()]
	if !ok {
		return nil, notFound("reinit", req.GetReinitId())
	}
	kps, err := parseKeyPackages(req.GetKeyPackage())
	if err != nil {
		return nil, err
	}
	g, res, err := ri.old.ReInitGroup(mls.NewBasicCredential(ri.identity), ri.priv.SignatureKey, kps,
		mls.CommitOptions{ForcePath: req.GetForcePath(), RatchetTree: new(!req.GetExternalTree())}, s.config(ri.encrypt, ri.psks))
	if err != nil {
		return nil, mlsError(err)
	}
	delete(s.reinits, req.GetReinitId())
	st := &state{group: g, identity: ri.identity, sigKey: ri.priv.SignatureKey, encrypt: ri.encrypt, psks: ri.psks}
	return s.subgroupResponse(st, res, req.GetExternalTree()), nil
}

func (s *Server) subgroupResponse(st *state, res *mls.CommitResult, externalTree bool) *pb.CreateSubgroupResponse {
	resp := &pb.CreateSubgroupResponse{StateId: s.addState(st), EpochAuthenticator: st.group.EpochAuthenticator()}
	if res.Welcome != nil {
		resp.Welcome = res.Welcome.Bytes()
	}
	if externalTree {
		resp.RatchetTree = st.group.RatchetTree()
	}
	return resp
}

// HandleReInitWelcome joins the successor group.
func (s *Server) HandleReInitWelcome(_ context.Context, req *pb.HandleReInitWelcomeRequest) (*pb.JoinGroupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ri, ok := s.reinits[req.GetReinitId()]
	if !ok {
		return nil, notFound("reinit", req.GetReinitId())
	}
	w, err := parseWelcome(req.GetWelcome())
	if err != nil {
		return nil, err
	}
	g, err := mls.JoinGroup(w, ri.kp, ri.priv, mls.JoinOptions{
		RatchetTree:   optionalTree(req.GetRatchetTree()),
		ResumptionPSK: resumptionFrom(ri.old),
		Resumption: &mls.ResumptionExpectation{
			Usage:        mls.ResumptionPSKUsageReinit,
			PriorGroupID: ri.old.GroupID(),
			PriorEpoch:   ri.old.Epoch(),
			ReInit:       ri.old.PendingReInit(),
		},
	}, s.config(ri.encrypt, ri.psks))
	if err != nil {
		return nil, mlsError(err)
	}
	delete(s.reinits, req.GetReinitId())
	id := s.addState(&state{group: g, identity: ri.identity, sigKey: ri.priv.SignatureKey, encrypt: ri.encrypt, psks: ri.psks})
	return &pb.JoinGroupResponse{StateId: id, EpochAuthenticator: g.EpochAuthenticator()}, nil
}

// --- RPCs: subgroup branching (RFC 9420 §11.3) ---

// CreateBranch starts a subgroup of the group with the given KeyPackages.
func (s *Server) CreateBranch(_ context.Context, req *pb.CreateBranchRequest) (*pb.CreateSubgroupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	kps, err := parseKeyPackages(req.GetKeyPackages())
	if err != nil {
		return nil, err
	}
	exts, err := extensions(req.GetExtensions())
	if err != nil {
		return nil, err
	}
	psks := st.psks.clone()
	g, res, err := st.group.Branch(req.GetGroupId(), kps, mls.CreateOptions{Extensions: exts},
		mls.CommitOptions{ForcePath: req.GetForcePath(), RatchetTree: new(!req.GetExternalTree())}, s.config(st.encrypt, psks))
	if err != nil {
		return nil, mlsError(err)
	}
	sub := &state{group: g, identity: st.identity, sigKey: st.sigKey, encrypt: st.encrypt, psks: psks}
	return s.subgroupResponse(sub, res, req.GetExternalTree()), nil
}

// HandleBranch joins a subgroup of a group this state is in.
func (s *Server) HandleBranch(_ context.Context, req *pb.HandleBranchRequest) (*pb.HandleBranchResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	tx, ok := s.txs[req.GetTransactionId()]
	if !ok {
		return nil, notFound("transaction", req.GetTransactionId())
	}
	w, err := parseWelcome(req.GetWelcome())
	if err != nil {
		return nil, err
	}
	g, err := mls.JoinGroup(w, tx.kp, tx.priv, mls.JoinOptions{
		RatchetTree:   optionalTree(req.GetRatchetTree()),
		ResumptionPSK: resumptionFrom(st.group),
		Resumption: &mls.ResumptionExpectation{
			Usage:        mls.ResumptionPSKUsageBranch,
			PriorGroupID: st.group.GroupID(),
			PriorEpoch:   st.group.Epoch(),
			CipherSuite:  st.group.CipherSuite(),
		},
	}, s.config(st.encrypt, tx.psks))
	if err != nil {
		return nil, mlsError(err)
	}
	delete(s.txs, req.GetTransactionId())
	id := s.addState(&state{group: g, identity: tx.identity, sigKey: tx.priv.SignatureKey, encrypt: st.encrypt, psks: tx.psks})
	return &pb.HandleBranchResponse{StateId: id, EpochAuthenticator: g.EpochAuthenticator()}, nil
}

// --- RPCs: external proposals (RFC 9420 §12.1.8) ---

// NewMemberAddProposal makes a KeyPackage and the new_member_proposal Add by
// which its owner asks to join the group gi describes.
func (s *Server) NewMemberAddProposal(_ context.Context, req *pb.NewMemberAddProposalRequest) (*pb.NewMemberAddProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gi, err := parseGroupInfo(req.GetGroupInfo())
	if err != nil {
		return nil, err
	}
	kp, priv, err := s.newKeyPackage(gi.GroupContext.CipherSuite, req.GetIdentity())
	if err != nil {
		return nil, err
	}
	msg, err := mls.NewMemberAddProposal(gi, kp, priv.SignatureKey, s.rand)
	if err != nil {
		return nil, mlsError(err)
	}
	id := s.newID()
	s.txs[id] = &transaction{kp: kp, priv: priv, identity: req.GetIdentity(), psks: pskStore{}}
	return &pb.NewMemberAddProposalResponse{
		TransactionId:  id,
		Proposal:       msg.Bytes(),
		InitPriv:       priv.InitKey.Bytes(),
		EncryptionPriv: priv.EncryptionKey.Bytes(),
		SignaturePriv:  priv.SignatureKey.Bytes(),
	}, nil
}

// CreateExternalSigner makes an external sender's key and returns its
// ExternalSender for a member to add to a group.
func (s *Server) CreateExternalSigner(_ context.Context, req *pb.CreateExternalSignerRequest) (*pb.CreateExternalSignerResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, err := cipherSuite(req.GetCipherSuite())
	if err != nil {
		return nil, err
	}
	sigKey, err := mls.GenerateSignatureKey(cs, s.rand)
	if err != nil {
		return nil, mlsError(err)
	}
	id := s.newID()
	s.signers[id] = &signer{cs: cs, sigKey: sigKey}
	sender := mls.ExternalSender{SignatureKey: sigKey.Public(), Credential: mls.NewBasicCredential(req.GetIdentity())}
	return &pb.CreateExternalSignerResponse{SignerId: id, ExternalSender: mls.MarshalExternalSender(sender)}, nil
}

// AddExternalSigner proposes adding an external sender to the group's
// external_senders extension.
func (s *Server) AddExternalSigner(_ context.Context, req *pb.AddExternalSignerRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	sender, err := mls.UnmarshalExternalSender(req.GetExternalSender())
	if err != nil {
		return nil, invalid("%v", err)
	}
	exts := st.group.GroupContext().Extensions
	var senders []mls.ExternalSender
	if data, ok := exts.Find(mls.ExtensionTypeExternalSenders); ok {
		if senders, err = mls.UnmarshalExternalSenders(data); err != nil {
			return nil, mlsError(err)
		}
	}
	senders = append(senders, sender)
	exts = exts.With(mls.ExtensionTypeExternalSenders, mls.MarshalExternalSenders(senders))
	msg, ref, err := st.group.ProposeGroupContextExtensions(exts, nil)
	return st.propose(msg, ref, err)
}

// ExternalSignerProposal makes a proposal from an external sender, which finds
// its own index in the group's external_senders by its signature key.
func (s *Server) ExternalSignerProposal(_ context.Context, req *pb.ExternalSignerProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sg, ok := s.signers[req.GetSignerId()]
	if !ok {
		return nil, notFound("external signer", req.GetSignerId())
	}
	gi, err := parseGroupInfo(req.GetGroupInfo())
	if err != nil {
		return nil, err
	}
	gc := &gi.GroupContext
	if gc.CipherSuite != sg.cs {
		return nil, invalid("external signer is for %v, the group uses %v", sg.cs, gc.CipherSuite)
	}
	data, ok := gc.Extensions.Find(mls.ExtensionTypeExternalSenders)
	if !ok {
		return nil, invalid("the group has no external senders")
	}
	senders, err := mls.UnmarshalExternalSenders(data)
	if err != nil {
		return nil, mlsError(err)
	}
	index := -1
	for i, x := range senders {
		if bytes.Equal(x.SignatureKey, sg.sigKey.Public()) {
			index = i
			break
		}
	}
	if index < 0 {
		return nil, invalid("the signer is not among the group's external senders")
	}
	scope := proposalScope{cs: gc.CipherSuite, groupID: gc.GroupID,
		members: func() ([]mls.Member, error) { return treeMembers(gi, req.GetRatchetTree()) }}
	p, err := s.proposal(req.GetDescription(), scope)
	if err != nil {
		return nil, err
	}
	msg, err := mls.ExternalProposal(gc.CipherSuite, gc.GroupID, gc.Epoch, uint32(index), p, sg.sigKey, s.rand)
	if err != nil {
		return nil, mlsError(err)
	}
	return &pb.ProposalResponse{Proposal: msg.Bytes()}, nil
}
