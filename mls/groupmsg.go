package mls

import (
	"errors"
	"fmt"
)

// Received is what Process learned from one incoming message.
type Received struct {
	// ContentType says which of the fields below is set.
	ContentType ContentType
	// Sender is who sent the message; for a member, SenderLeaf is its leaf and
	// SenderCredential its credential at the time.
	Sender           Sender
	SenderCredential Credential
	// AuthenticatedData is the message's unencrypted, authenticated data.
	AuthenticatedData []byte

	// ApplicationData is set for application messages.
	ApplicationData []byte
	// Proposal and ProposalRef are set for proposals, which are cached until a commit.
	Proposal    *Proposal
	ProposalRef ProposalRef
	// Commit is set for commits, which moved the group to a new epoch.
	Commit *CommitEffect
}

// CommitEffect describes a commit's effect on the roster, so the application can
// show every change to its user.
type CommitEffect struct {
	Epoch   uint64 // the new epoch
	Added   []Member
	Removed []Member // as they were before removal
	Updated []Member // leaves that replaced their own keys (by Update proposal or path)
	// ExternalJoin is set when the commit was an external commit that added its sender.
	ExternalJoin bool
	// ReInit is set when the commit ends the group in favour of a new one.
	ReInit *ReInit
	// SelfRemoved is set when this member was removed by the commit.
	SelfRemoved bool
	// ExtensionsChanged is set when a GroupContextExtensions proposal was applied.
	ExtensionsChanged bool
}

// Protect encrypts application data for the group as a PrivateMessage (RFC 9420 §6.3).
func (g *Group) Protect(data, authenticatedData []byte) (*MLSMessage, error) {
	if err := g.checkActive(); err != nil {
		return nil, err
	}
	if g.pending != nil {
		// RFC 9420 §12.4: a member with a commit in flight sends no application data in
		// the old epoch, since it cannot know which epoch the group will end in.
		return nil, ErrPendingCommit
	}
	if len(g.proposals) > 0 {
		// RFC 9420 §12.1: application messages are not sent while proposals await a commit.
		return nil, errors.New("mls: proposals are pending; commit them before sending application data")
	}
	content := &FramedContent{
		GroupID:           g.ctx.GroupID,
		Epoch:             g.ctx.Epoch,
		Sender:            Sender{Type: SenderTypeMember, LeafIndex: g.myLeaf},
		AuthenticatedData: authenticatedData,
		ContentType:       ContentTypeApplication,
		ApplicationData:   data,
	}
	ac, err := g.signContent(WireFormatPrivateMessage, content)
	if err != nil {
		return nil, err
	}
	return g.encrypt(ac)
}

// signContent signs content as this member in the current epoch.
func (g *Group) signContent(wf WireFormat, content *FramedContent) (*AuthenticatedContent, error) {
	return signFramedContent(g.ctx.CipherSuite, g.sigKey, wf, content, g.ctx.Bytes(), g.cfg.rand())
}

// encrypt wraps signed content in a PrivateMessage.
func (g *Group) encrypt(ac *AuthenticatedContent) (*MLSMessage, error) {
	pm, err := encryptPrivateMessage(g.ctx.CipherSuite, g.secrets, g.epoch.senderDataSecret, ac, g.cfg.paddingBlock(), g.cfg.rand())
	if err != nil {
		return nil, err
	}
	return &MLSMessage{Version: ProtocolVersionMLS10, WireFormat: WireFormatPrivateMessage, PrivateMessage: pm}, nil
}

// frame sends signed handshake content in the group's handshake wire format.
func (g *Group) frame(ac *AuthenticatedContent) (*MLSMessage, error) {
	if ac.WireFormat == WireFormatPrivateMessage {
		return g.encrypt(ac)
	}
	pub := &PublicMessage{Content: ac.Content, Auth: ac.Auth}
	if ac.Content.Sender.Type == SenderTypeMember {
		pub.MembershipTag = membershipTag(g.ctx.CipherSuite, g.epoch.membershipKey, ac, g.ctx.Bytes())
	}
	return &MLSMessage{Version: ProtocolVersionMLS10, WireFormat: WireFormatPublicMessage, PublicMessage: pub}, nil
}

