package sframe

import "errors"

// Errors returned by this package. Callers test for them with errors.Is; the
// returned errors may wrap them with detail that never includes key material or
// plaintext.
var (
	// ErrUnsupportedCipherSuite is returned by AddKey for a suite this package does
	// not implement.
	ErrUnsupportedCipherSuite = errors.New("sframe: unsupported cipher suite")
	// ErrUnknownKey is returned by Protect for a KID that has no key, and by
	// Unprotect for a frame whose KID has no key.
	ErrUnknownKey = errors.New("sframe: unknown key id")
	// ErrKeyExists is returned by AddKey for a KID that already has a key: replacing
	// it would restart the KID's counter.
	ErrKeyExists = errors.New("sframe: key id already has a key")
	// ErrInvalidKey is returned by AddKey for a base key shorter than 16 bytes.
	ErrInvalidKey = errors.New("sframe: invalid base key")
	// ErrAuth is returned by Unprotect for a frame whose tag does not verify: a
	// wrong key, or a tampered header, metadata or ciphertext.
	ErrAuth = errors.New("sframe: authentication failed")
	// ErrReplay is returned by Unprotect for a frame whose counter was already
	// accepted for its KID, or is too far behind the newest accepted one.
	ErrReplay = errors.New("sframe: replayed or too old frame")
	// ErrMalformed is returned by ParseHeader and Unprotect for a frame that is not
	// a well-formed SFrame ciphertext (RFC 9605 §4.3).
	ErrMalformed = errors.New("sframe: malformed frame")
	// ErrCounterExhausted is returned by Protect once a KID has used every counter
	// value; the caller must move to a new KID.
	ErrCounterExhausted = errors.New("sframe: counter exhausted")
)
