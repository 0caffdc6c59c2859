// Package callcode derives the short code that the members of a Mahfooz call
// read to each other to check that they all share one view of the call's MLS
// group.
//
// The code is four words of the PGP word list, rendered as ZRTP renders its
// short authentication string (RFC 6189, section 5.1.6): the first and third
// words from the two-syllable list, the second and fourth from the
// three-syllable list, so a swapped or skipped word is heard at once. The 32
// bits behind the words are
//
//	HKDF-SHA256(secret = epoch_authenticator, salt = call ID,
//	            info = "mahfooz call code v1", length = 4)
//
// where epoch_authenticator is the MLS epoch authenticator (RFC 9420, section
// 8.7) of the group's current epoch. Every member of the call in that epoch
// derives the same code. A member whose group view differs, for example
// because someone sits in the middle with two groups, has a different epoch
// authenticator and so, with probability 1 - 2^-32, a different code.
package callcode

import (
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"strings"
)

const (
	// info is the HKDF domain separation string; a change of construction
	// must change its version.
	info = "mahfooz call code v1"
	// codeBytes is the number of derived bytes, one per word.
	codeBytes = 4
	// minAuthenticatorLen is the shortest accepted epoch authenticator. MLS
	// epoch authenticators are KDF.Nh bytes long, 32 or more for every
	// ciphersuite Mahfooz uses; anything shorter is a caller's mistake.
	minAuthenticatorLen = 16
)

// ErrShortAuthenticator is returned by [Derive] when the epoch authenticator is
// shorter than 16 bytes (including when it is empty).
var ErrShortAuthenticator = errors.New("callcode: epoch authenticator too short")

// Code is a call's short code: four words of the PGP word list, the first and
// third from the two-syllable list, the second and fourth from the
// three-syllable list. A Code is a plain value, safe to copy and to use from
// any goroutine.
type Code [4]string

// String returns the four words separated by single spaces.
func (c Code) String() string {
	return strings.Join(c[:], " ")
}

// Derive returns the short code of the call callID in the epoch whose MLS epoch
// authenticator is epochAuthenticator. It returns [ErrShortAuthenticator] if
// epochAuthenticator is shorter than 16 bytes. Derive is safe for concurrent
// use.
func Derive(epochAuthenticator []byte, callID [16]byte) (Code, error) {
	if len(epochAuthenticator) < minAuthenticatorLen {
		return Code{}, ErrShortAuthenticator
	}
	b, err := hkdf.Key(sha256.New, epochAuthenticator, callID[:], info, codeBytes)
	if err != nil {
		return Code{}, errors.New("callcode: deriving code: " + err.Error())
	}
	return Code{evenWords[b[0]], oddWords[b[1]], evenWords[b[2]], oddWords[b[3]]}, nil
}
