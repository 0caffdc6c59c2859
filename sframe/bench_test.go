package sframe

import (
	"fmt"
	"testing"
)

// BenchmarkProtectUnprotect20ms protects and unprotects one 20 ms Opus frame per
// iteration: 60 bytes at 24 kbit/s and 160 bytes at 64 kbit/s. The project's target
// is at most 1 µs per iteration.
func BenchmarkProtectUnprotect20ms(b *testing.B) {
	for _, cs := range []CipherSuite{AES_128_CTR_HMAC_SHA256_80, AES_128_GCM_SHA256_128} {
		for _, size := range []int{60, 160} {
			b.Run(fmt.Sprintf("%s/%dB", cs, size), func(b *testing.B) {
				const kid = KeyID(0x10203)
				sender, receiver := newPair(b, cs, kid)
				metadata := make([]byte, 12) // an RTP header
				plaintext := make([]byte, size)
				frame := make([]byte, 0, size+64)
				out := make([]byte, 0, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					var err error
					frame, err = sender.AppendProtect(frame[:0], kid, metadata, plaintext)
					if err != nil {
						b.Fatal(err)
					}
					out, _, err = receiver.AppendUnprotect(out[:0], metadata, frame)
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
