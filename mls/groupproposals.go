package mls

import (
	"errors"
	"fmt"
)

func proposalError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidProposal}, args...)...)
}

// validateProposal checks one proposal on its own against the current epoch
// (RFC 9420 §12.1, §12.2). inCommit says it arrived inside a Commit by value.
func (g *Group) validateProposal(p *Proposal, sender Sender, inCommit bool) error {
	cs := g.ctx.CipherSuite
	switch sender.Type {
	case SenderTypeMember:
	case SenderTypeExternal:
		switch p.Type {
		case ProposalTypeAdd, ProposalTypeRemove, ProposalTypePSK, ProposalTypeReInit, ProposalTypeGroupContextExtensions:
		default:
			return proposalError("external sender may not propose type %d", p.Type)
		}
	case SenderTypeNewMemberProposal:
		if p.Type != ProposalTypeAdd {
			return proposalError("new member may only propose to add itself")
		}
	case SenderTypeNewMemberCommit:
		if !inCommit {
			return proposalError("new_member_commit sender outside a commit")
		}
		switch p.Type {
		case ProposalTypeExternalInit, ProposalTypeRemove, ProposalTypePSK:
		default:
			return proposalError("external commit may not carry type %d", p.Type)
		}
	}
	switch p.Type {
	case ProposalTypeAdd:
		kp := &p.Add.KeyPackage
		if err := kp.Validate(cs, g.cfg.now()); err != nil {
			return proposalError("add: %v", err)
		}
		if err := g.cfg.validate(kp.LeafNode.Credential, kp.LeafNode.SignatureKey); err != nil {
			return err
		}
		req, err := requiredCapabilities(g.ctx.Extensions)
		if err != nil {
			return proposalError("group required_capabilities: %v", err)
		}
		if err := leafSupports(&kp.LeafNode, g.ctx.Extensions, req); err != nil {
			return proposalError("add: %v", err)
		}
	case ProposalTypeUpdate:
		if sender.Type != SenderTypeMember {
			return proposalError("update from a non-member")
		}
		if inCommit {
			return proposalError("update by value in a commit")
		}
		l := &p.Update.LeafNode
		if l.Source != LeafNodeSourceUpdate {
			return proposalError("update leaf source is %d", l.Source)
		}
		if err := g.validateMemberLeaf(l, sender.LeafIndex); err != nil {
			return proposalError("update: %v", err)
		}
	case ProposalTypeRemove:
		r := p.Remove.Removed
		if uint32(r) >= g.tree.leafCount() || g.tree.leaf(r) == nil {
			return proposalError("remove of empty leaf %d", r)
		}
	case ProposalTypePSK:
		id := &p.PreSharedKey.PSK
		if len(id.PSKNonce) != cs.Nh() {
			return proposalError("psk nonce length %d", len(id.PSKNonce))
		}
		if id.PSKType == PSKTypeResumption && id.Usage != ResumptionPSKUsageApplication && !g.resumedFrom.matches(id) {
			return proposalError("resumption psk with usage %d outside reinit or branch", id.Usage)
		}
	case ProposalTypeReInit:
		if p.ReInit.Version < g.ctx.Version {
			return proposalError("reinit to an older protocol version")
		}
	case ProposalTypeExternalInit:
		if !inCommit || sender.Type != SenderTypeNewMemberCommit {
			return proposalError("external init outside an external commit")
		}
	case ProposalTypeGroupContextExtensions:
		if err := g.checkGroupExtensions(p.GroupContextExtensions.Extensions, g.tree); err != nil {
			return proposalError("group context extensions: %v", err)
		}
	default:
		return proposalError("unsupported type %d", p.Type)
	}
	return nil
}

// validateMemberLeaf checks a leaf node that a member sends for its own leaf (in an
// Update or a commit's path): RFC 9420 §7.3.
func (g *Group) validateMemberLeaf(l *LeafNode, leaf LeafIndex) error {
	if err := g.validateMemberLeafIn(l, leaf, g.tree, g.ctx.Extensions); err != nil {
		return err
	}
	if cur := g.tree.leaf(leaf); cur != nil && equalBytes(cur.EncryptionKey, l.EncryptionKey) {
		return leafNodeError("encryption key not renewed")
	}
	return nil
}