// propose signs and caches a proposal of this member, returning the message to send.
func (g *Group) propose(p *Proposal, authenticatedData []byte) (*MLSMessage, ProposalRef, error) {
	if err := g.checkActive(); err != nil {
		return nil, nil, err
	}
	if g.pending != nil {
		return nil, nil, ErrPendingCommit
	}
	sender := Sender{Type: SenderTypeMember, LeafIndex: g.myLeaf}
	if err := g.validateProposal(p, sender, false); err != nil {
		return nil, nil, err
	}
	content := &FramedContent{
		GroupID:           g.ctx.GroupID,
		Epoch:             g.ctx.Epoch,
		Sender:            sender,
		AuthenticatedData: authenticatedData,
		ContentType:       ContentTypeProposal,
		Proposal:          p,
	}
	ac, err := g.signContent(g.handshakeWireFormat(), content)
	if err != nil {
		return nil, nil, err
	}
	ref := makeProposalRef(g.ctx.CipherSuite, ac)
	msg, err := g.frame(ac)
	if err != nil {
		return nil, nil, err
	}
	g.proposals = append(g.proposals, cachedProposal{ref: ref, proposal: p, sender: sender})
	return msg, ref, nil
}

// ProposeAdd proposes adding the owner of kp (RFC 9420 §12.1.1).
func (g *Group) ProposeAdd(kp *KeyPackage, authenticatedData []byte) (*MLSMessage, ProposalRef, error) {
	return g.propose(&Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *kp}}, authenticatedData)
}

// ProposeRemove proposes removing the member at leaf (RFC 9420 §12.1.3).
func (g *Group) ProposeRemove(leaf LeafIndex, authenticatedData []byte) (*MLSMessage, ProposalRef, error) {
	return g.propose(&Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: leaf}}, authenticatedData)
}

// ProposeUpdate proposes replacing this member's leaf keys (RFC 9420 §12.1.2). The
// new encryption key is kept until a commit applies the proposal.
func (g *Group) ProposeUpdate(authenticatedData []byte) (*MLSMessage, ProposalRef, error) {
	if err := g.checkActive(); err != nil {
		return nil, nil, err
	}
	cs := g.ctx.CipherSuite
	encKey, err := cs.GenerateHPKEKey(g.cfg.rand())
	if err != nil {
		return nil, nil, err
	}
	leaf := g.tree.leaf(g.myLeaf).clone()
	leaf.EncryptionKey = encKey.Public()
	leaf.Source = LeafNodeSourceUpdate
	leaf.Lifetime = Lifetime{}
	leaf.ParentHash = nil
	if err := leaf.sign(cs, g.sigKey, g.ctx.GroupID, g.myLeaf, g.cfg.rand()); err != nil {
		return nil, nil, err
	}
	msg, ref, err := g.propose(&Proposal{Type: ProposalTypeUpdate, Update: &Update{LeafNode: *leaf}}, authenticatedData)
	if err != nil {
		return nil, nil, err
	}
	g.keys.pendingLeafKeys[string(leaf.EncryptionKey)] = encKey
	return msg, ref, nil
}

// ProposePSK proposes injecting a pre-shared key (RFC 9420 §12.1.4). The nonce is drawn fresh.
func (g *Group) ProposePSK(id PreSharedKeyID, authenticatedData []byte) (*MLSMessage, ProposalRef, error) {
	if len(id.PSKNonce) == 0 {
		id.PSKNonce = make([]byte, g.ctx.CipherSuite.Nh())
		if _, err := g.cfg.rand().Read(id.PSKNonce); err != nil {
			return nil, nil, err
		}
	}
	return g.propose(&Proposal{Type: ProposalTypePSK, PreSharedKey: &PreSharedKey{PSK: id}}, authenticatedData)
}

// ProposeReInit proposes ending the group in favour of a new one (RFC 9420 §12.1.5).
func (g *Group) ProposeReInit(r ReInit, authenticatedData []byte) (*MLSMessage, ProposalRef, error) {
	return g.propose(&Proposal{Type: ProposalTypeReInit, ReInit: &r}, authenticatedData)
}

// ProposeGroupContextExtensions proposes new group extensions (RFC 9420 §12.1.7).
func (g *Group) ProposeGroupContextExtensions(exts Extensions, authenticatedData []byte) (*MLSMessage, ProposalRef, error) {
	return g.propose(&Proposal{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensions{Extensions: exts}}, authenticatedData)
}

