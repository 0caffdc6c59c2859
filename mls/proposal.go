package mls

import (
	"golang.org/x/crypto/cryptobyte"
)

// ProposalType is RFC 9420 §12.1.
type ProposalType uint16

// Proposal types of RFC 9420 §17.4.
const (
	ProposalTypeAdd                    ProposalType = 0x0001
	ProposalTypeUpdate                 ProposalType = 0x0002
	ProposalTypeRemove                 ProposalType = 0x0003
	ProposalTypePSK                    ProposalType = 0x0004
	ProposalTypeReInit                 ProposalType = 0x0005
	ProposalTypeExternalInit           ProposalType = 0x0006
	ProposalTypeGroupContextExtensions ProposalType = 0x0007
)

func isDefaultProposal(t ProposalType) bool {
	return t >= ProposalTypeAdd && t <= ProposalTypeGroupContextExtensions
}

// Add is RFC 9420 §12.1.1: struct { KeyPackage key_package; } Add;
type Add struct {
	KeyPackage KeyPackage
}

// Update is RFC 9420 §12.1.2: struct { LeafNode leaf_node; } Update;
type Update struct {
	LeafNode LeafNode
}

// Remove is RFC 9420 §12.1.3: struct { uint32 removed; } Remove;
type Remove struct {
	Removed LeafIndex
}

// PreSharedKey is RFC 9420 §12.1.4: struct { PreSharedKeyID psk; } PreSharedKey;
type PreSharedKey struct {
	PSK PreSharedKeyID
}

// ReInit is RFC 9420 §12.1.5:
//
//	struct {
//	    opaque group_id<V>;
//	    ProtocolVersion version;
//	    CipherSuite cipher_suite;
//	    Extension extensions<V>;
//	} ReInit;
type ReInit struct {
	GroupID     GroupID
	Version     ProtocolVersion
	CipherSuite CipherSuite
	Extensions  Extensions
}

// ExternalInit is RFC 9420 §12.1.6: struct { opaque kem_output<V>; } ExternalInit;
type ExternalInit struct {
	KEMOutput []byte
}

// GroupContextExtensions is RFC 9420 §12.1.7: struct { Extension extensions<V>; } GroupContextExtensions;
type GroupContextExtensions struct {
	Extensions Extensions
}

// Proposal is RFC 9420 §12.1:
//
//	struct {
//	    ProposalType proposal_type;
//	    select (Proposal.proposal_type) {
//	        case add:                      Add;
//	        case update:                   Update;
//	        case remove:                   Remove;
//	        case psk:                      PreSharedKey;
//	        case reinit:                   ReInit;
//	        case external_init:            ExternalInit;
//	        case group_context_extensions: GroupContextExtensions;
//	    };
//	} Proposal;
//
// Exactly the field matching Type is set.
type Proposal struct {
	Type                   ProposalType
	Add                    *Add
	Update                 *Update
	Remove                 *Remove
	PreSharedKey           *PreSharedKey
	ReInit                 *ReInit
	ExternalInit           *ExternalInit
	GroupContextExtensions *GroupContextExtensions
}

func (p *Proposal) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(p.Type))
	switch p.Type {
	case ProposalTypeAdd:
		p.Add.KeyPackage.marshal(b)
	case ProposalTypeUpdate:
		p.Update.LeafNode.marshal(b)
	case ProposalTypeRemove:
		b.AddUint32(uint32(p.Remove.Removed))
	case ProposalTypePSK:
		p.PreSharedKey.PSK.marshal(b)
	case ProposalTypeReInit:
		addOpaque(b, p.ReInit.GroupID)
		b.AddUint16(uint16(p.ReInit.Version))
		b.AddUint16(uint16(p.ReInit.CipherSuite))
		p.ReInit.Extensions.marshal(b)
	case ProposalTypeExternalInit:
		addOpaque(b, p.ExternalInit.KEMOutput)
	case ProposalTypeGroupContextExtensions:
		p.GroupContextExtensions.Extensions.marshal(b)
	default:
		b.SetError(decodeError("unknown proposal type"))
	}
}

// unmarshal reads a Proposal. Unknown proposal types cannot be skipped (the
// encoding carries no length), so they are rejected.
func (p *Proposal) unmarshal(s *cryptobyte.String) bool {
	*p = Proposal{}
	if !s.ReadUint16((*uint16)(&p.Type)) {
		return false
	}
	switch p.Type {
	case ProposalTypeAdd:
		p.Add = new(Add)
		return p.Add.KeyPackage.unmarshal(s)
	case ProposalTypeUpdate:
		p.Update = new(Update)
		return p.Update.LeafNode.unmarshal(s)
	case ProposalTypeRemove:
		p.Remove = new(Remove)
		return s.ReadUint32((*uint32)(&p.Remove.Removed))
	case ProposalTypePSK:
		p.PreSharedKey = new(PreSharedKey)
		return p.PreSharedKey.PSK.unmarshal(s)
	case ProposalTypeReInit:
		p.ReInit = new(ReInit)
		return readOpaque(s, (*[]byte)(&p.ReInit.GroupID)) && s.ReadUint16((*uint16)(&p.ReInit.Version)) &&
			s.ReadUint16((*uint16)(&p.ReInit.CipherSuite)) && p.ReInit.Extensions.unmarshal(s)
	case ProposalTypeExternalInit:
		p.ExternalInit = new(ExternalInit)
		return readOpaque(s, &p.ExternalInit.KEMOutput)
	case ProposalTypeGroupContextExtensions:
		p.GroupContextExtensions = new(GroupContextExtensions)
		return p.GroupContextExtensions.Extensions.unmarshal(s)
	}
	return false
}

