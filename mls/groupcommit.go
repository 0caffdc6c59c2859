package mls

import (
	"errors"
	"fmt"
)

func commitError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidCommit}, args...)...)
}

// Errors returned by Commit and MergePendingCommit.
var (
	// ErrUnknownProposal is returned by Commit when CommitOptions.ProposalRefs names a
	// proposal that is not cached in the current epoch.
	ErrUnknownProposal = errors.New("mls: proposal is not cached in this epoch")
	// ErrNoPendingCommit is returned by MergePendingCommit when this member has no
	// commit awaiting confirmation: none was made, or it was merged, cleared, or
	// discarded by another member's commit.
	ErrNoPendingCommit = errors.New("mls: no pending commit")
)

// CommitOptions control Commit.
type CommitOptions struct {
	// ProposalRefs, when non-nil, names the cached proposals to commit by reference,
	// in this order, instead of every valid cached one; an empty, non-nil slice
	// commits none. A name that is not cached is ErrUnknownProposal. Named proposals
	// are not filtered: one that is invalid, alone or with the others, fails the
	// commit. A name of this member's own Update is left out: the commit's path
	// replaces it (RFC 9420 §12.2).
	ProposalRefs []ProposalRef
	// Proposals to include by value, after the proposals committed by reference. An
	// invalid one fails the commit.
	Proposals []*Proposal
	// ForcePath includes an UpdatePath even when the proposals do not require one,
	// refreshing this member's keys (post-compromise security).
	ForcePath bool
	// Credential, when set, replaces this member's credential in its leaf (RFC 9420
	// §7.3 lets an UpdatePath's leaf carry a new one), for example a renewed
	// certificate for the same signature key. It implies an UpdatePath. It must pass
	// Config.Validator with the member's signature key, as every receiver checks.
	Credential *Credential
	// AuthenticatedData travels unencrypted but authenticated with the commit.
	AuthenticatedData []byte
	// ExternalPub adds the external_pub extension to the new epoch's GroupInfo,
	// letting non-members join by external commit.
	ExternalPub bool
	// RatchetTree says whether the new epoch's GroupInfo, in the Welcome and in
	// CommitResult.GroupInfo, carries the ratchet_tree extension; nil follows
	// Config.OmitRatchetTree. Without it, joiners need the new epoch's tree out of
	// band (PendingRatchetTree, or RatchetTree after MergePendingCommit).
	RatchetTree *bool
}

// withTree resolves a per-call choice of ratchet tree inclusion against Config.
func (c *Config) withTree(choice *bool) bool {
	if choice != nil {
		return *choice
	}
	return !c.OmitRatchetTree
}

// CommitResult is what Commit produced: the commit for the group, a Welcome for
// any members it adds, and the new epoch's GroupInfo when members are added or
// CommitOptions.ExternalPub asked for it (otherwise Group.GroupInfo makes one later).
type CommitResult struct {
	Commit    *MLSMessage
	Welcome   *MLSMessage // nil when nobody is added
	GroupInfo *MLSMessage // nil unless members are added or ExternalPub is set
}

// pendingCommit is this member's own commit, built but not yet confirmed by the
// delivery service.
type pendingCommit struct {
	next   *Group
	effect *CommitEffect
}

