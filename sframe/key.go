package sframe

import (
	"crypto/hkdf"
	"encoding/binary"
	"fmt"
)

// BaseKey is the secret a KID names (RFC 9605 §4.4.1), from which the frame key
// and salt are derived. Its String and Format print no key material.
type BaseKey []byte

// minBaseKeyLen is the shortest base key AddKey accepts: 128 bits, the security
// level of the weakest suite.
const minBaseKeyLen = 16

// String returns a redacted placeholder.
func (BaseKey) String() string { return "sframe.BaseKey(redacted)" }

// Format prints a redacted placeholder for every verb, so that %x or %v never print
// the key.
func (k BaseKey) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.String()) }

// Labels of RFC 9605 §4.4.2.
const (
	labelSFrameKey  = "SFrame 1.0 Secret key "
	labelSFrameSalt = "SFrame 1.0 Secret salt "
)

// derivedKey is the result of derive_key_salt (RFC 9605 §4.4.2).
type derivedKey struct {
	secret, key, salt []byte
}

// keySaltLabel returns label || KID (8 bytes) || cipher_suite (2 bytes), big-endian.
func keySaltLabel(label string, kid KeyID, cs CipherSuite) string {
	b := make([]byte, 0, len(label)+8+2)
	b = append(b, label...)
	b = binary.BigEndian.AppendUint64(b, uint64(kid))
	b = binary.BigEndian.AppendUint16(b, uint16(cs))
	return string(b)
}

// deriveKeySalt is derive_key_salt of RFC 9605 §4.4.2:
//
//	sframe_secret = HKDF-Extract("", base_key)
//	sframe_key = HKDF-Expand(sframe_secret, "SFrame 1.0 Secret key " + KID + cipher_suite, AEAD.Nk)
//	sframe_salt = HKDF-Expand(sframe_secret, "SFrame 1.0 Secret salt " + KID + cipher_suite, AEAD.Nn)
func deriveKeySalt(cs CipherSuite, kid KeyID, baseKey BaseKey) (derivedKey, error) {
	p, err := cs.params()
	if err != nil {
		return derivedKey{}, err
	}
	secret, err := hkdf.Extract(p.hash, baseKey, nil)
	if err != nil {
		return derivedKey{}, fmt.Errorf("sframe: hkdf extract: %w", err)
	}
	key, err := hkdf.Expand(p.hash, secret, keySaltLabel(labelSFrameKey, kid, cs), p.Nk)
	if err != nil {
		return derivedKey{}, fmt.Errorf("sframe: hkdf expand: %w", err)
	}
	salt, err := hkdf.Expand(p.hash, secret, keySaltLabel(labelSFrameSalt, kid, cs), p.Nn)
	if err != nil {
		return derivedKey{}, fmt.Errorf("sframe: hkdf expand: %w", err)
	}
	return derivedKey{secret: secret, key: key, salt: salt}, nil
}
