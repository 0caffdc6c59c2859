package safety

import (
	"bytes"
	"errors"
	"image/png"
	"strings"
	"testing"
)

var (
	keyA1 = []byte("device-a-1 signature public key")
	keyA2 = []byte("device-a-2 signature public key")
	keyB1 = []byte("device-b-1 signature public key")
)

// TestVector pins the safety number format. The expected value was computed once
// from the construction documented on Number and written here, so that any change
// to the encoding, the hash, the iteration count or the digit extraction makes
// this test fail. Such a change makes every official's numbers differ from those
// of devices running an older build; it must come with a new version value.
func TestVector(t *testing.T) {
	const want = "344064126419516241476889368845690719753810547806651828138160"
	got := Number("Amina Yusuf", [][]byte{keyA1, keyA2}, "Bilal Khan", [][]byte{keyB1})
	if got != want {
		t.Fatalf("Number = %s, want %s", got, want)
	}
	if h := half("Bilal Khan", [][]byte{keyB1}); h != "690719753810547806651828138160" {
		t.Fatalf("half = %s", h)
	}
}

func TestNumberShape(t *testing.T) {
	n := Number("a", [][]byte{keyA1}, "b", [][]byte{keyB1})
	if len(n) != Digits {
		t.Fatalf("%d digits", len(n))
	}
	if _, err := Parse(n); err != nil {
		t.Fatalf("Number's output does not parse: %v", err)
	}
}

func TestSymmetric(t *testing.T) {
	ka, kb := [][]byte{keyA1, keyA2}, [][]byte{keyB1}
	if Number("Amina", ka, "Bilal", kb) != Number("Bilal", kb, "Amina", ka) {
		t.Fatal("the two sides compute different numbers")
	}
}

func TestKeyOrder(t *testing.T) {
	kb := [][]byte{keyB1}
	one := [][]byte{keyA1, keyA2}
	two := [][]byte{keyA2, keyA1}
	if Number("Amina", one, "Bilal", kb) != Number("Amina", two, "Bilal", kb) {
		t.Fatal("the number depends on the order of the keys")
	}
	// The caller's slice is left as it was.
	if !bytes.Equal(two[0], keyA2) {
		t.Fatal("Number reordered the caller's keys")
	}
}

func TestChanges(t *testing.T) {
	base := Number("Amina", [][]byte{keyA1}, "Bilal", [][]byte{keyB1})
	altered := bytes.Clone(keyB1)
	altered[len(altered)-1] ^= 1
	for _, tc := range []struct {
		name string
		n    string
	}{
		{"a's key changes", Number("Amina", [][]byte{keyA2}, "Bilal", [][]byte{keyB1})},
		{"b's key changes by one bit", Number("Amina", [][]byte{keyA1}, "Bilal", [][]byte{altered})},
		{"a adds a device", Number("Amina", [][]byte{keyA1, keyA2}, "Bilal", [][]byte{keyB1})},
		{"b adds a device", Number("Amina", [][]byte{keyA1}, "Bilal", [][]byte{keyB1, keyA2})},
		{"a key moves to the other official", Number("Amina", [][]byte{keyA1, keyB1}, "Bilal", nil)},
		{"a different name", Number("Amina", [][]byte{keyA1}, "Bilal Khan", [][]byte{keyB1})},
		{"name and key boundary moves", Number("Amin", [][]byte{append([]byte("a"), keyA1...)}, "Bilal", [][]byte{keyB1})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.n == base {
				t.Fatal("the safety number did not change")
			}
		})
	}
	// A change on one side changes only that side's half.
	a := Number("Amina", [][]byte{keyA1}, "Bilal", [][]byte{keyB1, keyA2})
	ha := half("Amina", [][]byte{keyA1})
	if !strings.Contains(a, ha) || !strings.Contains(base, ha) {
		t.Fatal("a's half changed when only b's keys did")
	}
}

func TestFormat(t *testing.T) {
	n := "000011111122222333334444455555666667777788888999990000011111"
	want := "00001 11111 22222 33333\n44444 55555 66666 77777\n88888 99999 00000 11111"
	if got := Format(n); got != want {
		t.Fatalf("Format:\n%s\nwant:\n%s", got, want)
	}
	if got, err := Parse(want); err != nil || got != n {
		t.Fatalf("Parse(Format(n)) = %q, %v", got, err)
	}
	if Format("") != "" || Format("123") != "123" {
		t.Fatal("Format of a short string")
	}
}

func TestParseRejects(t *testing.T) {
	n := strings.Repeat("1234567890", 6)
	for _, s := range []string{"", n[:59], n + "1", n[:59] + "a", n[:59] + "٣", "-" + n[1:]} {
		if _, err := Parse(s); !errors.Is(err, ErrNotNumber) {
			t.Errorf("Parse(%q) = %v, want ErrNotNumber", s, err)
		}
	}
}

func TestQR(t *testing.T) {
	n := Number("Amina", [][]byte{keyA1}, "Bilal", [][]byte{keyB1})
	term, err := QRTerminal(n)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(term, "\n"), "\n")
	if len(lines) < 10 || !strings.Contains(term, "█") {
		t.Fatalf("terminal QR code of %d lines", len(lines))
	}
	for _, l := range lines {
		if len([]rune(l)) != len([]rune(lines[0])) {
			t.Fatal("terminal QR code lines differ in width")
		}
	}
	b, err := QRPNG(n, 256)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if r := img.Bounds(); r.Dx() != 256 || r.Dy() != 256 {
		t.Fatalf("PNG is %v", r)
	}
	if _, err := QRTerminal("12345"); !errors.Is(err, ErrNotNumber) {
		t.Fatalf("QRTerminal of a non-number: %v", err)
	}
	if _, err := QRPNG(strings.Repeat("x", 60), 256); !errors.Is(err, ErrNotNumber) {
		t.Fatalf("QRPNG of a non-number: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	n := Number("Amina", [][]byte{keyA1}, "Bilal", [][]byte{keyB1})
	f.Add(n)
	f.Add(Format(n))
	f.Add(n[:59])
	f.Add(" \n" + n + "0")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrNotNumber) {
				t.Fatalf("error %v is not ErrNotNumber", err)
			}
			return
		}
		if !valid(got) {
			t.Fatalf("Parse(%q) = %q, not 60 digits", s, got)
		}
		// Parsing its own formatting gives the same number back.
		if again, err := Parse(Format(got)); err != nil || again != got {
			t.Fatalf("Parse(Format(%q)) = %q, %v", got, again, err)
		}
	})
}

func BenchmarkNumber(b *testing.B) {
	ka, kb := [][]byte{keyA1, keyA2}, [][]byte{keyB1}
	b.ReportAllocs()
	for b.Loop() {
		Number("Amina", ka, "Bilal", kb)
	}
}
