// Package sframe implements Secure Frame (SFrame, RFC 9605): end-to-end
// authenticated encryption of media frames, so that the servers that forward a
// call's media never see it in the clear.
//
// A sender and its receivers share a base key per Key ID (KID), typically exported
// from the MLS group of the call (RFC 9605 §5.2). Each Context holds the base keys of
// one cipher suite:
//
//	ctx := sframe.NewContext(sframe.AES_128_GCM_SHA256_128)
//	err := ctx.AddKey(kid, baseKey)
//	frame, err := ctx.Protect(kid, metadata, plaintext)
//	plaintext, kid, err := ctx.Unprotect(metadata, frame)
//
// What is where in the RFC:
//   - §4.3: the header (Header, AppendHeader, ParseHeader). The decoder refuses
//     truncated headers and KID or CTR values not in their minimal encoding.
//   - §4.4.2: key and salt derivation from the base key with HKDF.
//   - §4.4.3, §4.4.4: encryption and decryption; the nonce is the salt XOR the
//     counter and the AAD is the encoded header followed by the metadata.
//   - §4.5: the cipher suites: AES-GCM (4, 5) and the AES-CTR with HMAC-SHA-2
//     construction of §4.5.1 (1–3, and 6–8 at the 256-bit level on the code
//     points of the working group's vectors).
//   - §9.3: each KID's receive side keeps a replay window of ReplayWindow counters;
//     a duplicate or older counter is refused, and a frame that fails
//     authentication does not move the window.
//
// Each KID's send counter starts at 0 when its key is added and is never reused;
// once it is exhausted Protect refuses to encrypt and the caller must move to a new
// KID (a new epoch).
//
// A Context is safe for concurrent use: operations on different KIDs proceed in
// parallel and operations on one KID are serialised. Header, CipherSuite, KeyID and
// BaseKey are plain values.
package sframe
