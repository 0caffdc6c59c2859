package mls

import (
	"errors"
	"fmt"
	"io"
)

// Successor groups (RFC 9420 §11.2 ReInit, §11.3 branching): a new group whose first
// commit injects a resumption PSK of the group it continues.

// resumedPSK is the resumption PSK of the previous group that the first commit of a
// group started by ReInit or branching injects (RFC 9420 §11.2, §11.3).
type resumedPSK struct {
	id     PreSharedKeyID
	secret []byte
}

// matches reports whether id is the resumed PSK; r may be nil.
func (r *resumedPSK) matches(id *PreSharedKeyID) bool {
	return r != nil && r.id.equal(id)
}

// ReInitGroup starts the group that replaces g after g's ReInit commit (RFC 9420
// §11.2): a group with the ReInit's group ID, cipher suite and extensions, whose
// first commit adds kps and injects the resumption PSK (usage reinit) of g's last
// epoch. cred and sigKey are this member's, for the new cipher suite. The returned
// group is in epoch 1; the result's Welcome is for the new members, who join with
// JoinOptions.ResumptionPSK returning g's ResumptionPSK and JoinOptions.Resumption
// expecting usage reinit, g's group ID and epoch, and g's PendingReInit.
func (g *Group) ReInitGroup(cred Credential, sigKey *SignaturePrivateKey, kps []*KeyPackage, opts CommitOptions, cfg Config) (*Group, *CommitResult, error) {
	r := g.reinit
	if r == nil {
		return nil, nil, errors.New("mls: group was not reinitialized")
	}
	if r.Version != ProtocolVersionMLS10 {
		return nil, nil, fmt.Errorf("mls: reinit to unsupported protocol version %d", r.Version)
	}
	return g.startResumed(ResumptionPSKUsageReinit, r.CipherSuite, r.GroupID, cred, sigKey, kps,
		CreateOptions{Extensions: r.Extensions}, opts, cfg)
}

// Branch starts a subgroup of g (RFC 9420 §11.3): a group with ID groupID and g's
// cipher suite, with this member's credential and signature key, whose first commit
// adds kps and injects the resumption PSK (usage branch) of g's current epoch. The
// returned group is in epoch 1; the new members join from the result's Welcome with
// JoinOptions.ResumptionPSK returning g's ResumptionPSK and JoinOptions.Resumption
// expecting usage branch, g's group ID, epoch and cipher suite.
func (g *Group) Branch(groupID GroupID, kps []*KeyPackage, create CreateOptions, opts CommitOptions, cfg Config) (*Group, *CommitResult, error) {
	if err := g.checkActive(); err != nil {
		return nil, nil, err
	}
	me := g.tree.leaf(g.myLeaf)
	return g.startResumed(ResumptionPSKUsageBranch, g.ctx.CipherSuite, groupID, me.Credential, g.sigKey, kps, create, opts, cfg)
}

// startResumed creates a group and merges its first commit, which adds kps and
// injects g's resumption PSK of its current epoch with the given usage.
func (g *Group) startResumed(usage ResumptionPSKUsage, cs CipherSuite, groupID GroupID, cred Credential, sigKey *SignaturePrivateKey,
	kps []*KeyPackage, create CreateOptions, opts CommitOptions, cfg Config) (*Group, *CommitResult, error) {
	secret, ok := g.resumption[g.ctx.Epoch]
	if !ok {
		return nil, nil, fmt.Errorf("mls: resumption psk of epoch %d is not held", g.ctx.Epoch)
	}
	next, err := NewGroup(cs, groupID, cred, sigKey, create, cfg)
	if err != nil {
		return nil, nil, err
	}
	nonce := make([]byte, cs.Nh())
	if _, err := io.ReadFull(next.cfg.rand(), nonce); err != nil {
		return nil, nil, err
	}
	id := PreSharedKeyID{PSKType: PSKTypeResumption, Usage: usage, PSKGroupID: g.GroupID(), PSKEpoch: g.ctx.Epoch, PSKNonce: nonce}
	next.resumedFrom = &resumedPSK{id: id, secret: append([]byte{}, secret...)}
	proposals := make([]*Proposal, 0, len(kps)+1+len(opts.Proposals))
	for _, kp := range kps {
		proposals = append(proposals, &Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *kp}})
	}
	proposals = append(proposals, &Proposal{Type: ProposalTypePSK, PreSharedKey: &PreSharedKey{PSK: id}})
	opts.Proposals = append(proposals, opts.Proposals...)
	res, err := next.Commit(opts)
	if err != nil {
		return nil, nil, err
	}
	if _, err := next.MergePendingCommit(); err != nil {
		return nil, nil, err
	}
	return next, res, nil
}
