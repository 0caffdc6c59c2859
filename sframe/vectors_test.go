package sframe

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// hexBytes is a hex string in the vector files.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

type headerVector struct {
	KID     uint64   `json:"kid"`
	CTR     uint64   `json:"ctr"`
	Encoded hexBytes `json:"encoded"`
}

type aesCTRHMACVector struct {
	CipherSuite CipherSuite `json:"cipher_suite"`
	Key         hexBytes    `json:"key"`
	EncKey      hexBytes    `json:"enc_key"`
	AuthKey     hexBytes    `json:"auth_key"`
	Nonce       hexBytes    `json:"nonce"`
	AAD         hexBytes    `json:"aad"`
	PT          hexBytes    `json:"pt"`
	CT          hexBytes    `json:"ct"`
}

type sframeVector struct {
	CipherSuite     CipherSuite `json:"cipher_suite"`
	KID             uint64      `json:"kid"`
	CTR             uint64      `json:"ctr"`
	BaseKey         hexBytes    `json:"base_key"`
	SFrameKeyLabel  hexBytes    `json:"sframe_key_label"`
	SFrameSaltLabel hexBytes    `json:"sframe_salt_label"`
	SFrameSecret    hexBytes    `json:"sframe_secret"`
	SFrameKey       hexBytes    `json:"sframe_key"`
	SFrameSalt      hexBytes    `json:"sframe_salt"`
	Metadata        hexBytes    `json:"metadata"`
	Nonce           hexBytes    `json:"nonce"`
	AAD             hexBytes    `json:"aad"`
	PT              hexBytes    `json:"pt"`
	CT              hexBytes    `json:"ct"`
}

// vectorFile is the union of the sections of the three vector files.
type vectorFile struct {
	Header              []headerVector     `json:"header"`
	AESCTRHMAC          []aesCTRHMACVector `json:"aes_ctr_hmac"`
	AES256CTRHMAC       []aesCTRHMACVector `json:"aes_256_ctr_hmac"`
	SFrame              []sframeVector     `json:"sframe"`
	SFrameAES256CTRHMAC []sframeVector     `json:"sframe_aes_256_ctr_hmac"`
}

// vectorFiles lists each file with the number of cases each section must hold, so a
// truncated or emptied file fails the test.
var vectorFiles = []struct {
	name                                   string
	header, ctrHMAC, ctrHMAC256, sf, sf256 int
}{
	{name: "test-vectors-rfc9605-025d568.json", header: 289, ctrHMAC: 3, sf: 5},
	{name: "test-vectors.json", header: 289, ctrHMAC: 3, ctrHMAC256: 3, sf: 5},
	{name: "test-vectors-aes256.json", sf256: 3},
}

func loadVectors(t testing.TB, name string) vectorFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("reading vectors: %v", err)
	}
	var v vectorFile
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("parsing %s: %v", name, err)
	}
	return v
}

func TestVectors(t *testing.T) {
	total := 0
	for _, f := range vectorFiles {
		t.Run(f.name, func(t *testing.T) {
			v := loadVectors(t, f.name)
			for _, c := range []struct {
				section   string
				got, want int
			}{
				{"header", len(v.Header), f.header},
				{"aes_ctr_hmac", len(v.AESCTRHMAC), f.ctrHMAC},
				{"aes_256_ctr_hmac", len(v.AES256CTRHMAC), f.ctrHMAC256},
				{"sframe", len(v.SFrame), f.sf},
				{"sframe_aes_256_ctr_hmac", len(v.SFrameAES256CTRHMAC), f.sf256},
			} {
				if c.got != c.want {
					t.Fatalf("%s: %d cases, want %d", c.section, c.got, c.want)
				}
				total += c.got
			}
			for i, tc := range v.Header {
				t.Run(fmtCase("header", i), func(t *testing.T) { testHeaderVector(t, tc) })
			}
			for i, tc := range append(v.AESCTRHMAC, v.AES256CTRHMAC...) {
				t.Run(fmtCase("aes_ctr_hmac", i), func(t *testing.T) { testCTRHMACVector(t, tc) })
			}
			for i, tc := range append(v.SFrame, v.SFrameAES256CTRHMAC...) {
				t.Run(fmtCase("sframe", i), func(t *testing.T) { testSFrameVector(t, tc) })
			}
		})
	}
	if total == 0 {
		t.Fatal("no vector cases ran")
	}
	t.Logf("%d vector cases", total)
}

func fmtCase(section string, i int) string { return fmt.Sprintf("%s/%03d", section, i) }

