package sframe

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"mahfooz/mls"
)

// callMember is one member of an MLS group used to key a call.
type callMember struct {
	name string
	sig  *mls.SignaturePrivateKey
	kp   *mls.KeyPackage
	priv *mls.KeyPackagePrivate
	g    *mls.Group
}

func newCallMember(t *testing.T, cs mls.CipherSuite, name string) *callMember {
	t.Helper()
	sig, err := mls.GenerateSignatureKey(cs, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kp, priv, err := mls.NewKeyPackage(cs, mls.NewBasicCredential([]byte(name)), sig, mls.KeyPackageOptions{}, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &callMember{name: name, sig: sig, kp: kp, priv: priv}
}

func process(t *testing.T, m *callMember, msg *mls.MLSMessage) {
	t.Helper()
	in, err := mls.UnmarshalMLSMessage(msg.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.g.Process(in); err != nil {
		t.Fatalf("%s processing: %v", m.name, err)
	}
}

// keyed returns a Context holding the keys of every listed sender for the
// group's current epoch, as a call participant sets them up.
func keyed(t *testing.T, cs CipherSuite, l MLSKeyIDLayout, g *mls.Group, senders ...mls.LeafIndex) *Context {
	t.Helper()
	base, err := MLSBaseKey(g, cs)
	if err != nil {
		t.Fatal(err)
	}
	c := NewContext(cs)
	for _, s := range senders {
		kid, err := l.KeyID(0, uint32(s), g.Epoch())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddKey(kid, base); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestKeysFromMLS: members of an MLS group derive the same per-sender frame keys
// (RFC 9605 §5.2) and read each other's frames, attributed to the sender's leaf;
// a member removed by a commit cannot read frames of the next epoch. (Members
// share the base key, so one member could make frames under another's KID: SFrame
// keyed from MLS authenticates the group, not the sender, RFC 9605 §9.5.)
func TestKeysFromMLS(t *testing.T) {
	mcs := mls.DefaultCipherSuite
	cfg := mls.Config{Validator: mls.AcceptAllCredentials}
	alice, bob, carol := newCallMember(t, mcs, "alice"), newCallMember(t, mcs, "bob"), newCallMember(t, mcs, "carol")
	var err error
	alice.g, err = mls.NewGroup(mcs, mls.GroupID("call"), mls.NewBasicCredential([]byte("alice")), alice.sig, mls.CreateOptions{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := alice.g.Commit(mls.CommitOptions{Proposals: []*mls.Proposal{
		{Type: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *bob.kp}},
		{Type: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *carol.kp}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.g.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*callMember{bob, carol} {
		w, _ := mls.UnmarshalMLSMessage(res.Welcome.Bytes())
		if m.g, err = mls.JoinGroup(w.Welcome, m.kp, m.priv, mls.JoinOptions{}, cfg); err != nil {
			t.Fatal(err)
		}
	}

	layout := MLSKeyIDLayout{IndexBits: 8, EpochBits: 4}
	for _, cs := range []CipherSuite{AES_128_GCM_SHA256_128, AES_128_CTR_HMAC_SHA256_80} {
		t.Run(cs.String(), func(t *testing.T) {
			all := []mls.LeafIndex{alice.g.OwnLeaf(), bob.g.OwnLeaf(), carol.g.OwnLeaf()}
			send := keyed(t, cs, layout, alice.g, alice.g.OwnLeaf())
			kidA, _ := layout.KeyID(0, uint32(alice.g.OwnLeaf()), alice.g.Epoch())
			frame, err := send.Protect(kidA, []byte("rtp header"), []byte("twenty ms of opus"))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range []*callMember{bob, carol} {
				pt, kid, err := keyed(t, cs, layout, m.g, all...).Unprotect([]byte("rtp header"), frame)
				if err != nil || !bytes.Equal(pt, []byte("twenty ms of opus")) || kid != kidA {
					t.Fatalf("%s: %q, %v, %v", m.name, pt, kid, err)
				}
				if _, sender, _ := layout.Split(kid); sender != uint32(alice.g.OwnLeaf()) {
					t.Errorf("%s: frame attributed to leaf %d", m.name, sender)
				}
			}
		})
	}

	// Carol is removed: the epoch changes, and with it the keys.
	res, err = alice.g.Commit(mls.CommitOptions{Proposals: []*mls.Proposal{{Type: mls.ProposalTypeRemove, Remove: &mls.Remove{Removed: carol.g.OwnLeaf()}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.g.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	process(t, bob, res.Commit)
	process(t, carol, res.Commit) // carol learns she is out, and has no new epoch
	cs := AES_128_GCM_SHA256_128
	kidA, _ := layout.KeyID(0, uint32(alice.g.OwnLeaf()), alice.g.Epoch())
	frame, err := keyed(t, cs, layout, alice.g, alice.g.OwnLeaf()).Protect(kidA, nil, []byte("after carol left"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, _, err := keyed(t, cs, layout, bob.g, alice.g.OwnLeaf()).Unprotect(nil, frame); err != nil || string(pt) != "after carol left" {
		t.Fatalf("bob after the removal: %q, %v", pt, err)
	}
	// Carol's best attempt: the keys of the last epoch she knew, under the KID
	// the frame carries.
	old, err := MLSBaseKey(carol.g, cs)
	if err == nil {
		c := NewContext(cs)
		if err := c.AddKey(kidA, old); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Unprotect(nil, frame); !errors.Is(err, ErrAuth) {
			t.Fatalf("removed member opened a frame of the next epoch: %v", err)
		}
	}
}

func TestMLSKeyIDLayout(t *testing.T) {
	l := MLSKeyIDLayout{IndexBits: 8, EpochBits: 4}
	kid, err := l.KeyID(3, 200, 0x1235)
	if err != nil {
		t.Fatal(err)
	}
	if want := KeyID(3<<12 | 200<<4 | 5); kid != want {
		t.Fatalf("KeyID = %#x, want %#x", kid, want)
	}
	if c, s, e := l.Split(kid); c != 3 || s != 200 || e != 5 {
		t.Fatalf("Split = %d, %d, %d", c, s, e)
	}
	// Epochs 16 apart share a KID: E bits tell apart only the epochs in flight.
	k2, _ := l.KeyID(3, 200, 0x1245)
	if k2 != kid {
		t.Errorf("epoch bits not taken modulo 2^E")
	}
	for _, bad := range []struct {
		l        MLSKeyIDLayout
		ctx      uint64
		sender   uint32
		wantFail bool
	}{
		{l, 0, 256, true},                           // sender beyond 8 bits
		{l, 1 << 52, 0, true},                       // context beyond 52 bits
		{MLSKeyIDLayout{IndexBits: 40}, 0, 0, true}, // more index bits than a leaf index has
		{MLSKeyIDLayout{IndexBits: 32, EpochBits: 32}, 1, 0, true},
		{MLSKeyIDLayout{IndexBits: 32, EpochBits: 32}, 0, 1 << 31, false},
	} {
		_, err := bad.l.KeyID(bad.ctx, bad.sender, 7)
		if (err != nil) != bad.wantFail || (err != nil && !errors.Is(err, ErrKeyIDRange)) {
			t.Errorf("KeyID(%+v, %d, %d): %v", bad.l, bad.ctx, bad.sender, err)
		}
	}
}
