package attach

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func testKey(t testing.TB) Key {
	t.Helper()
	k, err := NewKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// plaintext returns n bytes that differ from chunk to chunk, so a swapped chunk
// changes the content.
func plaintext(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i/ChunkSize)
	}
	return p
}

// decrypt feeds chunks in order to a Decrypter and returns what it wrote.
func decrypt(k Key, chunks [][]byte, size int64, digest [32]byte) ([]byte, error) {
	var out bytes.Buffer
	d := NewDecrypter(k, &out)
	for i, c := range chunks {
		if err := d.Write(uint32(i), i == len(chunks)-1, c); err != nil {
			return nil, err
		}
	}
	if err := d.Finish(size, digest); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int
		chunks int
	}{
		{"empty", 0, 1},
		{"one byte", 1, 1},
		{"exactly one chunk", ChunkSize, 1},
		{"one chunk and one byte", ChunkSize + 1, 2},
		{"exactly two chunks", 2 * ChunkSize, 2},
		{"several MB", 5<<20 + 12345, 21},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := testKey(t)
			p := plaintext(tc.size)
			chunks, digest, size, err := Encrypt(k, bytes.NewReader(p))
			if err != nil {
				t.Fatal(err)
			}
			if len(chunks) != tc.chunks {
				t.Fatalf("%d chunks, want %d", len(chunks), tc.chunks)
			}
			if size != int64(tc.size) || digest != sha256.Sum256(p) {
				t.Fatalf("size %d digest %x, want %d %x", size, digest, tc.size, sha256.Sum256(p))
			}
			total := 0
			for i, c := range chunks {
				total += len(c) - Overhead
				if i < len(chunks)-1 && len(c) != ChunkSize+Overhead {
					t.Fatalf("chunk %d is %d bytes", i, len(c))
				}
				if bytes.Contains(c, p[:min(len(p), 64)]) && len(p) >= 16 {
					t.Fatalf("chunk %d contains plaintext", i)
				}
			}
			if total != tc.size {
				t.Fatalf("chunks hold %d plaintext bytes, want %d", total, tc.size)
			}
			got, err := decrypt(k, chunks, size, digest)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, p) {
				t.Fatal("decrypted plaintext differs")
			}
			// Each chunk also opens on its own.
			var joined []byte
			for i, c := range chunks {
				pt, err := OpenChunk(k, uint32(i), i == len(chunks)-1, c)
				if err != nil {
					t.Fatalf("OpenChunk %d: %v", i, err)
				}
				joined = append(joined, pt...)
			}
			if !bytes.Equal(joined, p) {
				t.Fatal("OpenChunk plaintexts differ")
			}
		})
	}
}

// oneByteReader returns at most one byte per Read, as a slow network stream might.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

