package mls

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// welcomeVector is one case of welcome.json: a KeyPackage with its init key, a
// Welcome for it, and the GroupInfo signer's public key.
type welcomeVector struct {
	CipherSuite uint16   `json:"cipher_suite"`
	InitPriv    hexBytes `json:"init_priv"`
	SignerPub   hexBytes `json:"signer_pub"`
	KeyPackage  hexBytes `json:"key_package"` // MLSMessage(KeyPackage)
	Welcome     hexBytes `json:"welcome"`     // MLSMessage(Welcome)
}

// TestWelcomeVectors joins from each Welcome of welcome.json as far as the vector
// allows: decrypt the GroupSecrets and the GroupInfo, verify the GroupInfo's
// signature and its confirmation tag under the epoch's confirmation_key.
func TestWelcomeVectors(t *testing.T) {
	count := vectorCount{name: "welcome.json"}
	for i, v := range loadVectors[welcomeVector](t, "welcome.json") {
		count.run(t, fmt.Sprint(i), func(t *testing.T) {
			cs := suiteOrSkip(t, v.CipherSuite)

			kpMsg, err := UnmarshalMLSMessage(v.KeyPackage)
			if err != nil || kpMsg.KeyPackage == nil {
				t.Fatalf("key_package is not an MLSMessage(KeyPackage): %v", err)
			}
			wMsg, err := UnmarshalMLSMessage(v.Welcome)
			if err != nil || wMsg.Welcome == nil {
				t.Fatalf("welcome is not an MLSMessage(Welcome): %v", err)
			}
			kp, w := kpMsg.KeyPackage, wMsg.Welcome
			if kp.CipherSuite != cs || w.CipherSuite != cs {
				t.Fatalf("suites: key package %v, welcome %v, vector %v", kp.CipherSuite, w.CipherSuite, cs)
			}
			ref, err := kp.Ref()
			if err != nil {
				t.Fatal(err)
			}
			initKey, err := NewHPKEPrivateKey(cs, v.InitPriv)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(initKey.Public(), kp.InitKey) {
				t.Fatal("init_priv does not match the key package's init_key")
			}

			gs, err := decryptGroupSecrets(cs, w, ref, initKey)
			if err != nil {
				t.Fatalf("decrypting group secrets: %v", err)
			}
			if len(gs.PSKs) != 0 {
				t.Fatalf("the vector's GroupSecrets name %d PSKs, which it does not provide", len(gs.PSKs))
			}
			psk, err := pskSecret(cs, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			gi, err := decryptGroupInfo(cs, deriveWelcomeSecret(cs, gs.JoinerSecret, psk), w)
			if err != nil {
				t.Fatalf("decrypting group info: %v", err)
			}
			if err := gi.verify(cs, SignaturePublicKey(v.SignerPub)); err != nil {
				t.Fatalf("group info: %v", err)
			}
			epoch := epochSecretsFromJoiner(cs, gs.JoinerSecret, psk, gi.GroupContext.Bytes())
			if err := verifyConfirmationTag(cs, epoch.confirmationKey, gi.GroupContext.ConfirmedTranscriptHash, gi.ConfirmationTag); err != nil {
				t.Fatalf("group info: %v", err)
			}

			// Each check must be able to fail: a wrong signer, a GroupInfo for
			// another epoch, a Welcome for someone else.
			other := SignaturePublicKey(bytes.Clone(v.SignerPub))
			other[len(other)-1] ^= 1
			if err := gi.verify(cs, other); !errors.Is(err, ErrInvalidGroupInfo) {
				t.Errorf("verifying with another signer's key: %v, want ErrInvalidGroupInfo", err)
			}
			ctx := gi.GroupContext.clone()
			ctx.Epoch++
			wrong := epochSecretsFromJoiner(cs, gs.JoinerSecret, psk, ctx.Bytes())
			if err := verifyConfirmationTag(cs, wrong.confirmationKey, gi.GroupContext.ConfirmedTranscriptHash, gi.ConfirmationTag); err == nil {
				t.Error("confirmation tag verifies under another epoch's confirmation_key")
			}
			if _, err := decryptGroupSecrets(cs, w, cs.RefHash(labelKeyPackageRef, []byte("someone else")), initKey); !errors.Is(err, ErrWelcomeNotForUs) {
				t.Errorf("welcome for another key package: %v, want ErrWelcomeNotForUs", err)
			}
		})
	}
	count.report(t)
}

// newTestWelcome makes a KeyPackage and a Welcome for it carrying gi, signed by
// signer, and returns them with the joiner's KeyPackagePrivate and the
// welcome_secret it was encrypted under.
func newTestWelcome(t *testing.T, cs CipherSuite, rnd *rand.ChaCha8, signer *SignaturePrivateKey, gs *GroupSecrets, gi *GroupInfo) (*KeyPackage, *KeyPackagePrivate, *Welcome) {
	t.Helper()
	now := time.Unix(1_700_000_000, 0)
	sigKey, err := GenerateSignatureKey(cs, rnd)
	if err != nil {
		t.Fatal(err)
	}
	kp, priv, err := NewKeyPackage(cs, NewBasicCredential([]byte("joiner")), sigKey, KeyPackageOptions{}, now, rnd)
	if err != nil {
		t.Fatal(err)
	}
	if err := gi.sign(cs, signer, rnd); err != nil {
		t.Fatal(err)
	}
	welcomeSecret := deriveWelcomeSecret(cs, gs.JoinerSecret, nil)
	egi, err := encryptGroupInfo(cs, welcomeSecret, gi)
	if err != nil {
		t.Fatal(err)
	}
	egs, err := encryptGroupSecrets(cs, kp, gs, egi)
	if err != nil {
		t.Fatal(err)
	}
	return kp, priv, &Welcome{CipherSuite: cs, Secrets: []EncryptedGroupSecrets{egs}, EncryptedGroupInfo: egi}
}

// TestWelcomeRoundTrip makes a Welcome with the encryption half of join.go and
// opens it with the decryption half, for every supported suite.
func TestWelcomeRoundTrip(t *testing.T) {
	for _, cs := range SupportedCipherSuites {
		t.Run(cs.String(), func(t *testing.T) {
			rnd := rand.NewChaCha8([32]byte{byte(cs), byte(cs >> 8)})
			signer, err := GenerateSignatureKey(cs, rnd)
			if err != nil {
				t.Fatal(err)
			}
			gs := &GroupSecrets{
				JoinerSecret: bytes.Repeat([]byte{1}, cs.Nh()),
				PathSecret:   bytes.Repeat([]byte{2}, cs.Nh()),
			}
			gi := &GroupInfo{
				GroupContext: GroupContext{
					Version:                 ProtocolVersionMLS10,
					CipherSuite:             cs,
					GroupID:                 GroupID("group"),
					Epoch:                   3,
					TreeHash:                bytes.Repeat([]byte{3}, cs.Nh()),
					ConfirmedTranscriptHash: bytes.Repeat([]byte{4}, cs.Nh()),
				},
				Extensions:      Extensions{{Type: ExtensionTypeApplicationID, Data: []byte("app")}},
				ConfirmationTag: bytes.Repeat([]byte{5}, cs.Nh()),
				Signer:          2,
			}
			kp, priv, w := newTestWelcome(t, cs, rnd, signer, gs, gi)

			// The Welcome goes over the wire.
			msg, err := UnmarshalMLSMessage(NewWelcomeMessage(w).Bytes())
			if err != nil {
				t.Fatal(err)
			}
			w = msg.Welcome
			ref, err := kp.Ref()
			if err != nil {
				t.Fatal(err)
			}
			gotGS, err := decryptGroupSecrets(cs, w, ref, priv.InitKey)
			if err != nil {
				t.Fatalf("decrypting group secrets: %v", err)
			}
			if !bytes.Equal(mustEncode(gotGS), mustEncode(gs)) {
				t.Fatalf("group secrets %+v, want %+v", gotGS, gs)
			}
			gotGI, err := decryptGroupInfo(cs, deriveWelcomeSecret(cs, gotGS.JoinerSecret, nil), w)
			if err != nil {
				t.Fatalf("decrypting group info: %v", err)
			}
			if !bytes.Equal(gotGI.Bytes(), gi.Bytes()) {
				t.Fatal("decrypted group info differs from the one sent")
			}
			if err := gotGI.verify(cs, signer.Public()); err != nil {
				t.Fatal(err)
			}

			// A GroupInfo changed after signing no longer verifies.
			gotGI.Signer++
			if err := gotGI.verify(cs, signer.Public()); !errors.Is(err, ErrInvalidGroupInfo) {
				t.Errorf("group info with another signer index: %v, want ErrInvalidGroupInfo", err)
			}
			// The secrets are bound to the encrypted GroupInfo (HPKE context): a
			// Welcome whose GroupInfo was swapped does not decrypt.
			swapped := *w
			swapped.EncryptedGroupInfo = bytes.Clone(w.EncryptedGroupInfo)
			swapped.EncryptedGroupInfo[0] ^= 1
			if _, err := decryptGroupSecrets(cs, &swapped, ref, priv.InitKey); !errors.Is(err, ErrDecrypt) {
				t.Errorf("welcome with a swapped group info: %v, want ErrDecrypt", err)
			}
			// Another joiner secret gives another welcome_secret.
			if _, err := decryptGroupInfo(cs, deriveWelcomeSecret(cs, bytes.Repeat([]byte{9}, cs.Nh()), nil), w); !errors.Is(err, ErrDecrypt) {
				t.Errorf("group info under another welcome_secret: %v, want ErrDecrypt", err)
			}
			// The wrong init key does not open the secrets.
			if _, err := decryptGroupSecrets(cs, w, ref, priv.EncryptionKey); !errors.Is(err, ErrDecrypt) {
				t.Errorf("group secrets under the wrong init key: %v, want ErrDecrypt", err)
			}
		})
	}
}

// TestWelcomeCipherSuiteMismatch checks that a Welcome is refused when its suite
// or its GroupInfo's suite is not the joiner's.
func TestWelcomeCipherSuiteMismatch(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	rnd := rand.NewChaCha8([32]byte{42})
	signer, err := GenerateSignatureKey(cs, rnd)
	if err != nil {
		t.Fatal(err)
	}
	gs := &GroupSecrets{JoinerSecret: bytes.Repeat([]byte{1}, cs.Nh())}
	gi := &GroupInfo{GroupContext: GroupContext{
		Version:     ProtocolVersionMLS10,
		CipherSuite: MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519, // not the Welcome's
		GroupID:     GroupID("group"),
	}}
	kp, priv, w := newTestWelcome(t, cs, rnd, signer, gs, gi)
	ref, err := kp.Ref()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decryptGroupInfo(cs, deriveWelcomeSecret(cs, gs.JoinerSecret, nil), w); !errors.Is(err, ErrInvalidGroupInfo) {
		t.Errorf("group info of another suite: %v, want ErrInvalidGroupInfo", err)
	}
	other := MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519
	if _, err := decryptGroupSecrets(other, w, ref, priv.InitKey); err == nil {
		t.Error("welcome of another suite decrypts")
	}
	if _, err := decryptGroupInfo(other, deriveWelcomeSecret(other, gs.JoinerSecret, nil), w); err == nil {
		t.Error("group info of a welcome of another suite decrypts")
	}
}
