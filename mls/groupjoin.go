package mls

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrResumptionMismatch is returned by JoinGroup when a Welcome does not start the
// successor group JoinOptions.Resumption describes, or starts a successor group
// (reinit or branch) the caller gave neither Resumption nor ResumptionPSK for.
var ErrResumptionMismatch = errors.New("mls: welcome does not start the expected successor group")

// JoinOptions control joining a group from a Welcome.
type JoinOptions struct {
	// RatchetTree is the ratchet_tree extension data, for a Welcome whose GroupInfo
	// does not carry the tree.
	RatchetTree []byte
	// ResumptionPSK returns a resumption PSK of an earlier group (for a Welcome into
	// a group made by ReInit or branching).
	ResumptionPSK func(groupID GroupID, epoch uint64) ([]byte, bool)
	// Resumption, when set, is the successor group the Welcome must start; JoinGroup
	// checks it as RFC 9420 §11.2 and §11.3 ask. When nil, a Welcome whose PSKs
	// include a resumption PSK of usage reinit or branch is refused unless
	// ResumptionPSK is set (which then resolves it, unchecked).
	Resumption *ResumptionExpectation
}

// ResumptionExpectation is what a joiner knows, from the group it is in, of the
// successor group a Welcome claims to start: the group a ReInit commit announced
// (RFC 9420 §11.2), or a subgroup branched from it (§11.3).
type ResumptionExpectation struct {
	// Usage is ResumptionPSKUsageReinit or ResumptionPSKUsageBranch.
	Usage ResumptionPSKUsage
	// PriorGroupID and PriorEpoch name the epoch of the prior group whose resumption
	// PSK the new group injects: for reinit, the epoch the ReInit commit started
	// (the prior group's last); for branch, the epoch the subgroup branched from.
	PriorGroupID GroupID
	PriorEpoch   uint64
	// ReInit, required for usage reinit, is the ReInit that ended the prior group
	// (Group.PendingReInit): the new group must have its group ID, version, cipher
	// suite and extensions.
	ReInit *ReInit
	// CipherSuite, required for usage branch, is the prior group's cipher suite,
	// which a subgroup keeps. For reinit it may be left zero; if set, it must be the
	// ReInit's.
	CipherSuite CipherSuite
}

// checkPSKs checks a Welcome's PSKs: exactly one resumption PSK of usage reinit or
// branch, of the expected usage, naming the prior group and epoch. e may be nil.
func (e *ResumptionExpectation) checkPSKs(ids []PreSharedKeyID, haveResolver bool) error {
	var resumed []*PreSharedKeyID
	for i := range ids {
		id := &ids[i]
		if id.PSKType == PSKTypeResumption && (id.Usage == ResumptionPSKUsageReinit || id.Usage == ResumptionPSKUsageBranch) {
			resumed = append(resumed, id)
		}
	}
	if e == nil {
		if len(resumed) > 0 && !haveResolver {
			return fmt.Errorf("%w: it resumes a prior group (psk usage %d), but no JoinOptions.Resumption was given",
				ErrResumptionMismatch, resumed[0].Usage)
		}
		return nil
	}
	if e.Usage != ResumptionPSKUsageReinit && e.Usage != ResumptionPSKUsageBranch {
		return fmt.Errorf("mls: JoinOptions.Resumption has usage %d, want reinit or branch", e.Usage)
	}
	if len(resumed) != 1 {
		return fmt.Errorf("%w: %d resumption psks of usage reinit or branch, want 1", ErrResumptionMismatch, len(resumed))
	}
	id := resumed[0]
	switch {
	case id.Usage != e.Usage:
		return fmt.Errorf("%w: resumption psk usage %d, want %d", ErrResumptionMismatch, id.Usage, e.Usage)
	case !equalBytes(id.PSKGroupID, e.PriorGroupID):
		return fmt.Errorf("%w: resumption psk names another prior group", ErrResumptionMismatch)
	case id.PSKEpoch != e.PriorEpoch:
		return fmt.Errorf("%w: resumption psk names prior epoch %d, want %d", ErrResumptionMismatch, id.PSKEpoch, e.PriorEpoch)
	}
	return nil
}