func TestEncryptShortReads(t *testing.T) {
	k := testKey(t)
	p := plaintext(ChunkSize + 3)
	chunks, digest, size, err := Encrypt(k, oneByteReader{bytes.NewReader(p)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := decrypt(k, chunks, size, digest)
	if err != nil || !bytes.Equal(got, p) {
		t.Fatalf("round trip through one-byte reads: %v", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestEncryptReadError(t *testing.T) {
	_, _, _, err := Encrypt(testKey(t), io.MultiReader(bytes.NewReader(plaintext(10)), failingReader{}))
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Encrypt with a failing reader: %v", err)
	}
}

func TestKeysDiffer(t *testing.T) {
	a, b := testKey(t), testKey(t)
	if a == b {
		t.Fatal("two keys from NewKey are equal")
	}
	if _, err := NewKey(bytes.NewReader(make([]byte, 31))); err == nil {
		t.Fatal("NewKey accepted a short read")
	}
}

func TestKeyRedacted(t *testing.T) {
	var k Key
	for i := range k {
		k[i] = 0xab
	}
	for _, verb := range []string{"%v", "%s", "%x", "%X", "%d", "%#v", "%+v", "%q"} {
		s := fmt.Sprintf(verb, k)
		if strings.Contains(strings.ToLower(s), "ab") || strings.Contains(s, "171") {
			t.Errorf("%s prints the key: %s", verb, s)
		}
	}
}

// tamper is one way of changing a valid chunk list.
type tamper struct {
	name string
	f    func(chunks [][]byte) [][]byte
}

func tampers() []tamper {
	return []tamper{
		{"drop last chunk", func(c [][]byte) [][]byte { return c[:len(c)-1] }},
		{"drop first chunk", func(c [][]byte) [][]byte { return c[1:] }},
		{"swap chunks", func(c [][]byte) [][]byte { c[0], c[1] = c[1], c[0]; return c }},
		{"alter a byte", func(c [][]byte) [][]byte { c[1][100] ^= 1; return c }},
		{"alter the tag", func(c [][]byte) [][]byte { c[2][len(c[2])-1] ^= 0x80; return c }},
		{"truncate last chunk", func(c [][]byte) [][]byte { c[2] = c[2][:len(c[2])-1]; return c }},
		{"extend after last", func(c [][]byte) [][]byte { return append(c, c[0]) }},
		{"duplicate a chunk", func(c [][]byte) [][]byte { return append([][]byte{c[0]}, c...) }},
	}
}

func TestTampered(t *testing.T) {
	k := testKey(t)
	p := plaintext(2*ChunkSize + 1000)
	for _, tc := range tampers() {
		t.Run(tc.name, func(t *testing.T) {
			chunks, digest, size, err := Encrypt(k, bytes.NewReader(p))
			if err != nil {
				t.Fatal(err)
			}
			bad := tc.f(chunks)
			if _, err := decrypt(k, bad, size, digest); !errors.Is(err, ErrAuth) {
				t.Fatalf("decrypting a tampered attachment: %v, want ErrAuth", err)
			}
		})
	}
}

func TestDecrypterRules(t *testing.T) {
	k := testKey(t)
	p := plaintext(ChunkSize + 10)
	chunks, digest, size, err := Encrypt(k, bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		run  func(d *Decrypter) error
	}{
		{"wrong key", func(*Decrypter) error {
			d := NewDecrypter(testKey(t), io.Discard)
			return d.Write(0, false, chunks[0])
		}},
		{"out of order", func(d *Decrypter) error { return d.Write(1, true, chunks[1]) }},
		{"repeated chunk", func(d *Decrypter) error {
			if err := d.Write(0, false, chunks[0]); err != nil {
				return nil
			}
			return d.Write(0, false, chunks[0])
		}},
		{"last flag on a middle chunk", func(d *Decrypter) error { return d.Write(0, true, chunks[0]) }},
		{"last flag missing on the last chunk", func(d *Decrypter) error {
			if err := d.Write(0, false, chunks[0]); err != nil {
				return nil
			}
			return d.Write(1, false, chunks[1])
		}},
		{"no last chunk", func(d *Decrypter) error {
			if err := d.Write(0, false, chunks[0]); err != nil {
				return nil
			}
			return d.Finish(size, digest)
		}},
		{"wrong size", func(d *Decrypter) error {
			d.Write(0, false, chunks[0])
			d.Write(1, true, chunks[1])
			return d.Finish(size+1, digest)
		}},
		{"wrong digest", func(d *Decrypter) error {
			d.Write(0, false, chunks[0])
			d.Write(1, true, chunks[1])
			bad := digest
			bad[0] ^= 1
			return d.Finish(size, bad)
		}},
		{"write after last", func(d *Decrypter) error {
			d.Write(0, false, chunks[0])
			d.Write(1, true, chunks[1])
			return d.Write(2, true, chunks[1])
		}},
		{"empty ciphertext", func(d *Decrypter) error { return d.Write(0, true, nil) }},
		{"oversized chunk", func(d *Decrypter) error {
			return d.Write(0, true, make([]byte, ChunkSize+Overhead+1))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecrypter(k, io.Discard)
			if err := tc.run(d); !errors.Is(err, ErrAuth) {
				t.Fatalf("got %v, want ErrAuth", err)
			}
		})
	}

	// After an error, the Decrypter stays failed even if correct chunks follow.
	d := NewDecrypter(k, io.Discard)
	if err := d.Write(1, true, chunks[1]); err == nil {
		t.Fatal("out of order chunk accepted")
	}
	if err := d.Write(0, false, chunks[0]); !errors.Is(err, ErrAuth) {
		t.Fatalf("Write after an error: %v", err)
	}
	if err := d.Finish(size, digest); !errors.Is(err, ErrAuth) {
		t.Fatalf("Finish after an error: %v", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestDecrypterWriterError(t *testing.T) {
	k := testKey(t)
	chunks, _, _, err := Encrypt(k, bytes.NewReader(plaintext(10)))
	if err != nil {
		t.Fatal(err)
	}
	d := NewDecrypter(k, failingWriter{})
	if err := d.Write(0, true, chunks[0]); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Write with a failing writer: %v", err)
	}
}

func TestOpenChunkPosition(t *testing.T) {
	k := testKey(t)
	full := plaintext(ChunkSize)
	mid := SealChunk(k, 5, false, full)
	last := SealChunk(k, 5, true, full[:7])
	for _, tc := range []struct {
		name  string
		index uint32
		last  bool
		ct    []byte
		ok    bool
	}{
		{"middle chunk at its place", 5, false, mid, true},
		{"middle chunk elsewhere", 6, false, mid, false},
		{"middle chunk as last", 5, true, mid, false},
		{"last chunk at its place", 5, true, last, true},
		{"last chunk not last", 5, false, last, false},
		{"last chunk elsewhere", 4, true, last, false},
		{"short", 0, true, last[:Overhead-1], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenChunk(k, tc.index, tc.last, tc.ct)
			if tc.ok && err != nil {
				t.Fatal(err)
			}
			if !tc.ok && !errors.Is(err, ErrAuth) {
				t.Fatalf("got %v, want ErrAuth", err)
			}
		})
	}
	// An empty last chunk is only valid for an empty file (chunk 0).
	if _, err := OpenChunk(k, 0, true, SealChunk(k, 0, true, nil)); err != nil {
		t.Fatal(err)
	}
}

func TestSealChunkRules(t *testing.T) {
	k := testKey(t)
	for _, tc := range []struct {
		name  string
		index uint32
		last  bool
		n     int
	}{
		{"short middle chunk", 0, false, ChunkSize - 1},
		{"empty last chunk after others", 1, true, 0},
		{"oversized last chunk", 0, true, ChunkSize + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("SealChunk did not panic")
				}
			}()
			SealChunk(k, tc.index, tc.last, make([]byte, tc.n))
		})
	}
}

// TestNonceLayout checks the nonce against the documented layout, so that an
// independent implementation can decrypt.
func TestNonceLayout(t *testing.T) {
	n := nonce(0x01020304, true)
	want := []byte{1, 2, 3, 4, 1, 0, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(n[:], want) {
		t.Fatalf("nonce %x, want %x", n, want)
	}
	n = nonce(7, false)
	want = []byte{0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(n[:], want) {
		t.Fatalf("nonce %x, want %x", n, want)
	}
}

func FuzzOpenChunk(f *testing.F) {
	var k Key
	for i := range k {
		k[i] = byte(i)
	}
	f.Add(uint32(0), true, SealChunk(k, 0, true, []byte("hello")))
	f.Add(uint32(0), true, SealChunk(k, 0, true, nil))
	f.Add(uint32(3), true, SealChunk(k, 3, true, []byte{1}))
	f.Add(uint32(1), false, []byte{})
	f.Fuzz(func(t *testing.T, index uint32, last bool, ct []byte) {
		pt, err := OpenChunk(k, index, last, ct)
		if err != nil {
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("error %v is not ErrAuth", err)
			}
			return
		}
		// Whatever opens is exactly what sealing the plaintext there gives.
		if again := SealChunk(k, index, last, pt); !bytes.Equal(again, ct) {
			t.Fatal("an opened chunk does not re-seal to itself")
		}
	})
}

// FuzzDecrypter encrypts a plaintext, applies the fuzzer's edits to the chunk list
// and decrypts. It checks that decryption succeeds exactly when the chunk list is
// unchanged, and that whatever decrypts is the original plaintext.
func FuzzDecrypter(f *testing.F) {
	var k Key
	for i := range k {
		k[i] = byte(255 - i)
	}
	f.Add(uint32(3), []byte{})
	f.Add(uint32(ChunkSize+5), []byte{0, 1})
	f.Add(uint32(2*ChunkSize), []byte{1, 0, 2, 1, 3, 0})
	f.Add(uint32(ChunkSize), []byte{4, 0, 5, 0, 0, 7})
	f.Fuzz(func(t *testing.T, n uint32, edits []byte) {
		p := plaintext(int(n % (3*ChunkSize + 1)))
		orig, digest, size, err := Encrypt(k, bytes.NewReader(p))
		if err != nil {
			t.Fatal(err)
		}
		chunks := make([][]byte, len(orig))
		for i := range orig {
			chunks[i] = bytes.Clone(orig[i])
		}
		// Each edit is an operation byte and an argument byte.
		for i := 0; i+1 < len(edits) && len(chunks) > 0; i += 2 {
			arg := int(edits[i+1])
			c := arg % len(chunks)
			switch edits[i] % 6 {
			case 0: // flip one bit somewhere in a chunk
				if len(chunks[c]) > 0 {
					chunks[c][(arg*131)%len(chunks[c])] ^= byte(1 << (arg % 8))
				}
			case 1: // drop a chunk
				chunks = append(chunks[:c], chunks[c+1:]...)
			case 2: // swap two chunks
				o := (arg / 7) % len(chunks)
				chunks[c], chunks[o] = chunks[o], chunks[c]
			case 3: // cut bytes off a chunk's end
				chunks[c] = chunks[c][:len(chunks[c])-min(len(chunks[c]), arg%20)]
			case 4: // repeat a chunk at the end
				chunks = append(chunks, chunks[c])
			case 5: // append bytes to a chunk
				chunks[c] = append(bytes.Clone(chunks[c]), make([]byte, arg%5)...)
			}
		}
		unchanged := len(chunks) == len(orig)
		for i := 0; unchanged && i < len(chunks); i++ {
			unchanged = bytes.Equal(chunks[i], orig[i])
		}
		got, err := decrypt(k, chunks, size, digest)
		if unchanged {
			if err != nil || !bytes.Equal(got, p) {
				t.Fatalf("unchanged attachment: %v", err)
			}
			return
		}
		if err == nil {
			t.Fatal("an altered attachment decrypted")
		}
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("error %v is not ErrAuth", err)
		}
	})
}

func BenchmarkEncrypt10MB(b *testing.B) {
	k := testKey(b)
	p := plaintext(10 << 20)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := Encrypt(k, bytes.NewReader(p)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt10MB(b *testing.B) {
	k := testKey(b)
	p := plaintext(10 << 20)
	chunks, digest, size, err := Encrypt(k, bytes.NewReader(p))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		d := NewDecrypter(k, io.Discard)
		for i, c := range chunks {
			if err := d.Write(uint32(i), i == len(chunks)-1, c); err != nil {
				b.Fatal(err)
			}
		}
		if err := d.Finish(size, digest); err != nil {
			b.Fatal(err)
		}
	}
}
