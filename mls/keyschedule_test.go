package mls

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

// keyScheduleVector is one case of testdata/key-schedule.json.
type keyScheduleVector struct {
	CipherSuite       uint16   `json:"cipher_suite"`
	GroupID           hexBytes `json:"group_id"`
	InitialInitSecret hexBytes `json:"initial_init_secret"`
	Epochs            []struct {
		TreeHash                hexBytes `json:"tree_hash"`
		CommitSecret            hexBytes `json:"commit_secret"`
		PSKSecret               hexBytes `json:"psk_secret"`
		ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`

		GroupContext hexBytes `json:"group_context"`

		JoinerSecret       hexBytes `json:"joiner_secret"`
		WelcomeSecret      hexBytes `json:"welcome_secret"`
		InitSecret         hexBytes `json:"init_secret"`
		SenderDataSecret   hexBytes `json:"sender_data_secret"`
		EncryptionSecret   hexBytes `json:"encryption_secret"`
		ExporterSecret     hexBytes `json:"exporter_secret"`
		EpochAuthenticator hexBytes `json:"epoch_authenticator"`
		ExternalSecret     hexBytes `json:"external_secret"`
		ConfirmationKey    hexBytes `json:"confirmation_key"`
		MembershipKey      hexBytes `json:"membership_key"`
		ResumptionPSK      hexBytes `json:"resumption_psk"`

		ExternalPub hexBytes `json:"external_pub"`
		Exporter    struct {
			// The label is a string that happens to be written in hex; it is
			// used as it is, not decoded.
			Label   string   `json:"label"`
			Context hexBytes `json:"context"`
			Length  int      `json:"length"`
			Secret  hexBytes `json:"secret"`
		} `json:"exporter"`
	} `json:"epochs"`
}

// testGroupContext serializes the GroupContext of RFC 9420 §8.1 with no extensions,
// independently of the package's own GroupContext type:
//
//	struct {
//	    ProtocolVersion version = mls10;
//	    CipherSuite cipher_suite;
//	    opaque group_id<V>;
//	    uint64 epoch;
//	    opaque tree_hash<V>;
//	    opaque confirmed_transcript_hash<V>;
//	    Extension extensions<V>;
//	} GroupContext;
func testGroupContext(cs CipherSuite, groupID []byte, epoch uint64, treeHash, confirmedTranscriptHash []byte) []byte {
	var b cryptobyte.Builder
	b.AddUint16(1) // mls10
	b.AddUint16(uint16(cs))
	addOpaque(&b, groupID)
	b.AddUint64(epoch)
	addOpaque(&b, treeHash)
	addOpaque(&b, confirmedTranscriptHash)
	addOpaque(&b, nil) // extensions
	return b.BytesOrPanic()
}

func TestKeyScheduleVectors(t *testing.T) {
	cases := loadVectors[keyScheduleVector](t, "key-schedule.json")
	c := vectorCount{name: "key-schedule.json"}
	for i, tc := range cases {
		c.run(t, fmt.Sprint(i), func(t *testing.T) {
			cs := suiteOrSkip(t, tc.CipherSuite)
			if len(tc.Epochs) == 0 {
				t.Fatal("no epochs")
			}
			initSecret := []byte(tc.InitialInitSecret)
			for epoch, v := range tc.Epochs {
				gc := testGroupContext(cs, tc.GroupID, uint64(epoch), v.TreeHash, v.ConfirmedTranscriptHash)
				if !bytes.Equal(gc, v.GroupContext) {
					t.Fatalf("epoch %d: group_context = %x, want %x", epoch, gc, v.GroupContext)
				}
				e := newEpochSecrets(cs, initSecret, v.CommitSecret, v.PSKSecret, gc)
				for _, s := range []struct {
					name      string
					got, want []byte
				}{
					{"joiner_secret", e.joinerSecret, v.JoinerSecret},
					{"welcome_secret", e.welcomeSecret, v.WelcomeSecret},
					{"init_secret", e.initSecret, v.InitSecret},
					{"sender_data_secret", e.senderDataSecret, v.SenderDataSecret},
					{"encryption_secret", e.encryptionSecret, v.EncryptionSecret},
					{"exporter_secret", e.exporterSecret, v.ExporterSecret},
					{"epoch_authenticator", e.epochAuthenticator, v.EpochAuthenticator},
					{"external_secret", e.externalSecret, v.ExternalSecret},
					{"confirmation_key", e.confirmationKey, v.ConfirmationKey},
					{"membership_key", e.membershipKey, v.MembershipKey},
					{"resumption_psk", e.resumptionPSK, v.ResumptionPSK},
				} {
					if !bytes.Equal(s.got, s.want) {
						t.Errorf("epoch %d: %s = %x, want %x", epoch, s.name, s.got, s.want)
					}
				}

				// A joiner of this epoch, from joiner_secret alone.
				if w := deriveWelcomeSecret(cs, v.JoinerSecret, v.PSKSecret); !bytes.Equal(w, v.WelcomeSecret) {
					t.Errorf("epoch %d: welcome_secret from joiner_secret = %x, want %x", epoch, w, v.WelcomeSecret)
				}
				j := epochSecretsFromJoiner(cs, v.JoinerSecret, v.PSKSecret, gc)
				if !bytes.Equal(j.initSecret, v.InitSecret) || !bytes.Equal(j.encryptionSecret, v.EncryptionSecret) {
					t.Errorf("epoch %d: joiner's secrets differ from the vector", epoch)
				}

				priv, err := e.externalKeyPair(cs)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(priv.Public(), v.ExternalPub) {
					t.Errorf("epoch %d: external_pub = %x, want %x", epoch, []byte(priv.Public()), v.ExternalPub)
				}

				x := v.Exporter
				out, err := e.export(cs, x.Label, x.Context, x.Length)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out, x.Secret) {
					t.Errorf("epoch %d: MLS-Exporter = %x, want %x", epoch, out, x.Secret)
				}
				initSecret = e.initSecret
			}
		})
	}
	c.report(t)
}

// TestKeyScheduleZeroInputs checks that an absent commit_secret or psk_secret is the
// all-zero vector of KDF.Nh bytes (RFC 9420 §8).
func TestKeyScheduleZeroInputs(t *testing.T) {
	for _, cs := range SupportedCipherSuites {
		t.Run(cs.String(), func(t *testing.T) {
			init := bytes.Repeat([]byte{1}, cs.Nh())
			gc := testGroupContext(cs, []byte("group"), 3, []byte{1}, []byte{2})
			zero := make([]byte, cs.Nh())
			a := newEpochSecrets(cs, init, nil, nil, gc)
			b := newEpochSecrets(cs, init, zero, zero, gc)
			if !bytes.Equal(a.initSecret, b.initSecret) || !bytes.Equal(a.joinerSecret, b.joinerSecret) {
				t.Error("nil commit_secret and psk_secret differ from all-zero ones")
			}
			c := newEpochSecrets(cs, init, nil, nil, testGroupContext(cs, []byte("group"), 4, []byte{1}, []byte{2}))
			if bytes.Equal(a.joinerSecret, c.joinerSecret) || bytes.Equal(a.epochAuthenticator, c.epochAuthenticator) {
				t.Error("the GroupContext does not enter the key schedule")
			}
			if len(a.confirmationKey) != cs.Nh() || len(a.initSecret) != cs.Nh() {
				t.Error("secrets are not KDF.Nh bytes long")
			}
		})
	}
}

func TestKeyScheduleExternalInit(t *testing.T) {
	for _, cs := range SupportedCipherSuites {
		t.Run(cs.String(), func(t *testing.T) {
			gc := testGroupContext(cs, []byte("group"), 9, []byte{1}, []byte{2})
			e := newEpochSecrets(cs, make([]byte, cs.Nh()), nil, nil, gc)
			priv, err := e.externalKeyPair(cs)
			if err != nil {
				t.Fatal(err)
			}
			kemOutput, joinerInit, err := externalInit(cs, priv.Public())
			if err != nil {
				t.Fatal(err)
			}
			memberInit, err := e.externalInitSecret(cs, kemOutput)
			if err != nil {
				t.Fatal(err)
			}
			if len(joinerInit) != cs.Nh() || !bytes.Equal(joinerInit, memberInit) {
				t.Errorf("joiner and member disagree on init_secret: %x, %x", joinerInit, memberInit)
			}
			// Another epoch's external key cannot recover it.
			other := newEpochSecrets(cs, bytes.Repeat([]byte{1}, cs.Nh()), nil, nil, gc)
			if wrong, err := other.externalInitSecret(cs, kemOutput); err == nil && bytes.Equal(wrong, joinerInit) {
				t.Error("another epoch recovered the external init_secret")
			}
			if _, _, err := externalInit(cs, HPKEPublicKey{1, 2, 3}); err == nil {
				t.Error("externalInit accepted a malformed external_pub")
			}
		})
	}
}

func TestKeyScheduleWelcomeKeyNonce(t *testing.T) {
	for _, cs := range SupportedCipherSuites {
		t.Run(cs.String(), func(t *testing.T) {
			w := bytes.Repeat([]byte{3}, cs.Nh())
			key, nonce := welcomeKeyNonce(cs, w)
			if !bytes.Equal(key, cs.ExpandWithLabel(w, "key", nil, cs.Nk())) ||
				!bytes.Equal(nonce, cs.ExpandWithLabel(w, "nonce", nil, cs.Nn())) {
				t.Error("welcome key or nonce does not follow RFC 9420 §12.4.3.1")
			}
			ct, err := cs.seal(key, nonce, nil, []byte("group info"))
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := cs.open(key, nonce, nil, ct); err != nil || string(pt) != "group info" {
				t.Errorf("welcome key and nonce do not round-trip: %v", err)
			}
		})
	}
}

func TestKeyScheduleExport(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	e := newEpochSecrets(cs, make([]byte, 32), nil, nil, testGroupContext(cs, []byte("g"), 0, nil, nil))
	a, err := e.export(cs, "label", []byte("context"), 255*32)
	if err != nil || len(a) != 255*32 {
		t.Errorf("longest export: %d bytes, %v", len(a), err)
	}
	if _, err := e.export(cs, "label", nil, 255*32+1); err == nil {
		t.Error("export accepted a length HKDF cannot produce")
	}
	if _, err := e.export(cs, "label", nil, -1); err == nil {
		t.Error("export accepted a negative length")
	}
	b, _ := e.export(cs, "label", []byte("other context"), 32)
	c, _ := e.export(cs, "other label", []byte("context"), 32)
	if bytes.Equal(a[:32], b) || bytes.Equal(a[:32], c) || bytes.Equal(b, c) {
		t.Error("label or context does not separate exported secrets")
	}
}

func TestKeyScheduleStorage(t *testing.T) {
	cs := MLS_256_DHKEMP384_AES256GCM_SHA384_P384
	e := newEpochSecrets(cs, make([]byte, cs.Nh()), nil, nil, testGroupContext(cs, []byte("g"), 1, nil, nil))
	for _, forget := range []bool{false, true} {
		if forget {
			e.forgetWelcome()
			if e.joinerSecret != nil || e.welcomeSecret != nil {
				t.Fatal("forgetWelcome kept a secret")
			}
		}
		var b cryptobyte.Builder
		e.marshal(&b)
		enc := b.BytesOrPanic()
		var back epochSecrets
		if err := decodeAll(enc, "epoch secrets", func(s *cryptobyte.String) bool { return back.unmarshal(s, cs) }); err != nil {
			t.Fatalf("forgotten welcome %v: %v", forget, err)
		}
		var b2 cryptobyte.Builder
		back.marshal(&b2)
		if !bytes.Equal(b2.BytesOrPanic(), enc) || !bytes.Equal(back.confirmationKey, e.confirmationKey) {
			t.Errorf("forgotten welcome %v: restored secrets differ", forget)
		}
		// Stored for a suite with another hash size, the secrets do not parse.
		other := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
		if err := decodeAll(enc, "epoch secrets", func(s *cryptobyte.String) bool { return back.unmarshal(s, other) }); !errors.Is(err, ErrDecode) {
			t.Errorf("secrets of the wrong size: got %v, want ErrDecode", err)
		}
	}
	e.erase()
	if e.initSecret != nil || e.encryptionSecret != nil || e.membershipKey != nil {
		t.Error("erase kept a secret")
	}
}