func testHeaderVector(t *testing.T, tc headerVector) {
	h := Header{KID: KeyID(tc.KID), CTR: tc.CTR}
	if got := AppendHeader(nil, h); !bytes.Equal(got, tc.Encoded) {
		t.Errorf("AppendHeader(%+v) = %x, want %x", h, got, []byte(tc.Encoded))
	}
	if got := h.Len(); got != len(tc.Encoded) {
		t.Errorf("Len() = %d, want %d", got, len(tc.Encoded))
	}
	// A trailing payload must not change what is parsed.
	in := append(bytes.Clone(tc.Encoded), 0xde, 0xad)
	got, n, err := ParseHeader(in)
	if err != nil {
		t.Fatalf("ParseHeader(%x): %v", in, err)
	}
	if got != h || n != len(tc.Encoded) {
		t.Errorf("ParseHeader(%x) = %+v, %d; want %+v, %d", in, got, n, h, len(tc.Encoded))
	}
	for i := range len(tc.Encoded) {
		if _, _, err := ParseHeader(tc.Encoded[:i]); err == nil {
			t.Errorf("ParseHeader accepted truncated header %x", []byte(tc.Encoded[:i]))
		}
	}
}

func testCTRHMACVector(t *testing.T, tc aesCTRHMACVector) {
	p, err := tc.CipherSuite.params()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tc.Key[:p.Nka], tc.EncKey) || !bytes.Equal(tc.Key[p.Nka:], tc.AuthKey) {
		t.Fatalf("enc_key/auth_key split does not match Nka = %d", p.Nka)
	}
	a, err := newFrameAEAD(p, tc.Key)
	if err != nil {
		t.Fatal(err)
	}
	ct := a.seal(nil, tc.Nonce, tc.AAD, nil, tc.PT)
	if !bytes.Equal(ct, tc.CT) {
		t.Fatalf("seal = %x, want %x", ct, []byte(tc.CT))
	}
	// The AAD split between header and metadata must not matter.
	pt, err := a.open(nil, tc.Nonce, tc.AAD[:3], tc.AAD[3:], tc.CT)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if !bytes.Equal(pt, tc.PT) {
		t.Fatalf("open = %x, want %x", pt, []byte(tc.PT))
	}
	bad := bytes.Clone(tc.CT)
	bad[len(bad)-1] ^= 1
	if _, err := a.open(nil, tc.Nonce, tc.AAD, nil, bad); err != ErrAuth {
		t.Fatalf("open of tampered tag: %v, want ErrAuth", err)
	}
}

func testSFrameVector(t *testing.T, tc sframeVector) {
	kid := KeyID(tc.KID)
	if got := keySaltLabel(labelSFrameKey, kid, tc.CipherSuite); got != string(tc.SFrameKeyLabel) {
		t.Errorf("sframe_key_label = %x, want %x", got, []byte(tc.SFrameKeyLabel))
	}
	if got := keySaltLabel(labelSFrameSalt, kid, tc.CipherSuite); got != string(tc.SFrameSaltLabel) {
		t.Errorf("sframe_salt_label = %x, want %x", got, []byte(tc.SFrameSaltLabel))
	}
	d, err := deriveKeySalt(tc.CipherSuite, kid, BaseKey(tc.BaseKey))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want []byte
	}{
		{"sframe_secret", d.secret, tc.SFrameSecret},
		{"sframe_key", d.key, tc.SFrameKey},
		{"sframe_salt", d.salt, tc.SFrameSalt},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s = %x, want %x", c.name, c.got, c.want)
		}
	}

	sender := NewContext(tc.CipherSuite)
	if err := sender.AddKey(kid, BaseKey(tc.BaseKey)); err != nil {
		t.Fatal(err)
	}
	ks, err := sender.key(kid)
	if err != nil {
		t.Fatal(err)
	}
	ks.mu.Lock()
	if got := ks.makeNonce(tc.CTR); !bytes.Equal(got, tc.Nonce) {
		t.Errorf("nonce = %x, want %x", got, []byte(tc.Nonce))
	}
	ct := ks.seal(nil, kid, tc.CTR, tc.Metadata, tc.PT)
	ks.mu.Unlock()
	hdrLen := Header{KID: kid, CTR: tc.CTR}.Len()
	if aad := append(AppendHeader(nil, Header{KID: kid, CTR: tc.CTR}), tc.Metadata...); !bytes.Equal(aad, tc.AAD) {
		t.Errorf("aad = %x, want %x", aad, []byte(tc.AAD))
	}
	if !bytes.Equal(ct, tc.CT) {
		t.Fatalf("ct = %x, want %x", ct, []byte(tc.CT))
	}
	if !bytes.Equal(ct[:hdrLen], tc.AAD[:hdrLen]) {
		t.Errorf("ct does not start with the header")
	}

	receiver := NewContext(tc.CipherSuite)
	if err := receiver.AddKey(kid, BaseKey(tc.BaseKey)); err != nil {
		t.Fatal(err)
	}
	pt, gotKID, err := receiver.Unprotect(tc.Metadata, tc.CT)
	if err != nil {
		t.Fatalf("Unprotect: %v", err)
	}
	if gotKID != kid || !bytes.Equal(pt, tc.PT) {
		t.Fatalf("Unprotect = %x, kid %d; want %x, kid %d", pt, gotKID, []byte(tc.PT), kid)
	}
}
