package sframe

import (
	"errors"
	"fmt"
)

// MLSBaseKeyLabel is the MLS exporter label from which a call's SFrame base key
// comes (RFC 9605 §5.2).
const MLSBaseKeyLabel = "SFrame 1.0 Base Key"

// MLSExporter is the part of an MLS group SFrame keys come from: the exporter of
// RFC 9420 §8.5, which mls.Group implements. It returns a secret that only the
// members of the group's current epoch can compute.
type MLSExporter interface {
	Export(label string, context []byte, length int) ([]byte, error)
}

// MLSBaseKey exports the base key of the group's current epoch for cs:
// MLS-Exporter("SFrame 1.0 Base Key", "", Nk) (RFC 9605 §5.2). Every member gets
// the same base key; KIDs (MLSKeyIDLayout) give each sender its own frame keys,
// since the KID is part of the key derivation (§4.4.2). A member that joins or
// leaves changes the epoch, and with it every key. Frames are authenticated to
// the group, not to one sender: any member holds the base key and could use
// another member's KID (RFC 9605 §9.5).
func MLSBaseKey(g MLSExporter, cs CipherSuite) (BaseKey, error) {
	p, err := cs.params()
	if err != nil {
		return nil, err
	}
	k, err := g.Export(MLSBaseKeyLabel, nil, p.Nk)
	if err != nil {
		return nil, fmt.Errorf("sframe: exporting the base key: %w", err)
	}
	return BaseKey(k), nil
}

// MLSKeyIDLayout is how a KID is split between a context ID, the sender's MLS
// leaf index and the low bits of the MLS epoch (RFC 9605 §5.2):
//
//	KID = (context_id << (S + E)) | (sender_index << E) | (epoch mod 2^E)
//
// with S = IndexBits and E = EpochBits. E must be large enough that the epochs
// whose frames can be in flight at once are told apart; S must hold every leaf
// index of the group. Both sides of a call use the same layout.
type MLSKeyIDLayout struct {
	IndexBits, EpochBits uint
}

// ErrKeyIDRange is returned by MLSKeyIDLayout.KeyID when a field does not fit.
var ErrKeyIDRange = errors.New("sframe: value does not fit the KID layout")

// KeyID returns the KID of sender senderIndex in epoch, for the context ID.
func (l MLSKeyIDLayout) KeyID(contextID uint64, senderIndex uint32, epoch uint64) (KeyID, error) {
	if l.IndexBits+l.EpochBits > 64 || l.IndexBits > 32 {
		return 0, fmt.Errorf("%w: %d index and %d epoch bits", ErrKeyIDRange, l.IndexBits, l.EpochBits)
	}
	if l.IndexBits < 32 && uint64(senderIndex) >= 1<<l.IndexBits {
		return 0, fmt.Errorf("%w: sender index %d in %d bits", ErrKeyIDRange, senderIndex, l.IndexBits)
	}
	shift := l.IndexBits + l.EpochBits
	if shift < 64 && contextID >= 1<<(64-shift) || shift == 64 && contextID != 0 {
		return 0, fmt.Errorf("%w: context ID %d", ErrKeyIDRange, contextID)
	}
	var ctx uint64
	if shift < 64 {
		ctx = contextID << shift
	}
	return KeyID(ctx | uint64(senderIndex)<<l.EpochBits | epoch&mask(l.EpochBits)), nil
}

// Split returns the fields of a KID made with this layout: the context ID, the
// sender's leaf index and the epoch's low EpochBits bits.
func (l MLSKeyIDLayout) Split(kid KeyID) (contextID uint64, senderIndex uint32, epochBits uint64) {
	k := uint64(kid)
	epochBits = k & mask(l.EpochBits)
	senderIndex = uint32((k >> l.EpochBits) & mask(l.IndexBits))
	if shift := l.IndexBits + l.EpochBits; shift < 64 {
		contextID = k >> shift
	}
	return contextID, senderIndex, epochBits
}

// mask returns the low n bits set.
func mask(n uint) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<n - 1
}
