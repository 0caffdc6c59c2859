package authority

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base32"
	"errors"
	"strings"
	"time"
)

// Ticket text format, version 1. A ticket is one line of ASCII:
//
//	mahfooz-ticket:1:<fingerprint>:<secret>
//
// where <fingerprint> is the 26-character unpadded base32 (RFC 4648 §6, upper case)
// of the first 16 bytes of SHA-256 over the authority's root certificate (DER), and
// <secret> is the 32-character base32 (same alphabet) of 20 random bytes (160 bits).
// Only this exact form parses: no padding, no lower case, no surrounding space, and
// the unused low bits of the fingerprint's last character must be zero, so that
// every accepted text is the canonical encoding of its ticket.
const (
	ticketPrefix     = "mahfooz-ticket:1:"
	FingerprintSize  = 16 // bytes of SHA-256(root DER) in a fingerprint
	TicketSecretSize = 20 // bytes of ticket secret: 160 bits

	// ticketHashLabel separates the ticket hash stored in the database from any other
	// use of SHA-256 over the same bytes.
	ticketHashLabel = "mahfooz ticket hash v1\x00"
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Fingerprint identifies an authority root: the first 16 bytes of SHA-256 over the
// root certificate's DER encoding.
type Fingerprint [FingerprintSize]byte

// FingerprintOf returns the fingerprint of a root certificate.
func FingerprintOf(root *x509.Certificate) Fingerprint {
	sum := sha256.Sum256(root.Raw)
	var f Fingerprint
	copy(f[:], sum[:FingerprintSize])
	return f
}

// String returns the fingerprint in base32, as it appears in a ticket.
func (f Fingerprint) String() string { return b32.EncodeToString(f[:]) }

// TicketSecret is the secret half of an enrolment ticket. Its String method never
// reveals it.
type TicketSecret [TicketSecretSize]byte

// String redacts the secret.
func (TicketSecret) String() string { return "authority.TicketSecret(redacted)" }

// GoString redacts the secret.
func (TicketSecret) GoString() string { return "authority.TicketSecret(redacted)" }

// hash returns what the database stores in place of the secret.
func (s *TicketSecret) hash() []byte {
	h := sha256.New()
	h.Write([]byte(ticketHashLabel))
	h.Write(s[:])
	return h.Sum(nil)
}

// Ticket is a one-time enrolment ticket. Name, Role and Expires are filled in by
// [Authority.Enroll] for the operator; [ParseTicket] fills in only Root and Secret,
// which are all the text carries. Its String method redacts the secret; use Text
// for the form the device needs.
type Ticket struct {
	Root    Fingerprint
	Secret  TicketSecret
	Name    string
	Role    string
	Expires time.Time
}

// Text returns the ticket in its text format (see ticketPrefix). It reveals the secret.
func (t Ticket) Text() string {
	return ticketPrefix + t.Root.String() + ":" + b32.EncodeToString(t.Secret[:])
}

// String describes the ticket without its secret.
func (t Ticket) String() string {
	return ticketPrefix + t.Root.String() + ":(redacted)"
}

// ErrTicketMalformed is returned by [ParseTicket], and by [Authority.Redeem], for
// text that is not a ticket in the exact version 1 format.
var ErrTicketMalformed = errors.New("authority: malformed enrolment ticket")

// ParseTicket parses the text format of a ticket strictly; it returns
// [ErrTicketMalformed] for anything else. It checks the form only: whether the
// ticket is known, unused and unexpired is for [Authority.Redeem] to say.
func ParseTicket(text string) (Ticket, error) {
	var t Ticket
	rest, ok := strings.CutPrefix(text, ticketPrefix)
	if !ok {
		return t, ErrTicketMalformed
	}
	fp, secret, ok := strings.Cut(rest, ":")
	if !ok || len(fp) != b32.EncodedLen(FingerprintSize) || len(secret) != b32.EncodedLen(TicketSecretSize) {
		return t, ErrTicketMalformed
	}
	if n, err := b32.Decode(t.Root[:], []byte(fp)); err != nil || n != FingerprintSize {
		return Ticket{}, ErrTicketMalformed
	}
	if n, err := b32.Decode(t.Secret[:], []byte(secret)); err != nil || n != TicketSecretSize {
		return Ticket{}, ErrTicketMalformed
	}
	// Reject non-canonical forms (lower case, non-zero trailing bits) by re-encoding.
	if subtle.ConstantTimeCompare([]byte(t.Text()), []byte(text)) != 1 {
		return Ticket{}, ErrTicketMalformed
	}
	return t, nil
}
