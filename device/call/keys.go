package call

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"mahfooz/sframe"
)

// Suite is the SFrame cipher suite of every call: AES-128-GCM with a full tag,
// the fastest suite here (see docs/benchmarks.md).
const Suite = sframe.AES_128_GCM_SHA256_128

// Layout is how a call's KIDs are made (RFC 9605 §5.2): 16 bits of MLS leaf index,
// 4 bits of epoch, and the sender's context ID above them. A sender takes a new
// context ID for every call it joins and every epoch it moves to, so that no
// (KID, counter) pair, and so no nonce, is ever used twice under one base key,
// even when two calls of one group share an epoch.
var Layout = sframe.MLSKeyIDLayout{IndexBits: 16, EpochBits: 4}

// DefaultGrace is how long a previous epoch's keys still open frames once the
// next epoch's keys are in use: long enough for frames in flight and a relay's
// jitter, short enough that a removed member's frames stop being played at once.
const DefaultGrace = 2 * time.Second

// maxKIDsPerEpoch bounds the receive keys one epoch may hold, whatever KIDs a
// peer (or the relay) sends.
const maxKIDsPerEpoch = 1024

// Errors returned by Keys.
var (
	// ErrNoEpoch is returned by Protect before SetEpoch.
	ErrNoEpoch = errors.New("call: no epoch keys yet")
	// ErrOldEpoch is returned by Unprotect for a frame of an epoch whose keys are
	// gone: a previous epoch past its grace period, or one never known.
	ErrOldEpoch = errors.New("call: frame of an unknown or expired epoch")
	// ErrOwnFrame is returned by Unprotect for a frame carrying this member's own
	// leaf: the relay never sends a member its own frames back.
	ErrOwnFrame = errors.New("call: frame carries this member's own key id")
)

// Epoch is what one MLS epoch gives a call: the epoch number, this member's leaf,
// and the SFrame base key exported from the group (sframe.MLSBaseKey).
type Epoch struct {
	Number    uint64
	Leaf      uint32
	BaseKey   sframe.BaseKey
	ContextID uint64 // unique for this member in this epoch of this group; see Layout
}

// Keys holds a call member's SFrame keys: the current epoch's, with which it
// sends and receives, and the previous epochs' for receiving only, each until
// its grace period ends. It is safe for concurrent use.
type Keys struct {
	grace time.Duration
	now   func() time.Time

	mu      sync.Mutex
	send    *sframe.Context
	sendKID sframe.KeyID
	recv    *sframe.Context
	cur     *epochKeys
	old     []*epochKeys // previous epochs still in their grace period
}

type epochKeys struct {
	number  uint64
	leaf    uint32
	base    sframe.BaseKey
	kids    map[sframe.KeyID]bool // receive KIDs with a key: true once a frame verified under it
	retired time.Time             // zero for the current epoch
}

// NewKeys returns empty Keys; grace 0 means DefaultGrace and a nil now means time.Now.
func NewKeys(grace time.Duration, now func() time.Time) *Keys {
	if grace <= 0 {
		grace = DefaultGrace
	}
	if now == nil {
		now = time.Now
	}
	return &Keys{grace: grace, now: now, send: sframe.NewContext(Suite), recv: sframe.NewContext(Suite)}
}

