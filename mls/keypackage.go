package mls

import (
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// KeyPackageRef is RFC 9420 §5.2: MakeKeyPackageRef(value) = RefHash("MLS 1.0 KeyPackage Reference", value).
type KeyPackageRef []byte

// KeyPackage is RFC 9420 §10:
//
//	struct {
//	    ProtocolVersion version;
//	    CipherSuite cipher_suite;
//	    HPKEPublicKey init_key;
//	    LeafNode leaf_node;
//	    Extension extensions<V>;
//	    /* SignWithLabel(., "KeyPackageTBS", KeyPackageTBS) */
//	    opaque signature<V>;
//	} KeyPackage;
type KeyPackage struct {
	Version     ProtocolVersion
	CipherSuite CipherSuite
	InitKey     HPKEPublicKey
	LeafNode    LeafNode
	Extensions  Extensions
	Signature   []byte
}

func (k *KeyPackage) marshalTBS(b *cryptobyte.Builder) {
	b.AddUint16(uint16(k.Version))
	b.AddUint16(uint16(k.CipherSuite))
	addOpaque(b, k.InitKey)
	k.LeafNode.marshal(b)
	k.Extensions.marshal(b)
}

func (k *KeyPackage) marshal(b *cryptobyte.Builder) {
	k.marshalTBS(b)
	addOpaque(b, k.Signature)
}

func (k *KeyPackage) unmarshal(s *cryptobyte.String) bool {
	*k = KeyPackage{}
	return s.ReadUint16((*uint16)(&k.Version)) && s.ReadUint16((*uint16)(&k.CipherSuite)) &&
		readOpaque(s, (*[]byte)(&k.InitKey)) && k.LeafNode.unmarshal(s) &&
		k.Extensions.unmarshal(s) && readOpaque(s, &k.Signature)
}

// Bytes returns the serialized KeyPackage (without an MLSMessage wrapper).
func (k *KeyPackage) Bytes() []byte { return mustEncode(k) }

// UnmarshalKeyPackage parses a serialized KeyPackage (without an MLSMessage wrapper).
func UnmarshalKeyPackage(data []byte) (*KeyPackage, error) {
	var k KeyPackage
	if err := decodeAll(data, "KeyPackage", k.unmarshal); err != nil {
		return nil, err
	}
	return &k, nil
}

const labelKeyPackageTBS = "KeyPackageTBS"

// Ref returns the KeyPackage's reference. The suite must be supported.
func (k *KeyPackage) Ref() (KeyPackageRef, error) {
	if !k.CipherSuite.Supported() {
		return nil, fmt.Errorf("%w: 0x%04x", ErrUnsupportedCipherSuite, uint16(k.CipherSuite))
	}
	return k.CipherSuite.RefHash(labelKeyPackageRef, mustEncode(k)), nil
}

// ErrInvalidKeyPackage is wrapped by every KeyPackage validation failure (RFC 9420 §10.1).
var ErrInvalidKeyPackage = errors.New("mls: invalid key package")

// Validate checks a KeyPackage received for use in a group of suite cs and version
// (RFC 9420 §10.1): version and suite, the signatures, init_key distinct from the
// leaf's encryption_key, leaf_node_source, lifetime at now (skipped when now is zero).
func (k *KeyPackage) Validate(cs CipherSuite, now time.Time) error {
	if k.Version != ProtocolVersionMLS10 {
		return fmt.Errorf("%w: version %d", ErrInvalidKeyPackage, k.Version)
	}
	if k.CipherSuite != cs {
		return fmt.Errorf("%w: cipher suite %v, group uses %v", ErrInvalidKeyPackage, k.CipherSuite, cs)
	}
	if !cs.Supported() {
		return fmt.Errorf("%w: %w", ErrInvalidKeyPackage, ErrUnsupportedCipherSuite)
	}
	if k.LeafNode.Source != LeafNodeSourceKeyPackage {
		return fmt.Errorf("%w: leaf node source is not key_package", ErrInvalidKeyPackage)
	}
	if err := cs.ValidateHPKEPublicKey(k.InitKey); err != nil {
		return fmt.Errorf("%w: init key: %v", ErrInvalidKeyPackage, err)
	}
	if string(k.InitKey) == string(k.LeafNode.EncryptionKey) {
		return fmt.Errorf("%w: init key equals the leaf's encryption key", ErrInvalidKeyPackage)
	}
	var b cryptobyte.Builder
	k.marshalTBS(&b)
	if err := cs.VerifyWithLabel(k.LeafNode.SignatureKey, labelKeyPackageTBS, b.BytesOrPanic(), k.Signature); err != nil {
		return fmt.Errorf("%w: signature does not verify", ErrInvalidKeyPackage)
	}
	if err := k.LeafNode.validateSelf(cs, nil, 0, now); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidKeyPackage, err)
	}
	return nil
}

