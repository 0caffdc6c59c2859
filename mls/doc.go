// Package mls implements the Messaging Layer Security protocol, RFC 9420.
//
// Every Mahfooz conversation, one to one or in a group, and every call key is an
// MLS group; the package is also usable on its own by anyone who needs MLS in Go.
// It does no I/O and no logging and has no globals: the application passes in
// randomness and time (Config.Rand, Config.Now) and decides which credentials it
// accepts (Config.Validator) — a group never admits an identity the application
// has not approved.
//
// Cipher suites 1, 2, 3, 5 and 7 of RFC 9420 are implemented, and the post-quantum
// hybrid suites of draft-ietf-mls-pq-ciphersuites on private-use code points:
// 0xF001 MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519 (DefaultCipherSuite) and
// 0xF005 MLS_192_MLKEM1024P384_AES256GCM_SHA384_P384. Suites 4 and 6 (X448/Ed448)
// are not: asking for them returns ErrUnsupportedCipherSuite.
//
// A member's life in a group:
//
//	g, err := mls.NewGroup(cs, groupID, cred, sigKey, mls.CreateOptions{}, cfg)
//	res, err := g.Commit(mls.CommitOptions{Proposals: adds}) // res.Commit to the group, res.Welcome to joiners
//	effect, err := g.MergePendingCommit()                     // once the delivery service accepted it
//	msg, err := g.Protect(plaintext, nil)                     // PrivateMessage for the group
//	r, err := g.Process(incoming)                             // application data, proposal or commit
//	state, err := g.MarshalState()                            // for the application's encrypted store
//
// and a joiner's: mls.JoinGroup from a Welcome, or mls.ExternalJoin from a GroupInfo.
// Every decoder rejects what RFC 9420 forbids (non-minimal lengths, trailing bytes,
// unknown enumerated values, duplicate extensions) and returns errors wrapping
// ErrDecode. Errors never contain keys or plaintext.
package mls
