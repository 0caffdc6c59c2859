package mls

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

// pskSecretVector is one case of testdata/psk_secret.json; every PSK is external.
type pskSecretVector struct {
	CipherSuite uint16 `json:"cipher_suite"`
	PSKs        []struct {
		PSKID    hexBytes `json:"psk_id"`
		PSK      hexBytes `json:"psk"`
		PSKNonce hexBytes `json:"psk_nonce"`
	} `json:"psks"`
	PSKSecret hexBytes `json:"psk_secret"`
}

func TestPSKSecretVectors(t *testing.T) {
	cases := loadVectors[pskSecretVector](t, "psk_secret.json")
	c := vectorCount{name: "psk_secret.json"}
	for i, tc := range cases {
		c.run(t, fmt.Sprint(i), func(t *testing.T) {
			cs := suiteOrSkip(t, tc.CipherSuite)
			var ids []PreSharedKeyID
			var psks [][]byte
			for _, p := range tc.PSKs {
				ids = append(ids, PreSharedKeyID{PSKType: PSKTypeExternal, PSKID: p.PSKID, PSKNonce: p.PSKNonce})
				psks = append(psks, p.PSK)
			}
			got, err := pskSecret(cs, ids, psks)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.PSKSecret) {
				t.Errorf("psk_secret = %x, want %x", got, tc.PSKSecret)
			}
		})
	}
	c.report(t)
}

func TestPSKSecretErrors(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	id := PreSharedKeyID{PSKType: PSKTypeExternal, PSKID: []byte("id"), PSKNonce: make([]byte, 32)}
	if _, err := pskSecret(cs, []PreSharedKeyID{id}, nil); err == nil {
		t.Error("pskSecret accepted one ID and no PSK")
	}
	bad := PreSharedKeyID{PSKType: 7}
	if _, err := pskSecret(cs, []PreSharedKeyID{bad}, [][]byte{{1}}); err == nil {
		t.Error("pskSecret accepted an unknown psktype")
	}
	zero, err := pskSecret(cs, nil, nil)
	if err != nil || !bytes.Equal(zero, make([]byte, 32)) {
		t.Errorf("pskSecret of no PSK = %x, %v; want 32 zero bytes", zero, err)
	}
}

func TestPSKIDEncoding(t *testing.T) {
	ids := []PreSharedKeyID{
		{PSKType: PSKTypeExternal, PSKID: []byte("external id"), PSKNonce: bytes.Repeat([]byte{1}, 32)},
		{PSKType: PSKTypeResumption, Usage: ResumptionPSKUsageApplication, PSKGroupID: GroupID("group"), PSKEpoch: 7, PSKNonce: bytes.Repeat([]byte{2}, 32)},
		{PSKType: PSKTypeResumption, Usage: ResumptionPSKUsageReinit, PSKGroupID: GroupID("g"), PSKEpoch: 1 << 40, PSKNonce: []byte{3}},
		{PSKType: PSKTypeResumption, Usage: ResumptionPSKUsageBranch, PSKGroupID: GroupID{}, PSKNonce: []byte{}},
	}
	for i, id := range ids {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			enc, err := encode(&id)
			if err != nil {
				t.Fatal(err)
			}
			var got PreSharedKeyID
			if err := decodeAll(enc, "PreSharedKeyID", got.unmarshal); err != nil {
				t.Fatal(err)
			}
			if !got.equal(&id) {
				t.Errorf("decoded %+v, want %+v", got, id)
			}
			if re, _ := encode(&got); !bytes.Equal(re, enc) {
				t.Errorf("re-encoding differs: %x, want %x", re, enc)
			}
			for n := range len(enc) {
				var p PreSharedKeyID
				if err := decodeAll(enc[:n], "PreSharedKeyID", p.unmarshal); err == nil {
					t.Errorf("truncated encoding of %d bytes parsed", n)
				}
			}
		})
	}
}

func TestPSKIDRejectsUnknownValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		enc  []byte
	}{
		{"reserved psktype", []byte{0, 0, 0}},
		{"unknown psktype", []byte{3, 0, 0}},
		{"reserved usage", []byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"unknown usage", []byte{2, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p PreSharedKeyID
			err := decodeAll(tc.enc, "PreSharedKeyID", p.unmarshal)
			if !errors.Is(err, ErrDecode) {
				t.Errorf("decoding %x: got %v, want ErrDecode", tc.enc, err)
			}
		})
	}
	// The same bytes with a known usage do parse, so the cases above fail on the value.
	var p PreSharedKeyID
	if err := decodeAll([]byte{2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "PreSharedKeyID", p.unmarshal); err != nil {
		t.Errorf("valid resumption PreSharedKeyID: %v", err)
	}
	var b cryptobyte.Builder
	(&PreSharedKeyID{PSKType: 9}).marshal(&b)
	if _, err := b.Bytes(); err == nil {
		t.Error("marshal accepted an unknown psktype")
	}
}
