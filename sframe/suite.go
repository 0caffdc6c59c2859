package sframe

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
)

// CipherSuite is an SFrame cipher suite identifier (RFC 9605 §4.5, §8.1).
type CipherSuite uint16

// Cipher suites of RFC 9605 §8.1, and the AES-256 counterparts of the AES-CTR-HMAC
// suites on the code points the SFrame working group's vectors use
// (draft-barnes-sframe-iana-256).
const (
	AES_128_CTR_HMAC_SHA256_80 CipherSuite = 0x0001
	AES_128_CTR_HMAC_SHA256_64 CipherSuite = 0x0002
	AES_128_CTR_HMAC_SHA256_32 CipherSuite = 0x0003
	AES_128_GCM_SHA256_128     CipherSuite = 0x0004
	AES_256_GCM_SHA512_128     CipherSuite = 0x0005
	AES_256_CTR_HMAC_SHA512_80 CipherSuite = 0x0006
	AES_256_CTR_HMAC_SHA512_64 CipherSuite = 0x0007
	AES_256_CTR_HMAC_SHA512_32 CipherSuite = 0x0008
)

// suiteParams are a suite's sizes in the RFC's names (RFC 9605 §4.5): Nh the hash
// output, Nka the AES key within an AES-CTR-HMAC key, Nk the AEAD key, Nn the
// nonce, Nt the tag.
type suiteParams struct {
	name        string
	hash        func() hash.Hash
	Nh, Nka, Nk int
	Nn, Nt      int
	ctrHMAC     bool
}

// nonceLen is Nn, which is 12 for every suite.
const nonceLen = 12

var suites = map[CipherSuite]*suiteParams{
	AES_128_CTR_HMAC_SHA256_80: {name: "AES_128_CTR_HMAC_SHA256_80", hash: sha256.New, Nh: 32, Nka: 16, Nk: 48, Nn: nonceLen, Nt: 10, ctrHMAC: true},
	AES_128_CTR_HMAC_SHA256_64: {name: "AES_128_CTR_HMAC_SHA256_64", hash: sha256.New, Nh: 32, Nka: 16, Nk: 48, Nn: nonceLen, Nt: 8, ctrHMAC: true},
	AES_128_CTR_HMAC_SHA256_32: {name: "AES_128_CTR_HMAC_SHA256_32", hash: sha256.New, Nh: 32, Nka: 16, Nk: 48, Nn: nonceLen, Nt: 4, ctrHMAC: true},
	AES_128_GCM_SHA256_128:     {name: "AES_128_GCM_SHA256_128", hash: sha256.New, Nh: 32, Nk: 16, Nn: nonceLen, Nt: 16},
	AES_256_GCM_SHA512_128:     {name: "AES_256_GCM_SHA512_128", hash: sha512.New, Nh: 64, Nk: 32, Nn: nonceLen, Nt: 16},
	AES_256_CTR_HMAC_SHA512_80: {name: "AES_256_CTR_HMAC_SHA512_80", hash: sha512.New, Nh: 64, Nka: 32, Nk: 96, Nn: nonceLen, Nt: 10, ctrHMAC: true},
	AES_256_CTR_HMAC_SHA512_64: {name: "AES_256_CTR_HMAC_SHA512_64", hash: sha512.New, Nh: 64, Nka: 32, Nk: 96, Nn: nonceLen, Nt: 8, ctrHMAC: true},
	AES_256_CTR_HMAC_SHA512_32: {name: "AES_256_CTR_HMAC_SHA512_32", hash: sha512.New, Nh: 64, Nka: 32, Nk: 96, Nn: nonceLen, Nt: 4, ctrHMAC: true},
}

func (cs CipherSuite) params() (*suiteParams, error) {
	if p := suites[cs]; p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("%w: 0x%04x", ErrUnsupportedCipherSuite, uint16(cs))
}

// Supported reports whether this package implements cs.
func (cs CipherSuite) Supported() bool { return suites[cs] != nil }

// String returns the suite's registered name.
func (cs CipherSuite) String() string {
	if p := suites[cs]; p != nil {
		return p.name
	}
	return fmt.Sprintf("CipherSuite(0x%04x)", uint16(cs))
}

// TagSize returns Nt, the number of bytes the suite adds to each frame besides the
// header, or 0 for an unsupported suite.
func (cs CipherSuite) TagSize() int {
	if p := suites[cs]; p != nil {
		return p.Nt
	}
	return 0
}

