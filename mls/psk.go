package mls

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Pre-shared keys, RFC 9420 §8.4.

// PSKType is RFC 9420 §8.4:
//
//	enum {
//	  reserved(0),
//	  external(1),
//	  resumption(2),
//	  (255)
//	} PSKType;
type PSKType uint8

const (
	PSKTypeExternal   PSKType = 1
	PSKTypeResumption PSKType = 2
)

// ResumptionPSKUsage is RFC 9420 §8.4:
//
//	enum {
//	  reserved(0),
//	  application(1),
//	  reinit(2),
//	  branch(3),
//	  (255)
//	} ResumptionPSKUsage;
type ResumptionPSKUsage uint8

const (
	ResumptionPSKUsageApplication ResumptionPSKUsage = 1
	ResumptionPSKUsageReinit      ResumptionPSKUsage = 2
	ResumptionPSKUsageBranch      ResumptionPSKUsage = 3
)

// PreSharedKeyID is RFC 9420 §8.4:
//
//	struct {
//	  PSKType psktype;
//	  select (PreSharedKeyID.psktype) {
//	    case external:
//	      opaque psk_id<V>;
//
//	    case resumption:
//	      ResumptionPSKUsage usage;
//	      opaque psk_group_id<V>;
//	      uint64 psk_epoch;
//	  };
//	  opaque psk_nonce<V>;
//	} PreSharedKeyID;
//
// PSKID is set for external PSKs; Usage, PSKGroupID and PSKEpoch for resumption PSKs.
type PreSharedKeyID struct {
	PSKType PSKType

	PSKID []byte // external

	Usage      ResumptionPSKUsage // resumption
	PSKGroupID GroupID            // resumption
	PSKEpoch   uint64             // resumption

	PSKNonce []byte
}

func (p *PreSharedKeyID) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(p.PSKType))
	switch p.PSKType {
	case PSKTypeExternal:
		addOpaque(b, p.PSKID)
	case PSKTypeResumption:
		b.AddUint8(uint8(p.Usage))
		addOpaque(b, p.PSKGroupID)
		b.AddUint64(p.PSKEpoch)
	default:
		b.SetError(errors.New("mls: unknown psktype"))
		return
	}
	addOpaque(b, p.PSKNonce)
}

// unmarshal reads a PreSharedKeyID, rejecting an unknown psktype or usage.
func (p *PreSharedKeyID) unmarshal(s *cryptobyte.String) bool {
	*p = PreSharedKeyID{}
	if !s.ReadUint8((*uint8)(&p.PSKType)) {
		return false
	}
	switch p.PSKType {
	case PSKTypeExternal:
		if !readOpaque(s, &p.PSKID) {
			return false
		}
	case PSKTypeResumption:
		if !s.ReadUint8((*uint8)(&p.Usage)) ||
			p.Usage < ResumptionPSKUsageApplication || p.Usage > ResumptionPSKUsageBranch ||
			!readOpaque(s, (*[]byte)(&p.PSKGroupID)) ||
			!s.ReadUint64(&p.PSKEpoch) {
			return false
		}
	default:
		return false
	}
	return readOpaque(s, &p.PSKNonce)
}

// equal reports whether p and o identify the same PSK with the same nonce (RFC 9420
// §12.2 forbids two PSK proposals with equal PreSharedKeyIDs in one Commit).
func (p *PreSharedKeyID) equal(o *PreSharedKeyID) bool {
	return p.PSKType == o.PSKType &&
		bytes.Equal(p.PSKID, o.PSKID) &&
		p.Usage == o.Usage &&
		bytes.Equal(p.PSKGroupID, o.PSKGroupID) &&
		p.PSKEpoch == o.PSKEpoch &&
		bytes.Equal(p.PSKNonce, o.PSKNonce)
}

// pskLabel is RFC 9420 §8.4:
//
//	struct {
//	    PreSharedKeyID id;
//	    uint16 index;
//	    uint16 count;
//	} PSKLabel;
type pskLabel struct {
	ID    *PreSharedKeyID
	Index uint16
	Count uint16
}

func (l *pskLabel) marshal(b *cryptobyte.Builder) {
	l.ID.marshal(b)
	b.AddUint16(l.Index)
	b.AddUint16(l.Count)
}

// labelDerivedPSK is the ExpandWithLabel label of each PSK's input (RFC 9420 §8.4).
const labelDerivedPSK = "derived psk"

// maxPSKs is the most PSKs one epoch can inject: PSKLabel counts them in a uint16.
const maxPSKs = 1<<16 - 1

// pskSecret computes psk_secret from the PSKs injected into an epoch, in order
// (RFC 9420 §8.4):
//
//	psk_extracted_[i] = KDF.Extract(0, psk_[i])
//	psk_input_[i] = ExpandWithLabel(psk_extracted_[i], "derived psk", PSKLabel, KDF.Nh)
//	psk_secret_[0] = 0
//	psk_secret_[i] = KDF.Extract(psk_input_[i-1], psk_secret_[i-1])
//	psk_secret     = psk_secret_[n]
//
// With no PSK it is the all-zero string of KDF.Nh bytes. ids[i] identifies psks[i].
func pskSecret(cs CipherSuite, ids []PreSharedKeyID, psks [][]byte) ([]byte, error) {
	if len(ids) != len(psks) {
		return nil, errors.New("mls: psk_secret: PSK count does not match PSK ID count")
	}
	if len(ids) > maxPSKs {
		return nil, errors.New("mls: psk_secret: too many PSKs")
	}
	zero := make([]byte, cs.Nh())
	secret := zero
	for i := range ids {
		label, err := encode(&pskLabel{ID: &ids[i], Index: uint16(i), Count: uint16(len(ids))})
		if err != nil {
			return nil, fmt.Errorf("mls: psk_secret: encoding PSKLabel: %w", err)
		}
		extracted := cs.extract(zero, psks[i])
		input := cs.ExpandWithLabel(extracted, labelDerivedPSK, label, cs.Nh())
		clear(extracted)
		next := cs.extract(input, secret)
		clear(input)
		if i > 0 {
			clear(secret)
		}
		secret = next
	}
	return secret, nil
}