// ProposalRef is RFC 9420 §5.2: MakeProposalRef(value) = RefHash("MLS 1.0 Proposal Reference", value),
// where value is the AuthenticatedContent carrying the proposal.
type ProposalRef []byte

// ProposalOrRefType is RFC 9420 §12.4.
type ProposalOrRefType uint8

// ProposalOrRef types.
const (
	ProposalOrRefTypeProposal  ProposalOrRefType = 1
	ProposalOrRefTypeReference ProposalOrRefType = 2
)

// ProposalOrRef is RFC 9420 §12.4:
//
//	struct {
//	    ProposalOrRefType type;
//	    select (ProposalOrRef.type) {
//	        case proposal:  Proposal proposal;
//	        case reference: ProposalRef reference;
//	    };
//	} ProposalOrRef;
type ProposalOrRef struct {
	Type      ProposalOrRefType
	Proposal  *Proposal
	Reference ProposalRef
}

func (p *ProposalOrRef) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(p.Type))
	switch p.Type {
	case ProposalOrRefTypeProposal:
		p.Proposal.marshal(b)
	case ProposalOrRefTypeReference:
		addOpaque(b, p.Reference)
	default:
		b.SetError(decodeError("unknown ProposalOrRef type"))
	}
}

func (p *ProposalOrRef) unmarshal(s *cryptobyte.String) bool {
	*p = ProposalOrRef{}
	if !s.ReadUint8((*uint8)(&p.Type)) {
		return false
	}
	switch p.Type {
	case ProposalOrRefTypeProposal:
		p.Proposal = new(Proposal)
		return p.Proposal.unmarshal(s)
	case ProposalOrRefTypeReference:
		return readOpaque(s, (*[]byte)(&p.Reference))
	}
	return false
}

// UpdatePathNode is RFC 9420 §7.6:
//
//	struct {
//	    HPKEPublicKey encryption_key;
//	    HPKECiphertext encrypted_path_secret<V>;
//	} UpdatePathNode;
type UpdatePathNode struct {
	EncryptionKey       HPKEPublicKey
	EncryptedPathSecret []HPKECiphertext
}

// UpdatePath is RFC 9420 §7.6:
//
//	struct {
//	    LeafNode leaf_node;
//	    UpdatePathNode nodes<V>;
//	} UpdatePath;
type UpdatePath struct {
	LeafNode LeafNode
	Nodes    []UpdatePathNode
}

func (u *UpdatePath) marshal(b *cryptobyte.Builder) {
	u.LeafNode.marshal(b)
	addVector(b, func(b *cryptobyte.Builder) {
		for i := range u.Nodes {
			n := &u.Nodes[i]
			addOpaque(b, n.EncryptionKey)
			addVector(b, func(b *cryptobyte.Builder) {
				for j := range n.EncryptedPathSecret {
					n.EncryptedPathSecret[j].marshal(b)
				}
			})
		}
	})
}

func (u *UpdatePath) unmarshal(s *cryptobyte.String) bool {
	*u = UpdatePath{}
	return u.LeafNode.unmarshal(s) && readVectorOf(s, func(s *cryptobyte.String) bool {
		var n UpdatePathNode
		if !readOpaque(s, (*[]byte)(&n.EncryptionKey)) || !readVectorOf(s, func(s *cryptobyte.String) bool {
			var c HPKECiphertext
			if !c.unmarshal(s) {
				return false
			}
			n.EncryptedPathSecret = append(n.EncryptedPathSecret, c)
			return true
		}) {
			return false
		}
		u.Nodes = append(u.Nodes, n)
		return true
	})
}

// Commit is RFC 9420 §12.4:
//
//	struct {
//	    ProposalOrRef proposals<V>;
//	    optional<UpdatePath> path;
//	} Commit;
type Commit struct {
	Proposals []ProposalOrRef
	Path      *UpdatePath
}

func (c *Commit) marshal(b *cryptobyte.Builder) {
	addVector(b, func(b *cryptobyte.Builder) {
		for i := range c.Proposals {
			c.Proposals[i].marshal(b)
		}
	})
	addOptional(b, c.Path != nil, func(b *cryptobyte.Builder) { c.Path.marshal(b) })
}

func (c *Commit) unmarshal(s *cryptobyte.String) bool {
	*c = Commit{}
	var present bool
	return readVectorOf(s, func(s *cryptobyte.String) bool {
		var p ProposalOrRef
		if !p.unmarshal(s) {
			return false
		}
		c.Proposals = append(c.Proposals, p)
		return true
	}) && readOptional(s, &present, func(s *cryptobyte.String) bool {
		c.Path = new(UpdatePath)
		return c.Path.unmarshal(s)
	})
}