// frameAEAD is the AEAD of one sframe_key. The AAD is passed in two parts, the
// encoded header and the metadata, whose concatenation is the RFC's aad (§4.4.3).
// An implementation keeps scratch space, so it is not safe for concurrent use; the
// key state that owns it serialises calls.
type frameAEAD interface {
	seal(dst, nonce, header, metadata, plaintext []byte) []byte
	open(dst, nonce, header, metadata, ciphertext []byte) ([]byte, error)
}

func newFrameAEAD(p *suiteParams, key []byte) (frameAEAD, error) {
	if len(key) != p.Nk {
		return nil, fmt.Errorf("sframe: %s key is %d bytes, want %d", p.name, len(key), p.Nk)
	}
	if p.ctrHMAC {
		return newCTRHMAC(p, key)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sframe: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("sframe: %w", err)
	}
	return &gcmAEAD{gcm: gcm}, nil
}

// gcmAEAD is AES-GCM (RFC 9605 §4.5), with a reusable buffer for header || metadata.
type gcmAEAD struct {
	gcm cipher.AEAD
	aad []byte
}

func (g *gcmAEAD) seal(dst, nonce, header, metadata, plaintext []byte) []byte {
	g.aad = append(append(g.aad[:0], header...), metadata...)
	return g.gcm.Seal(dst, nonce, plaintext, g.aad)
}

func (g *gcmAEAD) open(dst, nonce, header, metadata, ciphertext []byte) ([]byte, error) {
	g.aad = append(append(g.aad[:0], header...), metadata...)
	out, err := g.gcm.Open(dst, nonce, ciphertext, g.aad)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}

// ctrHMAC is the AES-CTR with SHA-2 AEAD of RFC 9605 §4.5.1:
//
//	enc_key = sframe_key[..Nka]; auth_key = sframe_key[Nka..]
//	auth_data = aad_len || ct_len || tag_len || nonce || aad || ct   (lengths as 8-byte big-endian)
//	tag = truncate(HMAC(auth_key, auth_data), Nt)
//	ct = AES-CTR(enc_key, nonce || 0x00000000, pt)
type ctrHMAC struct {
	block cipher.Block
	mac   hash.Hash
	nt    int

	iv     [aes.BlockSize]byte
	prefix [8 + 8 + 8 + nonceLen]byte
	sum    [sha512.Size]byte
}

func newCTRHMAC(p *suiteParams, key []byte) (*ctrHMAC, error) {
	encKey, authKey := key[:p.Nka], key[p.Nka:]
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, fmt.Errorf("sframe: %w", err)
	}
	return &ctrHMAC{block: block, mac: hmac.New(p.hash, authKey), nt: p.Nt}, nil
}

func (a *ctrHMAC) tag(nonce, header, metadata, ct []byte) []byte {
	binary.BigEndian.PutUint64(a.prefix[0:], uint64(len(header)+len(metadata)))
	binary.BigEndian.PutUint64(a.prefix[8:], uint64(len(ct)))
	binary.BigEndian.PutUint64(a.prefix[16:], uint64(a.nt))
	copy(a.prefix[24:], nonce)
	a.mac.Reset()
	a.mac.Write(a.prefix[:])
	a.mac.Write(header)
	a.mac.Write(metadata)
	a.mac.Write(ct)
	return a.mac.Sum(a.sum[:0])[:a.nt]
}

func (a *ctrHMAC) xorKeyStream(out, in, nonce []byte) {
	copy(a.iv[:], nonce)
	clear(a.iv[nonceLen:])
	cipher.NewCTR(a.block, a.iv[:]).XORKeyStream(out, in)
}

func (a *ctrHMAC) seal(dst, nonce, header, metadata, plaintext []byte) []byte {
	ret, out := sliceForAppend(dst, len(plaintext)+a.nt)
	ct := out[:len(plaintext)]
	a.xorKeyStream(ct, plaintext, nonce)
	copy(out[len(plaintext):], a.tag(nonce, header, metadata, ct))
	return ret
}

func (a *ctrHMAC) open(dst, nonce, header, metadata, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) < a.nt {
		return nil, ErrAuth
	}
	ct, tag := ciphertext[:len(ciphertext)-a.nt], ciphertext[len(ciphertext)-a.nt:]
	if subtle.ConstantTimeCompare(a.tag(nonce, header, metadata, ct), tag) != 1 {
		return nil, ErrAuth
	}
	ret, out := sliceForAppend(dst, len(ct))
	a.xorKeyStream(out, ct, nonce)
	return ret, nil
}

// sliceForAppend extends in by n bytes, returning the whole slice and the new tail.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	return head, head[len(in):]
}
