package mls

import (
	"golang.org/x/crypto/cryptobyte"
)

// GroupID identifies a group (RFC 9420 §8.1: opaque group_id<V>).
type GroupID []byte

// GroupContext is RFC 9420 §8.1:
//
//	struct {
//	    ProtocolVersion version = mls10;
//	    CipherSuite cipher_suite;
//	    opaque group_id<V>;
//	    uint64 epoch;
//	    opaque tree_hash<V>;
//	    opaque confirmed_transcript_hash<V>;
//	    Extension extensions<V>;
//	} GroupContext;
type GroupContext struct {
	Version                 ProtocolVersion
	CipherSuite             CipherSuite
	GroupID                 GroupID
	Epoch                   uint64
	TreeHash                []byte
	ConfirmedTranscriptHash []byte
	Extensions              Extensions
}

func (g *GroupContext) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(g.Version))
	b.AddUint16(uint16(g.CipherSuite))
	addOpaque(b, g.GroupID)
	b.AddUint64(g.Epoch)
	addOpaque(b, g.TreeHash)
	addOpaque(b, g.ConfirmedTranscriptHash)
	g.Extensions.marshal(b)
}

func (g *GroupContext) unmarshal(s *cryptobyte.String) bool {
	return s.ReadUint16((*uint16)(&g.Version)) && g.Version == ProtocolVersionMLS10 &&
		s.ReadUint16((*uint16)(&g.CipherSuite)) &&
		readOpaque(s, (*[]byte)(&g.GroupID)) &&
		s.ReadUint64(&g.Epoch) &&
		readOpaque(s, &g.TreeHash) &&
		readOpaque(s, &g.ConfirmedTranscriptHash) &&
		g.Extensions.unmarshal(s)
}

// Bytes returns the serialized GroupContext.
func (g *GroupContext) Bytes() []byte { return mustEncode(g) }

// clone returns a deep copy of g.
func (g *GroupContext) clone() GroupContext {
	c := *g
	c.GroupID = append(GroupID{}, g.GroupID...)
	c.TreeHash = append([]byte{}, g.TreeHash...)
	c.ConfirmedTranscriptHash = append([]byte{}, g.ConfirmedTranscriptHash...)
	c.Extensions = append(Extensions{}, g.Extensions...)
	return c
}
