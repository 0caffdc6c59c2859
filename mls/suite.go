package mls

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/big"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/cryptobyte"
)

// CipherSuite is an MLS cipher suite identifier (RFC 9420 §17.1).
type CipherSuite uint16

// Cipher suites of RFC 9420 §17.1, and the post-quantum hybrid suites of
// draft-ietf-mls-pq-ciphersuites on private-use code points (TBDn = 0xF000 + n).
const (
	MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519        CipherSuite = 0x0001
	MLS_128_DHKEMP256_AES128GCM_SHA256_P256             CipherSuite = 0x0002
	MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519 CipherSuite = 0x0003
	MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448            CipherSuite = 0x0004
	MLS_256_DHKEMP521_AES256GCM_SHA512_P521             CipherSuite = 0x0005
	MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448     CipherSuite = 0x0006
	MLS_256_DHKEMP384_AES256GCM_SHA384_P384             CipherSuite = 0x0007
	MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519     CipherSuite = 0xF001
	MLS_192_MLKEM1024P384_AES256GCM_SHA384_P384         CipherSuite = 0xF005
)

// DefaultCipherSuite is the suite Mahfooz uses for every group: hybrid X25519 + ML-KEM-768.
const DefaultCipherSuite = MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519

// ErrUnsupportedCipherSuite is returned for a cipher suite this package does not implement.
var ErrUnsupportedCipherSuite = errors.New("mls: unsupported ciphersuite")

// SupportedCipherSuites lists every suite this package implements, in order of preference.
var SupportedCipherSuites = []CipherSuite{
	MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519,
	MLS_192_MLKEM1024P384_AES256GCM_SHA384_P384,
	MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
	MLS_128_DHKEMP256_AES128GCM_SHA256_P256,
	MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519,
	MLS_256_DHKEMP521_AES256GCM_SHA512_P521,
	MLS_256_DHKEMP384_AES256GCM_SHA384_P384,
}

// signatureScheme is a TLS SignatureScheme (RFC 8446 §4.2.3) as used by MLS.
type signatureScheme uint16

const (
	ecdsa_secp256r1_sha256 signatureScheme = 0x0403
	ecdsa_secp384r1_sha384 signatureScheme = 0x0503
	ecdsa_secp521r1_sha512 signatureScheme = 0x0603
	ed25519Scheme          signatureScheme = 0x0807
)

// suiteParams are the primitives behind a cipher suite.
type suiteParams struct {
	kem      hpke.KEM
	kdf      hpke.KDF
	hpkeAEAD hpke.AEAD
	newHash  func() hash.Hash
	aeadKey  int // Nk
	newAEAD  func(key []byte) (cipher.AEAD, error)
	sig      signatureScheme
	curve    elliptic.Curve // for ECDSA schemes
	nh       int            // Nh, the hash's output size: 0 here, set once in suites
}

func newAESGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// buildSuiteParams assembles the primitives of cs; suites holds the results.
func buildSuiteParams(cs CipherSuite) (*suiteParams, error) {
	switch cs {
	case MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519:
		return &suiteParams{hpke.DHKEM(ecdh.X25519()), hpke.HKDFSHA256(), hpke.AES128GCM(), sha256.New, 16, newAESGCM, ed25519Scheme, nil, 0}, nil
	case MLS_128_DHKEMP256_AES128GCM_SHA256_P256:
		return &suiteParams{hpke.DHKEM(ecdh.P256()), hpke.HKDFSHA256(), hpke.AES128GCM(), sha256.New, 16, newAESGCM, ecdsa_secp256r1_sha256, elliptic.P256(), 0}, nil
	case MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519:
		return &suiteParams{hpke.DHKEM(ecdh.X25519()), hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), sha256.New, 32, chacha20poly1305.New, ed25519Scheme, nil, 0}, nil
	case MLS_256_DHKEMP521_AES256GCM_SHA512_P521:
		return &suiteParams{hpke.DHKEM(ecdh.P521()), hpke.HKDFSHA512(), hpke.AES256GCM(), sha512.New, 32, newAESGCM, ecdsa_secp521r1_sha512, elliptic.P521(), 0}, nil
	case MLS_256_DHKEMP384_AES256GCM_SHA384_P384:
		return &suiteParams{hpke.DHKEM(ecdh.P384()), hpke.HKDFSHA384(), hpke.AES256GCM(), sha512.New384, 32, newAESGCM, ecdsa_secp384r1_sha384, elliptic.P384(), 0}, nil
	case MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519:
		return &suiteParams{hpke.MLKEM768X25519(), hpke.HKDFSHA256(), hpke.AES128GCM(), sha256.New, 16, newAESGCM, ed25519Scheme, nil, 0}, nil
	case MLS_192_MLKEM1024P384_AES256GCM_SHA384_P384:
		return &suiteParams{hpke.MLKEM1024P384(), hpke.HKDFSHA384(), hpke.AES256GCM(), sha512.New384, 32, newAESGCM, ecdsa_secp384r1_sha384, elliptic.P384(), 0}, nil
	}
	return nil, fmt.Errorf("%w: 0x%04x", ErrUnsupportedCipherSuite, uint16(cs))
}