// applied is a proposal list applied to a copy of the tree (RFC 9420 §12.3).
type applied struct {
	tree         *ratchetTree
	extensions   Extensions
	extChanged   bool
	added        []LeafIndex
	addedKPs     []*KeyPackage
	removed      []Member
	updated      []LeafIndex
	psks         []PreSharedKeyID
	reinit       *ReInit
	externalInit *ExternalInit
	needsPath    bool
	selfRemoved  bool
}

// applyProposals validates a commit's proposal list as a whole (RFC 9420 §12.2) and
// applies it, in the order of §12.3, to a copy of the tree.
func (g *Group) applyProposals(list []cachedProposal, committer Sender) (*applied, error) {
	a := &applied{tree: g.tree.clone(), extensions: g.ctx.Extensions, needsPath: len(list) == 0}
	external := committer.Type == SenderTypeNewMemberCommit
	var (
		gce      *GroupContextExtensions
		updates  []cachedProposal
		removes  []LeafIndex
		adds     []*KeyPackage
		touched  = map[LeafIndex]bool{}
		addKeys  = map[string]bool{}
		pskSeen  []PreSharedKeyID
		nExtInit int
	)
	for _, cp := range list {
		p := cp.proposal
		switch p.Type {
		case ProposalTypeAdd:
			kp := &p.Add.KeyPackage
			if addKeys[string(kp.LeafNode.SignatureKey)] {
				return nil, proposalError("two adds of the same client")
			}
			addKeys[string(kp.LeafNode.SignatureKey)] = true
			adds = append(adds, kp)
		case ProposalTypeUpdate:
			if committer.Type == SenderTypeMember && cp.sender.LeafIndex == committer.LeafIndex {
				return nil, proposalError("commit includes the committer's own update")
			}
			if touched[cp.sender.LeafIndex] {
				return nil, proposalError("two updates or removes for leaf %d", cp.sender.LeafIndex)
			}
			touched[cp.sender.LeafIndex] = true
			updates = append(updates, cp)
			a.needsPath = true
		case ProposalTypeRemove:
			r := p.Remove.Removed
			if committer.Type == SenderTypeMember && r == committer.LeafIndex {
				return nil, proposalError("commit removes the committer")
			}
			if touched[r] {
				return nil, proposalError("two updates or removes for leaf %d", r)
			}
			touched[r] = true
			removes = append(removes, r)
			a.needsPath = true
		case ProposalTypePSK:
			id := p.PreSharedKey.PSK
			for i := range pskSeen {
				if pskSeen[i].equal(&id) {
					return nil, proposalError("psk proposed twice")
				}
			}
			pskSeen = append(pskSeen, id)
		case ProposalTypeReInit:
			if len(list) != 1 {
				return nil, proposalError("reinit together with other proposals")
			}
			a.reinit = p.ReInit
		case ProposalTypeExternalInit:
			if !external {
				return nil, proposalError("external init in a member's commit")
			}
			nExtInit++
			a.externalInit = p.ExternalInit
			a.needsPath = true
		case ProposalTypeGroupContextExtensions:
			if gce != nil {
				return nil, proposalError("two group context extensions proposals")
			}
			gce = p.GroupContextExtensions
			a.needsPath = true
		default:
			return nil, proposalError("unsupported type %d", p.Type)
		}
	}
	if external {
		if nExtInit != 1 {
			return nil, proposalError("external commit needs exactly one external init")
		}
		if len(removes) > 1 || len(adds) > 0 || len(updates) > 0 || gce != nil || a.reinit != nil {
			return nil, proposalError("external commit carries proposals other than external init, one remove and psks")
		}
	}
	// Every member must support every non-default proposal type used (none here beyond the defaults).

	// 1. GroupContextExtensions.
	if gce != nil {
		a.extensions = gce.Extensions
		a.extChanged = true
	}
	// 2. Updates.
	for _, cp := range updates {
		a.tree.updateLeaf(cp.sender.LeafIndex, cp.proposal.Update.LeafNode.clone())
		a.updated = append(a.updated, cp.sender.LeafIndex)
	}
	// 3. Removes.
	for _, r := range removes {
		m, ok := g.Member(r)
		if !ok {
			return nil, proposalError("remove of empty leaf %d", r)
		}
		a.removed = append(a.removed, m)
		if r == g.myLeaf {
			a.selfRemoved = true
		}
		a.tree.removeLeaf(r)
	}
	// Adds may not bring a client that is (still) in the group, nor reuse keys.
	for _, kp := range adds {
		for i := uint32(0); i < a.tree.leafCount(); i++ {
			l := a.tree.leaf(LeafIndex(i))
			if l == nil {
				continue
			}
			if equalBytes(l.SignatureKey, kp.LeafNode.SignatureKey) {
				return nil, proposalError("add of a client already in the group (leaf %d)", i)
			}
			if equalBytes(l.EncryptionKey, kp.LeafNode.EncryptionKey) || equalBytes(l.EncryptionKey, kp.InitKey) {
				return nil, proposalError("add reuses the encryption key of leaf %d", i)
			}
		}
	}
	// 4. Adds.
	for _, kp := range adds {
		leaf := a.tree.addLeaf(kp.LeafNode.clone())
		a.added = append(a.added, leaf)
		a.addedKPs = append(a.addedKPs, kp)
	}
	// 5. PSKs are injected into the key schedule in order.
	a.psks = pskSeen
	if gce != nil {
		if err := g.checkGroupExtensions(a.extensions, a.tree); err != nil {
			return nil, proposalError("group context extensions: %v", err)
		}
	}
	return a, nil
}