// Process handles one incoming message of this group: it authenticates and decrypts
// it, and applies proposals (cached) and commits (new epoch). A message that fails
// any check changes nothing.
func (g *Group) Process(msg *MLSMessage) (*Received, error) {
	if !g.active {
		return nil, ErrInactive
	}
	ac, senderCred, err := g.unprotect(msg)
	if err != nil {
		return nil, err
	}
	r := &Received{
		ContentType:       ac.Content.ContentType,
		Sender:            ac.Content.Sender,
		SenderCredential:  senderCred,
		AuthenticatedData: ac.Content.AuthenticatedData,
	}
	switch ac.Content.ContentType {
	case ContentTypeApplication:
		r.ApplicationData = ac.Content.ApplicationData
		return r, nil
	case ContentTypeProposal:
		if ac.Content.Sender.Type == SenderTypeMember && ac.Content.Sender.LeafIndex == g.myLeaf {
			return nil, ErrOwnMessage
		}
		if err := g.validateProposal(ac.Content.Proposal, ac.Content.Sender, false); err != nil {
			return nil, err
		}
		ref := makeProposalRef(g.ctx.CipherSuite, ac)
		g.proposals = append(g.proposals, cachedProposal{ref: ref, proposal: ac.Content.Proposal, sender: ac.Content.Sender})
		r.Proposal, r.ProposalRef = ac.Content.Proposal, ref
		return r, nil
	case ContentTypeCommit:
		if ac.Content.Sender.Type == SenderTypeMember && ac.Content.Sender.LeafIndex == g.myLeaf {
			return nil, ErrOwnMessage
		}
		effect, err := g.processCommit(ac)
		if err != nil {
			return nil, err
		}
		r.Commit = effect
		return r, nil
	}
	return nil, decodeError("content type")
}