// suites caches the parameters of every supported suite; it is immutable after init.
var suites = func() map[CipherSuite]*suiteParams {
	m := make(map[CipherSuite]*suiteParams)
	for _, cs := range SupportedCipherSuites {
		p, err := buildSuiteParams(cs)
		if err != nil {
			panic(err)
		}
		p.nh = p.newHash().Size()
		m[cs] = p
	}
	return m
}()

// params returns the suite's parameters, or ErrUnsupportedCipherSuite.
func (cs CipherSuite) params() (*suiteParams, error) {
	if p := suites[cs]; p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("%w: 0x%04x", ErrUnsupportedCipherSuite, uint16(cs))
}

// Supported reports whether this package implements cs.
func (cs CipherSuite) Supported() bool { return suites[cs] != nil }

// String returns the suite's RFC name.
func (cs CipherSuite) String() string {
	switch cs {
	case MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519:
		return "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"
	case MLS_128_DHKEMP256_AES128GCM_SHA256_P256:
		return "MLS_128_DHKEMP256_AES128GCM_SHA256_P256"
	case MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519:
		return "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519"
	case MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448:
		return "MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448"
	case MLS_256_DHKEMP521_AES256GCM_SHA512_P521:
		return "MLS_256_DHKEMP521_AES256GCM_SHA512_P521"
	case MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448:
		return "MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448"
	case MLS_256_DHKEMP384_AES256GCM_SHA384_P384:
		return "MLS_256_DHKEMP384_AES256GCM_SHA384_P384"
	case MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519:
		return "MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519"
	case MLS_192_MLKEM1024P384_AES256GCM_SHA384_P384:
		return "MLS_192_MLKEM1024P384_AES256GCM_SHA384_P384"
	}
	return fmt.Sprintf("CipherSuite(0x%04x)", uint16(cs))
}

// p returns the suite's parameters; callers have checked Supported (every group,
// KeyPackage and message is validated against it on entry).
func (cs CipherSuite) p() *suiteParams {
	p := suites[cs]
	if p == nil {
		panic("mls: use of unsupported ciphersuite " + cs.String())
	}
	return p
}

// Nh is the output size of the suite's hash (and KDF.Nh).
func (cs CipherSuite) Nh() int { return cs.p().nh }

// Nk is the AEAD key size.
func (cs CipherSuite) Nk() int { return cs.p().aeadKey }

// Nn is the AEAD nonce size (12 for every supported suite).
func (cs CipherSuite) Nn() int { return 12 }

// Hash computes the suite's hash of data.
func (cs CipherSuite) Hash(data []byte) []byte {
	h := cs.p().newHash()
	h.Write(data)
	return h.Sum(nil)
}

// MAC computes HMAC with the suite's hash (RFC 9420 §5.1).
func (cs CipherSuite) MAC(key, data []byte) []byte {
	m := hmac.New(cs.p().newHash, key)
	m.Write(data)
	return m.Sum(nil)
}

