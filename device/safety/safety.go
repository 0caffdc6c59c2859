// Package safety computes the safety numbers that two Mahfooz officials compare,
// in person or over a call, to check that no one sits between them.
//
// A safety number is 60 decimal digits. Each official contributes a 30-digit half
// derived from their name and the MLS signature public keys of all their active
// devices, so the number changes when any of those keys changes or a device is
// added or removed. Both sides compute the same number: the halves are put in a
// canonical (sorted) order. The construction follows Signal's numeric
// fingerprints: SHA-512 iterated 5200 times, each 5-byte group of the digest read
// as a big-endian integer modulo 100000.
package safety

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"mahfooz/internal/qrtext"
)

const (
	// Digits is the number of digits of a safety number.
	Digits = 60
	// version is the format version hashed into every half.
	version = 0x0001
	// iterations of SHA-512 per half.
	iterations = 5200
	// halfDigits is the number of digits each official contributes.
	halfDigits = Digits / 2
)

// ErrNotNumber is returned by [Parse], [QRTerminal] and [QRPNG] for a string that is
// not a safety number.
var ErrNotNumber = errors.New("safety: not a safety number")

// Number returns the safety number two officials compare: 60 decimal digits, the
// same on both sides (Number(a, ka, b, kb) == Number(b, kb, a, ka)). aKeys and
// bKeys are the MLS signature public keys of all the active devices of each
// official, in any order; Number does not modify them.
//
// Each official's half is 30 digits from
//
//	input = uint16 version (0x0001) || uint32 len(name) || name ||
//	        for each key, sorted bytewise: uint32 len(key) || key
//	h_1 = SHA-512(input), h_i = SHA-512(h_{i-1} || input) for i = 2 … 5200
//
// (the lengths make the encoding unambiguous), with the first 30 bytes of h_5200
// read as six 5-byte big-endian integers, each printed as 5 digits
// modulo 100000. The two halves are concatenated smaller first. Number is safe
// for concurrent use.
func Number(aName string, aKeys [][]byte, bName string, bKeys [][]byte) string {
	a, b := half(aName, aKeys), half(bName, bKeys)
	if b < a {
		a, b = b, a
	}
	return a + b
}

// half returns one official's 30 digits.
func half(name string, keys [][]byte) string {
	sorted := slices.Clone(keys)
	slices.SortFunc(sorted, bytes.Compare)
	input := binary.BigEndian.AppendUint16(nil, version)
	input = binary.BigEndian.AppendUint32(input, uint32(len(name)))
	input = append(input, name...)
	for _, k := range sorted {
		input = binary.BigEndian.AppendUint32(input, uint32(len(k)))
		input = append(input, k...)
	}
	h := sha512.New()
	var sum []byte
	for range iterations {
		h.Reset()
		h.Write(sum)
		h.Write(input)
		sum = h.Sum(sum[:0])
	}
	var sb strings.Builder
	for i := 0; i < halfDigits/5; i++ {
		var v uint64
		for _, c := range sum[i*5 : i*5+5] {
			v = v<<8 | uint64(c)
		}
		fmt.Fprintf(&sb, "%05d", v%100000)
	}
	return sb.String()
}

// Format returns number in groups of 5 digits, 4 groups per line, lines separated
// by a newline and no newline at the end: a safety number takes three lines.
func Format(number string) string {
	var sb strings.Builder
	for i := 0; i < len(number); i += 5 {
		switch {
		case i == 0:
		case i%20 == 0:
			sb.WriteByte('\n')
		default:
			sb.WriteByte(' ')
		}
		sb.WriteString(number[i:min(i+5, len(number))])
	}
	return sb.String()
}

// Parse returns the safety number in s, which may be formatted (spaces and line
// breaks are ignored). It returns [ErrNotNumber] unless s holds exactly 60
// decimal digits. Compare the result with the locally computed number.
func Parse(s string) (string, error) {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == ' ' || r == '\n' || r == '\r' || r == '\t':
		case r >= '0' && r <= '9' && b.Len() < Digits:
			b.WriteRune(r)
		default:
			return "", ErrNotNumber
		}
	}
	if b.Len() != Digits {
		return "", ErrNotNumber
	}
	return b.String(), nil
}

// valid reports whether number is exactly 60 digits.
func valid(number string) bool {
	if len(number) != Digits {
		return false
	}
	for i := 0; i < len(number); i++ {
		if number[i] < '0' || number[i] > '9' {
			return false
		}
	}
	return true
}

// QRTerminal renders number as a QR code for a terminal, two modules per
// character cell with UTF-8 half blocks, light modules drawn, with the quiet zone,
// so that it scans from a dark-background terminal. It returns [ErrNotNumber] if
// number is not 60 digits.
func QRTerminal(number string) (string, error) {
	if !valid(number) {
		return "", ErrNotNumber
	}
	return qrtext.Terminal(number)
}

// QRPNG renders number as a PNG QR code, size pixels square. It returns
// [ErrNotNumber] if number is not 60 digits.
func QRPNG(number string, size int) ([]byte, error) {
	if !valid(number) {
		return nil, ErrNotNumber
	}
	return qrtext.PNG(number, size)
}