// Commit commits cached proposals and opts.Proposals (RFC 9420 §12.4): the cached
// proposals opts.ProposalRefs names or, by default, every one still valid alongside
// the others. By default it leaves out, as RFC 9420 §12.2 has the committer do,
// this member's own Updates (the commit's path replaces them), proposals no longer
// valid, all but one of several proposals for one leaf (a Remove, else the latest
// Update), for one client or for one PSK, and a ReInit unless nothing else is
// committed. The group stays in the current epoch until MergePendingCommit: the
// delivery service decides which of concurrent commits wins. A commit from another
// member processed meanwhile discards this one.
func (g *Group) Commit(opts CommitOptions) (*CommitResult, error) {
	if err := g.checkActive(); err != nil {
		return nil, err
	}
	if g.pending != nil {
		return nil, ErrPendingCommit
	}
	cs := g.ctx.CipherSuite
	rnd := g.cfg.rand()
	me := Sender{Type: SenderTypeMember, LeafIndex: g.myLeaf}
	if opts.Credential != nil {
		own := g.tree.leaf(g.myLeaf)
		if opts.Credential.Type != own.Credential.Type {
			return nil, fmt.Errorf("%w: a new credential must be of the leaf's type", ErrInvalidProposal)
		}
		if err := g.cfg.validate(*opts.Credential, own.SignatureKey); err != nil {
			return nil, err
		}
	}

	for _, p := range opts.Proposals {
		if err := g.validateProposal(p, me, true); err != nil {
			return nil, err
		}
	}
	var (
		list      []cachedProposal
		ownUpdate bool
		err       error
	)
	if opts.ProposalRefs != nil {
		list, ownUpdate, err = g.namedProposals(opts.ProposalRefs, me)
		if err != nil {
			return nil, err
		}
	} else {
		list, ownUpdate = g.validCachedProposals(opts.Proposals, me)
	}
	// This member's own Update is superseded by the path, which it therefore needs.
	withPath := opts.ForcePath || ownUpdate || opts.Credential != nil
	commit := &Commit{}
	for _, cp := range list {
		commit.Proposals = append(commit.Proposals, ProposalOrRef{Type: ProposalOrRefTypeReference, Reference: cp.ref})
	}
	for _, p := range opts.Proposals {
		list = append(list, cachedProposal{proposal: p, sender: me})
		commit.Proposals = append(commit.Proposals, ProposalOrRef{Type: ProposalOrRefTypeProposal, Proposal: p})
	}
	a, err := g.applyProposals(list, me)
	if err != nil {
		return nil, err
	}

	next := g.successor(a)
	var path *pendingPath
	commitSecret := make([]byte, cs.Nh())
	if a.needsPath || withPath {
		leaf := g.tree.leaf(g.myLeaf).clone()
		if opts.Credential != nil {
			leaf.Credential = *opts.Credential // newUpdatePath copies the leaf
		}
		path, err = next.tree.newUpdatePath(cs, g.myLeaf, leaf, g.sigKey, g.ctx.GroupID, rnd)
		if err != nil {
			return nil, err
		}
		provisional := next.provisionalContext(g)
		commit.Path, err = path.encrypt(provisional.Bytes(), a.added)
		if err != nil {
			return nil, err
		}
		commitSecret = path.commitSecret
		next.keys = path.privateKeys()
	}
	next.ctx.TreeHash = next.tree.treeHash(cs)

	content := &FramedContent{
		GroupID:           g.ctx.GroupID,
		Epoch:             g.ctx.Epoch,
		Sender:            me,
		AuthenticatedData: opts.AuthenticatedData,
		ContentType:       ContentTypeCommit,
		Commit:            commit,
	}
	ac, err := g.signContent(g.handshakeWireFormat(), content)
	if err != nil {
		return nil, err
	}
	if err := next.enterEpoch(g, ac, g.epoch.initSecret, commitSecret, a); err != nil {
		return nil, err
	}
	ac.Auth.ConfirmationTag = next.confirmationTag
	msg, err := g.frame(ac)
	if err != nil {
		return nil, err
	}

	res := &CommitResult{Commit: msg}
	if len(a.added) > 0 || opts.ExternalPub {
		// Signing a GroupInfo hashes the whole ratchet tree: only pay for it when a
		// Welcome needs it or the caller asked for one.
		gi, err := next.groupInfo(g.cfg.withTree(opts.RatchetTree), opts.ExternalPub)
		if err != nil {
			return nil, err
		}
		res.GroupInfo = NewGroupInfoMessage(gi)
	}
	if len(a.added) > 0 {
		gi := res.GroupInfo.GroupInfo
		w, err := next.welcome(gi, a, path)
		if err != nil {
			return nil, err
		}
		res.Welcome = NewWelcomeMessage(w)
	}
	next.epoch.forgetWelcome()
	g.pending = &pendingCommit{next: next, effect: next.effectOf(g, a, g.myLeaf, a.needsPath || withPath, false)}
	return res, nil
}