// extract is KDF.Extract (HKDF-Extract).
func (cs CipherSuite) extract(salt, ikm []byte) []byte {
	out, err := hkdf.Extract(cs.p().newHash, ikm, salt)
	if err != nil {
		panic("mls: hkdf extract: " + err.Error())
	}
	return out
}

// expand is KDF.Expand (HKDF-Expand).
func (cs CipherSuite) expand(prk, info []byte, length int) []byte {
	out, err := hkdf.Expand(cs.p().newHash, prk, string(info), length)
	if err != nil {
		panic("mls: hkdf expand: " + err.Error())
	}
	return out
}

// labelPrefix is prepended to every label (RFC 9420 §5.1.2, §5.1.3, §5.2).
const labelPrefix = "MLS 1.0 "

// ExpandWithLabel implements RFC 9420 §8:
//
//	struct {
//	    uint16 length;
//	    opaque label<V>;
//	    opaque context<V>;
//	} KDFLabel;
func (cs CipherSuite) ExpandWithLabel(secret []byte, label string, context []byte, length int) []byte {
	var b cryptobyte.Builder
	b.AddUint16(uint16(length))
	addOpaque(&b, []byte(labelPrefix+label))
	addOpaque(&b, context)
	return cs.expand(secret, b.BytesOrPanic(), length)
}

// DeriveSecret implements RFC 9420 §8: ExpandWithLabel(secret, label, "", Nh).
func (cs CipherSuite) DeriveSecret(secret []byte, label string) []byte {
	return cs.ExpandWithLabel(secret, label, nil, cs.Nh())
}

// DeriveTreeSecret implements RFC 9420 §9: ExpandWithLabel(secret, label, generation, length).
func (cs CipherSuite) DeriveTreeSecret(secret []byte, label string, generation uint32, length int) []byte {
	var ctx [4]byte
	ctx[0], ctx[1], ctx[2], ctx[3] = byte(generation>>24), byte(generation>>16), byte(generation>>8), byte(generation)
	return cs.ExpandWithLabel(secret, label, ctx[:], length)
}

// RefHash implements RFC 9420 §5.2:
//
//	struct {
//	  opaque label<V>;
//	  opaque value<V>;
//	} RefHashInput;
func (cs CipherSuite) RefHash(label string, value []byte) []byte {
	var b cryptobyte.Builder
	addOpaque(&b, []byte(label))
	addOpaque(&b, value)
	return cs.Hash(b.BytesOrPanic())
}

// Reference labels of RFC 9420 §5.2.
const (
	labelKeyPackageRef = "MLS 1.0 KeyPackage Reference"
	labelProposalRef   = "MLS 1.0 Proposal Reference"
)

// newAEAD returns the suite's AEAD keyed with key.
func (cs CipherSuite) newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != cs.Nk() {
		return nil, errors.New("mls: wrong AEAD key length")
	}
	return cs.p().newAEAD(key)
}

// Seal encrypts with the suite's AEAD.
func (cs CipherSuite) seal(key, nonce, aad, plaintext []byte) ([]byte, error) {
	a, err := cs.newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(nonce) != a.NonceSize() {
		return nil, errors.New("mls: wrong nonce length")
	}
	return a.Seal(nil, nonce, plaintext, aad), nil
}

