package mls

import (
	"golang.org/x/crypto/cryptobyte"
)

// GroupInfo is RFC 9420 §12.4.3:
//
//	struct {
//	    GroupContext group_context;
//	    Extension extensions<V>;
//	    MAC confirmation_tag;
//	    uint32 signer;
//	    /* SignWithLabel(., "GroupInfoTBS", GroupInfoTBS) */
//	    opaque signature<V>;
//	} GroupInfo;
type GroupInfo struct {
	GroupContext    GroupContext
	Extensions      Extensions
	ConfirmationTag []byte
	Signer          LeafIndex
	Signature       []byte
}

const labelGroupInfoTBS = "GroupInfoTBS"

func (g *GroupInfo) marshalTBS(b *cryptobyte.Builder) {
	g.GroupContext.marshal(b)
	g.Extensions.marshal(b)
	addOpaque(b, g.ConfirmationTag)
	b.AddUint32(uint32(g.Signer))
}

func (g *GroupInfo) tbs() []byte {
	var b cryptobyte.Builder
	g.marshalTBS(&b)
	return b.BytesOrPanic()
}

func (g *GroupInfo) marshal(b *cryptobyte.Builder) {
	g.marshalTBS(b)
	addOpaque(b, g.Signature)
}

func (g *GroupInfo) unmarshal(s *cryptobyte.String) bool {
	*g = GroupInfo{}
	return g.GroupContext.unmarshal(s) && g.Extensions.unmarshal(s) && readOpaque(s, &g.ConfirmationTag) &&
		s.ReadUint32((*uint32)(&g.Signer)) && readOpaque(s, &g.Signature)
}

// Bytes returns the serialized GroupInfo.
func (g *GroupInfo) Bytes() []byte { return mustEncode(g) }

// PathSecret is RFC 9420 §12.4.3.1: struct { opaque path_secret<V>; } PathSecret;
//
// GroupSecrets is RFC 9420 §12.4.3.1:
//
//	struct {
//	  opaque joiner_secret<V>;
//	  optional<PathSecret> path_secret;
//	  PreSharedKeyID psks<V>;
//	} GroupSecrets;
type GroupSecrets struct {
	JoinerSecret []byte
	PathSecret   []byte // nil when absent
	PSKs         []PreSharedKeyID
}

func (g *GroupSecrets) marshal(b *cryptobyte.Builder) {
	addOpaque(b, g.JoinerSecret)
	addOptional(b, g.PathSecret != nil, func(b *cryptobyte.Builder) { addOpaque(b, g.PathSecret) })
	addVector(b, func(b *cryptobyte.Builder) {
		for i := range g.PSKs {
			g.PSKs[i].marshal(b)
		}
	})
}

func (g *GroupSecrets) unmarshal(s *cryptobyte.String) bool {
	*g = GroupSecrets{}
	var present bool
	return readOpaque(s, &g.JoinerSecret) &&
		readOptional(s, &present, func(s *cryptobyte.String) bool { return readOpaque(s, &g.PathSecret) }) &&
		readVectorOf(s, func(s *cryptobyte.String) bool {
			var p PreSharedKeyID
			if !p.unmarshal(s) {
				return false
			}
			g.PSKs = append(g.PSKs, p)
			return true
		})
}

// EncryptedGroupSecrets is RFC 9420 §12.4.3.1:
//
//	struct {
//	  KeyPackageRef new_member;
//	  HPKECiphertext encrypted_group_secrets;
//	} EncryptedGroupSecrets;
type EncryptedGroupSecrets struct {
	NewMember             KeyPackageRef
	EncryptedGroupSecrets HPKECiphertext
}

// Welcome is RFC 9420 §12.4.3.1:
//
//	struct {
//	  CipherSuite cipher_suite;
//	  EncryptedGroupSecrets secrets<V>;
//	  opaque encrypted_group_info<V>;
//	} Welcome;
type Welcome struct {
	CipherSuite        CipherSuite
	Secrets            []EncryptedGroupSecrets
	EncryptedGroupInfo []byte
}

func (w *Welcome) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(w.CipherSuite))
	addVector(b, func(b *cryptobyte.Builder) {
		for i := range w.Secrets {
			addOpaque(b, w.Secrets[i].NewMember)
			w.Secrets[i].EncryptedGroupSecrets.marshal(b)
		}
	})
	addOpaque(b, w.EncryptedGroupInfo)
}

func (w *Welcome) unmarshal(s *cryptobyte.String) bool {
	*w = Welcome{}
	return s.ReadUint16((*uint16)(&w.CipherSuite)) && readVectorOf(s, func(s *cryptobyte.String) bool {
		var e EncryptedGroupSecrets
		if !readOpaque(s, (*[]byte)(&e.NewMember)) || !e.EncryptedGroupSecrets.unmarshal(s) {
			return false
		}
		w.Secrets = append(w.Secrets, e)
		return true
	}) && readOpaque(s, &w.EncryptedGroupInfo)
}
