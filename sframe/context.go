package sframe

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
)

// ReplayWindow is the number of counter values behind the newest accepted one for
// which Unprotect still accepts a frame it has not seen (RFC 9605 §9.3).
const ReplayWindow = 128

// Context is an SFrame context (RFC 9605 §4.4): the base keys of one cipher suite,
// by KID, with each KID's send counter and receive replay window.
//
// A Context is safe for concurrent use. Calls on different KIDs run in parallel;
// calls on the same KID are serialised.
type Context struct {
	cs CipherSuite

	mu   sync.RWMutex
	keys map[KeyID]*keyState
}

// keyState is one KID's keys and counters. mu guards everything but the immutable
// salt.
type keyState struct {
	salt [nonceLen]byte

	mu        sync.Mutex
	aead      frameAEAD
	nextCTR   uint64
	exhausted bool
	window    replayWindow
	nonce     [nonceLen]byte
	header    [maxHeaderLen]byte
}

// NewContext returns an empty Context for cipher suite cs. An unsupported suite is
// reported by AddKey.
func NewContext(cs CipherSuite) *Context {
	return &Context{cs: cs, keys: make(map[KeyID]*keyState)}
}

// CipherSuite returns the suite c protects frames with.
func (c *Context) CipherSuite() CipherSuite { return c.cs }

// AddKey derives the frame key and salt for kid from baseKey (RFC 9605 §4.4.2) and
// stores them. The send counter for kid starts at 0, so a base key must never be
// added under the same KID twice; AddKey returns ErrKeyExists if kid already has a
// key. AddKey does not retain baseKey.
func (c *Context) AddKey(kid KeyID, baseKey BaseKey) error {
	p, err := c.cs.params()
	if err != nil {
		return err
	}
	if len(baseKey) < minBaseKeyLen {
		return fmt.Errorf("%w: shorter than %d bytes", ErrInvalidKey, minBaseKeyLen)
	}
	d, err := deriveKeySalt(c.cs, kid, baseKey)
	if err != nil {
		return err
	}
	aead, err := newFrameAEAD(p, d.key)
	clear(d.secret)
	clear(d.key)
	if err != nil {
		return err
	}
	ks := &keyState{aead: aead}
	copy(ks.salt[:], d.salt)

	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.keys[kid]; ok {
		return fmt.Errorf("%w: kid %d", ErrKeyExists, kid)
	}
	c.keys[kid] = ks
	return nil
}

// RemoveKey forgets the key for kid, if any.
func (c *Context) RemoveKey(kid KeyID) {
	c.mu.Lock()
	delete(c.keys, kid)
	c.mu.Unlock()
}

func (c *Context) key(kid KeyID) (*keyState, error) {
	c.mu.RLock()
	ks := c.keys[kid]
	c.mu.RUnlock()
	if ks == nil {
		return nil, fmt.Errorf("%w: kid %d", ErrUnknownKey, kid)
	}
	return ks, nil
}

// Protect encrypts plaintext under kid's key with the next counter value and returns
// the SFrame ciphertext: header || ciphertext || tag (RFC 9605 §4.4.3). metadata is
// authenticated but not included; the receiver must pass the same metadata to
// Unprotect. It returns ErrUnknownKey if kid has no key and ErrCounterExhausted once
// every counter value has been used.
func (c *Context) Protect(kid KeyID, metadata, plaintext []byte) ([]byte, error) {
	return c.AppendProtect(nil, kid, metadata, plaintext)
}