// checkGroup checks the new group's GroupContext against the expectation. e may be nil.
func (e *ResumptionExpectation) checkGroup(gc *GroupContext) error {
	if e == nil {
		return nil
	}
	if gc.Epoch != 1 {
		return fmt.Errorf("%w: new group is in epoch %d, want 1", ErrResumptionMismatch, gc.Epoch)
	}
	if e.CipherSuite != 0 && gc.CipherSuite != e.CipherSuite {
		return fmt.Errorf("%w: new group uses %v, want %v", ErrResumptionMismatch, gc.CipherSuite, e.CipherSuite)
	}
	switch e.Usage {
	case ResumptionPSKUsageReinit:
		r := e.ReInit
		if r == nil {
			return errors.New("mls: JoinOptions.Resumption of usage reinit without the ReInit")
		}
		switch {
		case !equalBytes(gc.GroupID, r.GroupID):
			return fmt.Errorf("%w: new group ID is not the ReInit's", ErrResumptionMismatch)
		case gc.Version != r.Version:
			return fmt.Errorf("%w: new group has version %d, the ReInit %d", ErrResumptionMismatch, gc.Version, r.Version)
		case gc.CipherSuite != r.CipherSuite:
			return fmt.Errorf("%w: new group uses %v, the ReInit %v", ErrResumptionMismatch, gc.CipherSuite, r.CipherSuite)
		case !equalBytes(mustEncode(gc.Extensions), mustEncode(r.Extensions)):
			return fmt.Errorf("%w: new group's extensions are not the ReInit's", ErrResumptionMismatch)
		}
	case ResumptionPSKUsageBranch:
		if e.CipherSuite == 0 {
			return errors.New("mls: JoinOptions.Resumption of usage branch without the prior cipher suite")
		}
	}
	return nil
}

// JoinGroup joins a group from a Welcome addressed to kp (RFC 9420 §12.4.3.1),
// checking the whole tree before trusting it. It returns ErrWelcomeNotForUs when the
// Welcome holds no secrets for kp, and ErrResumptionMismatch when it starts another
// successor group than opts.Resumption expects.
func JoinGroup(welcome *Welcome, kp *KeyPackage, priv *KeyPackagePrivate, opts JoinOptions, cfg Config) (*Group, error) {
	cs := welcome.CipherSuite
	if !cs.Supported() {
		return nil, fmt.Errorf("%w: 0x%04x", ErrUnsupportedCipherSuite, uint16(cs))
	}
	if kp.CipherSuite != cs {
		return nil, errors.New("mls: welcome cipher suite differs from the key package's")
	}
	ref, err := kp.Ref()
	if err != nil {
		return nil, err
	}
	gs, err := decryptGroupSecrets(cs, welcome, ref, priv.InitKey)
	if err != nil {
		return nil, err
	}
	if err := opts.Resumption.checkPSKs(gs.PSKs, opts.ResumptionPSK != nil); err != nil {
		return nil, err
	}
	pskSecret, err := joinPSKSecret(cs, &cfg, opts, gs.PSKs)
	if err != nil {
		return nil, err
	}
	welcomeSecret := deriveWelcomeSecret(cs, gs.JoinerSecret, pskSecret)
	gi, err := decryptGroupInfo(cs, welcomeSecret, welcome)
	clear(welcomeSecret)
	if err != nil {
		return nil, err
	}
	if gi.GroupContext.CipherSuite != cs || gi.GroupContext.Version != ProtocolVersionMLS10 {
		return nil, errors.New("mls: group info does not match the welcome's cipher suite")
	}
	if err := opts.Resumption.checkGroup(&gi.GroupContext); err != nil {
		return nil, err
	}
	g := &Group{cfg: cfg, ctx: gi.GroupContext, sigKey: priv.SignatureKey, resumption: map[uint64][]byte{}, active: true}
	if err := g.adoptTree(gi, opts.RatchetTree); err != nil {
		return nil, err
	}
	// Find our own leaf: the one holding the KeyPackage's leaf node.
	me, ok := g.tree.findLeaf(kp.LeafNode.EncryptionKey)
	if !ok || !equalBytes(g.tree.leaf(me).SignatureKey, kp.LeafNode.SignatureKey) {
		return nil, errors.New("mls: the tree does not contain the joiner's leaf")
	}
	g.myLeaf = me
	g.keys = newTreePrivateKeys(me, priv.EncryptionKey)
	if gs.PathSecret != nil {
		if err := g.tree.installPathSecret(cs, g.keys, gi.Signer, gs.PathSecret); err != nil {
			return nil, err
		}
	}
	g.epoch = epochSecretsFromJoiner(cs, gs.JoinerSecret, pskSecret, g.ctx.Bytes())
	g.epoch.forgetWelcome()
	if err := verifyConfirmationTag(cs, g.epoch.confirmationKey, g.ctx.ConfirmedTranscriptHash, gi.ConfirmationTag); err != nil {
		return nil, err
	}
	g.confirmationTag = gi.ConfirmationTag
	g.interim = interimTranscriptHash(cs, g.ctx.ConfirmedTranscriptHash, gi.ConfirmationTag)
	g.startEpoch()
	return g, nil
}

