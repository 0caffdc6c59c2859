// Package authority is the root of trust of a Mahfooz closed user group.
//
// The authority holds an Ed25519 root key (encrypted at rest under a passphrase),
// issues one-time enrolment tickets, and turns a redeemed ticket plus a device's
// certificate request into a short-lived X.509 device certificate. The device
// certificate's public key is the device's MLS signature key, so one certificate is
// both the device's MLS x509 credential (RFC 9420 §5.3) and its TLS client
// certificate at the exchange.
//
// State lives in one directory:
//
//	root.key      the root private key, encrypted (Argon2id + XChaCha20-Poly1305)
//	root.crt      the self-signed root certificate, PEM
//	authority.db  an SQLite database: devices, ticket hashes, and the append-only
//	              list of issued certificates with its Merkle tree heads
//
// Two handles open that state. An [*Authority] (from [Init] or [Open]) holds the
// decrypted root key and can issue, renew and revoke. A [*Registry] (from
// [OpenPublic]) needs no passphrase: the exchange uses it to check revocation,
// verify client certificates and read devices. Several processes may hold either
// handle on the same directory at once; the database runs in WAL mode and writers
// wait for each other.
package authority