// AppendProtect is Protect appending the SFrame ciphertext to dst, which must not
// overlap plaintext. With enough capacity in dst it does not allocate for the GCM
// suites.
func (c *Context) AppendProtect(dst []byte, kid KeyID, metadata, plaintext []byte) ([]byte, error) {
	ks, err := c.key(kid)
	if err != nil {
		return nil, err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.exhausted {
		return nil, fmt.Errorf("%w: kid %d", ErrCounterExhausted, kid)
	}
	ctr := ks.nextCTR
	if ctr == math.MaxUint64 {
		ks.exhausted = true
	} else {
		ks.nextCTR++
	}
	return ks.seal(dst, kid, ctr, metadata, plaintext), nil
}

// seal is encrypt of RFC 9605 §4.4.3 with an explicit counter. ks.mu must be held.
func (ks *keyState) seal(dst []byte, kid KeyID, ctr uint64, metadata, plaintext []byte) []byte {
	hdrStart := len(dst)
	dst = AppendHeader(dst, Header{KID: kid, CTR: ctr})
	// The header is copied out because the AEAD may reallocate dst.
	n := copy(ks.header[:], dst[hdrStart:])
	nonce := ks.makeNonce(ctr)
	return ks.aead.seal(dst, nonce, ks.header[:n], metadata, plaintext)
}

// makeNonce returns sframe_salt XOR CTR, the counter encoded big-endian in Nn bytes
// (RFC 9605 §4.4.3). ks.mu must be held.
func (ks *keyState) makeNonce(ctr uint64) []byte {
	ks.nonce = ks.salt
	tail := binary.BigEndian.Uint64(ks.nonce[nonceLen-8:]) ^ ctr
	binary.BigEndian.PutUint64(ks.nonce[nonceLen-8:], tail)
	return ks.nonce[:]
}

// Unprotect authenticates and decrypts an SFrame ciphertext (RFC 9605 §4.4.4) with
// the metadata it was protected with, and returns the plaintext and the frame's
// KID. It returns an error wrapping ErrMalformed for a malformed header,
// ErrUnknownKey for a KID with no key, ErrReplay for a counter already accepted or
// more than ReplayWindow behind the newest one, and ErrAuth if the frame does not
// verify. Only a frame that verifies moves the replay window.
func (c *Context) Unprotect(metadata, ciphertext []byte) ([]byte, KeyID, error) {
	return c.AppendUnprotect(nil, metadata, ciphertext)
}

// AppendUnprotect is Unprotect appending the plaintext to dst, which must not
// overlap ciphertext. With enough capacity in dst it does not allocate for the GCM
// suites.
func (c *Context) AppendUnprotect(dst, metadata, ciphertext []byte) ([]byte, KeyID, error) {
	h, n, err := ParseHeader(ciphertext)
	if err != nil {
		return nil, 0, err
	}
	ks, err := c.key(h.KID)
	if err != nil {
		return nil, h.KID, err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if err := ks.window.check(h.CTR); err != nil {
		return nil, h.KID, err
	}
	nonce := ks.makeNonce(h.CTR)
	out, err := ks.aead.open(dst, nonce, ciphertext[:n], metadata, ciphertext[n:])
	if err != nil {
		return nil, h.KID, err
	}
	ks.window.accept(h.CTR)
	return out, h.KID, nil
}

// replayWindow records which of the ReplayWindow counters up to and including the
// newest accepted one have been accepted: bit i of seen is newest-i.
type replayWindow struct {
	started bool
	newest  uint64
	seen    [ReplayWindow / 64]uint64
}

var (
	errReplayDuplicate = fmt.Errorf("%w: counter already accepted", ErrReplay)
	errReplayTooOld    = fmt.Errorf("%w: counter outside the replay window", ErrReplay)
)

func (w *replayWindow) check(ctr uint64) error {
	if !w.started || ctr > w.newest {
		return nil
	}
	age := w.newest - ctr
	if age >= ReplayWindow {
		return errReplayTooOld
	}
	if w.seen[age/64]&(1<<(age%64)) != 0 {
		return errReplayDuplicate
	}
	return nil
}

// accept records ctr, which check has allowed.
func (w *replayWindow) accept(ctr uint64) {
	if !w.started {
		w.started, w.newest = true, ctr
		w.seen = [ReplayWindow / 64]uint64{1}
		return
	}
	if ctr > w.newest {
		w.shift(ctr - w.newest)
		w.newest = ctr
		w.seen[0] |= 1
		return
	}
	age := w.newest - ctr
	w.seen[age/64] |= 1 << (age % 64)
}

// shift ages every recorded counter by n.
func (w *replayWindow) shift(n uint64) {
	if n >= ReplayWindow {
		w.seen = [ReplayWindow / 64]uint64{}
		return
	}
	words, bits := int(n/64), n%64
	for i := len(w.seen) - 1; i >= 0; i-- {
		var v uint64
		if j := i - words; j >= 0 {
			v = w.seen[j] << bits
			if j > 0 && bits != 0 {
				v |= w.seen[j-1] >> (64 - bits)
			}
		}
		w.seen[i] = v
	}
}
