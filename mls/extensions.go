package mls

import (
	"golang.org/x/crypto/cryptobyte"
)

// ProtocolVersion is RFC 9420 §6: enum { reserved(0), mls10(1), (65535) } ProtocolVersion;
type ProtocolVersion uint16

// ProtocolVersionMLS10 is the only version this package speaks.
const ProtocolVersionMLS10 ProtocolVersion = 1

// ExtensionType is RFC 9420 §13.3.
type ExtensionType uint16

// Extension types of RFC 9420 §17.3.
const (
	ExtensionTypeApplicationID        ExtensionType = 0x0001
	ExtensionTypeRatchetTree          ExtensionType = 0x0002
	ExtensionTypeRequiredCapabilities ExtensionType = 0x0003
	ExtensionTypeExternalPub          ExtensionType = 0x0004
	ExtensionTypeExternalSenders      ExtensionType = 0x0005
)

// isDefaultExtension reports whether t is one every implementation supports
// without listing it in its capabilities (RFC 9420 §7.2).
func isDefaultExtension(t ExtensionType) bool {
	return t >= ExtensionTypeApplicationID && t <= ExtensionTypeExternalSenders
}

// Extension is RFC 9420 §13:
//
//	struct {
//	    ExtensionType extension_type;
//	    opaque extension_data<V>;
//	} Extension;
type Extension struct {
	Type ExtensionType
	Data []byte
}

// Extensions is an extension list; it never holds two extensions of one type.
type Extensions []Extension

func (e Extensions) marshal(b *cryptobyte.Builder) {
	addVector(b, func(b *cryptobyte.Builder) {
		for _, x := range e {
			b.AddUint16(uint16(x.Type))
			addOpaque(b, x.Data)
		}
	})
}

// unmarshal reads an extension list and rejects duplicate types (RFC 9420 §13.4).
func (e *Extensions) unmarshal(s *cryptobyte.String) bool {
	*e = nil
	seen := map[ExtensionType]bool{}
	return readVectorOf(s, func(s *cryptobyte.String) bool {
		var x Extension
		if !s.ReadUint16((*uint16)(&x.Type)) || !readOpaque(s, &x.Data) || seen[x.Type] {
			return false
		}
		seen[x.Type] = true
		*e = append(*e, x)
		return true
	})
}

// Find returns the data of the extension of type t.
func (e Extensions) Find(t ExtensionType) ([]byte, bool) {
	for _, x := range e {
		if x.Type == t {
			return x.Data, true
		}
	}
	return nil, false
}

// With returns a copy of e with the extension of type t set to data.
func (e Extensions) With(t ExtensionType, data []byte) Extensions {
	out := make(Extensions, 0, len(e)+1)
	replaced := false
	for _, x := range e {
		if x.Type == t {
			out = append(out, Extension{t, data})
			replaced = true
		} else {
			out = append(out, x)
		}
	}
	if !replaced {
		out = append(out, Extension{t, data})
	}
	return out
}

// Without returns a copy of e without the extension of type t.
func (e Extensions) Without(t ExtensionType) Extensions {
	out := make(Extensions, 0, len(e))
	for _, x := range e {
		if x.Type != t {
			out = append(out, x)
		}
	}
	return out
}

// RequiredCapabilities is RFC 9420 §11.1:
//
//	struct {
//	    ExtensionType extension_types<V>;
//	    ProposalType proposal_types<V>;
//	    CredentialType credential_types<V>;
//	} RequiredCapabilities;
type RequiredCapabilities struct {
	ExtensionTypes  []ExtensionType
	ProposalTypes   []ProposalType
	CredentialTypes []CredentialType
}

func (r *RequiredCapabilities) marshal(b *cryptobyte.Builder) {
	addUint16s(b, r.ExtensionTypes)
	addUint16s(b, r.ProposalTypes)
	addUint16s(b, r.CredentialTypes)
}

func (r *RequiredCapabilities) unmarshal(s *cryptobyte.String) bool {
	return readUint16s(s, &r.ExtensionTypes) && readUint16s(s, &r.ProposalTypes) && readUint16s(s, &r.CredentialTypes)
}

// readUint16s reads a vector of uint16-based enum values.
func readUint16s[T ~uint16](s *cryptobyte.String, out *[]T) bool {
	*out = nil
	return readVectorOf(s, func(s *cryptobyte.String) bool {
		var v uint16
		if !s.ReadUint16(&v) {
			return false
		}
		*out = append(*out, T(v))
		return true
	})
}

// addUint16s writes a vector of uint16-based enum values.
func addUint16s[T ~uint16](b *cryptobyte.Builder, vals []T) {
	addVector(b, func(b *cryptobyte.Builder) {
		for _, v := range vals {
			b.AddUint16(uint16(v))
		}
	})
}

// ExternalSender is RFC 9420 §12.1.8.1:
//
//	struct {
//	  SignaturePublicKey signature_key;
//	  Credential credential;
//	} ExternalSender;
//
// The external_senders extension holds ExternalSender external_senders<V>.
type ExternalSender struct {
	SignatureKey SignaturePublicKey
	Credential   Credential
}

// MarshalExternalSenders encodes the data of an external_senders extension.
func MarshalExternalSenders(senders []ExternalSender) []byte {
	var b cryptobyte.Builder
	addVector(&b, func(b *cryptobyte.Builder) {
		for i := range senders {
			addOpaque(b, senders[i].SignatureKey)
			senders[i].Credential.marshal(b)
		}
	})
	return b.BytesOrPanic()
}

// UnmarshalExternalSenders decodes the data of an external_senders extension.
func UnmarshalExternalSenders(data []byte) ([]ExternalSender, error) {
	var out []ExternalSender
	err := decodeAll(data, "external_senders", func(s *cryptobyte.String) bool {
		return readVectorOf(s, func(s *cryptobyte.String) bool {
			var x ExternalSender
			if !readOpaque(s, (*[]byte)(&x.SignatureKey)) || !x.Credential.unmarshal(s) {
				return false
			}
			out = append(out, x)
			return true
		})
	})
	return out, err
}

// MarshalRequiredCapabilities encodes the data of a required_capabilities extension.
func MarshalRequiredCapabilities(r RequiredCapabilities) []byte { return mustEncode(&r) }

// UnmarshalRequiredCapabilities decodes the data of a required_capabilities extension.
func UnmarshalRequiredCapabilities(data []byte) (RequiredCapabilities, error) {
	var r RequiredCapabilities
	err := decodeAll(data, "required_capabilities", r.unmarshal)
	return r, err
}

// externalPubData encodes ExternalPub (RFC 9420 §12.4.3.2): struct { HPKEPublicKey external_pub; }.
func externalPubData(pub HPKEPublicKey) []byte {
	var b cryptobyte.Builder
	addOpaque(&b, pub)
	return b.BytesOrPanic()
}

// parseExternalPub decodes the data of an external_pub extension.
func parseExternalPub(data []byte) (HPKEPublicKey, error) {
	var pub []byte
	err := decodeAll(data, "external_pub", func(s *cryptobyte.String) bool { return readOpaque(s, &pub) })
	return pub, err
}
