package mls

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Config carries what a Group takes from its application. The zero value of each
// optional field selects a sensible default; Validator is required.
type Config struct {
	// Rand is the source of every secret the group makes; defaults to crypto/rand.
	Rand io.Reader
	// Now is the clock used to check KeyPackage lifetimes; defaults to time.Now. A
	// Now that returns the zero time disables lifetime checks (replaying recorded
	// traffic, such as test vectors, whose KeyPackages have long expired).
	Now func() time.Time
	// Validator approves every credential the group is about to accept.
	Validator CredentialValidator
	// ExternalPSK returns the external pre-shared key with the given ID.
	ExternalPSK func(id []byte) ([]byte, bool)
	// EncryptHandshake sends this member's proposals and commits as PrivateMessage.
	EncryptHandshake bool
	// PaddingBlock pads PrivateMessage content to a multiple of this many bytes (default 32).
	PaddingBlock int
	// OmitRatchetTree leaves the ratchet_tree extension out of Welcome messages and
	// GroupInfos by default (CommitOptions.RatchetTree and GroupInfoOptions override
	// it per call); a joiner must then be given the tree out of band.
	OmitRatchetTree bool
	// MaxForwardDistance bounds how far ahead of the last seen generation a message may be
	// (default 1000); MaxSkippedKeys bounds the keys kept for out-of-order messages (default 128).
	MaxForwardDistance, MaxSkippedKeys uint32
	// ResumptionEpochs is how many past epochs' resumption PSKs are kept (default 16).
	ResumptionEpochs int
	// PastEpochs is how many earlier epochs' keys are kept to read application
	// messages sent before a commit landed (default 2; -1 keeps none). Keys of an
	// epoch are deleted once it falls out of this window.
	PastEpochs int
}

func (c *Config) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return rand.Reader
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Config) paddingBlock() int {
	if c.PaddingBlock > 0 {
		return c.PaddingBlock
	}
	return 32
}

func (c *Config) resumptionEpochs() int {
	if c.ResumptionEpochs > 0 {
		return c.ResumptionEpochs
	}
	return 16
}

func (c *Config) validate(cred Credential, key SignaturePublicKey) error {
	if c.Validator == nil {
		return errors.New("mls: no credential validator configured")
	}
	if err := c.Validator.ValidateCredential(cred, key); err != nil {
		return fmt.Errorf("%w: %v", ErrCredentialRejected, err)
	}
	return nil
}

// AcceptAllCredentials is a CredentialValidator that approves every credential. It
// exists for tests and interop harnesses; an application must plug in its authority.
var AcceptAllCredentials = CredentialValidatorFunc(func(Credential, SignaturePublicKey) error { return nil })

// Errors returned by Group methods.
var (
	// ErrCredentialRejected is returned when the Validator refuses a credential.
	ErrCredentialRejected = errors.New("mls: credential rejected")
	// ErrWrongEpoch is returned for a message from another epoch than the group's current one.
	ErrWrongEpoch = errors.New("mls: message is for another epoch")
	// ErrWrongGroup is returned for a message of another group.
	ErrWrongGroup = errors.New("mls: message is for another group")
	// ErrInvalidCommit is wrapped by every reason a commit is refused.
	ErrInvalidCommit = errors.New("mls: invalid commit")
	// ErrInvalidProposal is wrapped by every reason a proposal is refused.
	ErrInvalidProposal = errors.New("mls: invalid proposal")
	// ErrInactive is returned when the member has been removed from the group.
	ErrInactive = errors.New("mls: no longer a member of the group")
	// ErrPendingCommit is returned when an operation conflicts with a commit awaiting confirmation.
	ErrPendingCommit = errors.New("mls: a commit of this member is pending")
	// ErrOwnMessage is returned when a member is handed back a commit or proposal it sent.
	ErrOwnMessage = errors.New("mls: message sent by this member")
)

