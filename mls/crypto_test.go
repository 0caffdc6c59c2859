package mls

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
)

// cryptoBasicsVector is one case of testdata/crypto-basics.json.
type cryptoBasicsVector struct {
	CipherSuite uint16 `json:"cipher_suite"`
	RefHash     struct {
		Label string   `json:"label"`
		Value hexBytes `json:"value"`
		Out   hexBytes `json:"out"`
	} `json:"ref_hash"`
	ExpandWithLabel struct {
		Secret  hexBytes `json:"secret"`
		Label   string   `json:"label"`
		Context hexBytes `json:"context"`
		Length  int      `json:"length"`
		Out     hexBytes `json:"out"`
	} `json:"expand_with_label"`
	DeriveSecret struct {
		Secret hexBytes `json:"secret"`
		Label  string   `json:"label"`
		Out    hexBytes `json:"out"`
	} `json:"derive_secret"`
	DeriveTreeSecret struct {
		Secret     hexBytes `json:"secret"`
		Label      string   `json:"label"`
		Generation uint32   `json:"generation"`
		Length     int      `json:"length"`
		Out        hexBytes `json:"out"`
	} `json:"derive_tree_secret"`
	SignWithLabel struct {
		Priv      hexBytes `json:"priv"`
		Pub       hexBytes `json:"pub"`
		Content   hexBytes `json:"content"`
		Label     string   `json:"label"`
		Signature hexBytes `json:"signature"`
	} `json:"sign_with_label"`
	EncryptWithLabel struct {
		Priv       hexBytes `json:"priv"`
		Pub        hexBytes `json:"pub"`
		Label      string   `json:"label"`
		Context    hexBytes `json:"context"`
		Plaintext  hexBytes `json:"plaintext"`
		KEMOutput  hexBytes `json:"kem_output"`
		Ciphertext hexBytes `json:"ciphertext"`
	} `json:"encrypt_with_label"`
}

func TestCryptoBasicsVectors(t *testing.T) {
	cases := loadVectors[cryptoBasicsVector](t, "crypto-basics.json")
	c := vectorCount{name: "crypto-basics.json"}
	for i, tc := range cases {
		c.run(t, fmt.Sprint(i), func(t *testing.T) {
			cs := suiteOrSkip(t, tc.CipherSuite)

			t.Run("ref_hash", func(t *testing.T) {
				v := tc.RefHash
				if got := cs.RefHash(v.Label, v.Value); !bytes.Equal(got, v.Out) {
					t.Errorf("RefHash = %x, want %x", got, v.Out)
				}
			})

			t.Run("expand_with_label", func(t *testing.T) {
				v := tc.ExpandWithLabel
				if got := cs.ExpandWithLabel(v.Secret, v.Label, v.Context, v.Length); !bytes.Equal(got, v.Out) {
					t.Errorf("ExpandWithLabel = %x, want %x", got, v.Out)
				}
			})

			t.Run("derive_secret", func(t *testing.T) {
				v := tc.DeriveSecret
				if got := cs.DeriveSecret(v.Secret, v.Label); !bytes.Equal(got, v.Out) {
					t.Errorf("DeriveSecret = %x, want %x", got, v.Out)
				}
			})

			t.Run("derive_tree_secret", func(t *testing.T) {
				v := tc.DeriveTreeSecret
				if got := cs.DeriveTreeSecret(v.Secret, v.Label, v.Generation, v.Length); !bytes.Equal(got, v.Out) {
					t.Errorf("DeriveTreeSecret = %x, want %x", got, v.Out)
				}
			})

			t.Run("sign_with_label", func(t *testing.T) {
				v := tc.SignWithLabel
				pub := SignaturePublicKey(v.Pub)
				if err := cs.VerifyWithLabel(pub, v.Label, v.Content, v.Signature); err != nil {
					t.Errorf("VerifyWithLabel of the vector's signature: %v", err)
				}
				priv, err := NewSignaturePrivateKey(cs, v.Priv)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(priv.Public(), pub) {
					t.Errorf("public key of priv = %x, want %x", priv.Public(), pub)
				}
				sig, err := cs.SignWithLabel(priv, v.Label, v.Content, rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				if err := cs.VerifyWithLabel(pub, v.Label, v.Content, sig); err != nil {
					t.Errorf("VerifyWithLabel of a fresh signature: %v", err)
				}
				// The label is bound into the signature: the same bytes under
				// another label, or other content, must not verify.
				if err := cs.VerifyWithLabel(pub, v.Label+"x", v.Content, sig); !errors.Is(err, ErrSignature) {
					t.Errorf("signature verified under another label: %v", err)
				}
				tampered := append(append([]byte{}, v.Content...), 0)
				if err := cs.VerifyWithLabel(pub, v.Label, tampered, v.Signature); !errors.Is(err, ErrSignature) {
					t.Errorf("signature verified over other content: %v", err)
				}
			})

			t.Run("encrypt_with_label", func(t *testing.T) {
				v := tc.EncryptWithLabel
				priv, err := NewHPKEPrivateKey(cs, v.Priv)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(priv.Public(), v.Pub) {
					t.Errorf("public key of priv = %x, want %x", priv.Public(), []byte(v.Pub))
				}
				pt, err := cs.DecryptWithLabel(priv, v.Label, v.Context, HPKECiphertext{KEMOutput: v.KEMOutput, Ciphertext: v.Ciphertext})
				if err != nil {
					t.Fatalf("DecryptWithLabel of the vector's ciphertext: %v", err)
				}
				if !bytes.Equal(pt, v.Plaintext) {
					t.Errorf("DecryptWithLabel = %x, want %x", pt, v.Plaintext)
				}
				ct, err := cs.EncryptWithLabel(HPKEPublicKey(v.Pub), v.Label, v.Context, v.Plaintext)
				if err != nil {
					t.Fatal(err)
				}
				pt, err = cs.DecryptWithLabel(priv, v.Label, v.Context, ct)
				if err != nil {
					t.Fatalf("DecryptWithLabel of a fresh ciphertext: %v", err)
				}
				if !bytes.Equal(pt, v.Plaintext) {
					t.Errorf("round trip = %x, want %x", pt, v.Plaintext)
				}
				if _, err := cs.DecryptWithLabel(priv, v.Label+"x", v.Context, ct); !errors.Is(err, ErrDecrypt) {
					t.Errorf("ciphertext decrypted under another label: %v", err)
				}
			})
		})
	}
	c.report(t)
}