// namedProposals looks up, for a commit by this member (me), the cached proposals
// refs names, in that order. A name of this member's own Update is left out, and
// ownUpdate reports it: the commit's path replaces it (RFC 9420 §12.2).
func (g *Group) namedProposals(refs []ProposalRef, me Sender) (list []cachedProposal, ownUpdate bool, err error) {
	named := make(map[string]bool, len(refs))
	for i, ref := range refs {
		if named[string(ref)] {
			return nil, false, fmt.Errorf("mls: CommitOptions.ProposalRefs[%d] names a proposal twice", i)
		}
		named[string(ref)] = true
		cp, ok := g.cachedProposal(ref)
		if !ok {
			return nil, false, fmt.Errorf("%w: CommitOptions.ProposalRefs[%d]", ErrUnknownProposal, i)
		}
		if cp.proposal.Type == ProposalTypeUpdate && cp.sender == me {
			ownUpdate = true
			continue
		}
		list = append(list, cp)
	}
	return list, ownUpdate, nil
}

// cachedProposal returns the proposal of this epoch's cache with the given reference.
func (g *Group) cachedProposal(ref ProposalRef) (cachedProposal, bool) {
	for _, cp := range g.proposals {
		if equalBytes(cp.ref, ref) {
			return cp, true
		}
	}
	return cachedProposal{}, false
}