// Member is one leaf of the group's roster; its fields are copies the caller may keep.
type Member struct {
	Leaf         LeafIndex
	Credential   Credential
	SignatureKey SignaturePublicKey
	LeafNode     *LeafNode
}

// cachedProposal is a proposal received (or sent) in the current epoch, awaiting a commit.
type cachedProposal struct {
	ref      ProposalRef
	proposal *Proposal
	sender   Sender
}

// Group is one member's state of an MLS group (RFC 9420 §8–§12). A Group is not
// safe for concurrent use: the application serializes calls, as it must anyway to
// keep epochs in order.
type Group struct {
	cfg Config

	ctx    GroupContext
	tree   *ratchetTree
	keys   *treePrivateKeys
	myLeaf LeafIndex
	sigKey *SignaturePrivateKey

	epoch           *epochSecrets
	secrets         *secretTree
	interim         []byte
	confirmationTag []byte

	proposals  []cachedProposal
	pending    *pendingCommit
	resumption map[uint64][]byte // epoch -> resumption_psk
	active     bool
	// reinit is set when a ReInit commit ended this group: it may only be used to
	// start its successor.
	reinit *ReInit
	// past holds the earlier epochs still readable, oldest first.
	past []pastEpoch
	// resumedFrom is set, until its first commit, in a group started by ReInit or
	// branching: the previous group's resumption PSK that commit injects (RFC 9420
	// §11.2, §11.3).
	resumedFrom *resumedPSK
}

// CipherSuite returns the group's cipher suite.
func (g *Group) CipherSuite() CipherSuite { return g.ctx.CipherSuite }

// GroupID returns the group's ID.
func (g *Group) GroupID() GroupID { return append(GroupID{}, g.ctx.GroupID...) }

// Epoch returns the current epoch.
func (g *Group) Epoch() uint64 { return g.ctx.Epoch }

// GroupContext returns a copy of the current GroupContext.
func (g *Group) GroupContext() GroupContext { return g.ctx.clone() }

// OwnLeaf returns this member's leaf index.
func (g *Group) OwnLeaf() LeafIndex { return g.myLeaf }

// Active reports whether this member is still in the group.
func (g *Group) Active() bool { return g.active }

// PendingReInit returns the ReInit that ended this group, if any.
func (g *Group) PendingReInit() *ReInit { return g.reinit }

// EpochAuthenticator returns the epoch_authenticator of the current epoch (RFC 9420 §8.7):
// members who compare it out of band know they share the same view of the group.
func (g *Group) EpochAuthenticator() []byte { return append([]byte{}, g.epoch.epochAuthenticator...) }

// Export implements MLS-Exporter (RFC 9420 §8.5).
func (g *Group) Export(label string, context []byte, length int) ([]byte, error) {
	return g.epoch.export(g.ctx.CipherSuite, label, context, length)
}

// ResumptionPSK returns the resumption PSK of an epoch this member still holds.
func (g *Group) ResumptionPSK(epoch uint64) ([]byte, bool) {
	psk, ok := g.resumption[epoch]
	return psk, ok
}

// Members returns the current roster in leaf order.
func (g *Group) Members() []Member {
	var out []Member
	for i := uint32(0); i < g.tree.leafCount(); i++ {
		l := g.tree.leaf(LeafIndex(i))
		if l == nil {
			continue
		}
		l = l.clone() // the tree's nodes are shared between epochs: never hand them out
		out = append(out, Member{Leaf: LeafIndex(i), Credential: l.Credential, SignatureKey: l.SignatureKey, LeafNode: l})
	}
	return out
}

// Member returns the member at leaf, if that leaf is occupied.
func (g *Group) Member(leaf LeafIndex) (Member, bool) {
	if uint32(leaf) >= g.tree.leafCount() {
		return Member{}, false
	}
	l := g.tree.leaf(leaf)
	if l == nil {
		return Member{}, false
	}
	l = l.clone()
	return Member{Leaf: leaf, Credential: l.Credential, SignatureKey: l.SignatureKey, LeafNode: l}, true
}

