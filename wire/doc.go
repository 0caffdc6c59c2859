// Package wire is the protocol between a Mahfooz device and the exchange, version 1:
// length-prefixed frames over a TLS 1.3 connection, each carrying one message encoded
// in the TLS presentation language with RFC 9420's varint vectors. docs/protocol.md is
// the specification; this package is its only implementation.
//
// The layer carries no credentials: TLS authenticates the device by its certificate,
// and the one unauthenticated request, Enroll, carries the enrolment ticket.
//
// Decoding is strict — no trailing bytes, minimal varints only, no unknown enum values
// or error codes, lists in canonical order — so every accepted body has one encoding,
// and what decodes re-encodes to the same bytes. Encoding refuses values that would not
// decode.
//
// A Conn keeps no buffer between frames, so an idle connection costs the exchange only
// the Conn's few words beyond TLS. Message values are safe to share once built;
// see Conn for its concurrency rules.
package wire