// open decrypts with the suite's AEAD.
func (cs CipherSuite) open(key, nonce, aad, ciphertext []byte) ([]byte, error) {
	a, err := cs.newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(nonce) != a.NonceSize() {
		return nil, errors.New("mls: wrong nonce length")
	}
	pt, err := a.Open(nil, nonce, ciphertext, aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// ErrDecrypt is returned when an AEAD or HPKE ciphertext does not authenticate.
var ErrDecrypt = errors.New("mls: decryption failed")

// ErrSignature is returned when a signature does not verify.
var ErrSignature = errors.New("mls: invalid signature")

// constantTimeEqual compares two secrets or MACs without leaking where they differ.
func constantTimeEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// --- Signatures (RFC 9420 §5.1.2) ---

// SignaturePublicKey is a serialized signature public key: 32 bytes for Ed25519,
// an uncompressed point for ECDSA.
type SignaturePublicKey []byte

// SignaturePrivateKey is a signing key for one cipher suite. Its String method
// never reveals the key.
type SignaturePrivateKey struct {
	suite CipherSuite
	ed    ed25519.PrivateKey
	ec    *ecdsa.PrivateKey
}

// String redacts the key.
func (k *SignaturePrivateKey) String() string { return "mls.SignaturePrivateKey(redacted)" }

// GenerateSignatureKey makes a new signing key for cs from rand.
func GenerateSignatureKey(cs CipherSuite, rand io.Reader) (*SignaturePrivateKey, error) {
	p, err := cs.params()
	if err != nil {
		return nil, err
	}
	if p.sig == ed25519Scheme {
		seed := make([]byte, ed25519.SeedSize)
		if _, err := io.ReadFull(rand, seed); err != nil {
			return nil, err
		}
		return &SignaturePrivateKey{suite: cs, ed: ed25519.NewKeyFromSeed(seed)}, nil
	}
	// Derive the scalar from rand bytes so that tests with a deterministic reader are
	// reproducible (ecdsa.GenerateKey ignores its reader in Go 1.26).
	n := p.curve.Params().N
	buf := make([]byte, (n.BitLen()+7)/8+8)
	if _, err := io.ReadFull(rand, buf); err != nil {
		return nil, err
	}
	d := new(big.Int).SetBytes(buf)
	d.Mod(d, new(big.Int).Sub(n, big.NewInt(1)))
	d.Add(d, big.NewInt(1))
	return NewSignaturePrivateKey(cs, d.FillBytes(make([]byte, (n.BitLen()+7)/8)))
}

// NewSignaturePrivateKey imports a private key in the test-vector encoding:
// the 32-byte seed for Ed25519, the big-endian scalar for ECDSA.
func NewSignaturePrivateKey(cs CipherSuite, raw []byte) (*SignaturePrivateKey, error) {
	p, err := cs.params()
	if err != nil {
		return nil, err
	}
	if p.sig == ed25519Scheme {
		switch len(raw) {
		case ed25519.SeedSize:
			return &SignaturePrivateKey{suite: cs, ed: ed25519.NewKeyFromSeed(raw)}, nil
		case ed25519.PrivateKeySize:
			return &SignaturePrivateKey{suite: cs, ed: ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])}, nil
		}
		return nil, errors.New("mls: bad Ed25519 private key length")
	}
	if n := (p.curve.Params().N.BitLen() + 7) / 8; len(raw) < n {
		raw = append(make([]byte, n-len(raw)), raw...)
	}
	k, err := ecdsa.ParseRawPrivateKey(p.curve, raw)
	if err != nil {
		return nil, fmt.Errorf("mls: bad ECDSA private key: %w", err)
	}
	return &SignaturePrivateKey{suite: cs, ec: k}, nil
}

// Bytes returns the key in the encoding NewSignaturePrivateKey accepts.
func (k *SignaturePrivateKey) Bytes() []byte {
	if k.ed != nil {
		return append([]byte{}, k.ed.Seed()...)
	}
	raw, err := k.ec.Bytes()
	if err != nil {
		panic("mls: ecdsa key bytes: " + err.Error())
	}
	return raw
}

// Public returns the serialized public key.
func (k *SignaturePrivateKey) Public() SignaturePublicKey {
	if k.ed != nil {
		return SignaturePublicKey(append([]byte{}, k.ed.Public().(ed25519.PublicKey)...))
	}
	raw, err := k.ec.PublicKey.Bytes()
	if err != nil {
		panic("mls: ecdsa public key bytes: " + err.Error())
	}
	return raw
}

// Suite returns the cipher suite the key belongs to.
func (k *SignaturePrivateKey) Suite() CipherSuite { return k.suite }

// Signer returns the key as a crypto.Signer (for certificate requests).
func (k *SignaturePrivateKey) Signer() crypto.Signer {
	if k.ed != nil {
		return k.ed
	}
	return k.ec
}

