package authority

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/binary"
	"errors"
	"time"
)

// The issued-certificate log is a Merkle tree in the style of RFC 9162 §2.1.1
// (as RFC 6962 §2.1): each leaf is one issued certificate's DER encoding.
//
//	MTH({})        = SHA-256()
//	MTH({d(0)})    = SHA-256(0x00 || d(0))
//	MTH(D[n])      = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
//	                 where k is the largest power of two smaller than n
//
// After each issuance the authority signs a tree head over the new size and root.
const (
	leafHashPrefix = 0x00
	nodeHashPrefix = 0x01

	// treeHeadLabel starts every signed tree head, separating it from the other
	// things the root key signs (certificates, directories).
	treeHeadLabel = "mahfooz tree head v1\x00"
)

// HashSize is the size of a Merkle tree hash.
const HashSize = sha256.Size

// LeafHash returns the RFC 9162 leaf hash of data.
func LeafHash(data []byte) [HashSize]byte {
	h := sha256.New()
	h.Write([]byte{leafHashPrefix})
	h.Write(data)
	var out [HashSize]byte
	h.Sum(out[:0])
	return out
}

func nodeHash(l, r [HashSize]byte) [HashSize]byte {
	h := sha256.New()
	h.Write([]byte{nodeHashPrefix})
	h.Write(l[:])
	h.Write(r[:])
	var out [HashSize]byte
	h.Sum(out[:0])
	return out
}

// RootHash returns MTH over the leaves whose leaf hashes are given, in order.
func RootHash(leafHashes [][HashSize]byte) [HashSize]byte {
	switch n := len(leafHashes); n {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return leafHashes[0]
	default:
		k := 1
		for k<<1 < n {
			k <<= 1
		}
		return nodeHash(RootHash(leafHashes[:k]), RootHash(leafHashes[k:]))
	}
}

// SignedTreeHead is the root-signed state of the issued-certificate log.
type SignedTreeHead struct {
	Size      uint64
	RootHash  [HashSize]byte
	Timestamp time.Time // millisecond precision
	Signature []byte
}

// signedInput returns what the root signs: treeHeadLabel || uint64 size ||
// int64 timestamp (Unix ms) || root hash, integers big-endian.
func (h *SignedTreeHead) signedInput() []byte {
	b := append([]byte{}, treeHeadLabel...)
	b = binary.BigEndian.AppendUint64(b, h.Size)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Timestamp.UnixMilli()))
	return append(b, h.RootHash[:]...)
}

// ErrTreeHeadSignature is returned by [VerifyTreeHead] for a head the root did not sign.
var ErrTreeHeadSignature = errors.New("authority: tree head signature does not verify")

// VerifyTreeHead checks that the root signed h.
func VerifyTreeHead(root *x509.Certificate, h *SignedTreeHead) error {
	pub, ok := root.PublicKey.(ed25519.PublicKey)
	if !ok || !ed25519.Verify(pub, h.signedInput(), h.Signature) {
		return ErrTreeHeadSignature
	}
	return nil
}

// appendToLog adds one issued certificate to the log and records the new signed
// tree head, inside the issuing transaction.
func appendToLog(tx *sql.Tx, key ed25519.PrivateKey, der []byte, device *DeviceID, kind string, now time.Time) error {
	rows, err := tx.Query(`SELECT leaf_hash FROM certificates ORDER BY idx`)
	if err != nil {
		return dbErr(err)
	}
	var leaves [][HashSize]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			rows.Close()
			return dbErr(err)
		}
		if len(b) != HashSize {
			rows.Close()
			return errors.New("authority: database: malformed leaf hash")
		}
		leaves = append(leaves, [HashSize]byte(b))
	}
	if err := rows.Close(); err != nil {
		return dbErr(err)
	}
	if err := rows.Err(); err != nil {
		return dbErr(err)
	}
	leaf := LeafHash(der)
	var dev any
	if device != nil {
		dev = device[:]
	}
	if _, err := tx.Exec(`INSERT INTO certificates (idx, leaf_hash, cert, device, kind, issued) VALUES (?, ?, ?, ?, ?, ?)`,
		len(leaves), leaf[:], der, dev, kind, ms(now)); err != nil {
		return dbErr(err)
	}
	leaves = append(leaves, leaf)
	head := SignedTreeHead{Size: uint64(len(leaves)), RootHash: RootHash(leaves), Timestamp: time.UnixMilli(now.UnixMilli()).UTC()}
	head.Signature = ed25519.Sign(key, head.signedInput())
	_, err = tx.Exec(`INSERT INTO tree_heads (size, root_hash, timestamp, signature) VALUES (?, ?, ?, ?)`,
		head.Size, head.RootHash[:], ms(head.Timestamp), head.Signature)
	return dbErr(err)
}
