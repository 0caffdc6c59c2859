package authority

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strconv"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// The root key file (root.key) is one PEM block:
//
//	-----BEGIN MAHFOOZ ENCRYPTED ROOT KEY-----
//	KDF: argon2id
//	Argon2-Time: 3
//	Argon2-Memory-KiB: 65536
//	Argon2-Threads: 4
//	Salt: <32 hex digits>
//	AEAD: xchacha20poly1305
//	Nonce: <48 hex digits>
//
//	<base64 of the AEAD ciphertext of the 32-byte Ed25519 seed>
//	-----END MAHFOOZ ENCRYPTED ROOT KEY-----
//
// The AEAD key is Argon2id(passphrase, salt, parameters); the additional data is
// rootKeyAADLabel followed by the header lines in the order above, so a changed
// parameter is detected like a wrong passphrase.
const (
	rootKeyPEMType  = "MAHFOOZ ENCRYPTED ROOT KEY"
	rootKeyAADLabel = "mahfooz root key v1\n"
	kdfArgon2id     = "argon2id"
	aeadXChaCha     = "xchacha20poly1305"
	kdfSaltSize     = 16
)

// Limits on the Argon2id parameters accepted from a key file, so that a corrupt or
// hostile file cannot make Open spend unbounded memory or time.
const (
	maxArgon2Time      = 64
	maxArgon2MemoryKiB = 4 << 20 // 4 GiB
	maxArgon2Threads   = 64
)

// KDFParams are the Argon2id parameters (RFC 9106) that protect the root key.
type KDFParams struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

// DefaultKDFParams follow RFC 9106 §4's second recommended option (64 MiB, 3 passes).
var DefaultKDFParams = KDFParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}

func (p KDFParams) valid() bool {
	return p.Time >= 1 && p.Time <= maxArgon2Time &&
		p.MemoryKiB >= 8*uint32(p.Threads) && p.MemoryKiB <= maxArgon2MemoryKiB &&
		p.Threads >= 1 && p.Threads <= maxArgon2Threads
}

// ErrWrongPassphrase is returned by [Open] when the passphrase does not decrypt the
// root key (or the key file was altered).
var ErrWrongPassphrase = errors.New("authority: wrong passphrase, or root.key was altered")

var rootKeyHeaderOrder = []string{"KDF", "Argon2-Time", "Argon2-Memory-KiB", "Argon2-Threads", "Salt", "AEAD", "Nonce"}

func rootKeyAAD(h map[string]string) []byte {
	aad := []byte(rootKeyAADLabel)
	for _, k := range rootKeyHeaderOrder {
		aad = append(aad, k+": "+h[k]+"\n"...)
	}
	return aad
}

// sealRootKey encrypts the root key's seed under passphrase.
func sealRootKey(key ed25519.PrivateKey, passphrase []byte, p KDFParams, rand io.Reader) ([]byte, error) {
	if !p.valid() {
		return nil, errors.New("authority: Argon2id parameters out of range")
	}
	salt := make([]byte, kdfSaltSize)
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return nil, fmt.Errorf("authority: reading randomness: %w", err)
	}
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return nil, fmt.Errorf("authority: reading randomness: %w", err)
	}
	h := map[string]string{
		"KDF":               kdfArgon2id,
		"Argon2-Time":       strconv.FormatUint(uint64(p.Time), 10),
		"Argon2-Memory-KiB": strconv.FormatUint(uint64(p.MemoryKiB), 10),
		"Argon2-Threads":    strconv.FormatUint(uint64(p.Threads), 10),
		"Salt":              hex.EncodeToString(salt),
		"AEAD":              aeadXChaCha,
		"Nonce":             hex.EncodeToString(nonce),
	}
	k := argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, chacha20poly1305.KeySize)
	defer clear(k)
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, err
	}
	seed := key.Seed()
	defer clear(seed)
	ct := aead.Seal(nil, nonce, seed, rootKeyAAD(h))
	return pem.EncodeToMemory(&pem.Block{Type: rootKeyPEMType, Headers: h, Bytes: ct}), nil
}

// openRootKey decrypts a root key file.
func openRootKey(data, passphrase []byte) (ed25519.PrivateKey, error) {
	block, rest := pem.Decode(data)
	if block == nil || block.Type != rootKeyPEMType {
		return nil, errors.New("authority: root.key is not an encrypted root key")
	}
	if len(rest) != 0 {
		return nil, errors.New("authority: root.key has trailing data")
	}
	h := block.Headers
	if len(h) != len(rootKeyHeaderOrder) || h["KDF"] != kdfArgon2id || h["AEAD"] != aeadXChaCha {
		return nil, errors.New("authority: root.key uses an unknown format")
	}
	var p KDFParams
	t, err1 := strconv.ParseUint(h["Argon2-Time"], 10, 32)
	m, err2 := strconv.ParseUint(h["Argon2-Memory-KiB"], 10, 32)
	th, err3 := strconv.ParseUint(h["Argon2-Threads"], 10, 8)
	salt, err4 := hex.DecodeString(h["Salt"])
	nonce, err5 := hex.DecodeString(h["Nonce"])
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return nil, errors.New("authority: root.key has a malformed header")
	}
	p = KDFParams{Time: uint32(t), MemoryKiB: uint32(m), Threads: uint8(th)}
	if !p.valid() || len(salt) != kdfSaltSize || len(nonce) != chacha20poly1305.NonceSizeX {
		return nil, errors.New("authority: root.key has parameters out of range")
	}
	k := argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, chacha20poly1305.KeySize)
	defer clear(k)
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, err
	}
	seed, err := aead.Open(nil, nonce, block.Bytes, rootKeyAAD(h))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, ErrWrongPassphrase
	}
	defer clear(seed)
	return ed25519.NewKeyFromSeed(seed), nil
}