// signContent builds SignContent (RFC 9420 §5.1.2):
//
//	struct {
//	    opaque label<V>;
//	    opaque content<V>;
//	} SignContent;
func signContent(label string, content []byte) []byte {
	var b cryptobyte.Builder
	addOpaque(&b, []byte(labelPrefix+label))
	addOpaque(&b, content)
	return b.BytesOrPanic()
}

// SignWithLabel implements RFC 9420 §5.1.2.
func (cs CipherSuite) SignWithLabel(key *SignaturePrivateKey, label string, content []byte, rand io.Reader) ([]byte, error) {
	if key == nil {
		return nil, errors.New("mls: no signature key")
	}
	msg := signContent(label, content)
	p := cs.p()
	if p.sig == ed25519Scheme {
		if key.ed == nil {
			return nil, errors.New("mls: signature key does not match ciphersuite")
		}
		return ed25519.Sign(key.ed, msg), nil
	}
	if key.ec == nil || key.ec.Curve != p.curve {
		return nil, errors.New("mls: signature key does not match ciphersuite")
	}
	h := p.newHash()
	h.Write(msg)
	return ecdsa.SignASN1(rand, key.ec, h.Sum(nil))
}

// VerifyWithLabel implements RFC 9420 §5.1.2.
func (cs CipherSuite) VerifyWithLabel(pub SignaturePublicKey, label string, content, signature []byte) error {
	msg := signContent(label, content)
	p := cs.p()
	if p.sig == ed25519Scheme {
		if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(ed25519.PublicKey(pub), msg, signature) {
			return ErrSignature
		}
		return nil
	}
	k, err := ecdsa.ParseUncompressedPublicKey(p.curve, pub)
	if err != nil {
		return ErrSignature
	}
	h := p.newHash()
	h.Write(msg)
	if !ecdsa.VerifyASN1(k, h.Sum(nil), signature) {
		return ErrSignature
	}
	return nil
}

// ValidateSignaturePublicKey checks that pub is a well-formed key for cs.
func (cs CipherSuite) ValidateSignaturePublicKey(pub SignaturePublicKey) error {
	p := cs.p()
	if p.sig == ed25519Scheme {
		if len(pub) != ed25519.PublicKeySize {
			return errors.New("mls: bad Ed25519 public key")
		}
		return nil
	}
	if _, err := ecdsa.ParseUncompressedPublicKey(p.curve, pub); err != nil {
		return errors.New("mls: bad ECDSA public key")
	}
	return nil
}

// --- Public-key encryption (RFC 9420 §5.1.3) ---

// HPKEPublicKey is a serialized HPKE public key (SerializePublicKey of RFC 9180).
type HPKEPublicKey []byte

// HPKEPrivateKey is an HPKE decapsulation key. Its String method never reveals the key.
type HPKEPrivateKey struct {
	key hpke.PrivateKey
}

// String redacts the key.
func (k *HPKEPrivateKey) String() string { return "mls.HPKEPrivateKey(redacted)" }

// Public returns the serialized public key.
func (k *HPKEPrivateKey) Public() HPKEPublicKey { return k.key.PublicKey().Bytes() }

// Bytes returns SerializePrivateKey of the key, for state storage.
func (k *HPKEPrivateKey) Bytes() []byte {
	b, err := k.key.Bytes()
	if err != nil {
		panic("mls: hpke private key bytes: " + err.Error())
	}
	return b
}

// NewHPKEPrivateKey imports a serialized HPKE private key of cs.
func NewHPKEPrivateKey(cs CipherSuite, raw []byte) (*HPKEPrivateKey, error) {
	p, err := cs.params()
	if err != nil {
		return nil, err
	}
	// Some encoders drop leading zero bytes of NIST-curve scalars; restore them.
	if n := dhkemScalarSize(p.kem.ID()); n > 0 && len(raw) < n {
		raw = append(make([]byte, n-len(raw)), raw...)
	}
	k, err := p.kem.NewPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("mls: bad HPKE private key: %w", err)
	}
	return &HPKEPrivateKey{key: k}, nil
}

