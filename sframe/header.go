package sframe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"golang.org/x/crypto/cryptobyte"
)

// KeyID is an SFrame Key ID (KID, RFC 9605 §4.3): it names the base key a frame is
// protected with.
type KeyID uint64

// Header is the SFrame header (RFC 9605 §4.3).
//
//	 0 1 2 3 4 5 6 7
//	+-+-+-+-+-+-+-+-+---------------------------+---------------------------+
//	|X|  K  |Y|  C  |   KID... (length=K)       |   CTR... (length=C)       |
//	+-+-+-+-+-+-+-+-+---------------------------+---------------------------+
//
// X and Y are the extended KID and CTR flags. A value in 0–7 is carried in K or C
// with the flag clear; otherwise the value follows the config byte in the minimum
// number of big-endian bytes and K or C holds that length minus one.
type Header struct {
	KID KeyID
	CTR uint64
}

// Header layout of RFC 9605 §4.3.
const (
	configExtendedKID = 0x80 // X
	configKIDShift    = 4    // K occupies bits 1–3
	configExtendedCTR = 0x08 // Y
	configValueMask   = 0x07 // K or C
	maxInlineValue    = 7    // largest value carried in K or C
	maxHeaderLen      = 1 + 8 + 8
)

// Len returns the number of bytes h encodes to.
func (h Header) Len() int {
	return 1 + extendedLen(uint64(h.KID)) + extendedLen(h.CTR)
}

// extendedLen returns the number of bytes v takes after the config byte: none if it
// fits in K or C, otherwise the minimum number of big-endian bytes.
func extendedLen(v uint64) int {
	if v <= maxInlineValue {
		return 0
	}
	return (bits.Len64(v) + 7) / 8
}

// AppendHeader appends the encoding of h to b (RFC 9605 §4.3) and returns the result.
func AppendHeader(b []byte, h Header) []byte {
	kid, ctr := uint64(h.KID), h.CTR
	kidLen, ctrLen := extendedLen(kid), extendedLen(ctr)
	var config byte
	if kidLen == 0 {
		config |= byte(kid) << configKIDShift
	} else {
		config |= configExtendedKID | byte(kidLen-1)<<configKIDShift
	}
	if ctrLen == 0 {
		config |= byte(ctr)
	} else {
		config |= configExtendedCTR | byte(ctrLen-1)
	}
	b = append(b, config)
	b = appendMinimal(b, kid, kidLen)
	return appendMinimal(b, ctr, ctrLen)
}

func appendMinimal(b []byte, v uint64, n int) []byte {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	return append(b, buf[8-n:]...)
}

// ParseHeader decodes the SFrame header at the start of b (RFC 9605 §4.3) and
// returns it with its length in bytes. Bytes after the header (the ciphertext) are
// not examined. It returns an error wrapping ErrMalformed if b is truncated or a
// KID or CTR is not encoded in the minimum number of bytes, which §4.3 requires.
func ParseHeader(b []byte) (Header, int, error) {
	s := cryptobyte.String(b)
	var config uint8
	if !s.ReadUint8(&config) {
		return Header{}, 0, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	var h Header
	k := uint64(config>>configKIDShift) & configValueMask
	if config&configExtendedKID == 0 {
		h.KID = KeyID(k)
	} else {
		v, err := readMinimal(&s, int(k)+1)
		if err != nil {
			return Header{}, 0, fmt.Errorf("%w: kid: %w", ErrMalformed, err)
		}
		h.KID = KeyID(v)
	}
	c := uint64(config) & configValueMask
	if config&configExtendedCTR == 0 {
		h.CTR = c
	} else {
		v, err := readMinimal(&s, int(c)+1)
		if err != nil {
			return Header{}, 0, fmt.Errorf("%w: ctr: %w", ErrMalformed, err)
		}
		h.CTR = v
	}
	return h, len(b) - len(s), nil
}

// errTruncated and errNotMinimal are the details ParseHeader wraps in ErrMalformed;
// preallocated so that a failed parse costs no allocation beyond the wrapping.
var (
	errTruncated  = errors.New("truncated")
	errNotMinimal = errors.New("not minimally encoded")
)

func readMinimal(s *cryptobyte.String, n int) (uint64, error) {
	var raw []byte
	if !s.ReadBytes(&raw, n) {
		return 0, errTruncated
	}
	if raw[0] == 0 {
		return 0, errNotMinimal
	}
	var v uint64
	for _, c := range raw {
		v = v<<8 | uint64(c)
	}
	if v <= maxInlineValue {
		return 0, errNotMinimal
	}
	return v, nil
}