// validCachedProposals chooses, for a commit by this member (me) that also carries
// byValue, the cached proposals to commit by reference, in cache order: every one
// that is valid on its own and alongside the others. RFC 9420 §12.2 has the committer
// leave the rest out rather than fail, so a proposal that was valid when it arrived
// but conflicts with another cannot block the group:
//
//   - this member's own Updates are left out (ownUpdate reports one): the commit's
//     path replaces them;
//   - a proposal that no longer passes validateProposal is left out (a KeyPackage
//     or credential that expired since, for example);
//   - a Remove of this member, or of a leaf another Remove already removes, is left out;
//   - of Updates of one leaf, only the most recent is kept, and none when the leaf
//     is removed;
//   - of Adds of one client (one signature key), only the first is kept, and none
//     when the client is in the group and not removed, or its keys are a member's;
//   - of PSK proposals of one PreSharedKeyID, only the first is kept, and none that
//     this member cannot resolve;
//   - of GroupContextExtensions, only the first is kept, and none when byValue adds
//     a client that does not support it; Adds and Updates of leaves that do not
//     support the new extensions are left out;
//   - a ReInit is kept only when nothing else is committed, the first one then.
//
// byValue proposals always win over cached ones; those that are invalid together
// are left for applyProposals to refuse, since the caller asked for them.
func (g *Group) validCachedProposals(byValue []*Proposal, me Sender) (list []cachedProposal, ownUpdate bool) {
	cs := g.ctx.CipherSuite
	keep := make([]bool, len(g.proposals))
	valid := make([]bool, len(g.proposals))
	for i, cp := range g.proposals {
		if cp.proposal.Type == ProposalTypeUpdate && cp.sender == me {
			ownUpdate = true
			continue
		}
		valid[i] = g.validateProposal(cp.proposal, cp.sender, false) == nil
	}
	of := func(t ProposalType) func(yield func(int, cachedProposal) bool) {
		return func(yield func(int, cachedProposal) bool) {
			for i, cp := range g.proposals {
				if valid[i] && cp.proposal.Type == t && !yield(i, cp) {
					return
				}
			}
		}
	}

	// What byValue takes first.
	removed := map[LeafIndex]bool{}
	clients := map[string]bool{} // signature keys of added clients
	var (
		psks     []PreSharedKeyID
		exts     *Extensions
		addLeafs []*LeafNode
	)
	for _, p := range byValue {
		switch p.Type {
		case ProposalTypeRemove:
			removed[p.Remove.Removed] = true
		case ProposalTypeAdd:
			clients[string(p.Add.KeyPackage.LeafNode.SignatureKey)] = true
			addLeafs = append(addLeafs, &p.Add.KeyPackage.LeafNode)
		case ProposalTypePSK:
			psks = append(psks, p.PreSharedKey.PSK)
		case ProposalTypeGroupContextExtensions:
			exts = &p.GroupContextExtensions.Extensions
		}
	}

	// Removes (RFC 9420 §12.2: a Remove wins over Updates of the same leaf).
	for i, cp := range of(ProposalTypeRemove) {
		r := cp.proposal.Remove.Removed
		if r == me.LeafIndex || removed[r] {
			continue
		}
		removed[r] = true
		keep[i] = true
	}
	// GroupContextExtensions: the first that every leaf byValue adds supports.
	if exts == nil {
	nextGCE:
		for i, cp := range of(ProposalTypeGroupContextExtensions) {
			e := cp.proposal.GroupContextExtensions.Extensions
			req, err := requiredCapabilities(e)
			if err != nil {
				continue
			}
			for _, l := range addLeafs {
				if leafSupports(l, e, req) != nil {
					continue nextGCE
				}
			}
			exts = &cp.proposal.GroupContextExtensions.Extensions
			keep[i] = true
			break
		}
	}
	supports := func(*LeafNode) bool { return true } // validateProposal checked the current extensions
	if exts != nil {
		req, err := requiredCapabilities(*exts)
		supports = func(l *LeafNode) bool { return err == nil && leafSupports(l, *exts, req) == nil }
	}
	// Updates: the most recent of each leaf that stays.
	updated := map[LeafIndex]*LeafNode{}
	for i := len(g.proposals) - 1; i >= 0; i-- {
		cp := g.proposals[i]
		if !valid[i] || cp.proposal.Type != ProposalTypeUpdate {
			continue
		}
		leaf, l := cp.sender.LeafIndex, &cp.proposal.Update.LeafNode
		if removed[leaf] || updated[leaf] != nil || !supports(l) {
			continue
		}
		updated[leaf] = l
		keep[i] = true
	}
	// Adds: one per client, of clients not in the group once removes and updates apply.
nextAdd:
	for i, cp := range of(ProposalTypeAdd) {
		kp := &cp.proposal.Add.KeyPackage
		if clients[string(kp.LeafNode.SignatureKey)] || !supports(&kp.LeafNode) {
			continue
		}
		for j := uint32(0); j < g.tree.leafCount(); j++ {
			leaf := LeafIndex(j)
			l := g.tree.leaf(leaf)
			if l == nil || removed[leaf] {
				continue
			}
			if u := updated[leaf]; u != nil {
				l = u
			}
			if equalBytes(l.SignatureKey, kp.LeafNode.SignatureKey) ||
				equalBytes(l.EncryptionKey, kp.LeafNode.EncryptionKey) || equalBytes(l.EncryptionKey, kp.InitKey) {
				continue nextAdd
			}
		}
		clients[string(kp.LeafNode.SignatureKey)] = true
		keep[i] = true
	}
	// PSKs: each PreSharedKeyID once, and only those this member holds.
nextPSK:
	for i, cp := range of(ProposalTypePSK) {
		id := cp.proposal.PreSharedKey.PSK
		for j := range psks {
			if psks[j].equal(&id) {
				continue nextPSK
			}
		}
		if _, err := resolvePSKs(cs, &g.cfg, g.ctx.GroupID, g.resumption, g.resumedFrom, []PreSharedKeyID{id}); err != nil {
			continue
		}
		psks = append(psks, id)
		keep[i] = true
	}
	// ReInit: only alone (RFC 9420 §12.2).
	alone := len(byValue) == 0
	for _, k := range keep {
		alone = alone && !k
	}
	if alone {
		for i := range of(ProposalTypeReInit) {
			keep[i] = true
			break
		}
	}
	for i, cp := range g.proposals {
		if keep[i] {
			list = append(list, cp)
		}
	}
	return list, ownUpdate
}

