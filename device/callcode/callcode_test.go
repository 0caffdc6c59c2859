package callcode

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

var (
	testAuth   = bytes.Repeat([]byte{0xa5}, 32)
	testCallID = [16]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
)

// render renders b the way PGP and ZRTP do: even positions from the
// two-syllable list, odd positions from the three-syllable list.
func render(b []byte) string {
	w := make([]string, len(b))
	for i, x := range b {
		if i%2 == 0 {
			w[i] = evenWords[x]
		} else {
			w[i] = oddWords[x]
		}
	}
	return strings.Join(w, " ")
}

func TestWordLists(t *testing.T) {
	seen := map[string]bool{}
	for _, list := range [][256]string{evenWords, oddWords} {
		for i, w := range list {
			if w == "" {
				t.Fatalf("empty word at %#02x", i)
			}
			k := strings.ToLower(w)
			if seen[k] {
				t.Errorf("word %q appears twice", w)
			}
			seen[k] = true
		}
	}
	if len(seen) != 512 {
		t.Fatalf("%d distinct words, want 512", len(seen))
	}
	spot := []struct {
		b         byte
		even, odd string
	}{
		{0x00, "aardvark", "adroitness"},
		{0x01, "absurd", "adviser"},
		{0x17, "banjo", "bookseller"},
		{0x7f, "lockup", "integrate"},
		{0x80, "merit", "intention"},
		{0xa5, "reindeer", "paperweight"},
		{0xfe, "woodlark", "yesteryear"},
		{0xff, "Zulu", "Yucatan"},
	}
	for _, s := range spot {
		if evenWords[s.b] != s.even || oddWords[s.b] != s.odd {
			t.Errorf("%#02x = %s/%s, want %s/%s", s.b, evenWords[s.b], oddWords[s.b], s.even, s.odd)
		}
	}
}

// TestRenderVector checks the lists' order against a rendering of 16 bytes
// published with an independent implementation of the PGP word list.
func TestRenderVector(t *testing.T) {
	b, _ := hex.DecodeString("12b4b0057400076fa5c0f5cbf726ac65")
	const want = "atlas politeness ruffled almighty indoors adroitness ahead hemisphere " +
		"reindeer recipe vapor revival virus caretaker ribcage glossary"
	if got := render(b); got != want {
		t.Fatalf("render = %q\nwant     %q", got, want)
	}
}

// TestDeriveMatchesHKDF recomputes the code step by step with HKDF-Extract and
// HKDF-Expand, and pins the result so that any change to the construction
// (which would make devices of different builds show different codes) fails.
func TestDeriveMatchesHKDF(t *testing.T) {
	prk, err := hkdf.Extract(sha256.New, testAuth, testCallID[:])
	if err != nil {
		t.Fatal(err)
	}
	okm, err := hkdf.Expand(sha256.New, prk, "mahfooz call code v1", 4)
	if err != nil {
		t.Fatal(err)
	}
	want := render(okm)
	got, err := Derive(testAuth, testCallID)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != want {
		t.Fatalf("Derive = %q, HKDF by hand gives %q", got, want)
	}
	const pinned = "aardvark torpedo classroom Norwegian" // also checked with Python hmac
	if got.String() != pinned {
		t.Fatalf("Derive = %q, pinned %q", got, pinned)
	}
}

func TestDeriveDeterministicAndSensitive(t *testing.T) {
	base, err := Derive(testAuth, testCallID)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Derive(bytes.Clone(testAuth), testCallID)
	if again != base {
		t.Fatalf("same inputs gave %q then %q", base, again)
	}
	if len(strings.Fields(base.String())) != 4 {
		t.Fatalf("String() = %q, want 4 words", base)
	}
	// Flipping any single bit of the authenticator or of the call ID must
	// change the code. With 32-bit codes a collision among these 384 inputs
	// has probability about 2^-23, and the inputs are fixed, so the test is
	// deterministic.
	for i := range len(testAuth) * 8 {
		a := bytes.Clone(testAuth)
		a[i/8] ^= 1 << (i % 8)
		c, err := Derive(a, testCallID)
		if err != nil {
			t.Fatal(err)
		}
		if c == base {
			t.Errorf("authenticator bit %d flipped: code unchanged %q", i, c)
		}
	}
	for i := range len(testCallID) * 8 {
		id := testCallID
		id[i/8] ^= 1 << (i % 8)
		c, _ := Derive(testAuth, id)
		if c == base {
			t.Errorf("call ID bit %d flipped: code unchanged %q", i, c)
		}
	}
}

func TestDeriveRejectsShortAuthenticator(t *testing.T) {
	for _, n := range []int{0, 1, 15} {
		if _, err := Derive(make([]byte, n), testCallID); !errors.Is(err, ErrShortAuthenticator) {
			t.Errorf("len %d: err = %v, want ErrShortAuthenticator", n, err)
		}
	}
	if _, err := Derive(make([]byte, 16), testCallID); err != nil {
		t.Errorf("len 16: %v", err)
	}
}

// FuzzDerive checks that Derive never panics and that every code it returns
// is rendered from the right lists in the right order.
func FuzzDerive(f *testing.F) {
	f.Add(testAuth, testCallID[:])
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, auth, id []byte) {
		var callID [16]byte
		copy(callID[:], id)
		c, err := Derive(auth, callID)
		if len(auth) < minAuthenticatorLen {
			if err == nil {
				t.Fatal("short authenticator accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		okm, _ := hkdf.Key(sha256.New, auth, callID[:], info, 4)
		if c.String() != render(okm) {
			t.Fatalf("code %q does not render %x", c, okm)
		}
	})
}
