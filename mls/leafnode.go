package mls

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// Capabilities is RFC 9420 §7.2:
//
//	struct {
//	    ProtocolVersion versions<V>;
//	    CipherSuite cipher_suites<V>;
//	    ExtensionType extensions<V>;
//	    ProposalType proposals<V>;
//	    CredentialType credentials<V>;
//	} Capabilities;
type Capabilities struct {
	Versions     []ProtocolVersion
	CipherSuites []CipherSuite
	Extensions   []ExtensionType
	Proposals    []ProposalType
	Credentials  []CredentialType
}

func (c *Capabilities) marshal(b *cryptobyte.Builder) {
	addUint16s(b, c.Versions)
	addUint16s(b, c.CipherSuites)
	addUint16s(b, c.Extensions)
	addUint16s(b, c.Proposals)
	addUint16s(b, c.Credentials)
}

func (c *Capabilities) unmarshal(s *cryptobyte.String) bool {
	return readUint16s(s, &c.Versions) && readUint16s(s, &c.CipherSuites) &&
		readUint16s(s, &c.Extensions) && readUint16s(s, &c.Proposals) && readUint16s(s, &c.Credentials)
}

// DefaultCapabilities are what this package supports: every version, suite and
// credential type it implements. Default extension and proposal types are implied (§7.2).
func DefaultCapabilities() Capabilities {
	return Capabilities{
		Versions:     []ProtocolVersion{ProtocolVersionMLS10},
		CipherSuites: slices.Clone(SupportedCipherSuites),
		Credentials:  []CredentialType{CredentialTypeBasic, CredentialTypeX509},
	}
}

// supportsExtension reports whether c supports extension type t, default types included.
func (c *Capabilities) supportsExtension(t ExtensionType) bool {
	return isDefaultExtension(t) || slices.Contains(c.Extensions, t)
}

// supportsProposal reports whether c supports proposal type t, default types included.
func (c *Capabilities) supportsProposal(t ProposalType) bool {
	return isDefaultProposal(t) || slices.Contains(c.Proposals, t)
}

// Lifetime is RFC 9420 §7.2: struct { uint64 not_before; uint64 not_after; } Lifetime;
// Both are seconds since the Unix epoch.
type Lifetime struct {
	NotBefore uint64
	NotAfter  uint64
}

// contains reports whether t lies within the lifetime.
func (l Lifetime) contains(t time.Time) bool {
	u := t.Unix()
	return u >= 0 && uint64(u) >= l.NotBefore && uint64(u) <= l.NotAfter
}

// LeafNodeSource is RFC 9420 §7.2.
type LeafNodeSource uint8

// Leaf node sources.
const (
	LeafNodeSourceKeyPackage LeafNodeSource = 1
	LeafNodeSourceUpdate     LeafNodeSource = 2
	LeafNodeSourceCommit     LeafNodeSource = 3
)

// LeafNode is RFC 9420 §7.2:
//
//	struct {
//	    HPKEPublicKey encryption_key;
//	    SignaturePublicKey signature_key;
//	    Credential credential;
//	    Capabilities capabilities;
//
//	    LeafNodeSource leaf_node_source;
//	    select (LeafNode.leaf_node_source) {
//	        case key_package:
//	            Lifetime lifetime;
//	        case update:
//	            struct{};
//	        case commit:
//	            opaque parent_hash<V>;
//	    };
//
//	    Extension extensions<V>;
//	    /* SignWithLabel(., "LeafNodeTBS", LeafNodeTBS) */
//	    opaque signature<V>;
//	} LeafNode;
type LeafNode struct {
	EncryptionKey HPKEPublicKey
	SignatureKey  SignaturePublicKey
	Credential    Credential
	Capabilities  Capabilities
	Source        LeafNodeSource
	Lifetime      Lifetime // key_package
	ParentHash    []byte   // commit
	Extensions    Extensions
	Signature     []byte
}

func (l *LeafNode) marshalTBSPrefix(b *cryptobyte.Builder) {
	addOpaque(b, l.EncryptionKey)
	addOpaque(b, l.SignatureKey)
	l.Credential.marshal(b)
	l.Capabilities.marshal(b)
	b.AddUint8(uint8(l.Source))
	switch l.Source {
	case LeafNodeSourceKeyPackage:
		b.AddUint64(l.Lifetime.NotBefore)
		b.AddUint64(l.Lifetime.NotAfter)
	case LeafNodeSourceUpdate:
	case LeafNodeSourceCommit:
		addOpaque(b, l.ParentHash)
	default:
		b.SetError(errors.New("mls: unknown leaf node source"))
	}
	l.Extensions.marshal(b)
}

func (l *LeafNode) marshal(b *cryptobyte.Builder) {
	l.marshalTBSPrefix(b)
	addOpaque(b, l.Signature)
}

