package mls

import (
	"bytes"
	"errors"

	"golang.org/x/crypto/cryptobyte"
)

// CredentialType is RFC 9420 §5.3.
type CredentialType uint16

// Credential types of RFC 9420 §17.5.
const (
	CredentialTypeBasic CredentialType = 0x0001
	CredentialTypeX509  CredentialType = 0x0002
)

// Credential is RFC 9420 §5.3:
//
//	struct {
//	    CredentialType credential_type;
//	    select (Credential.credential_type) {
//	        case basic:
//	            opaque identity<V>;
//	        case x509:
//	            Certificate certificates<V>;
//	    };
//	} Credential;
//
// where struct { opaque cert_data<V>; } Certificate. For x509, Certificates[0] is the
// end-entity certificate, DER encoded.
type Credential struct {
	Type         CredentialType
	Identity     []byte   // basic
	Certificates [][]byte // x509
}

// NewBasicCredential returns a basic credential for identity.
func NewBasicCredential(identity []byte) Credential {
	return Credential{Type: CredentialTypeBasic, Identity: append([]byte{}, identity...)}
}

// NewX509Credential returns an x509 credential from a DER certificate chain, leaf first.
func NewX509Credential(chain [][]byte) Credential {
	c := Credential{Type: CredentialTypeX509}
	for _, cert := range chain {
		c.Certificates = append(c.Certificates, append([]byte{}, cert...))
	}
	return c
}

func (c *Credential) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(c.Type))
	switch c.Type {
	case CredentialTypeBasic:
		addOpaque(b, c.Identity)
	case CredentialTypeX509:
		addVector(b, func(b *cryptobyte.Builder) {
			for _, cert := range c.Certificates {
				addOpaque(b, cert)
			}
		})
	default:
		b.SetError(errors.New("mls: unknown credential type"))
	}
}

func (c *Credential) unmarshal(s *cryptobyte.String) bool {
	*c = Credential{}
	if !s.ReadUint16((*uint16)(&c.Type)) {
		return false
	}
	switch c.Type {
	case CredentialTypeBasic:
		return readOpaque(s, &c.Identity)
	case CredentialTypeX509:
		return readVectorOf(s, func(s *cryptobyte.String) bool {
			var cert []byte
			if !readOpaque(s, &cert) {
				return false
			}
			c.Certificates = append(c.Certificates, cert)
			return true
		})
	}
	return false
}

// Equal reports whether c and o are the same credential.
func (c *Credential) Equal(o *Credential) bool {
	return bytes.Equal(mustEncode(c), mustEncode(o))
}

// CredentialValidator decides whether the application accepts a credential bound to
// a signature key (RFC 9420 §5.3.1). The group calls it for every credential it is
// about to accept: members of a Welcome's tree, added and updated leaves, external
// senders and external joiners. Returning an error rejects the message that carried
// the credential. It must be safe for concurrent use if the Group is used so.
type CredentialValidator interface {
	ValidateCredential(cred Credential, key SignaturePublicKey) error
}

// CredentialValidatorFunc adapts a function to CredentialValidator.
type CredentialValidatorFunc func(cred Credential, key SignaturePublicKey) error

// ValidateCredential calls f.
func (f CredentialValidatorFunc) ValidateCredential(cred Credential, key SignaturePublicKey) error {
	return f(cred, key)
}
