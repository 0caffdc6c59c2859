package mls

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// The TLS presentation language of RFC 9420 §2.1.2: vectors carry a variable-length
// integer length prefix (QUIC-style, at most 30 bits), which must be minimally encoded.

// maxVarint is the largest length a vector may have (§2.1.2: 2^30 - 1).
const maxVarint = 1<<30 - 1

// ErrDecode is wrapped by every decoding error so callers can recognise malformed input.
var ErrDecode = errors.New("mls: malformed encoding")

// decodeError reports a malformed structure by name.
func decodeError(what string) error {
	return fmt.Errorf("%w: %s", ErrDecode, what)
}

// writeVarint appends n in the variable-length integer encoding of RFC 9000 §16,
// restricted to the 1, 2 and 4 byte forms as RFC 9420 §2.1.2 requires.
func writeVarint(b *cryptobyte.Builder, n int) {
	switch {
	case n < 0 || n > maxVarint:
		b.SetError(errors.New("mls: vector too long"))
	case n < 1<<6:
		b.AddUint8(uint8(n))
	case n < 1<<14:
		b.AddUint16(uint16(n) | 0x4000)
	default:
		b.AddUint32(uint32(n) | 0x80000000)
	}
}

// readVarint reads a minimally-encoded variable-length integer.
func readVarint(s *cryptobyte.String, n *int) bool {
	if len(*s) == 0 {
		return false
	}
	prefix := (*s)[0] >> 6
	switch prefix {
	case 0:
		var v uint8
		if !s.ReadUint8(&v) {
			return false
		}
		*n = int(v)
		return true
	case 1:
		var v uint16
		if !s.ReadUint16(&v) {
			return false
		}
		v &= 0x3fff
		if v < 1<<6 {
			return false // not minimal
		}
		*n = int(v)
		return true
	case 2:
		var v uint32
		if !s.ReadUint32(&v) {
			return false
		}
		v &= 0x3fffffff
		if v < 1<<14 {
			return false // not minimal
		}
		*n = int(v)
		return true
	default:
		return false // 8-byte form is not allowed in MLS
	}
}

// addVector writes a varint-length-prefixed vector whose body is produced by f.
func addVector(b *cryptobyte.Builder, f func(b *cryptobyte.Builder)) {
	var child cryptobyte.Builder
	f(&child)
	body, err := child.Bytes()
	if err != nil {
		b.SetError(err)
		return
	}
	writeVarint(b, len(body))
	b.AddBytes(body)
}

// addOpaque writes opaque data<V>.
func addOpaque(b *cryptobyte.Builder, data []byte) {
	writeVarint(b, len(data))
	b.AddBytes(data)
}

// readVector reads a varint-length-prefixed vector body into out.
func readVector(s *cryptobyte.String, out *cryptobyte.String) bool {
	var n int
	if !readVarint(s, &n) {
		return false
	}
	return s.ReadBytes((*[]byte)(out), n)
}

// readOpaque reads opaque data<V> into a fresh copy.
func readOpaque(s *cryptobyte.String, out *[]byte) bool {
	var v cryptobyte.String
	if !readVector(s, &v) {
		return false
	}
	*out = append([]byte{}, v...)
	return true
}

// readVectorOf reads a vector whose elements are decoded one by one by f until it is exhausted.
func readVectorOf(s *cryptobyte.String, f func(s *cryptobyte.String) bool) bool {
	var v cryptobyte.String
	if !readVector(s, &v) {
		return false
	}
	for !v.Empty() {
		if !f(&v) {
			return false
		}
	}
	return true
}

// addBool writes a TLS bool (one byte, 0 or 1).
func addBool(b *cryptobyte.Builder, v bool) {
	if v {
		b.AddUint8(1)
	} else {
		b.AddUint8(0)
	}
}

// readBool reads a TLS bool, rejecting values other than 0 and 1.
func readBool(s *cryptobyte.String, v *bool) bool {
	var x uint8
	if !s.ReadUint8(&x) || x > 1 {
		return false
	}
	*v = x == 1
	return true
}

// addOptional writes optional<T>: a presence byte then the value.
func addOptional(b *cryptobyte.Builder, present bool, f func(b *cryptobyte.Builder)) {
	addBool(b, present)
	if present {
		f(b)
	}
}

// readOptional reads optional<T>; f is called only when the value is present.
func readOptional(s *cryptobyte.String, present *bool, f func(s *cryptobyte.String) bool) bool {
	if !readBool(s, present) {
		return false
	}
	if *present {
		return f(s)
	}
	return true
}

// marshaler is a structure with a TLS presentation language encoding.
type marshaler interface {
	marshal(b *cryptobyte.Builder)
}

// encode serializes m.
func encode(m marshaler) ([]byte, error) {
	var b cryptobyte.Builder
	m.marshal(&b)
	return b.Bytes()
}

// mustEncode serializes m, which can fail only if a vector exceeds 2^30 bytes,
// something this package never constructs from valid state.
func mustEncode(m marshaler) []byte {
	out, err := encode(m)
	if err != nil {
		panic("mls: encoding: " + err.Error())
	}
	return out
}

// decodeAll parses data completely with f, rejecting trailing bytes.
func decodeAll(data []byte, what string, f func(s *cryptobyte.String) bool) error {
	s := cryptobyte.String(data)
	if !f(&s) {
		return decodeError(what)
	}
	if !s.Empty() {
		return decodeError(what + ": trailing bytes")
	}
	return nil
}
