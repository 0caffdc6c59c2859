package mls

import (
	"bytes"
	"testing"
)

// FuzzLoadGroup feeds damaged group states to LoadGroup: it must refuse them with
// an error, never panic, and whatever loads must store back to the same bytes.
func FuzzLoadGroup(f *testing.F) {
	for _, cs := range []CipherSuite{MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, DefaultCipherSuite} {
		ms := newTestGroup(f, cs, 3)
		commitAndDeliver(f, ms[1], []*testMember{ms[0], ms[2]}, nil, CommitOptions{ForcePath: true})
		for _, m := range ms {
			data, err := m.g.MarshalState()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := LoadGroup(data, testConfig())
		if err != nil {
			return
		}
		again, err := g.MarshalState()
		if err != nil {
			t.Fatalf("loaded state does not store: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatal("loaded state stores to different bytes")
		}
	})
}