// dhkemScalarSize is the private key size of the NIST-curve DHKEMs, 0 for others.
func dhkemScalarSize(kemID uint16) int {
	switch kemID {
	case 0x0010:
		return 32
	case 0x0011:
		return 48
	case 0x0012:
		return 66
	}
	return 0
}

// DeriveKeyPair derives an HPKE key pair from secret (RFC 9420 §4: node keys from node secrets).
func (cs CipherSuite) DeriveKeyPair(secret []byte) (*HPKEPrivateKey, error) {
	k, err := cs.p().kem.DeriveKeyPair(secret)
	if err != nil {
		return nil, fmt.Errorf("mls: deriving key pair: %w", err)
	}
	return &HPKEPrivateKey{key: k}, nil
}

// GenerateHPKEKey makes a fresh HPKE key pair, deriving it from Nh bytes of rand so
// that deterministic readers give reproducible keys.
func (cs CipherSuite) GenerateHPKEKey(rand io.Reader) (*HPKEPrivateKey, error) {
	ikm := make([]byte, cs.Nh())
	if _, err := io.ReadFull(rand, ikm); err != nil {
		return nil, err
	}
	return cs.DeriveKeyPair(ikm)
}

// ValidateHPKEPublicKey checks that pub is a well-formed key for cs.
func (cs CipherSuite) ValidateHPKEPublicKey(pub HPKEPublicKey) error {
	if _, err := cs.p().kem.NewPublicKey(pub); err != nil {
		return errors.New("mls: bad HPKE public key")
	}
	return nil
}

// HPKECiphertext is RFC 9420 §5.1.3:
//
//	struct {
//	    opaque kem_output<V>;
//	    opaque ciphertext<V>;
//	} HPKECiphertext;
type HPKECiphertext struct {
	KEMOutput  []byte
	Ciphertext []byte
}

func (c *HPKECiphertext) marshal(b *cryptobyte.Builder) {
	addOpaque(b, c.KEMOutput)
	addOpaque(b, c.Ciphertext)
}

func (c *HPKECiphertext) unmarshal(s *cryptobyte.String) bool {
	return readOpaque(s, &c.KEMOutput) && readOpaque(s, &c.Ciphertext)
}

// encryptContext builds EncryptContext (RFC 9420 §5.1.3):
//
//	struct {
//	  opaque label<V>;
//	  opaque context<V>;
//	} EncryptContext;
func encryptContext(label string, context []byte) []byte {
	var b cryptobyte.Builder
	addOpaque(&b, []byte(labelPrefix+label))
	addOpaque(&b, context)
	return b.BytesOrPanic()
}

// EncryptWithLabel implements RFC 9420 §5.1.3 with HPKE base mode. HPKE draws its
// ephemeral randomness from crypto/rand.
func (cs CipherSuite) EncryptWithLabel(pub HPKEPublicKey, label string, context, plaintext []byte) (HPKECiphertext, error) {
	p := cs.p()
	pk, err := p.kem.NewPublicKey(pub)
	if err != nil {
		return HPKECiphertext{}, errors.New("mls: bad HPKE public key")
	}
	enc, sender, err := hpke.NewSender(pk, p.kdf, p.hpkeAEAD, encryptContext(label, context))
	if err != nil {
		return HPKECiphertext{}, fmt.Errorf("mls: hpke: %w", err)
	}
	ct, err := sender.Seal(nil, plaintext)
	if err != nil {
		return HPKECiphertext{}, fmt.Errorf("mls: hpke: %w", err)
	}
	return HPKECiphertext{KEMOutput: enc, Ciphertext: ct}, nil
}

// DecryptWithLabel implements RFC 9420 §5.1.3.
func (cs CipherSuite) DecryptWithLabel(priv *HPKEPrivateKey, label string, context []byte, ct HPKECiphertext) ([]byte, error) {
	p := cs.p()
	if priv == nil {
		return nil, errors.New("mls: no HPKE private key")
	}
	r, err := hpke.NewRecipient(ct.KEMOutput, priv.key, p.kdf, p.hpkeAEAD, encryptContext(label, context))
	if err != nil {
		return nil, ErrDecrypt
	}
	pt, err := r.Open(nil, ct.Ciphertext)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}