func (l *LeafNode) unmarshal(s *cryptobyte.String) bool {
	*l = LeafNode{}
	if !readOpaque(s, (*[]byte)(&l.EncryptionKey)) || !readOpaque(s, (*[]byte)(&l.SignatureKey)) ||
		!l.Credential.unmarshal(s) || !l.Capabilities.unmarshal(s) || !s.ReadUint8((*uint8)(&l.Source)) {
		return false
	}
	switch l.Source {
	case LeafNodeSourceKeyPackage:
		if !s.ReadUint64(&l.Lifetime.NotBefore) || !s.ReadUint64(&l.Lifetime.NotAfter) {
			return false
		}
	case LeafNodeSourceUpdate:
	case LeafNodeSourceCommit:
		if !readOpaque(s, &l.ParentHash) {
			return false
		}
	default:
		return false
	}
	return l.Extensions.unmarshal(s) && readOpaque(s, &l.Signature)
}

// tbs returns LeafNodeTBS (RFC 9420 §7.2):
//
//	struct {
//	    ... the fields of LeafNode up to extensions ...
//	    select (LeafNodeTBS.leaf_node_source) {
//	        case key_package:
//	            struct{};
//	        case update:
//	            opaque group_id<V>;
//	            uint32 leaf_index;
//	        case commit:
//	            opaque group_id<V>;
//	            uint32 leaf_index;
//	    };
//	} LeafNodeTBS;
func (l *LeafNode) tbs(groupID GroupID, leaf LeafIndex) []byte {
	var b cryptobyte.Builder
	l.marshalTBSPrefix(&b)
	if l.Source == LeafNodeSourceUpdate || l.Source == LeafNodeSourceCommit {
		addOpaque(&b, groupID)
		b.AddUint32(uint32(leaf))
	}
	return b.BytesOrPanic()
}

const labelLeafNodeTBS = "LeafNodeTBS"

// sign fills in the signature. groupID and leaf are ignored for key_package leaves.
func (l *LeafNode) sign(cs CipherSuite, key *SignaturePrivateKey, groupID GroupID, leaf LeafIndex, rand io.Reader) error {
	sig, err := cs.SignWithLabel(key, labelLeafNodeTBS, l.tbs(groupID, leaf), rand)
	if err != nil {
		return err
	}
	l.Signature = sig
	return nil
}

// verifySignature checks the leaf's signature with its own signature key.
func (l *LeafNode) verifySignature(cs CipherSuite, groupID GroupID, leaf LeafIndex) error {
	return cs.VerifyWithLabel(l.SignatureKey, labelLeafNodeTBS, l.tbs(groupID, leaf), l.Signature)
}

// clone returns a deep copy.
func (l *LeafNode) clone() *LeafNode {
	var c LeafNode
	data := mustEncode(l)
	s := cryptobyte.String(data)
	if !c.unmarshal(&s) {
		panic("mls: leaf node does not round-trip")
	}
	return &c
}

// Bytes returns the serialized leaf node.
func (l *LeafNode) Bytes() []byte { return mustEncode(l) }

// UnmarshalLeafNode parses a serialized LeafNode.
func UnmarshalLeafNode(data []byte) (*LeafNode, error) {
	var l LeafNode
	if err := decodeAll(data, "LeafNode", l.unmarshal); err != nil {
		return nil, err
	}
	return &l, nil
}

// ErrInvalidLeafNode is wrapped by every leaf node validation failure (RFC 9420 §7.3).
var ErrInvalidLeafNode = errors.New("mls: invalid leaf node")

func leafNodeError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidLeafNode}, args...)...)
}

// validateLeafNodeSelf checks what can be checked of a leaf node on its own
// (RFC 9420 §7.3): the signature, the keys' well-formedness, that the credential
// type is in its own capabilities, that every non-default extension it carries is
// supported, and for key_package leaves, the lifetime at now (skipped when now is zero).
func (l *LeafNode) validateSelf(cs CipherSuite, groupID GroupID, leaf LeafIndex, now time.Time) error {
	if err := cs.ValidateSignaturePublicKey(l.SignatureKey); err != nil {
		return leafNodeError("signature key: %v", err)
	}
	if err := cs.ValidateHPKEPublicKey(l.EncryptionKey); err != nil {
		return leafNodeError("encryption key: %v", err)
	}
	if err := l.verifySignature(cs, groupID, leaf); err != nil {
		return leafNodeError("signature does not verify")
	}
	if !slices.Contains(l.Capabilities.Credentials, l.Credential.Type) {
		return leafNodeError("credential type %d not in its capabilities", l.Credential.Type)
	}
	for _, e := range l.Extensions {
		if !l.Capabilities.supportsExtension(e.Type) {
			return leafNodeError("extension %d not in its capabilities", e.Type)
		}
	}
	if l.Source == LeafNodeSourceKeyPackage && !now.IsZero() && !l.Lifetime.contains(now) {
		return leafNodeError("outside its lifetime")
	}
	return nil
}
