package sframe

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzHeader checks that ParseHeader never panics and that whatever it accepts
// re-encodes to exactly the bytes it consumed.
func FuzzHeader(f *testing.F) {
	for _, name := range []string{"test-vectors.json"} {
		for _, v := range loadVectors(f, name).Header {
			f.Add([]byte(v.Encoded))
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x80, 0x05})
	f.Add([]byte{0xff, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0xaa})
	f.Fuzz(func(t *testing.T, in []byte) {
		h, n, err := ParseHeader(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseHeader(%x): error %v does not wrap ErrMalformed", in, err)
			}
			return
		}
		if n < 1 || n > len(in) || n != h.Len() {
			t.Fatalf("ParseHeader(%x) length %d, Len() %d", in, n, h.Len())
		}
		if out := AppendHeader(nil, h); !bytes.Equal(out, in[:n]) {
			t.Fatalf("ParseHeader(%x) = %+v, which encodes to %x", in, h, out)
		}
	})
}

// FuzzUnprotect checks that Unprotect never panics on arbitrary frames and accepts
// none that it did not protect.
func FuzzUnprotect(f *testing.F) {
	for _, cs := range []CipherSuite{AES_128_CTR_HMAC_SHA256_32, AES_128_GCM_SHA256_128} {
		sender, _ := newPair(f, cs, 1)
		f.Add(uint16(cs), protect(f, sender, 1, "seed"), []byte(testMetadata))
		f.Add(uint16(cs), protect(f, sender, 1, ""), []byte{})
	}
	f.Fuzz(func(t *testing.T, cs uint16, frame, metadata []byte) {
		suite := AES_128_CTR_HMAC_SHA256_32
		if cs%2 == 0 {
			suite = AES_128_GCM_SHA256_128
		}
		sender, receiver := newPair(t, suite, 1)
		genuine := protect(t, sender, 1, "seed")
		pt, kid, err := receiver.Unprotect(metadata, frame)
		if err != nil {
			return
		}
		// Only the genuine seed frame with its metadata can verify.
		if !bytes.Equal(frame, genuine) || !bytes.Equal(metadata, testMetadata) || kid != 1 || string(pt) != "seed" {
			t.Fatalf("Unprotect accepted a forged frame %x (kid %d, plaintext %x)", frame, kid, pt)
		}
	})
}