// joinPSKSecret resolves a Welcome's PSKs.
func joinPSKSecret(cs CipherSuite, cfg *Config, opts JoinOptions, ids []PreSharedKeyID) ([]byte, error) {
	psks := make([][]byte, len(ids))
	for i := range ids {
		id := &ids[i]
		var ok bool
		switch id.PSKType {
		case PSKTypeExternal:
			if cfg.ExternalPSK != nil {
				psks[i], ok = cfg.ExternalPSK(id.PSKID)
			}
		case PSKTypeResumption:
			if opts.ResumptionPSK != nil {
				psks[i], ok = opts.ResumptionPSK(id.PSKGroupID, id.PSKEpoch)
			}
		}
		if !ok {
			return nil, errors.New("mls: welcome needs a pre-shared key this member does not hold")
		}
	}
	return pskSecret(cs, ids, psks)
}

// adoptTree takes the ratchet tree of a GroupInfo (from its extension or out of
// band), and checks it completely (RFC 9420 §12.4.3.1): signer signature, tree hash,
// parent hashes, every leaf, every credential, and the group's extensions.
func (g *Group) adoptTree(gi *GroupInfo, outOfBand []byte) error {
	cs := g.ctx.CipherSuite
	data, ok := gi.Extensions.Find(ExtensionTypeRatchetTree)
	if !ok {
		if outOfBand == nil {
			return errors.New("mls: no ratchet tree: neither in the group info nor supplied")
		}
		data = outOfBand
	}
	tree, err := UnmarshalRatchetTree(data)
	if err != nil {
		return err
	}
	signer := tree.leaf(gi.Signer)
	if uint32(gi.Signer) >= tree.leafCount() || signer == nil {
		return errors.New("mls: group info signer is not a member")
	}
	if err := gi.verify(cs, signer.SignatureKey); err != nil {
		return err
	}
	if !equalBytes(tree.treeHash(cs), gi.GroupContext.TreeHash) {
		return errors.New("mls: ratchet tree does not match the group's tree hash")
	}
	// Leaves that came from KeyPackages keep their old lifetimes while their members
	// stay in the group; only KeyPackages being added are checked against the clock.
	if err := tree.validate(cs, gi.GroupContext.GroupID, time.Time{}); err != nil {
		return err
	}
	for i := uint32(0); i < tree.leafCount(); i++ {
		if l := tree.leaf(LeafIndex(i)); l != nil {
			if err := g.cfg.validate(l.Credential, l.SignatureKey); err != nil {
				return fmt.Errorf("mls: member at leaf %d: %w", i, err)
			}
		}
	}
	g.tree = tree
	return g.checkGroupExtensions(g.ctx.Extensions, tree)
}

