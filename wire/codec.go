package wire

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
)

// The bodies are written in the TLS presentation language as RFC 9420 §2.1.2 profiles
// it: vectors carry a variable-length integer length prefix (the 1, 2 and 4 byte forms of
// RFC 9000 §16, at most 2^30-1), which must be minimally encoded. This is a copy of the
// rules, not of the mls package's code: the protocol must not depend on its internals.

// maxVarint is the largest vector length the varint form can carry.
const maxVarint = 1<<30 - 1

// decodeError reports a malformed structure by name.
func decodeError(what string) error {
	return fmt.Errorf("%w: %s", ErrMalformed, what)
}

// errEncode is set on a builder when a value cannot be encoded within the schema's
// bounds; what encodes must also decode.
func errEncode(what string) error {
	return fmt.Errorf("wire: cannot encode %s: out of bounds", what)
}

// writeVarint appends n in the minimal variable-length integer encoding.
func writeVarint(b *cryptobyte.Builder, n int) {
	switch {
	case n < 0 || n > maxVarint:
		b.SetError(errors.New("wire: vector too long"))
	case n < 1<<6:
		b.AddUint8(uint8(n))
	case n < 1<<14:
		b.AddUint16(uint16(n) | 0x4000)
	default:
		b.AddUint32(uint32(n) | 0x80000000)
	}
}

// readVarint reads a minimally encoded variable-length integer.
func readVarint(s *cryptobyte.String, n *int) bool {
	if len(*s) == 0 {
		return false
	}
	switch (*s)[0] >> 6 {
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
		return false // the 8-byte form is not allowed
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

// readVector reads a varint-length-prefixed vector body into out.
func readVector(s *cryptobyte.String, out *cryptobyte.String) bool {
	var n int
	if !readVarint(s, &n) {
		return false
	}
	return s.ReadBytes((*[]byte)(out), n)
}

// readVectorOf reads a vector whose elements f decodes one by one until it is exhausted.
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

// addOpaque writes opaque data<min..max>, refusing lengths outside the bounds.
func addOpaque(b *cryptobyte.Builder, data []byte, minLen, maxLen int, what string) {
	if len(data) < minLen || len(data) > maxLen {
		b.SetError(errEncode(what))
		return
	}
	writeVarint(b, len(data))
	b.AddBytes(data)
}

// readOpaque reads opaque data<min..max>. The result aliases the input: the Conn
// allocates a fresh body per frame, so a decoded message owns its bytes.
func readOpaque(s *cryptobyte.String, out *[]byte, minLen, maxLen int) bool {
	var v cryptobyte.String
	if !readVector(s, &v) || len(v) < minLen || len(v) > maxLen {
		return false
	}
	*out = v
	return true
}

// addString writes UTF-8 text as opaque<min..max>.
func addString(b *cryptobyte.Builder, str string, minLen, maxLen int, what string) {
	if len(str) < minLen || len(str) > maxLen || !utf8.ValidString(str) {
		b.SetError(errEncode(what))
		return
	}
	writeVarint(b, len(str))
	b.AddBytes([]byte(str))
}

// readString reads UTF-8 text as opaque<min..max>, rejecting invalid UTF-8.
func readString(s *cryptobyte.String, out *string, minLen, maxLen int) bool {
	var v cryptobyte.String
	if !readVector(s, &v) || len(v) < minLen || len(v) > maxLen || !utf8.Valid(v) {
		return false
	}
	*out = string(v)
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

// readFixed reads exactly len(out) bytes into out.
func readFixed(s *cryptobyte.String, out []byte) bool {
	return s.CopyBytes(out)
}