// HasPendingCommit reports whether this member has a commit awaiting confirmation.
func (g *Group) HasPendingCommit() bool { return g.pending != nil }

// MergePendingCommit moves the group into the epoch of this member's own commit,
// once the delivery service has accepted it. It returns ErrNoPendingCommit when
// there is none.
func (g *Group) MergePendingCommit() (*CommitEffect, error) {
	if g.pending == nil {
		return nil, ErrNoPendingCommit
	}
	p := g.pending
	g.advanceTo(p.next)
	return p.effect, nil
}

// ClearPendingCommit abandons this member's pending commit (for example when the
// delivery service chose another member's).
func (g *Group) ClearPendingCommit() { g.pending = nil }

// successor starts the next epoch's state from the applied proposals.
func (g *Group) successor(a *applied) *Group {
	next := &Group{
		cfg:        g.cfg,
		ctx:        g.ctx.clone(),
		tree:       a.tree,
		keys:       g.keys.clone(),
		myLeaf:     g.myLeaf,
		sigKey:     g.sigKey,
		resumption: make(map[uint64][]byte, len(g.resumption)+1),
		active:     !a.selfRemoved,
		reinit:     a.reinit,
	}
	for e, psk := range g.resumption {
		next.resumption[e] = psk
	}
	next.ctx.Epoch = g.ctx.Epoch + 1
	next.ctx.Extensions = a.extensions
	return next
}

// provisionalContext is the GroupContext under which an UpdatePath's path secrets
// are encrypted (RFC 9420 §12.4.1, §12.4.2): the new epoch, tree hash and
// extensions, with the previous confirmed transcript hash.
func (next *Group) provisionalContext(prev *Group) *GroupContext {
	c := next.ctx.clone()
	c.TreeHash = next.tree.treeHash(next.ctx.CipherSuite)
	c.ConfirmedTranscriptHash = prev.ctx.ConfirmedTranscriptHash
	return &c
}

// enterEpoch finishes the new epoch once the commit's signature is known: the
// transcript hashes, the key schedule and the confirmation tag (RFC 9420 §8, §8.2).
func (next *Group) enterEpoch(prev *Group, ac *AuthenticatedContent, initSecret, commitSecret []byte, a *applied) error {
	cs := next.ctx.CipherSuite
	confirmed, err := confirmedTranscriptHash(cs, prev.interim, ac)
	if err != nil {
		return err
	}
	next.ctx.ConfirmedTranscriptHash = confirmed
	pskSecret, err := prev.resolvePSKs(a.psks)
	if err != nil {
		return err
	}
	next.epoch = newEpochSecrets(cs, initSecret, commitSecret, pskSecret, next.ctx.Bytes())
	next.confirmationTag = confirmationTag(cs, next.epoch.confirmationKey, confirmed)
	next.interim = interimTranscriptHash(cs, confirmed, next.confirmationTag)
	next.startEpoch()
	return nil
}

// groupInfo signs the current epoch's GroupInfo (RFC 9420 §12.4.3).
func (g *Group) groupInfo(withTree, withExternalPub bool) (*GroupInfo, error) {
	cs := g.ctx.CipherSuite
	gi := &GroupInfo{
		GroupContext:    g.ctx.clone(),
		ConfirmationTag: append([]byte{}, g.confirmationTag...),
		Signer:          g.myLeaf,
	}
	if withTree {
		gi.Extensions = gi.Extensions.With(ExtensionTypeRatchetTree, g.tree.marshalExtension())
	}
	if withExternalPub {
		kp, err := g.epoch.externalKeyPair(cs)
		if err != nil {
			return nil, err
		}
		gi.Extensions = gi.Extensions.With(ExtensionTypeExternalPub, externalPubData(kp.Public()))
	}
	if err := gi.sign(cs, g.sigKey, g.cfg.rand()); err != nil {
		return nil, err
	}
	return gi, nil
}