// ExternalJoinOptions control ExternalJoin.
type ExternalJoinOptions struct {
	// RatchetTree is the ratchet_tree extension data, when the GroupInfo lacks it.
	RatchetTree []byte
	// RemovePrior removes this client's earlier leaf (resynchronisation, RFC 9420 §12.4.3.2).
	RemovePrior *LeafIndex
	// PSKs to inject (external PSKs, resolved through Config.ExternalPSK). A missing
	// PSKNonce is drawn fresh from Config.Rand, as ProposePSK does.
	PSKs []PreSharedKeyID
	// AuthenticatedData of the commit.
	AuthenticatedData []byte
	// Capabilities and LeafExtensions of the joiner's leaf.
	Capabilities   *Capabilities
	LeafExtensions Extensions
}

// ExternalJoin joins the group described by a GroupInfo with an external commit
// (RFC 9420 §12.4.3.2). It returns the joiner's group state in the new epoch and the
// commit to send; the members see the joiner added.
func ExternalJoin(gi *GroupInfo, cred Credential, sigKey *SignaturePrivateKey, opts ExternalJoinOptions, cfg Config) (*Group, *MLSMessage, error) {
	cs := gi.GroupContext.CipherSuite
	if !cs.Supported() {
		return nil, nil, fmt.Errorf("%w: 0x%04x", ErrUnsupportedCipherSuite, uint16(cs))
	}
	if err := cfg.validate(cred, sigKey.Public()); err != nil {
		return nil, nil, err
	}
	pubData, ok := gi.Extensions.Find(ExtensionTypeExternalPub)
	if !ok {
		return nil, nil, errors.New("mls: group info has no external_pub: external joins are not allowed")
	}
	externalPub, err := parseExternalPub(pubData)
	if err != nil {
		return nil, nil, err
	}
	// The joiner holds no tree keys before its commit; successor clones them.
	prev := &Group{cfg: cfg, ctx: gi.GroupContext.clone(), myLeaf: ^LeafIndex(0), sigKey: sigKey,
		keys: newTreePrivateKeys(^LeafIndex(0), nil)}
	if err := prev.adoptTree(gi, opts.RatchetTree); err != nil {
		return nil, nil, err
	}
	prev.interim = interimTranscriptHash(cs, prev.ctx.ConfirmedTranscriptHash, gi.ConfirmationTag)

	kemOutput, initSecret, err := externalInit(cs, externalPub)
	if err != nil {
		return nil, nil, err
	}
	me := Sender{Type: SenderTypeNewMemberCommit}
	proposals := []*Proposal{{Type: ProposalTypeExternalInit, ExternalInit: &ExternalInit{KEMOutput: kemOutput}}}
	if opts.RemovePrior != nil {
		old, ok := prev.Member(*opts.RemovePrior)
		if !ok || !old.Credential.Equal(&cred) {
			return nil, nil, errors.New("mls: prior leaf to remove does not hold this credential")
		}
		proposals = append(proposals, &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: *opts.RemovePrior}})
	}
	for _, id := range opts.PSKs {
		if len(id.PSKNonce) == 0 {
			id.PSKNonce = make([]byte, cs.Nh())
			if _, err := io.ReadFull(cfg.rand(), id.PSKNonce); err != nil {
				return nil, nil, err
			}
		}
		proposals = append(proposals, &Proposal{Type: ProposalTypePSK, PreSharedKey: &PreSharedKey{PSK: id}})
	}
	commit := &Commit{}
	var list []cachedProposal
	for _, p := range proposals {
		if err := prev.validateProposal(p, me, true); err != nil {
			return nil, nil, err
		}
		list = append(list, cachedProposal{proposal: p, sender: me})
		commit.Proposals = append(commit.Proposals, ProposalOrRef{Type: ProposalOrRefTypeProposal, Proposal: p})
	}
	a, err := prev.applyProposals(list, me)
	if err != nil {
		return nil, nil, err
	}
	next := prev.successor(a)
	next.resumption = map[uint64][]byte{}
	caps := DefaultCapabilities()
	if opts.Capabilities != nil {
		caps = *opts.Capabilities
	}
	template := &LeafNode{
		SignatureKey: sigKey.Public(),
		Credential:   cred,
		Capabilities: caps,
		Source:       LeafNodeSourceCommit,
		Extensions:   opts.LeafExtensions,
	}
	rnd := cfg.rand()
	placeholder, err := cs.GenerateHPKEKey(rnd)
	if err != nil {
		return nil, nil, err
	}
	template.EncryptionKey = placeholder.Public()
	next.myLeaf = next.tree.addLeaf(template)
	next.active = true
	path, err := next.tree.newUpdatePath(cs, next.myLeaf, template, sigKey, prev.ctx.GroupID, rnd)
	if err != nil {
		return nil, nil, err
	}
	provisional := next.provisionalContext(prev)
	if commit.Path, err = path.encrypt(provisional.Bytes(), nil); err != nil {
		return nil, nil, err
	}
	next.keys = path.privateKeys()
	next.ctx.TreeHash = next.tree.treeHash(cs)
	content := &FramedContent{
		GroupID:           prev.ctx.GroupID,
		Epoch:             prev.ctx.Epoch,
		Sender:            me,
		AuthenticatedData: opts.AuthenticatedData,
		ContentType:       ContentTypeCommit,
		Commit:            commit,
	}
	ac, err := signFramedContent(cs, sigKey, WireFormatPublicMessage, content, prev.ctx.Bytes(), rnd)
	if err != nil {
		return nil, nil, err
	}
	if err := next.enterEpoch(prev, ac, initSecret, path.commitSecret, a); err != nil {
		return nil, nil, err
	}
	next.epoch.forgetWelcome()
	ac.Auth.ConfirmationTag = next.confirmationTag
	msg := &MLSMessage{Version: ProtocolVersionMLS10, WireFormat: WireFormatPublicMessage,
		PublicMessage: &PublicMessage{Content: ac.Content, Auth: ac.Auth}}
	return next, msg, nil
}

