// Package attach encrypts attachments (files) for Mahfooz messages.
//
// A file is encrypted under a fresh random 32-byte [Key], used for that file only,
// in chunks of [ChunkSize] plaintext bytes with ChaCha20-Poly1305 (RFC 8439). The
// nonce of chunk i is
//
//	uint32 i (big-endian) || 1 byte last-flag (0 or 1) || 7 zero bytes
//
// and the additional data is "mahfooz attachment v1". Because the key is never
// reused, counter nonces never repeat. Binding the index and the last-flag into
// the nonce makes a truncated, reordered, extended or altered ciphertext fail to
// open: a chunk only opens at its own position, and only the real final chunk
// opens with the last-flag set.
//
// Every chunk but the last holds exactly ChunkSize plaintext bytes; the last holds
// 1 to ChunkSize bytes, or 0 bytes when the file is empty (then it is chunk 0).
// The key, the plaintext size and its SHA-256 travel inside the end-to-end
// encrypted message that refers to the attachment; the chunks go to the exchange.
package attach

import (
	"bufio"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"

	"golang.org/x/crypto/chacha20poly1305"
)

const (
	// ChunkSize is the number of plaintext bytes in every chunk but the last.
	ChunkSize = 256 << 10
	// Overhead is what encryption adds to each chunk (the Poly1305 tag).
	Overhead = 16
	// MaxChunkCiphertext is the largest ciphertext chunk.
	MaxChunkCiphertext = ChunkSize + Overhead
)

// additionalData is the AEAD additional data of every chunk (domain separation).
const additionalData = "mahfooz attachment v1"

// ErrAuth is returned (possibly wrapped) when a ciphertext chunk does not open, or
// when the chunks given to a [Decrypter] are out of order, missing, extended past
// the last chunk, or do not add up to the announced size and digest.
var ErrAuth = errors.New("attach: attachment failed authentication")

// Key is the single-use key of one attachment. Its String and Format methods
// never print the key bytes.
type Key [32]byte

// NewKey returns a fresh random key read from rand.
func NewKey(rand io.Reader) (Key, error) {
	var k Key
	if _, err := io.ReadFull(rand, k[:]); err != nil {
		return Key{}, fmt.Errorf("attach: reading randomness: %w", err)
	}
	return k, nil
}

// String returns a fixed placeholder, so a key never ends up in a log.
func (k Key) String() string { return "attach.Key(redacted)" }

// GoString returns the same placeholder as String for %#v.
func (k Key) GoString() string { return k.String() }

// Format prints the placeholder for every verb, so that %x or %d do not print the
// key bytes either.
func (k Key) Format(f fmt.State, verb rune) { io.WriteString(f, k.String()) }

func (k *Key) aead() cipher.AEAD {
	a, err := chacha20poly1305.New(k[:])
	if err != nil {
		// Only a key of the wrong length fails, and Key has the right one.
		panic("attach: " + err.Error())
	}
	return a
}

// nonce returns the nonce of chunk index.
func nonce(index uint32, last bool) [chacha20poly1305.NonceSize]byte {
	var n [chacha20poly1305.NonceSize]byte
	binary.BigEndian.PutUint32(n[:4], index)
	if last {
		n[4] = 1
	}
	return n
}

// checkChunk reports whether a chunk of n plaintext bytes may sit at index with the
// given last-flag.
func checkChunk(index uint32, last bool, n int) bool {
	switch {
	case n > ChunkSize:
		return false
	case !last:
		return n == ChunkSize
	case n == 0:
		return index == 0
	default:
		return true
	}
}

// SealChunk encrypts one chunk of plaintext at position index. plaintext must be
// exactly ChunkSize bytes when last is false; when last is true it must be 1 to
// ChunkSize bytes, or empty for chunk 0 of an empty file. SealChunk panics on a
// plaintext that breaks these rules, because such a chunk could never be opened.
func SealChunk(k Key, index uint32, last bool, plaintext []byte) []byte {
	if !checkChunk(index, last, len(plaintext)) {
		panic(fmt.Sprintf("attach: SealChunk: %d plaintext bytes at chunk %d (last %t) break the chunk size rules", len(plaintext), index, last))
	}
	n := nonce(index, last)
	return k.aead().Seal(make([]byte, 0, len(plaintext)+Overhead), n[:], plaintext, []byte(additionalData))
}

// OpenChunk decrypts one chunk at position index with the given last-flag. It
// returns [ErrAuth] if the chunk was not sealed under k at that position with that
// flag, or if its size breaks the chunk size rules.
func OpenChunk(k Key, index uint32, last bool, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) < Overhead || !checkChunk(index, last, len(ciphertext)-Overhead) {
		return nil, ErrAuth
	}
	n := nonce(index, last)
	pt, err := k.aead().Open(make([]byte, 0, len(ciphertext)-Overhead), n[:], ciphertext, []byte(additionalData))
	if err != nil {
		return nil, ErrAuth
	}
	return pt, nil
}