// SetEpoch moves to a new epoch: frames are sent under it from now on, and the
// previous epoch's keys open frames for the grace period only. An epoch not newer
// than the current one is refused.
func (k *Keys) SetEpoch(e Epoch) error {
	kid, err := Layout.KeyID(e.ContextID, e.Leaf, e.Number)
	if err != nil {
		return fmt.Errorf("call: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cur != nil && e.Number <= k.cur.number {
		return fmt.Errorf("call: epoch %d is not after %d", e.Number, k.cur.number)
	}
	send := sframe.NewContext(Suite)
	if err := send.AddKey(kid, e.BaseKey); err != nil {
		return fmt.Errorf("call: %w", err)
	}
	now := k.now()
	if k.cur != nil {
		k.cur.retired = now
		k.old = append(k.old, k.cur)
	}
	k.cur = &epochKeys{number: e.Number, leaf: e.Leaf, base: append(sframe.BaseKey(nil), e.BaseKey...), kids: make(map[sframe.KeyID]bool)}
	k.send, k.sendKID = send, kid
	k.expireLocked(now)
	return nil
}

// Epoch returns the current epoch's number, and false before SetEpoch.
func (k *Keys) Epoch() (uint64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cur == nil {
		return 0, false
	}
	return k.cur.number, true
}

// AppendProtect encrypts frame under the current epoch, authenticating metadata
// with it, and appends the SFrame ciphertext to dst.
func (k *Keys) AppendProtect(dst, metadata, frame []byte) ([]byte, error) {
	k.mu.Lock()
	send, kid, ok := k.send, k.sendKID, k.cur != nil
	k.mu.Unlock()
	if !ok {
		return nil, ErrNoEpoch
	}
	return send.AppendProtect(dst, kid, metadata, frame)
}

// AppendUnprotect authenticates and decrypts an SFrame ciphertext with the
// metadata it was sent with, appends the frame to dst, and returns the sender's
// MLS leaf. Frames of the current epoch, and of previous epochs still in their
// grace period, open; everything else is refused.
func (k *Keys) AppendUnprotect(dst, metadata, ciphertext []byte) ([]byte, uint32, error) {
	h, _, err := sframe.ParseHeader(ciphertext)
	if err != nil {
		return nil, 0, err
	}
	_, leaf, epochBits := Layout.Split(h.KID)
	k.mu.Lock()
	k.expireLocked(k.now())
	e := k.epochLocked(epochBits)
	if e == nil {
		k.mu.Unlock()
		return nil, 0, ErrOldEpoch
	}
	if leaf == e.leaf {
		k.mu.Unlock()
		return nil, 0, ErrOwnFrame
	}
	_, known := e.kids[h.KID]
	fresh := !known
	if fresh {
		if len(e.kids) >= maxKIDsPerEpoch {
			k.mu.Unlock()
			return nil, 0, fmt.Errorf("%w: too many senders", ErrOldEpoch)
		}
		if err := k.recv.AddKey(h.KID, e.base); err != nil {
			k.mu.Unlock()
			return nil, 0, fmt.Errorf("call: %w", err)
		}
		e.kids[h.KID] = false
	}
	recv := k.recv
	k.mu.Unlock()

	out, _, err := recv.AppendUnprotect(dst, metadata, ciphertext)
	if err != nil {
		if fresh {
			// A KID is kept only once a frame under it verified, so forged
			// KIDs cost nothing lasting.
			k.mu.Lock()
			if !e.kids[h.KID] {
				delete(e.kids, h.KID)
				k.recv.RemoveKey(h.KID)
			}
			k.mu.Unlock()
		}
		return nil, 0, err
	}
	k.mu.Lock()
	if _, ok := e.kids[h.KID]; ok {
		e.kids[h.KID] = true
	}
	k.mu.Unlock()
	return out, leaf, nil
}

// epochLocked finds the known epoch whose low bits are epochBits, newest first.
func (k *Keys) epochLocked(epochBits uint64) *epochKeys {
	mask := uint64(1)<<Layout.EpochBits - 1
	if k.cur != nil && k.cur.number&mask == epochBits {
		return k.cur
	}
	for i := len(k.old) - 1; i >= 0; i-- {
		if k.old[i].number&mask == epochBits {
			return k.old[i]
		}
	}
	return nil
}

// expireLocked forgets the epochs whose grace period has ended, with their keys.
func (k *Keys) expireLocked(now time.Time) {
	keep := k.old[:0]
	for _, e := range k.old {
		if now.Sub(e.retired) < k.grace {
			keep = append(keep, e)
			continue
		}
		for kid := range e.kids {
			k.recv.RemoveKey(kid)
		}
		clear(e.base)
	}
	clear(k.old[len(keep):])
	k.old = keep
}
