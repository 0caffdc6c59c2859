package mls

import (
	"errors"
	"maps"
	"slices"

	"golang.org/x/crypto/cryptobyte"
)

// stateMagic and stateVersion head every serialized group state, so that a stored
// state of another format is refused rather than misread.
const (
	stateMagic   = "MLSGROUP"
	stateVersion = 1
)

// ErrState is returned when stored group state cannot be read.
var ErrState = errors.New("mls: unreadable group state")

// MarshalState serializes the group's whole state, secrets included, for the
// application's encrypted store. The result is secret and must be kept encrypted at
// rest. A pending commit is not kept: after reloading, a member commits again.
//
//	struct {
//	    opaque magic[8] = "MLSGROUP";
//	    uint16 version = 1;
//	    GroupContext context;
//	    optional<Node> ratchet_tree<V>;
//	    uint32 own_leaf;
//	    opaque signature_private_key<V>;
//	    opaque tree_private_keys<V>;
//	    EpochSecrets epoch_secrets;
//	    SecretTreeState secret_tree;
//	    opaque interim_transcript_hash<V>;
//	    opaque confirmation_tag<V>;
//	    CachedProposal proposals<V>;    /* ref, sender, proposal */
//	    ResumptionPSK resumption_psks<V>; /* uint64 epoch, opaque psk<V> */
//	    PastEpoch past_epochs<V>;    /* epoch, group context, sender data secret, secret tree, tree */
//	    bool active;
//	    optional<ReInit> reinit;
//	} GroupState;
func (g *Group) MarshalState() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddBytes([]byte(stateMagic))
	b.AddUint16(stateVersion)
	g.ctx.marshal(&b)
	g.tree.marshal(&b)
	b.AddUint32(uint32(g.myLeaf))
	addOpaque(&b, g.sigKey.Bytes())
	keys, err := encode(g.keys)
	if err != nil {
		return nil, err
	}
	addOpaque(&b, keys)
	g.epoch.marshal(&b)
	g.secrets.marshal(&b)
	addOpaque(&b, g.interim)
	addOpaque(&b, g.confirmationTag)
	addVector(&b, func(b *cryptobyte.Builder) {
		for i := range g.proposals {
			cp := &g.proposals[i]
			addOpaque(b, cp.ref)
			cp.sender.marshal(b)
			cp.proposal.marshal(b)
		}
	})
	addVector(&b, func(b *cryptobyte.Builder) {
		for _, e := range slices.Sorted(maps.Keys(g.resumption)) {
			b.AddUint64(e)
			addOpaque(b, g.resumption[e])
		}
	})
	addVector(&b, func(b *cryptobyte.Builder) {
		for i := range g.past {
			g.past[i].marshal(b)
		}
	})
	addBool(&b, g.active)
	addOptional(&b, g.reinit != nil, func(b *cryptobyte.Builder) {
		p := Proposal{Type: ProposalTypeReInit, ReInit: g.reinit}
		p.marshal(b)
	})
	return b.Bytes()
}

// LoadGroup restores a group saved by MarshalState, with the application's config.
func LoadGroup(data []byte, cfg Config) (*Group, error) {
	g := &Group{cfg: cfg, resumption: map[uint64][]byte{}}
	var (
		sigKey, keys []byte
		reinit       Proposal
		hasReinit    bool
		secretTreeOK bool
	)
	g.epoch = new(epochSecrets)
	g.secrets = new(secretTree)
	err := decodeAll(data, "group state", func(s *cryptobyte.String) bool {
		var magic []byte
		var version uint16
		if !s.ReadBytes(&magic, len(stateMagic)) || string(magic) != stateMagic ||
			!s.ReadUint16(&version) || version != stateVersion || !g.ctx.unmarshal(s) || !g.ctx.CipherSuite.Supported() {
			return false
		}
		if !readRatchetTree(s, &g.tree) || !s.ReadUint32((*uint32)(&g.myLeaf)) || !readOpaque(s, &sigKey) || !readOpaque(s, &keys) ||
			!g.epoch.unmarshal(s, g.ctx.CipherSuite) {
			return false
		}
		secretTreeOK = g.secrets.unmarshal(s)
		if !secretTreeOK || !readOpaque(s, &g.interim) || !readOpaque(s, &g.confirmationTag) {
			return false
		}
		if !readVectorOf(s, func(s *cryptobyte.String) bool {
			var cp cachedProposal
			cp.proposal = new(Proposal)
			if !readOpaque(s, (*[]byte)(&cp.ref)) || !cp.sender.unmarshal(s) || !cp.proposal.unmarshal(s) {
				return false
			}
			g.proposals = append(g.proposals, cp)
			return true
		}) {
			return false
		}
		if !readVectorOf(s, func(s *cryptobyte.String) bool {
			var e uint64
			var psk []byte
			if !s.ReadUint64(&e) || !readOpaque(s, &psk) {
				return false
			}
			g.resumption[e] = psk
			return true
		}) {
			return false
		}
		if !readVectorOf(s, func(s *cryptobyte.String) bool {
			var p pastEpoch
			if !p.unmarshal(s) || p.epoch >= g.ctx.Epoch || p.secrets.cs != g.ctx.CipherSuite {
				return false
			}
			g.past = append(g.past, p)
			return true
		}) {
			return false
		}
		return readBool(s, &g.active) && readOptional(s, &hasReinit, func(s *cryptobyte.String) bool {
			return reinit.unmarshal(s) && reinit.Type == ProposalTypeReInit
		})
	})
	if err != nil {
		return nil, ErrState
	}
	cs := g.ctx.CipherSuite
	if !equalBytes(g.tree.treeHash(cs), g.ctx.TreeHash) {
		return nil, ErrState
	}
	if uint32(g.myLeaf) >= g.tree.leafCount() || (g.active && g.tree.leaf(g.myLeaf) == nil) {
		return nil, ErrState
	}
	if g.sigKey, err = NewSignaturePrivateKey(cs, sigKey); err != nil {
		return nil, ErrState
	}
	if g.keys, err = unmarshalTreePrivateKeys(cs, keys); err != nil {
		return nil, ErrState
	}
	if hasReinit {
		g.reinit = reinit.ReInit
	}
	return g, nil
}

// readRatchetTree reads a tree stored by (*ratchetTree).marshal inside a larger
// structure, through the ratchet_tree extension decoder and its checks.
func readRatchetTree(s *cryptobyte.String, t **ratchetTree) bool {
	start := *s
	var body cryptobyte.String
	if !readVector(s, &body) {
		return false
	}
	tree, err := unmarshalRatchetTree(start[:len(start)-len(*s)])
	if err != nil {
		return false
	}
	*t = tree
	return true
}