// KeyPackageOptions control NewKeyPackage.
type KeyPackageOptions struct {
	// Lifetime of the KeyPackage; defaults to 90 days from Now minus one hour of clock skew.
	NotBefore, NotAfter time.Time
	// Capabilities; defaults to DefaultCapabilities().
	Capabilities *Capabilities
	// Extensions of the KeyPackage and of its leaf node.
	Extensions, LeafExtensions Extensions
	// LastResort marks the package for reuse (RFC 9420 §10 last_resort is an
	// extension of RFC 9420 §17.3's registry: here simply recorded in Extensions by the caller).
}

// KeyPackagePrivate is the secret part of a KeyPackage, kept by its owner until the
// package is used to join a group.
type KeyPackagePrivate struct {
	InitKey       *HPKEPrivateKey
	EncryptionKey *HPKEPrivateKey
	SignatureKey  *SignaturePrivateKey
}

// NewKeyPackage makes a signed KeyPackage for credential and sigKey, drawing its
// HPKE keys from rand.
func NewKeyPackage(cs CipherSuite, cred Credential, sigKey *SignaturePrivateKey, opts KeyPackageOptions, now time.Time, rand io.Reader) (*KeyPackage, *KeyPackagePrivate, error) {
	if !cs.Supported() {
		return nil, nil, fmt.Errorf("%w: 0x%04x", ErrUnsupportedCipherSuite, uint16(cs))
	}
	if sigKey.Suite() != cs {
		if sigKey.Suite().p().sig != cs.p().sig {
			return nil, nil, errors.New("mls: signature key does not match ciphersuite")
		}
	}
	initKey, err := cs.GenerateHPKEKey(rand)
	if err != nil {
		return nil, nil, err
	}
	encKey, err := cs.GenerateHPKEKey(rand)
	if err != nil {
		return nil, nil, err
	}
	caps := DefaultCapabilities()
	if opts.Capabilities != nil {
		caps = *opts.Capabilities
	}
	notBefore, notAfter := opts.NotBefore, opts.NotAfter
	if notBefore.IsZero() {
		notBefore = now.Add(-time.Hour)
	}
	if notAfter.IsZero() {
		notAfter = now.Add(90 * 24 * time.Hour)
	}
	kp := &KeyPackage{
		Version:     ProtocolVersionMLS10,
		CipherSuite: cs,
		InitKey:     initKey.Public(),
		LeafNode: LeafNode{
			EncryptionKey: encKey.Public(),
			SignatureKey:  sigKey.Public(),
			Credential:    cred,
			Capabilities:  caps,
			Source:        LeafNodeSourceKeyPackage,
			Lifetime:      Lifetime{NotBefore: uint64(notBefore.Unix()), NotAfter: uint64(notAfter.Unix())},
			Extensions:    opts.LeafExtensions,
		},
		Extensions: opts.Extensions,
	}
	if err := kp.LeafNode.sign(cs, sigKey, nil, 0, rand); err != nil {
		return nil, nil, err
	}
	var b cryptobyte.Builder
	kp.marshalTBS(&b)
	tbs, err := b.Bytes()
	if err != nil {
		return nil, nil, err
	}
	if kp.Signature, err = cs.SignWithLabel(sigKey, labelKeyPackageTBS, tbs, rand); err != nil {
		return nil, nil, err
	}
	return kp, &KeyPackagePrivate{InitKey: initKey, EncryptionKey: encKey, SignatureKey: sigKey}, nil
}