// unprotect checks a message's group, epoch and authenticity and returns its content
// with the sender's credential.
func (g *Group) unprotect(msg *MLSMessage) (*AuthenticatedContent, Credential, error) {
	if msg.Version != ProtocolVersionMLS10 {
		return nil, Credential{}, decodeError("protocol version")
	}
	cs := g.ctx.CipherSuite
	var ac *AuthenticatedContent
	switch msg.WireFormat {
	case WireFormatPrivateMessage:
		pm := msg.PrivateMessage
		if !equalBytes(pm.GroupID, g.ctx.GroupID) {
			return nil, Credential{}, ErrWrongGroup
		}
		if pm.Epoch != g.ctx.Epoch {
			if past := g.pastEpochAt(pm.Epoch); past != nil && pm.ContentType == ContentTypeApplication {
				return g.unprotectPast(past, pm)
			}
			return nil, Credential{}, fmt.Errorf("%w: got %d, group is at %d", ErrWrongEpoch, pm.Epoch, g.ctx.Epoch)
		}
		isMember := func(l LeafIndex) bool { return uint32(l) < g.tree.leafCount() && g.tree.leaf(l) != nil }
		// The signature is checked before the generation's key is spent (only
		// members send PrivateMessages, so the sender's key is in the tree).
		verify := func(ac *AuthenticatedContent) error {
			return verifyFramedContent(cs, g.tree.leaf(ac.Content.Sender.LeafIndex).SignatureKey, ac, g.ctx.Bytes())
		}
		var err error
		ac, err = decryptPrivateMessageVerified(cs, g.secrets, g.epoch.senderDataSecret, pm, isMember, verify)
		if err != nil {
			return nil, Credential{}, err
		}
		if ac.Content.Sender.LeafIndex == g.myLeaf && ac.Content.ContentType != ContentTypeApplication {
			return nil, Credential{}, ErrOwnMessage
		}
		return ac, g.tree.leaf(ac.Content.Sender.LeafIndex).Credential, nil
	case WireFormatPublicMessage:
		pub := msg.PublicMessage
		if !equalBytes(pub.Content.GroupID, g.ctx.GroupID) {
			return nil, Credential{}, ErrWrongGroup
		}
		if pub.Content.Epoch != g.ctx.Epoch {
			return nil, Credential{}, fmt.Errorf("%w: got %d, group is at %d", ErrWrongEpoch, pub.Content.Epoch, g.ctx.Epoch)
		}
		if pub.Content.ContentType == ContentTypeApplication {
			return nil, Credential{}, errors.New("mls: application data in a PublicMessage")
		}
		ac = &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: pub.Content, Auth: pub.Auth}
		if pub.Content.Sender.Type == SenderTypeMember {
			if err := verifyMembershipTag(cs, g.epoch.membershipKey, ac, g.ctx.Bytes(), pub.MembershipTag); err != nil {
				return nil, Credential{}, err
			}
		}
	default:
		return nil, Credential{}, fmt.Errorf("mls: wire format %d is not a group message", msg.WireFormat)
	}
	// Sender and signature (RFC 9420 §6.1).
	var pub SignaturePublicKey
	var cred Credential
	gc := g.ctx.Bytes()
	switch ac.Content.Sender.Type {
	case SenderTypeMember:
		l := ac.Content.Sender.LeafIndex
		if uint32(l) >= g.tree.leafCount() || g.tree.leaf(l) == nil {
			return nil, Credential{}, fmt.Errorf("mls: sender leaf %d is not a member", l)
		}
		leaf := g.tree.leaf(l)
		pub, cred = leaf.SignatureKey, leaf.Credential
	case SenderTypeExternal:
		if ac.WireFormat != WireFormatPublicMessage || ac.Content.ContentType != ContentTypeProposal {
			return nil, Credential{}, errors.New("mls: external senders may only send public proposals")
		}
		senders, err := g.externalSenders()
		if err != nil {
			return nil, Credential{}, err
		}
		i := ac.Content.Sender.SenderIndex
		if int(i) >= len(senders) {
			return nil, Credential{}, fmt.Errorf("mls: unknown external sender %d", i)
		}
		pub, cred = senders[i].SignatureKey, senders[i].Credential
		gc = nil
	case SenderTypeNewMemberProposal:
		if ac.WireFormat != WireFormatPublicMessage || ac.Content.ContentType != ContentTypeProposal ||
			ac.Content.Proposal.Type != ProposalTypeAdd {
			return nil, Credential{}, errors.New("mls: new_member_proposal sender must send a public Add")
		}
		kp := &ac.Content.Proposal.Add.KeyPackage
		pub, cred = kp.LeafNode.SignatureKey, kp.LeafNode.Credential
		gc = nil
	case SenderTypeNewMemberCommit:
		if ac.WireFormat != WireFormatPublicMessage || ac.Content.ContentType != ContentTypeCommit ||
			ac.Content.Commit.Path == nil {
			return nil, Credential{}, errors.New("mls: new_member_commit sender must send a public commit with a path")
		}
		pub, cred = ac.Content.Commit.Path.LeafNode.SignatureKey, ac.Content.Commit.Path.LeafNode.Credential
	default:
		return nil, Credential{}, errors.New("mls: unknown sender type")
	}
	if err := verifyFramedContent(cs, pub, ac, gc); err != nil {
		return nil, Credential{}, err
	}
	return ac, cred, nil
}

// unprotectPast reads an application message of an earlier epoch this member still
// keeps keys for: sent before a commit landed, delivered after.
func (g *Group) unprotectPast(past *pastEpoch, pm *PrivateMessage) (*AuthenticatedContent, Credential, error) {
	cs := g.ctx.CipherSuite
	isMember := func(l LeafIndex) bool { return uint32(l) < past.tree.leafCount() && past.tree.leaf(l) != nil }
	verify := func(ac *AuthenticatedContent) error {
		if ac.Content.ContentType != ContentTypeApplication {
			return fmt.Errorf("%w: only application messages are read from past epochs", ErrWrongEpoch)
		}
		return verifyFramedContent(cs, past.tree.leaf(ac.Content.Sender.LeafIndex).SignatureKey, ac, past.groupContext)
	}
	ac, err := decryptPrivateMessageVerified(cs, past.secrets, past.senderDataSecret, pm, isMember, verify)
	if err != nil {
		return nil, Credential{}, err
	}
	return ac, past.tree.leaf(ac.Content.Sender.LeafIndex).Credential, nil
}
