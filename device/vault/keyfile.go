package vault

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/cryptobyte"
)

// The key file (vault.key) holds the 32-byte master key, sealed under a key derived
// from the passphrase. Format version 1 is exactly keyFileSize bytes:
//
//	magic       17 bytes  "mahfooz-vault-key"
//	version      1 byte   1
//	time         uint32   Argon2id passes            (big-endian)
//	memory       uint32   Argon2id memory in KiB     (big-endian)
//	threads      1 byte   Argon2id parallelism
//	salt        16 bytes  Argon2id salt
//	nonce       24 bytes  XChaCha20-Poly1305 nonce
//	sealed      48 bytes  XChaCha20-Poly1305(K, nonce, master key, additional data = every byte above)
//
// where K = Argon2id(passphrase, salt, time, memory, threads) (RFC 9106), 32 bytes.
// Because the header is the additional data, a changed parameter is detected like a
// wrong passphrase. A file of another length, magic or version, or with parameters
// outside the limits below, is refused before any key derivation.
const (
	keyFileMagic   = "mahfooz-vault-key"
	keyFileVersion = 1
	saltSize       = 16
	masterKeySize  = 32
	headerSize     = len(keyFileMagic) + 1 + 4 + 4 + 1 + saltSize + chacha20poly1305.NonceSizeX
	keyFileSize    = headerSize + masterKeySize + chacha20poly1305.Overhead
)

// Limits on the Argon2id parameters, so that a damaged or hostile key file cannot
// make Open spend unbounded memory or time.
const (
	maxTime      = 64
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxThreads   = 64
)

// KDFParams are the Argon2id parameters (RFC 9106) that turn the passphrase into the
// key that seals the master key.
type KDFParams struct {
	Time      uint32 // passes over memory
	MemoryKiB uint32 // memory in KiB
	Threads   uint8  // parallelism
}

// DefaultKDF returns the parameters for real vaults: Argon2id with 3 passes over
// 64 MiB and 4 threads (RFC 9106 §4, second recommended option).
func DefaultKDF() KDFParams { return KDFParams{Time: 3, MemoryKiB: 64 << 10, Threads: 4} }

// TestKDF returns parameters cheap enough for tests (1 pass, 64 KiB, 1 thread). They
// give a passphrase almost no protection: never use them for a real vault.
func TestKDF() KDFParams { return KDFParams{Time: 1, MemoryKiB: 64, Threads: 1} }

func (p KDFParams) valid() bool {
	return p.Time >= 1 && p.Time <= maxTime &&
		p.Threads >= 1 && p.Threads <= maxThreads &&
		p.MemoryKiB >= 8*uint32(p.Threads) && p.MemoryKiB <= maxMemoryKiB
}

// keyFile is a parsed vault.key.
type keyFile struct {
	params KDFParams
	salt   [saltSize]byte
	nonce  [chacha20poly1305.NonceSizeX]byte
	sealed []byte
}

// marshal returns the key file's bytes.
func (kf *keyFile) marshal() []byte {
	b := make([]byte, 0, keyFileSize)
	b = append(b, kf.header()...)
	return append(b, kf.sealed...)
}

// header returns the bytes before the sealed master key (the additional data).
func (kf *keyFile) header() []byte {
	var b cryptobyte.Builder
	b.AddBytes([]byte(keyFileMagic))
	b.AddUint8(keyFileVersion)
	b.AddUint32(kf.params.Time)
	b.AddUint32(kf.params.MemoryKiB)
	b.AddUint8(kf.params.Threads)
	b.AddBytes(kf.salt[:])
	b.AddBytes(kf.nonce[:])
	return b.BytesOrPanic()
}

// parseKeyFile parses vault.key. Every error it returns matches ErrDamaged.
func parseKeyFile(data []byte) (*keyFile, error) {
	s := cryptobyte.String(data)
	var magic []byte
	var version uint8
	if !s.ReadBytes(&magic, len(keyFileMagic)) || string(magic) != keyFileMagic {
		return nil, damaged("vault.key is not a vault key file")
	}
	if !s.ReadUint8(&version) {
		return nil, damaged("vault.key is truncated")
	}
	if version != keyFileVersion {
		return nil, damaged(fmt.Sprintf("vault.key has format version %d; this build reads version %d", version, keyFileVersion))
	}
	if len(data) < keyFileSize {
		return nil, damaged("vault.key is truncated")
	}
	if len(data) > keyFileSize {
		return nil, damaged("vault.key has trailing data")
	}
	kf := new(keyFile)
	var salt, nonce []byte
	if !s.ReadUint32(&kf.params.Time) || !s.ReadUint32(&kf.params.MemoryKiB) || !s.ReadUint8(&kf.params.Threads) ||
		!s.ReadBytes(&salt, saltSize) || !s.ReadBytes(&nonce, len(kf.nonce)) ||
		!s.ReadBytes(&kf.sealed, masterKeySize+chacha20poly1305.Overhead) || !s.Empty() {
		return nil, damaged("vault.key is truncated") // unreachable given the length check
	}
	if !kf.params.valid() {
		return nil, damaged("vault.key has Argon2id parameters out of range")
	}
	copy(kf.salt[:], salt)
	copy(kf.nonce[:], nonce)
	kf.sealed = append([]byte(nil), kf.sealed...)
	return kf, nil
}

// wrappingKey derives the key that seals the master key.
func wrappingKey(passphrase []byte, salt []byte, p KDFParams) []byte {
	return argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, chacha20poly1305.KeySize)
}

// sealKeyFile returns a new key file holding master under passphrase.
func sealKeyFile(master, passphrase []byte, p KDFParams, rand io.Reader) ([]byte, error) {
	if !p.valid() {
		return nil, errors.New("vault: Argon2id parameters out of range")
	}
	if len(passphrase) == 0 {
		return nil, errors.New("vault: empty passphrase")
	}
	kf := &keyFile{params: p}
	if _, err := io.ReadFull(rand, kf.salt[:]); err != nil {
		return nil, fmt.Errorf("vault: reading randomness: %w", err)
	}
	if _, err := io.ReadFull(rand, kf.nonce[:]); err != nil {
		return nil, fmt.Errorf("vault: reading randomness: %w", err)
	}
	k := wrappingKey(passphrase, kf.salt[:], p)
	defer clear(k)
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	kf.sealed = aead.Seal(nil, kf.nonce[:], master, kf.header())
	return kf.marshal(), nil
}

// openKeyFile returns the master key in a key file. It returns an error matching
// ErrDamaged for a file that does not parse, and ErrWrongPassphrase when the
// passphrase does not open it.
func openKeyFile(data, passphrase []byte) ([]byte, error) {
	kf, err := parseKeyFile(data)
	if err != nil {
		return nil, err
	}
	k := wrappingKey(passphrase, kf.salt[:], kf.params)
	defer clear(k)
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	master, err := aead.Open(nil, kf.nonce[:], kf.sealed, kf.header())
	if err != nil || len(master) != masterKeySize {
		return nil, ErrWrongPassphrase
	}
	return master, nil
}

// sameKey reports in constant time whether a and b are the same key.
func sameKey(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