// Encrypt reads all of r and returns the ciphertext chunks in order (the last has
// last=true; an empty file is one empty chunk), the SHA-256 of the plaintext and
// its size. It holds the whole ciphertext in memory.
func Encrypt(k Key, r io.Reader) (chunks [][]byte, digest [32]byte, size int64, err error) {
	aead := k.aead()
	br := bufio.NewReader(r)
	h := sha256.New()
	for index := uint32(0); ; index++ {
		// The chunk is sealed in place, so its buffer has room for the tag.
		buf := make([]byte, ChunkSize, ChunkSize+Overhead)
		n, err := io.ReadFull(br, buf)
		last := false
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			last = true
		case err != nil:
			return nil, digest, 0, fmt.Errorf("attach: reading the file: %w", err)
		default:
			// A full chunk is the last one only if nothing follows it.
			if _, err := br.Peek(1); err == io.EOF {
				last = true
			} else if err != nil {
				return nil, digest, 0, fmt.Errorf("attach: reading the file: %w", err)
			}
		}
		if !last && index == math.MaxUint32 {
			return nil, digest, 0, errors.New("attach: file too large")
		}
		h.Write(buf[:n])
		size += int64(n)
		nc := nonce(index, last)
		chunks = append(chunks, aead.Seal(buf[:0], nc[:], buf[:n], []byte(additionalData)))
		if last {
			break
		}
	}
	h.Sum(digest[:0])
	return chunks, digest, size, nil
}

// Decrypter decrypts the chunks of one attachment as they arrive. It checks that
// they come in order, writes each chunk's plaintext to its writer as soon as the
// chunk opens, and at the end checks the size and the digest. Plaintext written
// before Finish returns nil is authentic chunk by chunk but may be incomplete: a
// caller must discard it if Finish (or any Write) fails. After the first error,
// every later call returns that error. A Decrypter is not safe for concurrent use.
type Decrypter struct {
	aead cipher.AEAD
	w    io.Writer
	h    hash.Hash
	next uint32 // index of the next chunk expected
	done bool   // the last chunk has been written
	size int64
	err  error
}

// NewDecrypter returns a Decrypter that writes the plaintext of k's attachment to w.
func NewDecrypter(k Key, w io.Writer) *Decrypter {
	return &Decrypter{aead: k.aead(), w: w, h: sha256.New()}
}

// Write opens chunk index and writes its plaintext. Chunks must come in order
// from 0; a chunk out of order, after the last, or that does not open returns an
// error wrapping [ErrAuth]. An error of the writer is returned as is.
func (d *Decrypter) Write(index uint32, last bool, ciphertext []byte) error {
	if d.err != nil {
		return d.err
	}
	switch {
	case d.done:
		d.err = fmt.Errorf("attach: chunk %d after the last chunk: %w", index, ErrAuth)
	case index != d.next:
		d.err = fmt.Errorf("attach: chunk %d where chunk %d was expected: %w", index, d.next, ErrAuth)
	case len(ciphertext) < Overhead || !checkChunk(index, last, len(ciphertext)-Overhead):
		d.err = fmt.Errorf("attach: chunk %d has a wrong size: %w", index, ErrAuth)
	case !last && index == math.MaxUint32:
		d.err = fmt.Errorf("attach: too many chunks: %w", ErrAuth)
	}
	if d.err != nil {
		return d.err
	}
	n := nonce(index, last)
	pt, err := d.aead.Open(nil, n[:], ciphertext, []byte(additionalData))
	if err != nil {
		d.err = fmt.Errorf("attach: chunk %d: %w", index, ErrAuth)
		return d.err
	}
	d.h.Write(pt)
	d.size += int64(len(pt))
	d.next++
	d.done = last
	if _, err := d.w.Write(pt); err != nil {
		d.err = fmt.Errorf("attach: writing chunk %d: %w", index, err)
		return d.err
	}
	return nil
}

// Finish checks that the last chunk has been written and that the plaintext has
// the given size and SHA-256 digest. It returns an error wrapping [ErrAuth] if not.
func (d *Decrypter) Finish(size int64, digest [32]byte) error {
	if d.err != nil {
		return d.err
	}
	var got [32]byte
	switch {
	case !d.done:
		d.err = fmt.Errorf("attach: the attachment ends before its last chunk: %w", ErrAuth)
	case d.size != size:
		d.err = fmt.Errorf("attach: the attachment has %d bytes, not %d: %w", d.size, size, ErrAuth)
	case subtle.ConstantTimeCompare(d.h.Sum(got[:0]), digest[:]) != 1:
		d.err = fmt.Errorf("attach: the attachment's digest does not match: %w", ErrAuth)
	}
	return d.err
}
