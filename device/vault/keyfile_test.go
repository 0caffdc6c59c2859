package vault

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func testKeyFile(t testing.TB) (data, master []byte) {
	t.Helper()
	master = bytes.Repeat([]byte{0x42}, masterKeySize)
	data, err := sealKeyFile(master, pass, TestKDF(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return data, master
}

func TestKeyFileRoundTrip(t *testing.T) {
	data, master := testKeyFile(t)
	if len(data) != keyFileSize {
		t.Fatalf("key file is %d bytes, want %d", len(data), keyFileSize)
	}
	got, err := openKeyFile(data, pass)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, master) {
		t.Fatal("opened a different master key")
	}
	if bytes.Contains(data, master) {
		t.Fatal("the key file holds the master key in the clear")
	}
	// Two key files for the same key and passphrase share no salt or nonce.
	again, _ := testKeyFile(t)
	if bytes.Equal(data[headerSize-40:headerSize], again[headerSize-40:headerSize]) {
		t.Fatal("salt and nonce repeat")
	}
}

// TestKeyFileDamage checks that each kind of damage to vault.key gives a clear
// error and never a panic: a file that does not parse is ErrDamaged before any
// key derivation, and a change to the authenticated parts is ErrWrongPassphrase.
func TestKeyFileDamage(t *testing.T) {
	data, _ := testKeyFile(t)
	at := func(off int, f func(b []byte)) []byte {
		b := bytes.Clone(data)
		f(b[off:])
		return b
	}
	magic := len(keyFileMagic)
	params := magic + 1
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrDamaged},
		{"truncated by one byte", data[:len(data)-1], ErrDamaged},
		{"header only", data[:headerSize], ErrDamaged},
		{"magic only", data[:magic], ErrDamaged},
		{"trailing byte", append(bytes.Clone(data), 0), ErrDamaged},
		{"wrong magic", at(0, func(b []byte) { b[0] ^= 0x20 }), ErrDamaged},
		{"a PEM file", []byte("-----BEGIN MAHFOOZ ENCRYPTED ROOT KEY-----\n"), ErrDamaged},
		{"version 0", at(magic, func(b []byte) { b[0] = 0 }), ErrDamaged},
		{"version 2", at(magic, func(b []byte) { b[0] = 2 }), ErrDamaged},
		{"zero passes", at(params, func(b []byte) { binary.BigEndian.PutUint32(b, 0) }), ErrDamaged},
		{"too many passes", at(params, func(b []byte) { binary.BigEndian.PutUint32(b, maxTime+1) }), ErrDamaged},
		{"too much memory", at(params+4, func(b []byte) { binary.BigEndian.PutUint32(b, maxMemoryKiB+1) }), ErrDamaged},
		{"too little memory", at(params+4, func(b []byte) { binary.BigEndian.PutUint32(b, 7) }), ErrDamaged},
		{"zero threads", at(params+8, func(b []byte) { b[0] = 0 }), ErrDamaged},
		{"too many threads", at(params+8, func(b []byte) { b[0] = maxThreads + 1 }), ErrDamaged},
		{"passes changed", at(params, func(b []byte) { binary.BigEndian.PutUint32(b, 2) }), ErrWrongPassphrase},
		{"memory changed", at(params+4, func(b []byte) { binary.BigEndian.PutUint32(b, 128) }), ErrWrongPassphrase},
		{"salt changed", at(params+9, func(b []byte) { b[0] ^= 1 }), ErrWrongPassphrase},
		{"nonce changed", at(params+9+saltSize, func(b []byte) { b[0] ^= 1 }), ErrWrongPassphrase},
		{"sealed key changed", at(headerSize, func(b []byte) { b[3] ^= 1 }), ErrWrongPassphrase},
		{"tag changed", at(keyFileSize-1, func(b []byte) { b[0] ^= 1 }), ErrWrongPassphrase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := openKeyFile(tc.data, pass)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOpenDamagedKeyFile(t *testing.T) {
	v, dir := newTestVault(t)
	v.Close()
	path := filepath.Join(dir, keyName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data[:40], 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, pass)
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open with a truncated key file: %v", err)
	}
	if err.Error() != "vault: vault.key is truncated" {
		t.Fatalf("unclear error: %q", err)
	}
	// A huge file is refused without reading it all.
	if err := os.WriteFile(path, append(data, make([]byte, 1<<20)...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, pass); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open with an oversized key file: %v", err)
	}
}

func TestEntryEncoding(t *testing.T) {
	master := bytes.Repeat([]byte{7}, 32)
	nv, err := newVault("", master, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bt, kt := nv.bucketTag("b"), nv.keyTag("b", []byte("key"))
	sealed, err := nv.sealRow(bt, kt, "b", []byte("key"), []byte("value"))
	if err != nil {
		t.Fatal(err)
	}
	b, k, val, err := nv.openRow(bt, kt, sealed)
	if err != nil || b != "b" || string(k) != "key" || string(val) != "value" {
		t.Fatalf("openRow = %q %q %q %v", b, k, val, err)
	}
	for _, bad := range [][]byte{nil, sealed[:30], sealed[:len(sealed)-1]} {
		if _, _, _, err := nv.openRow(bt, kt, bad); !errors.Is(err, ErrDamaged) {
			t.Fatalf("openRow of a cut row: %v", err)
		}
	}
	if _, _, _, err := nv.openRow(kt, bt, sealed); !errors.Is(err, ErrDamaged) {
		t.Fatalf("openRow with the tags exchanged: %v", err)
	}
}

// FuzzKeyFile checks that no key file panics the parser, that whatever parses
// is the canonical encoding of what it parsed to, and that opening it with a
// passphrase gives the master key or ErrWrongPassphrase.
func FuzzKeyFile(f *testing.F) {
	data, master := testKeyFile(f)
	f.Add(data)
	f.Add(data[:len(data)-1])
	f.Add(append(bytes.Clone(data), 0))
	f.Add([]byte(keyFileMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		kf, err := parseKeyFile(b)
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("error %v is not ErrDamaged", err)
			}
			return
		}
		if !bytes.Equal(kf.marshal(), b) {
			t.Fatal("a parsed key file does not re-encode to itself")
		}
		// Key derivation with parameters the fuzzer chose is too slow to run on
		// every input; the cheap ones still go through the whole path.
		if kf.params.Time*kf.params.MemoryKiB > 4*TestKDF().MemoryKiB {
			return
		}
		got, err := openKeyFile(b, pass)
		if err != nil {
			if !errors.Is(err, ErrWrongPassphrase) {
				t.Fatalf("open error %v", err)
			}
			return
		}
		if !bytes.Equal(got, master) {
			t.Fatal("a key file opened to another key")
		}
	})
}

// FuzzDecodeEntry checks the decoder of a row's plaintext: it never panics, and
// whatever decodes re-encodes to the same bytes.
func FuzzDecodeEntry(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 'b', 0, 0, 0, 3, 'k', 'e', 'y', 'v'})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0})
	f.Fuzz(func(t *testing.T, pt []byte) {
		b, k, val, err := decodeEntry(pt)
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("error %v is not ErrDamaged", err)
			}
			return
		}
		var enc []byte
		enc = binary.BigEndian.AppendUint32(enc, uint32(len(b)))
		enc = append(enc, b...)
		enc = binary.BigEndian.AppendUint32(enc, uint32(len(k)))
		enc = append(enc, k...)
		enc = append(enc, val...)
		if !bytes.Equal(enc, pt) {
			t.Fatal("a decoded entry does not re-encode to itself")
		}
	})
}