// GroupInfoOptions control Group.GroupInfo.
type GroupInfoOptions struct {
	// ExternalPub adds the external_pub extension, letting non-members join by
	// external commit (RFC 9420 §12.4.3.2).
	ExternalPub bool
	// RatchetTree says whether the GroupInfo carries the ratchet_tree extension; nil
	// follows Config.OmitRatchetTree. Without it, a joiner needs RatchetTree out of band.
	RatchetTree *bool
}

// GroupInfo returns a signed GroupInfo of the current epoch (RFC 9420 §12.4.3).
func (g *Group) GroupInfo(opts GroupInfoOptions) (*MLSMessage, error) {
	if err := g.checkActive(); err != nil {
		return nil, err
	}
	gi, err := g.groupInfo(g.cfg.withTree(opts.RatchetTree), opts.ExternalPub)
	if err != nil {
		return nil, err
	}
	return NewGroupInfoMessage(gi), nil
}

// welcome builds the Welcome for the members a commit adds (RFC 9420 §12.4.3.1).
func (next *Group) welcome(gi *GroupInfo, a *applied, path *pendingPath) (*Welcome, error) {
	cs := next.ctx.CipherSuite
	egi, err := encryptGroupInfo(cs, next.epoch.welcomeSecret, gi)
	if err != nil {
		return nil, err
	}
	w := &Welcome{CipherSuite: cs, EncryptedGroupInfo: egi}
	for i, leaf := range a.added {
		gs := &GroupSecrets{JoinerSecret: next.epoch.joinerSecret, PSKs: a.psks}
		if path != nil {
			gs.PathSecret = path.pathSecretForJoiner(leaf)
		}
		egs, err := encryptGroupSecrets(cs, a.addedKPs[i], gs, egi)
		if err != nil {
			return nil, err
		}
		w.Secrets = append(w.Secrets, egs)
	}
	return w, nil
}

// effectOf summarises a commit for the application.
func (next *Group) effectOf(prev *Group, a *applied, committer LeafIndex, withPath, external bool) *CommitEffect {
	e := &CommitEffect{Epoch: next.ctx.Epoch, Removed: a.removed, ReInit: a.reinit, SelfRemoved: a.selfRemoved,
		ExtensionsChanged: a.extChanged, ExternalJoin: external}
	for _, l := range a.added {
		if m, ok := next.Member(l); ok {
			e.Added = append(e.Added, m)
		}
	}
	if external {
		if m, ok := next.Member(committer); ok {
			e.Added = append(e.Added, m)
		}
	}
	for _, l := range a.updated {
		if m, ok := next.Member(l); ok {
			e.Updated = append(e.Updated, m)
		}
	}
	if withPath && !external {
		if m, ok := next.Member(committer); ok {
			e.Updated = append(e.Updated, m)
		}
	}
	return e
}

