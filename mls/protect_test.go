package mls

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// messageProtectionVector is one case of testdata/message-protection.json. The
// messages are sent by leaf 1 of a two-leaf group whose GroupContext is built from
// the fields given, with empty extensions.
type messageProtectionVector struct {
	CipherSuite             uint16   `json:"cipher_suite"`
	GroupID                 hexBytes `json:"group_id"`
	Epoch                   uint64   `json:"epoch"`
	TreeHash                hexBytes `json:"tree_hash"`
	ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`

	SignaturePriv hexBytes `json:"signature_priv"`
	SignaturePub  hexBytes `json:"signature_pub"`

	EncryptionSecret hexBytes `json:"encryption_secret"`
	SenderDataSecret hexBytes `json:"sender_data_secret"`
	MembershipKey    hexBytes `json:"membership_key"`

	Proposal     hexBytes `json:"proposal"`
	ProposalPub  hexBytes `json:"proposal_pub"`
	ProposalPriv hexBytes `json:"proposal_priv"`

	Commit     hexBytes `json:"commit"`
	CommitPub  hexBytes `json:"commit_pub"`
	CommitPriv hexBytes `json:"commit_priv"`

	Application     hexBytes `json:"application"`
	ApplicationPriv hexBytes `json:"application_priv"`
}

// vectorSender is the leaf every message-protection vector is sent from.
const vectorSender LeafIndex = 1

// protectFixture is the group state a message-protection case describes.
type protectFixture struct {
	cs         CipherSuite
	gc         GroupContext
	gcBytes    []byte
	key        *SignaturePrivateKey
	pub        SignaturePublicKey
	encSecret  []byte
	sdSecret   []byte
	membership MembershipKey
	leafCount  uint32
}

func (f *protectFixture) tree() *secretTree { return newSecretTree(f.cs, f.encSecret, f.leafCount) }

func (f *protectFixture) isMember(l LeafIndex) bool { return uint32(l) < f.leafCount }

func (f *protectFixture) content(ct ContentType, body []byte) (*FramedContent, error) {
	c := &FramedContent{
		GroupID:           f.gc.GroupID,
		Epoch:             f.gc.Epoch,
		Sender:            Sender{Type: SenderTypeMember, LeafIndex: vectorSender},
		AuthenticatedData: []byte("authenticated data"),
		ContentType:       ct,
	}
	var err error
	switch ct {
	case ContentTypeApplication:
		c.ApplicationData = body
	case ContentTypeProposal:
		c.Proposal = new(Proposal)
		err = decodeAll(body, "Proposal", c.Proposal.unmarshal)
	case ContentTypeCommit:
		c.Commit = new(Commit)
		err = decodeAll(body, "Commit", c.Commit.unmarshal)
	}
	return c, err
}

func newProtectFixture(t testing.TB, v *messageProtectionVector, cs CipherSuite) *protectFixture {
	t.Helper()
	key, err := NewSignaturePrivateKey(cs, fieldElement(cs, v.SignaturePriv))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key.Public(), v.SignaturePub) {
		t.Fatalf("signature_priv does not match signature_pub")
	}
	f := &protectFixture{
		cs: cs,
		gc: GroupContext{
			Version:                 ProtocolVersionMLS10,
			CipherSuite:             cs,
			GroupID:                 GroupID(v.GroupID),
			Epoch:                   v.Epoch,
			TreeHash:                v.TreeHash,
			ConfirmedTranscriptHash: v.ConfirmedTranscriptHash,
		},
		key:        key,
		pub:        SignaturePublicKey(v.SignaturePub),
		encSecret:  v.EncryptionSecret,
		sdSecret:   v.SenderDataSecret,
		membership: MembershipKey(v.MembershipKey),
		leafCount:  2,
	}
	f.gcBytes = f.gc.Bytes()
	return f
}

// fieldElement left-pads an ECDSA private key to the size of the curve's scalars:
// the P-521 case of message-protection.json drops the leading zero byte.
func fieldElement(cs CipherSuite, raw []byte) []byte {
	c := cs.p().curve
	if c == nil {
		return raw
	}
	n := (c.Params().N.BitLen() + 7) / 8
	if len(raw) >= n {
		return raw
	}
	return append(make([]byte, n-len(raw)), raw...)
}

// testRand is a deterministic source for signatures and reuse guards.
func testRand(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

// parseMessage parses an MLSMessage and checks its wire format.
func parseMessage(t testing.TB, data []byte, wf WireFormat) *MLSMessage {
	t.Helper()
	m, err := UnmarshalMLSMessage(data)
	if err != nil {
		t.Fatalf("UnmarshalMLSMessage: %v", err)
	}
	if m.WireFormat != wf {
		t.Fatalf("wire format = %d, want %d", m.WireFormat, wf)
	}
	return m
}

// unprotectPublic authenticates a serialized PublicMessage fully, as a receiver does.
func (f *protectFixture) unprotectPublic(t testing.TB, data []byte) *AuthenticatedContent {
	t.Helper()
	m := parseMessage(t, data, WireFormatPublicMessage)
	if err := checkGroupEpoch(&f.gc, m.PublicMessage.Content.GroupID, m.PublicMessage.Content.Epoch); err != nil {
		t.Fatal(err)
	}
	ac, err := publicMessageContent(f.cs, m.PublicMessage, f.membership, f.gcBytes)
	if err != nil {
		t.Fatalf("publicMessageContent: %v", err)
	}
	if err := verifyFramedContent(f.cs, f.pub, ac, f.gcBytes); err != nil {
		t.Fatalf("verifyFramedContent: %v", err)
	}
	return ac
}

// unprotectPrivate decrypts and authenticates a serialized PrivateMessage with st.
func (f *protectFixture) unprotectPrivate(t testing.TB, st *secretTree, data []byte) *AuthenticatedContent {
	t.Helper()
	m := parseMessage(t, data, WireFormatPrivateMessage)
	if err := checkGroupEpoch(&f.gc, m.PrivateMessage.GroupID, m.PrivateMessage.Epoch); err != nil {
		t.Fatal(err)
	}
	ac, err := decryptPrivateMessage(f.cs, st, f.sdSecret, m.PrivateMessage, f.isMember)
	if err != nil {
		t.Fatalf("decryptPrivateMessage: %v", err)
	}
	if ac.WireFormat != WireFormatPrivateMessage {
		t.Fatalf("wire format = %d", ac.WireFormat)
	}
	if err := verifyFramedContent(f.cs, f.pub, ac, f.gcBytes); err != nil {
		t.Fatalf("verifyFramedContent: %v", err)
	}
	return ac
}

// checkBody compares the content of ac with the raw proposal, commit or
// application data of the vector.
func checkBody(t testing.TB, ac *AuthenticatedContent, ct ContentType, want []byte) {
	t.Helper()
	c := &ac.Content
	if c.ContentType != ct {
		t.Fatalf("content type = %d, want %d", c.ContentType, ct)
	}
	if c.Sender != (Sender{Type: SenderTypeMember, LeafIndex: vectorSender}) {
		t.Fatalf("sender = %+v, want member %d", c.Sender, vectorSender)
	}
	var got []byte
	switch ct {
	case ContentTypeApplication:
		got = c.ApplicationData
	case ContentTypeProposal:
		got = mustEncode(c.Proposal)
	case ContentTypeCommit:
		got = mustEncode(c.Commit)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("content = %x, want %x", got, want)
	}
}

func TestMessageProtectionVectors(t *testing.T) {
	cases := loadVectors[messageProtectionVector](t, "message-protection.json")
	c := vectorCount{name: "message-protection.json"}
	for i := range cases {
		v := &cases[i]
		c.run(t, fmt.Sprint(i), func(t *testing.T) {
			cs := suiteOrSkip(t, v.CipherSuite)
			f := newProtectFixture(t, v, cs)
			kinds := []struct {
				name      string
				ct        ContentType
				raw       []byte
				pub, priv []byte
			}{
				{"proposal", ContentTypeProposal, v.Proposal, v.ProposalPub, v.ProposalPriv},
				{"commit", ContentTypeCommit, v.Commit, v.CommitPub, v.CommitPriv},
				{"application", ContentTypeApplication, v.Application, nil, v.ApplicationPriv},
			}
			for _, k := range kinds {
				t.Run(k.name, func(t *testing.T) {
					var confirmationTag []byte
					// (a) Unprotect the vector's messages.
					if k.pub != nil {
						ac := f.unprotectPublic(t, k.pub)
						checkBody(t, ac, k.ct, k.raw)
						confirmationTag = ac.Auth.ConfirmationTag
					}
					ac := f.unprotectPrivate(t, f.tree(), k.priv)
					checkBody(t, ac, k.ct, k.raw)
					if k.ct == ContentTypeCommit {
						if len(ac.Auth.ConfirmationTag) == 0 {
							t.Fatal("commit without confirmation tag")
						}
						if k.pub != nil && !bytes.Equal(confirmationTag, ac.Auth.ConfirmationTag) {
							t.Fatal("public and private commits carry different confirmation tags")
						}
					}

					// (b) Protect the raw value and unprotect the result.
					content, err := f.content(k.ct, k.raw)
					if err != nil {
						t.Fatal(err)
					}
					rnd := testRand(byte(i))
					if k.ct == ContentTypeApplication {
						if _, err := signFramedContent(cs, f.key, WireFormatPublicMessage, content, f.gcBytes, rnd); !errors.Is(err, ErrUnencryptedApplication) {
							t.Fatalf("signing application content for a PublicMessage: err = %v, want ErrUnencryptedApplication", err)
						}
						forged := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: *content}
						if _, err := newPublicMessage(cs, forged, f.membership, f.gcBytes); !errors.Is(err, ErrUnencryptedApplication) {
							t.Fatalf("newPublicMessage(application): err = %v, want ErrUnencryptedApplication", err)
						}
						pm := &PublicMessage{Content: *content, MembershipTag: make([]byte, cs.Nh())}
						if _, err := publicMessageContent(cs, pm, f.membership, f.gcBytes); !errors.Is(err, ErrUnencryptedApplication) {
							t.Fatalf("publicMessageContent(application): err = %v, want ErrUnencryptedApplication", err)
						}
					} else {
						ac, err := signFramedContent(cs, f.key, WireFormatPublicMessage, content, f.gcBytes, rnd)
						if err != nil {
							t.Fatal(err)
						}
						ac.Auth.ConfirmationTag = confirmationTag
						pm, err := newPublicMessage(cs, ac, f.membership, f.gcBytes)
						if err != nil {
							t.Fatal(err)
						}
						msg := &MLSMessage{Version: ProtocolVersionMLS10, WireFormat: WireFormatPublicMessage, PublicMessage: pm}
						got := f.unprotectPublic(t, msg.Bytes())
						checkBody(t, got, k.ct, k.raw)
						if !bytes.Equal(mustEncode(got), mustEncode(ac)) {
							t.Fatal("PublicMessage round trip changed the AuthenticatedContent")
						}
					}

					ac, err = signFramedContent(cs, f.key, WireFormatPrivateMessage, content, f.gcBytes, rnd)
					if err != nil {
						t.Fatal(err)
					}
					ac.Auth.ConfirmationTag = confirmationTag
					pm, err := encryptPrivateMessage(cs, f.tree(), f.sdSecret, ac, DefaultPaddingBlock, rnd)
					if err != nil {
						t.Fatal(err)
					}
					msg := &MLSMessage{Version: ProtocolVersionMLS10, WireFormat: WireFormatPrivateMessage, PrivateMessage: pm}
					got := f.unprotectPrivate(t, f.tree(), msg.Bytes())
					checkBody(t, got, k.ct, k.raw)
					if !bytes.Equal(mustEncode(got), mustEncode(ac)) {
						t.Fatal("PrivateMessage round trip changed the AuthenticatedContent")
					}
				})
			}
		})
	}
	c.report(t)
}

// transcriptHashesVector is one case of testdata/transcript-hashes.json.
type transcriptHashesVector struct {
	CipherSuite                  uint16   `json:"cipher_suite"`
	ConfirmationKey              hexBytes `json:"confirmation_key"`
	AuthenticatedContent         hexBytes `json:"authenticated_content"`
	InterimTranscriptHashBefore  hexBytes `json:"interim_transcript_hash_before"`
	ConfirmedTranscriptHashAfter hexBytes `json:"confirmed_transcript_hash_after"`
	InterimTranscriptHashAfter   hexBytes `json:"interim_transcript_hash_after"`
}

func TestTranscriptHashesVectors(t *testing.T) {
	cases := loadVectors[transcriptHashesVector](t, "transcript-hashes.json")
	c := vectorCount{name: "transcript-hashes.json"}
	for i := range cases {
		v := &cases[i]
		c.run(t, fmt.Sprint(i), func(t *testing.T) {
			cs := suiteOrSkip(t, v.CipherSuite)
			var ac AuthenticatedContent
			if err := decodeAll(v.AuthenticatedContent, "AuthenticatedContent", ac.unmarshal); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mustEncode(&ac), v.AuthenticatedContent) {
				t.Fatal("AuthenticatedContent does not re-encode to the vector's bytes")
			}
			confirmed, err := confirmedTranscriptHash(cs, v.InterimTranscriptHashBefore, &ac)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(confirmed, v.ConfirmedTranscriptHashAfter) {
				t.Fatalf("confirmed_transcript_hash = %x, want %x", confirmed, v.ConfirmedTranscriptHashAfter)
			}
			key := ConfirmationKey(v.ConfirmationKey)
			if tag := confirmationTag(cs, key, confirmed); !bytes.Equal(tag, ac.Auth.ConfirmationTag) {
				t.Fatalf("confirmation_tag = %x, want %x", tag, ac.Auth.ConfirmationTag)
			}
			if err := verifyConfirmationTag(cs, key, confirmed, ac.Auth.ConfirmationTag); err != nil {
				t.Fatal(err)
			}
			if interim := interimTranscriptHash(cs, confirmed, ac.Auth.ConfirmationTag); !bytes.Equal(interim, v.InterimTranscriptHashAfter) {
				t.Fatalf("interim_transcript_hash = %x, want %x", interim, v.InterimTranscriptHashAfter)
			}
			c2, i2, err := transcriptHashes(cs, v.InterimTranscriptHashBefore, &ac)
			if err != nil || !bytes.Equal(c2, confirmed) || !bytes.Equal(i2, v.InterimTranscriptHashAfter) {
				t.Fatalf("transcriptHashes disagrees: %v", err)
			}

			// A tag off by one bit, a truncated tag, another key or another
			// transcript are all refused.
			bad := bytes.Clone(ac.Auth.ConfirmationTag)
			bad[len(bad)-1] ^= 1
			for name, err := range map[string]error{
				"flipped bit": verifyConfirmationTag(cs, key, confirmed, bad),
				"truncated":   verifyConfirmationTag(cs, key, confirmed, ac.Auth.ConfirmationTag[:len(bad)-1]),
				"empty":       verifyConfirmationTag(cs, key, confirmed, nil),
				"other key":   verifyConfirmationTag(cs, ConfirmationKey(v.InterimTranscriptHashBefore), confirmed, ac.Auth.ConfirmationTag),
				"other hash":  verifyConfirmationTag(cs, key, v.InterimTranscriptHashBefore, ac.Auth.ConfirmationTag),
			} {
				if !errors.Is(err, ErrConfirmationTag) {
					t.Errorf("%s: err = %v, want ErrConfirmationTag", name, err)
				}
			}
		})
	}
	c.report(t)
}

func TestTranscriptRejectsNonCommit(t *testing.T) {
	ac := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: FramedContent{
		ContentType: ContentTypeProposal,
		Proposal:    &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: 1}},
	}}
	if _, err := confirmedTranscriptHash(MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, nil, ac); err == nil {
		t.Fatal("transcript hash of a proposal accepted")
	}
	ac.Content = FramedContent{ContentType: ContentTypeCommit, Commit: &Commit{}}
	if _, _, err := transcriptHashes(MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, nil, ac); err == nil {
		t.Fatal("transcript hashes of a commit without confirmation tag accepted")
	}
}

// firstProtectFixture returns the first message-protection case of suite 1, with
// its proposal content.
func firstProtectFixture(t testing.TB) (*protectFixture, *messageProtectionVector) {
	t.Helper()
	for _, v := range loadVectors[messageProtectionVector](t, "message-protection.json") {
		if CipherSuite(v.CipherSuite) == MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 {
			return newProtectFixture(t, &v, CipherSuite(v.CipherSuite)), &v
		}
	}
	t.Fatal("no suite 1 case in message-protection.json")
	return nil, nil
}

func TestProtectBadMembershipTag(t *testing.T) {
	f, v := firstProtectFixture(t)
	m := parseMessage(t, v.ProposalPub, WireFormatPublicMessage)
	if _, err := publicMessageContent(f.cs, m.PublicMessage, f.membership, f.gcBytes); err != nil {
		t.Fatalf("genuine message refused: %v", err)
	}
	otherGC := f.gc.clone()
	otherGC.TreeHash[0] ^= 1
	for _, tc := range []struct {
		name   string
		mutate func(pm *PublicMessage) (MembershipKey, []byte)
	}{
		{"flipped tag bit", func(pm *PublicMessage) (MembershipKey, []byte) {
			pm.MembershipTag[0] ^= 0x80
			return f.membership, f.gcBytes
		}},
		{"truncated tag", func(pm *PublicMessage) (MembershipKey, []byte) {
			pm.MembershipTag = pm.MembershipTag[:len(pm.MembershipTag)-1]
			return f.membership, f.gcBytes
		}},
		{"missing tag", func(pm *PublicMessage) (MembershipKey, []byte) {
			pm.MembershipTag = nil
			return f.membership, f.gcBytes
		}},
		{"other membership key", func(pm *PublicMessage) (MembershipKey, []byte) {
			return MembershipKey(f.sdSecret), f.gcBytes
		}},
		{"other group context", func(pm *PublicMessage) (MembershipKey, []byte) {
			return f.membership, otherGC.Bytes()
		}},
		{"altered authenticated data", func(pm *PublicMessage) (MembershipKey, []byte) {
			pm.Content.AuthenticatedData = []byte("x")
			return f.membership, f.gcBytes
		}},
		{"altered signature", func(pm *PublicMessage) (MembershipKey, []byte) {
			pm.Auth.Signature[0] ^= 1
			return f.membership, f.gcBytes
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pm := parseMessage(t, v.ProposalPub, WireFormatPublicMessage).PublicMessage
			key, gc := tc.mutate(pm)
			if _, err := publicMessageContent(f.cs, pm, key, gc); !errors.Is(err, ErrMembershipTag) {
				t.Fatalf("err = %v, want ErrMembershipTag", err)
			}
		})
	}
}

func TestProtectForgedSignature(t *testing.T) {
	f, v := firstProtectFixture(t)
	other, err := GenerateSignatureKey(f.cs, testRand(9))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("public", func(t *testing.T) {
		m := parseMessage(t, v.CommitPub, WireFormatPublicMessage)
		m.PublicMessage.Auth.Signature[5] ^= 1
		// A member forging the signature recomputes the membership tag: the tag is
		// no substitute for the signature.
		ac := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: m.PublicMessage.Content, Auth: m.PublicMessage.Auth}
		m.PublicMessage.MembershipTag = membershipTag(f.cs, f.membership, ac, f.gcBytes)
		ac, err := publicMessageContent(f.cs, m.PublicMessage, f.membership, f.gcBytes)
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyFramedContent(f.cs, f.pub, ac, f.gcBytes); !errors.Is(err, ErrSignature) {
			t.Fatalf("err = %v, want ErrSignature", err)
		}
	})

	t.Run("private", func(t *testing.T) {
		m := parseMessage(t, v.ApplicationPriv, WireFormatPrivateMessage)
		ac, err := decryptPrivateMessage(f.cs, f.tree(), f.sdSecret, m.PrivateMessage, f.isMember)
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyFramedContent(f.cs, other.Public(), ac, f.gcBytes); !errors.Is(err, ErrSignature) {
			t.Fatalf("other key: err = %v, want ErrSignature", err)
		}
		otherGC := f.gc.clone()
		otherGC.Epoch++
		if err := verifyFramedContent(f.cs, f.pub, ac, otherGC.Bytes()); !errors.Is(err, ErrSignature) {
			t.Fatalf("other group context: err = %v, want ErrSignature", err)
		}
		// The signature binds the wire format: the same content is not valid as a
		// PublicMessage.
		ac.WireFormat = WireFormatPublicMessage
		ac.Content.ContentType = ContentTypeApplication
		if err := verifyFramedContent(f.cs, f.pub, ac, f.gcBytes); err == nil {
			t.Fatal("private content verified as public")
		}
	})

	t.Run("signed by another member", func(t *testing.T) {
		content, err := f.content(ContentTypeProposal, v.Proposal)
		if err != nil {
			t.Fatal(err)
		}
		ac, err := signFramedContent(f.cs, other, WireFormatPrivateMessage, content, f.gcBytes, testRand(1))
		if err != nil {
			t.Fatal(err)
		}
		pm, err := encryptPrivateMessage(f.cs, f.tree(), f.sdSecret, ac, 0, testRand(2))
		if err != nil {
			t.Fatal(err)
		}
		got, err := decryptPrivateMessage(f.cs, f.tree(), f.sdSecret, pm, f.isMember)
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyFramedContent(f.cs, f.pub, got, f.gcBytes); !errors.Is(err, ErrSignature) {
			t.Fatalf("err = %v, want ErrSignature", err)
		}
	})
}

// sealRaw encrypts an arbitrary PrivateMessageContent plaintext, as a sender that
// does not follow §6.3.1 could.
func (f *protectFixture) sealRaw(t testing.TB, st *secretTree, ct ContentType, pt []byte) *PrivateMessage {
	t.Helper()
	content := &FramedContent{
		GroupID: f.gc.GroupID, Epoch: f.gc.Epoch,
		Sender:      Sender{Type: SenderTypeMember, LeafIndex: vectorSender},
		ContentType: ct,
	}
	pm, err := sealPrivateMessage(f.cs, st, f.sdSecret, content, bytes.Clone(pt), testRand(3))
	if err != nil {
		t.Fatal(err)
	}
	return pm
}

func TestProtectPadding(t *testing.T) {
	f, _ := firstProtectFixture(t)
	marker := []byte("plaintext marker 0123456789")
	content, err := f.content(ContentTypeApplication, marker)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := signFramedContent(f.cs, f.key, WireFormatPrivateMessage, content, f.gcBytes, testRand(4))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("sizes", func(t *testing.T) {
		// application_data<V> has a one-byte length prefix, the 64-byte signature a
		// two-byte one.
		body := 1 + len(marker) + 2 + len(ac.Auth.Signature)
		for _, block := range []int{0, 1, 7, 32, 100, 4096} {
			b := block
			if b == 0 {
				b = DefaultPaddingBlock
			}
			want := (body+b-1)/b*b + aeadOverhead
			st := f.tree()
			pm, err := encryptPrivateMessage(f.cs, st, f.sdSecret, ac, block, testRand(5))
			if err != nil {
				t.Fatal(err)
			}
			if len(pm.Ciphertext) != want {
				t.Errorf("block %d: ciphertext of %d bytes, want %d", block, len(pm.Ciphertext), want)
			}
			got, err := decryptPrivateMessage(f.cs, f.tree(), f.sdSecret, pm, f.isMember)
			if err != nil {
				t.Fatalf("block %d: %v", block, err)
			}
			if !bytes.Equal(got.Content.ApplicationData, marker) {
				t.Fatalf("block %d: application data changed", block)
			}
		}
	})

	t.Run("non-zero padding", func(t *testing.T) {
		pt, err := marshalPrivateMessageContent(ac, 64)
		if err != nil {
			t.Fatal(err)
		}
		for _, pos := range []int{len(pt) - 1, len(pt) - 20} {
			bad := bytes.Clone(pt)
			bad[pos] = 0x01
			pm := f.sealRaw(t, f.tree(), ContentTypeApplication, bad)
			_, err := decryptPrivateMessage(f.cs, f.tree(), f.sdSecret, pm, f.isMember)
			if !errors.Is(err, ErrPadding) {
				t.Fatalf("padding byte %d set: err = %v, want ErrPadding", pos, err)
			}
			if strings.Contains(err.Error(), string(marker)) {
				t.Fatal("error reveals the plaintext")
			}
		}
		// The same plaintext with zero padding is accepted: the test above fails for
		// the padding, not for something else.
		pm := f.sealRaw(t, f.tree(), ContentTypeApplication, pt)
		if _, err := decryptPrivateMessage(f.cs, f.tree(), f.sdSecret, pm, f.isMember); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("malformed content", func(t *testing.T) {
		for name, pt := range map[string][]byte{
			"empty":             nil,
			"truncated vector":  {0x40},
			"missing signature": {0x00},
			"application as commit": func() []byte {
				p, _ := marshalPrivateMessageContent(ac, 1)
				return p
			}(),
		} {
			ct := ContentTypeApplication
			if strings.HasSuffix(name, "commit") {
				ct = ContentTypeCommit
			}
			pm := f.sealRaw(t, f.tree(), ct, pt)
			_, err := decryptPrivateMessage(f.cs, f.tree(), f.sdSecret, pm, f.isMember)
			if !errors.Is(err, ErrDecode) {
				t.Errorf("%s: err = %v, want ErrDecode", name, err)
			}
		}
	})
}

func TestProtectReplay(t *testing.T) {
	f, v := firstProtectFixture(t)

	t.Run("vector", func(t *testing.T) {
		st := f.tree()
		m := parseMessage(t, v.ApplicationPriv, WireFormatPrivateMessage)
		if _, err := decryptPrivateMessage(f.cs, st, f.sdSecret, m.PrivateMessage, f.isMember); err != nil {
			t.Fatal(err)
		}
		if _, err := decryptPrivateMessage(f.cs, st, f.sdSecret, m.PrivateMessage, f.isMember); !errors.Is(err, ErrGenerationUsed) {
			t.Fatalf("replay: err = %v, want ErrGenerationUsed", err)
		}
	})

	t.Run("out of order then replayed", func(t *testing.T) {
		sender, receiver := f.tree(), f.tree()
		var msgs []*PrivateMessage
		for i := range 3 {
			content, err := f.content(ContentTypeApplication, []byte{byte(i)})
			if err != nil {
				t.Fatal(err)
			}
			ac, err := signFramedContent(f.cs, f.key, WireFormatPrivateMessage, content, f.gcBytes, testRand(byte(i)))
			if err != nil {
				t.Fatal(err)
			}
			pm, err := encryptPrivateMessage(f.cs, sender, f.sdSecret, ac, 0, testRand(byte(i)))
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, pm)
		}
		for _, i := range []int{2, 0, 1} {
			ac, err := decryptPrivateMessage(f.cs, receiver, f.sdSecret, msgs[i], f.isMember)
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if !bytes.Equal(ac.Content.ApplicationData, []byte{byte(i)}) {
				t.Fatalf("message %d: wrong content", i)
			}
		}
		for i := range msgs {
			if _, err := decryptPrivateMessage(f.cs, receiver, f.sdSecret, msgs[i], f.isMember); !errors.Is(err, ErrGenerationUsed) {
				t.Fatalf("replay of message %d: err = %v, want ErrGenerationUsed", i, err)
			}
		}
	})

	t.Run("handshake and application ratchets are separate", func(t *testing.T) {
		st := f.tree()
		for _, data := range [][]byte{v.ProposalPriv, v.ApplicationPriv} {
			m := parseMessage(t, data, WireFormatPrivateMessage)
			if _, err := decryptPrivateMessage(f.cs, st, f.sdSecret, m.PrivateMessage, f.isMember); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestProtectSenderChecks(t *testing.T) {
	f, v := firstProtectFixture(t)
	m := parseMessage(t, v.ApplicationPriv, WireFormatPrivateMessage)
	blank := func(l LeafIndex) bool { return l != vectorSender }
	if _, err := decryptPrivateMessage(f.cs, f.tree(), f.sdSecret, m.PrivateMessage, blank); !errors.Is(err, ErrUnknownSender) {
		t.Fatalf("blank sender leaf: err = %v, want ErrUnknownSender", err)
	}
	if _, err := decryptPrivateMessage(f.cs, f.tree(), f.sdSecret, m.PrivateMessage, nil); !errors.Is(err, ErrUnknownSender) {
		t.Fatalf("no membership callback: err = %v, want ErrUnknownSender", err)
	}

	// The sender data and the content are bound to the header fields.
	for name, mutate := range map[string]func(pm *PrivateMessage){
		"group id":           func(pm *PrivateMessage) { pm.GroupID = append(bytes.Clone(pm.GroupID), 0) },
		"epoch":              func(pm *PrivateMessage) { pm.Epoch++ },
		"content type":       func(pm *PrivateMessage) { pm.ContentType = ContentTypeProposal },
		"authenticated data": func(pm *PrivateMessage) { pm.AuthenticatedData = []byte("x") },
		"ciphertext tail":    func(pm *PrivateMessage) { pm.Ciphertext[len(pm.Ciphertext)-1] ^= 1 },
		"ciphertext sample":  func(pm *PrivateMessage) { pm.Ciphertext[0] ^= 1 },
		"sender data":        func(pm *PrivateMessage) { pm.EncryptedSenderData[0] ^= 1 },
		"sender data of another message": func(pm *PrivateMessage) {
			copy(pm.EncryptedSenderData, parseMessage(t, v.ProposalPriv, WireFormatPrivateMessage).PrivateMessage.EncryptedSenderData)
		},
	} {
		m := parseMessage(t, v.ApplicationPriv, WireFormatPrivateMessage)
		mutate(m.PrivateMessage)
		if _, err := decryptPrivateMessage(f.cs, f.tree(), f.sdSecret, m.PrivateMessage, f.isMember); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s altered: err = %v, want ErrDecrypt", name, err)
		}
	}

	// Only members send PrivateMessages, and content is framed for one wire format.
	content, err := f.content(ContentTypeProposal, v.Proposal)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := signFramedContent(f.cs, f.key, WireFormatPublicMessage, content, f.gcBytes, testRand(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := encryptPrivateMessage(f.cs, f.tree(), f.sdSecret, pub, 0, testRand(1)); err == nil {
		t.Fatal("content signed for a PublicMessage was encrypted")
	}
	priv, err := signFramedContent(f.cs, f.key, WireFormatPrivateMessage, content, f.gcBytes, testRand(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newPublicMessage(f.cs, priv, f.membership, f.gcBytes); err == nil {
		t.Fatal("content signed for a PrivateMessage was framed as a PublicMessage")
	}
	ext := *content
	ext.Sender = Sender{Type: SenderTypeExternal, SenderIndex: 0}
	if _, err := signFramedContent(f.cs, f.key, WireFormatPrivateMessage, &ext, nil, testRand(1)); err == nil {
		t.Fatal("an external sender signed content for a PrivateMessage")
	}
	if _, err := signFramedContent(f.cs, f.key, WireFormatPublicMessage, content, nil, testRand(1)); err == nil {
		t.Fatal("a member signed without the group context")
	}
	commit, err := f.content(ContentTypeCommit, v.Commit)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := signFramedContent(f.cs, f.key, WireFormatPrivateMessage, commit, f.gcBytes, testRand(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := encryptPrivateMessage(f.cs, f.tree(), f.sdSecret, ac, 0, testRand(1)); err == nil {
		t.Fatal("a commit without confirmation tag was encrypted")
	}
}

func TestProtectNonMemberSenders(t *testing.T) {
	f, v := firstProtectFixture(t)
	prop, err := f.content(ContentTypeProposal, v.Proposal)
	if err != nil {
		t.Fatal(err)
	}
	// An external sender signs without the group context and its PublicMessage has
	// no membership tag.
	ext := *prop
	ext.Sender = Sender{Type: SenderTypeExternal, SenderIndex: 3}
	ac, err := signFramedContent(f.cs, f.key, WireFormatPublicMessage, &ext, nil, testRand(1))
	if err != nil {
		t.Fatal(err)
	}
	pm, err := newPublicMessage(f.cs, ac, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pm.MembershipTag != nil {
		t.Fatal("external sender's PublicMessage has a membership tag")
	}
	data := (&MLSMessage{Version: ProtocolVersionMLS10, WireFormat: WireFormatPublicMessage, PublicMessage: pm}).Bytes()
	got, err := publicMessageContent(f.cs, parseMessage(t, data, WireFormatPublicMessage).PublicMessage, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The group context passed by a careless caller is ignored for this sender type.
	if err := verifyFramedContent(f.cs, f.pub, got, f.gcBytes); err != nil {
		t.Fatal(err)
	}

	// A new member committing signs the group context it joins into.
	commit, err := f.content(ContentTypeCommit, v.Commit)
	if err != nil {
		t.Fatal(err)
	}
	commit.Sender = Sender{Type: SenderTypeNewMemberCommit}
	if _, err := signFramedContent(f.cs, f.key, WireFormatPublicMessage, commit, nil, testRand(1)); err == nil {
		t.Fatal("new_member_commit signed without the group context")
	}
	ac, err = signFramedContent(f.cs, f.key, WireFormatPublicMessage, commit, f.gcBytes, testRand(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyFramedContent(f.cs, f.pub, ac, f.gcBytes); err != nil {
		t.Fatal(err)
	}
	otherGC := f.gc.clone()
	otherGC.Epoch++
	if err := verifyFramedContent(f.cs, f.pub, ac, otherGC.Bytes()); !errors.Is(err, ErrSignature) {
		t.Fatalf("new_member_commit under another group context: err = %v, want ErrSignature", err)
	}

	// Sender types restrict content types.
	for _, tc := range []struct {
		sender Sender
		ct     ContentType
	}{
		{Sender{Type: SenderTypeExternal}, ContentTypeCommit},
		{Sender{Type: SenderTypeNewMemberProposal}, ContentTypeCommit},
		{Sender{Type: SenderTypeNewMemberCommit}, ContentTypeProposal},
	} {
		c, err := f.content(tc.ct, map[ContentType][]byte{ContentTypeCommit: v.Commit, ContentTypeProposal: v.Proposal}[tc.ct])
		if err != nil {
			t.Fatal(err)
		}
		c.Sender = tc.sender
		pm := &PublicMessage{Content: *c, Auth: FramedContentAuthData{Signature: []byte{1}, ConfirmationTag: []byte{2}}}
		if _, err := publicMessageContent(f.cs, pm, nil, nil); err == nil {
			t.Errorf("sender type %d sent content type %d", tc.sender.Type, tc.ct)
		}
	}
}

func TestProtectTruncated(t *testing.T) {
	f, v := firstProtectFixture(t)
	for name, data := range map[string][]byte{
		"proposal_pub": v.ProposalPub, "proposal_priv": v.ProposalPriv,
		"commit_pub": v.CommitPub, "commit_priv": v.CommitPriv,
		"application_priv": v.ApplicationPriv,
	} {
		for n := range len(data) {
			if _, err := UnmarshalMLSMessage(data[:n]); err == nil {
				t.Fatalf("%s truncated to %d bytes parsed", name, n)
			}
		}
		if _, err := UnmarshalMLSMessage(append(bytes.Clone(data), 0)); err == nil {
			t.Fatalf("%s with a trailing byte parsed", name)
		}
	}

	// A PrivateMessage whose ciphertext or sender data is cut short, though well
	// framed, does not decrypt.
	m := parseMessage(t, v.ApplicationPriv, WireFormatPrivateMessage).PrivateMessage
	for _, n := range []int{0, 1, 15, 16, f.cs.Nh(), len(m.Ciphertext) - 1} {
		pm := *m
		pm.Ciphertext = m.Ciphertext[:n]
		if _, err := decryptPrivateMessage(f.cs, f.tree(), f.sdSecret, &pm, f.isMember); err == nil {
			t.Fatalf("ciphertext truncated to %d bytes decrypted", n)
		}
	}
	for n := range len(m.EncryptedSenderData) {
		pm := *m
		pm.EncryptedSenderData = m.EncryptedSenderData[:n]
		if _, err := decryptPrivateMessage(f.cs, f.tree(), f.sdSecret, &pm, f.isMember); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("sender data truncated to %d bytes: err = %v, want ErrDecrypt", n, err)
		}
	}
}

func TestProtectCheckGroupEpoch(t *testing.T) {
	f, _ := firstProtectFixture(t)
	if err := checkGroupEpoch(&f.gc, f.gc.GroupID, f.gc.Epoch); err != nil {
		t.Fatal(err)
	}
	if err := checkGroupEpoch(&f.gc, append(bytes.Clone(f.gc.GroupID), 1), f.gc.Epoch); !errors.Is(err, ErrWrongGroup) {
		t.Fatalf("err = %v, want ErrWrongGroup", err)
	}
	if err := checkGroupEpoch(&f.gc, f.gc.GroupID, f.gc.Epoch-1); !errors.Is(err, ErrWrongEpoch) {
		t.Fatalf("err = %v, want ErrWrongEpoch", err)
	}
}

func TestProtectProposalRef(t *testing.T) {
	f, v := firstProtectFixture(t)
	// The AuthenticatedContent of a PublicMessage is its wire format followed by
	// the message's content and auth: the MLSMessage bytes after the version, less
	// the membership tag (one length byte and Nh bytes) at the end.
	ac := f.unprotectPublic(t, v.ProposalPub)
	raw := v.ProposalPub[2 : len(v.ProposalPub)-1-f.cs.Nh()]
	want := f.cs.RefHash("MLS 1.0 Proposal Reference", raw)
	if got := makeProposalRef(f.cs, ac); !bytes.Equal(got, want) {
		t.Fatalf("ProposalRef = %x, want %x", got, want)
	}
	// The same proposal received encrypted has a different reference: the wire
	// format and signature are part of it.
	priv := f.unprotectPrivate(t, f.tree(), v.ProposalPriv)
	if bytes.Equal(makeProposalRef(f.cs, priv), want) {
		t.Fatal("public and private proposals share a reference")
	}
}

// BenchmarkProtectPrivateMessage measures a 1 KB application message sent and
// received as a PrivateMessage: "seal+open" is encryption and decryption of signed
// content (the secret tree, sender data and content AEADs); "full" adds the
// signature and its verification.
func BenchmarkProtectPrivateMessage(b *testing.B) {
	for _, cs := range []CipherSuite{MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519} {
		rnd := testRand(42)
		key, err := GenerateSignatureKey(cs, rnd)
		if err != nil {
			b.Fatal(err)
		}
		secret := make([]byte, cs.Nh())
		gc := GroupContext{Version: ProtocolVersionMLS10, CipherSuite: cs, GroupID: GroupID("benchmark group"), Epoch: 7,
			TreeHash: make([]byte, cs.Nh()), ConfirmedTranscriptHash: make([]byte, cs.Nh())}
		gcBytes := gc.Bytes()
		content := &FramedContent{
			GroupID: gc.GroupID, Epoch: gc.Epoch,
			Sender:      Sender{Type: SenderTypeMember, LeafIndex: 3},
			ContentType: ContentTypeApplication, ApplicationData: make([]byte, 1024),
		}
		isMember := func(LeafIndex) bool { return true }
		ac, err := signFramedContent(cs, key, WireFormatPrivateMessage, content, gcBytes, rnd)
		if err != nil {
			b.Fatal(err)
		}

		b.Run(fmt.Sprintf("suite=0x%04x/seal+open", uint16(cs)), func(b *testing.B) {
			sender, receiver := newSecretTree(cs, secret, 8), newSecretTree(cs, secret, 8)
			b.ReportAllocs()
			b.SetBytes(int64(len(content.ApplicationData)))
			for b.Loop() {
				pm, err := encryptPrivateMessage(cs, sender, secret, ac, DefaultPaddingBlock, rnd)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := decryptPrivateMessage(cs, receiver, secret, pm, isMember); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("suite=0x%04x/full", uint16(cs)), func(b *testing.B) {
			sender, receiver := newSecretTree(cs, secret, 8), newSecretTree(cs, secret, 8)
			pub := key.Public()
			b.ReportAllocs()
			b.SetBytes(int64(len(content.ApplicationData)))
			for b.Loop() {
				ac, err := signFramedContent(cs, key, WireFormatPrivateMessage, content, gcBytes, rnd)
				if err != nil {
					b.Fatal(err)
				}
				pm, err := encryptPrivateMessage(cs, sender, secret, ac, DefaultPaddingBlock, rnd)
				if err != nil {
					b.Fatal(err)
				}
				got, err := decryptPrivateMessage(cs, receiver, secret, pm, isMember)
				if err != nil {
					b.Fatal(err)
				}
				if err := verifyFramedContent(cs, pub, got, gcBytes); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