// TreeHash returns the tree hash of the current ratchet tree.
func (g *Group) TreeHash() []byte { return append([]byte{}, g.ctx.TreeHash...) }

// RatchetTree returns the ratchet_tree extension data of the current tree, for
// giving to a joiner out of band.
func (g *Group) RatchetTree() []byte { return g.tree.marshalExtension() }

// CreateOptions control NewGroup.
type CreateOptions struct {
	// Extensions of the group's GroupContext.
	Extensions Extensions
	// Capabilities of the creator's leaf; defaults to DefaultCapabilities().
	Capabilities *Capabilities
	// LeafExtensions of the creator's leaf.
	LeafExtensions Extensions
}

// NewGroup creates a one-member group (RFC 9420 §11) with the creator's credential.
func NewGroup(cs CipherSuite, groupID GroupID, cred Credential, sigKey *SignaturePrivateKey, opts CreateOptions, cfg Config) (*Group, error) {
	if !cs.Supported() {
		return nil, fmt.Errorf("%w: 0x%04x", ErrUnsupportedCipherSuite, uint16(cs))
	}
	if len(groupID) == 0 {
		return nil, errors.New("mls: empty group ID")
	}
	if err := cfg.validate(cred, sigKey.Public()); err != nil {
		return nil, err
	}
	caps := DefaultCapabilities()
	if opts.Capabilities != nil {
		caps = *opts.Capabilities
	}
	rnd := cfg.rand()
	encKey, err := cs.GenerateHPKEKey(rnd)
	if err != nil {
		return nil, err
	}
	now := cfg.now()
	leaf := &LeafNode{
		EncryptionKey: encKey.Public(),
		SignatureKey:  sigKey.Public(),
		Credential:    cred,
		Capabilities:  caps,
		Source:        LeafNodeSourceKeyPackage,
		Lifetime:      Lifetime{NotBefore: uint64(now.Add(-time.Hour).Unix()), NotAfter: uint64(now.Add(90 * 24 * time.Hour).Unix())},
		Extensions:    opts.LeafExtensions,
	}
	if err := leaf.sign(cs, sigKey, nil, 0, rnd); err != nil {
		return nil, err
	}
	g := &Group{
		cfg:        cfg,
		tree:       newRatchetTree(leaf),
		keys:       newTreePrivateKeys(0, encKey),
		myLeaf:     0,
		sigKey:     sigKey,
		resumption: map[uint64][]byte{},
		active:     true,
	}
	if err := g.checkGroupExtensions(opts.Extensions, g.tree); err != nil {
		return nil, err
	}
	g.ctx = GroupContext{
		Version:     ProtocolVersionMLS10,
		CipherSuite: cs,
		GroupID:     append(GroupID{}, groupID...),
		Epoch:       0,
		TreeHash:    g.tree.treeHash(cs),
		Extensions:  opts.Extensions,
	}
	initSecret := make([]byte, cs.Nh())
	if _, err := io.ReadFull(rnd, initSecret); err != nil {
		return nil, err
	}
	commitSecret := make([]byte, cs.Nh())
	pskSecret := make([]byte, cs.Nh())
	g.epoch = newEpochSecrets(cs, initSecret, commitSecret, pskSecret, g.ctx.Bytes())
	g.confirmationTag = cs.MAC(g.epoch.confirmationKey, g.ctx.ConfirmedTranscriptHash)
	g.interim = interimTranscriptHash(cs, g.ctx.ConfirmedTranscriptHash, g.confirmationTag)
	g.startEpoch()
	return g, nil
}