// processCommit applies another member's (or an external joiner's) commit
// (RFC 9420 §12.4.2). On any error the group is unchanged.
func (g *Group) processCommit(ac *AuthenticatedContent) (*CommitEffect, error) {
	cs := g.ctx.CipherSuite
	c := ac.Content.Commit
	sender := ac.Content.Sender
	if g.reinit != nil {
		return nil, commitError("group was reinitialized")
	}
	if len(ac.Auth.ConfirmationTag) != cs.Nh() {
		return nil, commitError("confirmation tag length")
	}
	list, err := g.resolveProposals(c, sender)
	if err != nil {
		return nil, err
	}
	a, err := g.applyProposals(list, sender)
	if err != nil {
		return nil, err
	}
	if a.needsPath && c.Path == nil {
		return nil, commitError("path required but absent")
	}
	external := sender.Type == SenderTypeNewMemberCommit
	next := g.successor(a)
	committer := sender.LeafIndex
	if external {
		committer = next.tree.addLeaf(c.Path.LeafNode.clone())
	}
	// Our own Update proposal committed by someone else: switch to its key.
	for _, l := range a.updated {
		if l == g.myLeaf {
			if err := next.keys.adoptPendingLeafKey(next.tree.leaf(l).EncryptionKey); err != nil {
				return nil, err
			}
		}
	}
	commitSecret := make([]byte, cs.Nh())
	if c.Path != nil {
		if c.Path.LeafNode.Source != LeafNodeSourceCommit {
			return nil, commitError("path leaf source is %d", c.Path.LeafNode.Source)
		}
		if err := next.validatePathLeaf(g, &c.Path.LeafNode, committer); err != nil {
			return nil, commitError("path leaf: %v", err)
		}
		if err := next.tree.mergeUpdatePath(cs, committer, c.Path, g.ctx.GroupID); err != nil {
			return nil, commitError("path: %v", err)
		}
		if next.active {
			provisional := next.provisionalContext(g)
			secret, keys, err := next.tree.decryptPath(cs, next.keys, committer, c.Path, provisional.Bytes(), a.added)
			if err != nil {
				return nil, commitError("path: %v", err)
			}
			commitSecret, next.keys = secret, keys
		}
	}
	next.keys.prune(next.tree)
	next.ctx.TreeHash = next.tree.treeHash(cs)

	if a.selfRemoved {
		// A removed member cannot decrypt the path, so cannot derive the new epoch or
		// check its confirmation tag: it only learns, from a signed commit of a member,
		// that it is out (RFC 9420 §12.4.2).
		effect := next.effectOf(g, a, committer, c.Path != nil, external)
		g.active = false
		g.pending = nil
		g.proposals = nil
		return effect, nil
	}
	initSecret := g.epoch.initSecret
	if external {
		initSecret, err = g.epoch.externalInitSecret(cs, a.externalInit.KEMOutput)
		if err != nil {
			return nil, commitError("external init: %v", err)
		}
	}
	if err := next.enterEpoch(g, ac, initSecret, commitSecret, a); err != nil {
		return nil, err
	}
	if !constantTimeEqual(next.confirmationTag, ac.Auth.ConfirmationTag) {
		return nil, commitError("confirmation tag does not match")
	}
	next.epoch.forgetWelcome()
	effect := next.effectOf(g, a, committer, c.Path != nil, external)
	g.advanceTo(next)
	return effect, nil
}

// validatePathLeaf checks the committer's new leaf in an UpdatePath (RFC 9420 §7.3).
func (next *Group) validatePathLeaf(prev *Group, l *LeafNode, committer LeafIndex) error {
	return prev.validateMemberLeafIn(l, committer, next.tree, next.ctx.Extensions)
}

// validateMemberLeafIn checks a member's new leaf against a given tree and
// extensions; the leaf's own slot is ignored for uniqueness.
func (g *Group) validateMemberLeafIn(l *LeafNode, leaf LeafIndex, tree *ratchetTree, exts Extensions) error {
	cs := g.ctx.CipherSuite
	if err := l.validateSelf(cs, g.ctx.GroupID, leaf, g.cfg.now()); err != nil {
		return err
	}
	if err := g.cfg.validate(l.Credential, l.SignatureKey); err != nil {
		return err
	}
	req, err := requiredCapabilities(exts)
	if err != nil {
		return err
	}
	if err := leafSupports(l, exts, req); err != nil {
		return err
	}
	for i := uint32(0); i < tree.leafCount(); i++ {
		other := tree.leaf(LeafIndex(i))
		if other == nil || LeafIndex(i) == leaf {
			continue
		}
		if equalBytes(other.SignatureKey, l.SignatureKey) {
			return leafNodeError("signature key already used by leaf %d", i)
		}
		if equalBytes(other.EncryptionKey, l.EncryptionKey) {
			return leafNodeError("encryption key already used by leaf %d", i)
		}
	}
	return nil
}