// resolveProposals turns a commit's ProposalOrRef list into proposals with their
// senders: references are looked up in this epoch's cache (RFC 9420 §12.4).
func (g *Group) resolveProposals(c *Commit, committer Sender) ([]cachedProposal, error) {
	var out []cachedProposal
	for _, por := range c.Proposals {
		switch por.Type {
		case ProposalOrRefTypeProposal:
			if err := g.validateProposal(por.Proposal, committer, true); err != nil {
				return nil, err
			}
			out = append(out, cachedProposal{proposal: por.Proposal, sender: committer})
		case ProposalOrRefTypeReference:
			if committer.Type != SenderTypeMember {
				return nil, proposalError("external commit refers to a cached proposal")
			}
			cp, ok := g.cachedProposal(por.Reference)
			if !ok {
				return nil, proposalError("commit refers to an unknown proposal")
			}
			out = append(out, cp)
		default:
			return nil, errors.New("mls: unknown ProposalOrRef type")
		}
	}
	return out, nil
}

// resolvePSKs fetches the PSKs of a commit or Welcome and computes psk_secret (RFC 9420 §8.4).
func (g *Group) resolvePSKs(ids []PreSharedKeyID) ([]byte, error) {
	return resolvePSKs(g.ctx.CipherSuite, &g.cfg, g.ctx.GroupID, g.resumption, g.resumedFrom, ids)
}

// resolvePSKs looks up every PSK: external ones through cfg, resumption ones among the
// group's kept resumption secrets (for the group groupID) or, in the first commit of
// a group started by ReInit or branching, the previous group's resumed PSK.
func resolvePSKs(cs CipherSuite, cfg *Config, groupID GroupID, resumption map[uint64][]byte, resumed *resumedPSK, ids []PreSharedKeyID) ([]byte, error) {
	psks := make([][]byte, len(ids))
	for i := range ids {
		id := &ids[i]
		switch id.PSKType {
		case PSKTypeExternal:
			if cfg.ExternalPSK == nil {
				return nil, errors.New("mls: unknown external psk")
			}
			psk, ok := cfg.ExternalPSK(id.PSKID)
			if !ok {
				return nil, errors.New("mls: unknown external psk")
			}
			psks[i] = psk
		case PSKTypeResumption:
			if resumed.matches(id) {
				psks[i] = resumed.secret
				continue
			}
			if !equalBytes(id.PSKGroupID, groupID) {
				return nil, errors.New("mls: resumption psk of another group is not held")
			}
			psk, ok := resumption[id.PSKEpoch]
			if !ok {
				return nil, fmt.Errorf("mls: resumption psk of epoch %d is not held", id.PSKEpoch)
			}
			psks[i] = psk
		default:
			return nil, errors.New("mls: unknown psk type")
		}
	}
	return pskSecret(cs, ids, psks)
}