// startEpoch sets up the per-epoch state after the epoch secrets changed.
func (g *Group) startEpoch() {
	cs := g.ctx.CipherSuite
	g.secrets = newSecretTree(cs, g.epoch.encryptionSecret, g.tree.leafCount())
	g.secrets.setWindow(g.cfg.MaxForwardDistance, g.cfg.MaxSkippedKeys)
	g.proposals = nil
	g.pending = nil
	g.resumption[g.ctx.Epoch] = append([]byte{}, g.epoch.resumptionPSK...)
	if keep := g.cfg.resumptionEpochs(); len(g.resumption) > keep {
		for e := range g.resumption {
			if e+uint64(keep) <= g.ctx.Epoch {
				delete(g.resumption, e)
			}
		}
	}
}

// checkGroupExtensions checks that every member of tree supports the group context
// extensions exts and any required_capabilities among them (RFC 9420 §11.1, §12.1.7).
func (g *Group) checkGroupExtensions(exts Extensions, tree *ratchetTree) error {
	req, err := requiredCapabilities(exts)
	if err != nil {
		return err
	}
	if data, ok := exts.Find(ExtensionTypeExternalSenders); ok {
		senders, err := UnmarshalExternalSenders(data)
		if err != nil {
			return err
		}
		for _, s := range senders {
			if err := g.cfg.validate(s.Credential, s.SignatureKey); err != nil {
				return err
			}
		}
	}
	for i := uint32(0); i < tree.leafCount(); i++ {
		l := tree.leaf(LeafIndex(i))
		if l == nil {
			continue
		}
		if err := leafSupports(l, exts, req); err != nil {
			return fmt.Errorf("mls: member at leaf %d: %w", i, err)
		}
	}
	return nil
}

// leafSupports checks a leaf's capabilities against group context extensions and
// required capabilities.
func leafSupports(l *LeafNode, exts Extensions, req *RequiredCapabilities) error {
	for _, e := range exts {
		if !l.Capabilities.supportsExtension(e.Type) {
			return fmt.Errorf("%w: does not support group extension %d", ErrInvalidLeafNode, e.Type)
		}
	}
	if req == nil {
		return nil
	}
	for _, t := range req.ExtensionTypes {
		if !l.Capabilities.supportsExtension(t) {
			return fmt.Errorf("%w: does not support required extension %d", ErrInvalidLeafNode, t)
		}
	}
	for _, t := range req.ProposalTypes {
		if !l.Capabilities.supportsProposal(t) {
			return fmt.Errorf("%w: does not support required proposal %d", ErrInvalidLeafNode, t)
		}
	}
	for _, t := range req.CredentialTypes {
		if !slices.Contains(l.Capabilities.Credentials, t) {
			return fmt.Errorf("%w: does not support required credential %d", ErrInvalidLeafNode, t)
		}
	}
	return nil
}

// requiredCapabilities returns the group's required_capabilities, if any.
func requiredCapabilities(exts Extensions) (*RequiredCapabilities, error) {
	data, ok := exts.Find(ExtensionTypeRequiredCapabilities)
	if !ok {
		return nil, nil
	}
	r, err := UnmarshalRequiredCapabilities(data)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// externalSenders returns the group's external senders.
func (g *Group) externalSenders() ([]ExternalSender, error) {
	data, ok := g.ctx.Extensions.Find(ExtensionTypeExternalSenders)
	if !ok {
		return nil, nil
	}
	return UnmarshalExternalSenders(data)
}

// framing returns the wire format this member sends handshake messages in.
func (g *Group) handshakeWireFormat() WireFormat {
	if g.cfg.EncryptHandshake {
		return WireFormatPrivateMessage
	}
	return WireFormatPublicMessage
}

// checkActive refuses to act in a group this member has left or that was reinitialized.
func (g *Group) checkActive() error {
	if !g.active {
		return ErrInactive
	}
	if g.reinit != nil {
		return errors.New("mls: group was reinitialized; use its successor")
	}
	return nil
}

// equalBytes compares public values.
func equalBytes(a, b []byte) bool { return bytes.Equal(a, b) }