// NewMemberAddProposal makes the proposal by which a non-member asks to be added
// (RFC 9420 §12.1.8, sender type new_member_proposal), for the group gi describes.
func NewMemberAddProposal(gi *GroupInfo, kp *KeyPackage, sigKey *SignaturePrivateKey, rand io.Reader) (*MLSMessage, error) {
	content := &FramedContent{
		GroupID:     gi.GroupContext.GroupID,
		Epoch:       gi.GroupContext.Epoch,
		Sender:      Sender{Type: SenderTypeNewMemberProposal},
		ContentType: ContentTypeProposal,
		Proposal:    &Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *kp}},
	}
	ac, err := signFramedContent(gi.GroupContext.CipherSuite, sigKey, WireFormatPublicMessage, content, nil, rand)
	if err != nil {
		return nil, err
	}
	return &MLSMessage{Version: ProtocolVersionMLS10, WireFormat: WireFormatPublicMessage,
		PublicMessage: &PublicMessage{Content: ac.Content, Auth: ac.Auth}}, nil
}

// ExternalProposal makes a proposal from an external sender (RFC 9420 §12.1.8.1):
// senderIndex is the sender's position in the group's external_senders extension.
func ExternalProposal(cs CipherSuite, groupID GroupID, epoch uint64, senderIndex uint32, p *Proposal, sigKey *SignaturePrivateKey, rand io.Reader) (*MLSMessage, error) {
	content := &FramedContent{
		GroupID:     groupID,
		Epoch:       epoch,
		Sender:      Sender{Type: SenderTypeExternal, SenderIndex: senderIndex},
		ContentType: ContentTypeProposal,
		Proposal:    p,
	}
	ac, err := signFramedContent(cs, sigKey, WireFormatPublicMessage, content, nil, rand)
	if err != nil {
		return nil, err
	}
	return &MLSMessage{Version: ProtocolVersionMLS10, WireFormat: WireFormatPublicMessage,
		PublicMessage: &PublicMessage{Content: ac.Content, Auth: ac.Auth}}, nil
}
