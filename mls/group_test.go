package mls

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"
)

// testMember is one client in a test: its credential, keys and, once joined, group.
type testMember struct {
	name string
	cs   CipherSuite
	cred Credential
	sig  *SignaturePrivateKey
	kp   *KeyPackage
	priv *KeyPackagePrivate
	g    *Group
}

func testConfig() Config { return Config{Validator: AcceptAllCredentials} }

func newTestMember(t testing.TB, cs CipherSuite, name string) *testMember {
	t.Helper()
	sig, err := GenerateSignatureKey(cs, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m := &testMember{name: name, cs: cs, cred: NewBasicCredential([]byte(name)), sig: sig}
	m.newKeyPackage(t)
	return m
}

func (m *testMember) newKeyPackage(t testing.TB) {
	t.Helper()
	kp, priv, err := NewKeyPackage(m.cs, m.cred, m.sig, KeyPackageOptions{}, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m.kp, m.priv = kp, priv
}

// wire round-trips a message through its encoding, as the network would.
func wire(t testing.TB, m *MLSMessage) *MLSMessage {
	t.Helper()
	out, err := UnmarshalMLSMessage(m.Bytes())
	if err != nil {
		t.Fatalf("re-parsing own message: %v", err)
	}
	return out
}

// commitAndDeliver has committer commit, merges it, delivers it to the others and
// welcomes the joiners; then checks every epoch authenticator matches.
func commitAndDeliver(t testing.TB, committer *testMember, others []*testMember, joiners []*testMember, opts CommitOptions) {
	t.Helper()
	res, err := committer.g.Commit(opts)
	if err != nil {
		t.Fatalf("%s commit: %v", committer.name, err)
	}
	if _, err := committer.g.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	for _, o := range others {
		if _, err := o.g.Process(wire(t, res.Commit)); err != nil {
			t.Fatalf("%s processing %s's commit: %v", o.name, committer.name, err)
		}
	}
	for _, j := range joiners {
		if res.Welcome == nil {
			t.Fatal("no welcome")
		}
		g, err := JoinGroup(wire(t, res.Welcome).Welcome, j.kp, j.priv, JoinOptions{}, testConfig())
		if err != nil {
			t.Fatalf("%s joining: %v", j.name, err)
		}
		j.g = g
	}
	all := append(append([]*testMember{committer}, others...), joiners...)
	for _, m := range all {
		if m.g.Active() && !bytes.Equal(m.g.EpochAuthenticator(), committer.g.EpochAuthenticator()) {
			t.Fatalf("%s has a different epoch authenticator than %s", m.name, committer.name)
		}
	}
}

func addProposal(m *testMember) *Proposal {
	return &Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *m.kp}}
}

// newTestGroup creates a group of n members on cs, alice at leaf 0.
func newTestGroup(t testing.TB, cs CipherSuite, n int) []*testMember {
	t.Helper()
	members := make([]*testMember, n)
	for i := range members {
		members[i] = newTestMember(t, cs, fmt.Sprintf("member-%d", i))
	}
	g, err := NewGroup(cs, GroupID("test group"), members[0].cred, members[0].sig, CreateOptions{}, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	members[0].g = g
	if n > 1 {
		var adds []*Proposal
		for _, m := range members[1:] {
			adds = append(adds, addProposal(m))
		}
		commitAndDeliver(t, members[0], nil, members[1:], CommitOptions{Proposals: adds})
	}
	return members
}

func TestGroupLifecycle(t *testing.T) {
	for _, cs := range SupportedCipherSuites {
		t.Run(cs.String(), func(t *testing.T) {
			ms := newTestGroup(t, cs, 3)
			a, b, c := ms[0], ms[1], ms[2]
			// Application messages every way.
			for _, from := range ms {
				msg, err := from.g.Protect([]byte("hello from "+from.name), []byte("aad"))
				if err != nil {
					t.Fatal(err)
				}
				for _, to := range ms {
					if to == from {
						continue
					}
					r, err := to.g.Process(wire(t, msg))
					if err != nil {
						t.Fatalf("%s reading %s: %v", to.name, from.name, err)
					}
					if string(r.ApplicationData) != "hello from "+from.name || string(r.AuthenticatedData) != "aad" ||
						r.Sender.LeafIndex != from.g.OwnLeaf() {
						t.Fatalf("%s read the wrong message from %s", to.name, from.name)
					}
				}
			}
			// b refreshes its keys with a path; c sends handshake messages encrypted.
			commitAndDeliver(t, b, []*testMember{a, c}, nil, CommitOptions{ForcePath: true})
			c.g.cfg.EncryptHandshake = true
			// Update by proposal, committed by another member.
			prop, _, err := a.g.ProposeUpdate(nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range []*testMember{b, c} {
				if _, err := o.g.Process(wire(t, prop)); err != nil {
					t.Fatal(err)
				}
			}
			commitAndDeliver(t, c, []*testMember{a, b}, nil, CommitOptions{})
			// c removes b; b learns it is out.
			res, err := c.g.Commit(CommitOptions{Proposals: []*Proposal{{Type: ProposalTypeRemove, Remove: &Remove{Removed: b.g.OwnLeaf()}}}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.g.MergePendingCommit(); err != nil {
				t.Fatal(err)
			}
			if _, err := a.g.Process(wire(t, res.Commit)); err != nil {
				t.Fatal(err)
			}
			r, err := b.g.Process(wire(t, res.Commit))
			if err != nil {
				t.Fatal(err)
			}
			if !r.Commit.SelfRemoved || b.g.Active() {
				t.Fatal("removed member does not know it was removed")
			}
			if len(a.g.Members()) != 2 || !bytes.Equal(a.g.EpochAuthenticator(), c.g.EpochAuthenticator()) {
				t.Fatal("remaining members disagree")
			}
			// b cannot read what is sent after its removal.
			msg, err := a.g.Protect([]byte("after removal"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.g.Process(wire(t, msg)); err == nil {
				t.Fatal("a removed member read a message sent after its removal")
			}
			// Exporters agree.
			x1, _ := a.g.Export("call key", []byte("ctx"), 32)
			x2, _ := c.g.Export("call key", []byte("ctx"), 32)
			if !bytes.Equal(x1, x2) {
				t.Fatal("exporters differ")
			}
		})
	}
}

func TestCommitRace(t *testing.T) {
	ms := newTestGroup(t, DefaultCipherSuite, 3)
	a, b, c := ms[0], ms[1], ms[2]
	ra, err := a.g.Commit(CommitOptions{ForcePath: true})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.g.Commit(CommitOptions{ForcePath: true})
	if err != nil {
		t.Fatal(err)
	}
	// The delivery service sequences a's commit first: b's loses.
	if _, err := a.g.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*testMember{b, c} {
		if _, err := m.g.Process(wire(t, ra.Commit)); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	if b.g.HasPendingCommit() {
		t.Fatal("losing commit still pending")
	}
	if _, err := c.g.Process(wire(t, rb.Commit)); !errors.Is(err, ErrWrongEpoch) {
		t.Fatalf("losing commit processed: %v", err)
	}
	// b retries in the new epoch.
	commitAndDeliver(t, b, []*testMember{a, c}, nil, CommitOptions{ForcePath: true})
}

func TestProcessRejects(t *testing.T) {
	ms := newTestGroup(t, MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, 3)
	a, b := ms[0], ms[1]
	app, err := a.g.Protect([]byte("once"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.g.Process(wire(t, app)); err != nil {
		t.Fatal(err)
	}
	t.Run("replayed application message", func(t *testing.T) {
		if _, err := b.g.Process(wire(t, app)); err == nil {
			t.Fatal("replay accepted")
		}
	})
	t.Run("altered ciphertext", func(t *testing.T) {
		msg, _ := a.g.Protect([]byte("x"), nil)
		m := wire(t, msg)
		m.PrivateMessage.Ciphertext[len(m.PrivateMessage.Ciphertext)-1] ^= 1
		if _, err := b.g.Process(m); err == nil {
			t.Fatal("altered ciphertext accepted")
		}
		// The unaltered message still decrypts afterwards: nothing was lost.
		if _, err := b.g.Process(wire(t, msg)); err != nil {
			t.Fatalf("original after altered copy: %v", err)
		}
	})
	prop, _, err := a.g.ProposeRemove(2, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("bad membership tag", func(t *testing.T) {
		m := wire(t, prop)
		m.PublicMessage.MembershipTag[0] ^= 1
		if _, err := b.g.Process(m); err == nil {
			t.Fatal("bad membership tag accepted")
		}
	})
	t.Run("forged signature", func(t *testing.T) {
		m := wire(t, prop)
		m.PublicMessage.Auth.Signature[0] ^= 1
		if _, err := b.g.Process(m); err == nil {
			t.Fatal("forged signature accepted")
		}
	})
	t.Run("wrong epoch", func(t *testing.T) {
		m := wire(t, prop)
		m.PublicMessage.Content.Epoch++
		if _, err := b.g.Process(m); !errors.Is(err, ErrWrongEpoch) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wrong group", func(t *testing.T) {
		m := wire(t, app)
		m.PrivateMessage.GroupID = GroupID("other")
		if _, err := b.g.Process(m); !errors.Is(err, ErrWrongGroup) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("expired key package", func(t *testing.T) {
		late := newTestMember(t, a.cs, "late")
		kp, _, err := NewKeyPackage(a.cs, late.cred, late.sig, KeyPackageOptions{
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}, time.Now(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.g.Commit(CommitOptions{Proposals: []*Proposal{{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *kp}}}}); !errors.Is(err, ErrInvalidProposal) {
			t.Fatalf("expired key package: %v", err)
		}
	})
	t.Run("rejected credential", func(t *testing.T) {
		stranger := newTestMember(t, a.cs, "stranger")
		cfg := testConfig()
		cfg.Validator = CredentialValidatorFunc(func(c Credential, _ SignaturePublicKey) error {
			if string(c.Identity) == "stranger" {
				return errors.New("not enrolled")
			}
			return nil
		})
		saved := a.g.cfg
		a.g.cfg = cfg
		defer func() { a.g.cfg = saved }()
		if _, err := a.g.Commit(CommitOptions{Proposals: []*Proposal{addProposal(stranger)}}); !errors.Is(err, ErrCredentialRejected) {
			t.Fatalf("unapproved credential: %v", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		data := app.Bytes()
		for i := range len(data) {
			if _, err := UnmarshalMLSMessage(data[:i]); err == nil {
				t.Fatalf("prefix of %d bytes parsed", i)
			}
		}
	})
}

func TestStateRoundTrip(t *testing.T) {
	ms := newTestGroup(t, DefaultCipherSuite, 3)
	a, b := ms[0], ms[1]
	data, err := b.g.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := LoadGroup(data, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	b.g = restored
	msg, _ := a.g.Protect([]byte("after restart"), nil)
	r, err := b.g.Process(wire(t, msg))
	if err != nil || string(r.ApplicationData) != "after restart" {
		t.Fatalf("restored member cannot read: %v", err)
	}
	commitAndDeliver(t, b, []*testMember{a, ms[2]}, nil, CommitOptions{ForcePath: true})
	commitAndDeliver(t, a, []*testMember{b, ms[2]}, nil, CommitOptions{ForcePath: true})
	// Every strict prefix and a flipped version are refused.
	for _, bad := range [][]byte{data[:len(data)-1], append(append([]byte{}, data...), 0)} {
		if _, err := LoadGroup(bad, testConfig()); err == nil {
			t.Fatal("damaged state loaded")
		}
	}
}

func TestUnsupportedSuite(t *testing.T) {
	_, err := GenerateSignatureKey(MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448, rand.Reader)
	if !errors.Is(err, ErrUnsupportedCipherSuite) {
		t.Fatalf("got %v", err)
	}
}

func TestPastEpochMessages(t *testing.T) {
	ms := newTestGroup(t, DefaultCipherSuite, 3)
	a, b, c := ms[0], ms[1], ms[2]
	// b writes, then a's commit lands before b's message reaches c.
	late, err := b.g.Protect([]byte("sent before the commit"), nil)
	if err != nil {
		t.Fatal(err)
	}
	commitAndDeliver(t, a, []*testMember{b, c}, nil, CommitOptions{ForcePath: true})
	r, err := c.g.Process(wire(t, late))
	if err != nil || string(r.ApplicationData) != "sent before the commit" {
		t.Fatalf("late message of the previous epoch: %v", err)
	}
	if _, err := c.g.Process(wire(t, late)); err == nil {
		t.Fatal("late message replayed")
	}
	// A handshake message of a past epoch is refused.
	stale, _, err := b.g.ProposeRemove(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.g.proposals = nil
	older, err := b.g.Protect([]byte("two epochs back"), nil)
	if err != nil {
		t.Fatal(err)
	}
	commitAndDeliver(t, a, []*testMember{b, c}, nil, CommitOptions{ForcePath: true})
	if _, err := c.g.Process(wire(t, stale)); !errors.Is(err, ErrWrongEpoch) {
		t.Fatalf("proposal of a past epoch: %v", err)
	}
	// The kept epochs survive storage.
	data, err := c.g.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	if c.g, err = LoadGroup(data, testConfig()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.g.Process(wire(t, older)); err != nil {
		t.Fatalf("message of one epoch back after reload: %v", err)
	}
	// Beyond the window (default 2 epochs), keys are gone.
	veryOld, err := b.g.Protect([]byte("soon too old"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		commitAndDeliver(t, a, []*testMember{b, c}, nil, CommitOptions{ForcePath: true})
	}
	if _, err := c.g.Process(wire(t, veryOld)); !errors.Is(err, ErrWrongEpoch) {
		t.Fatalf("message three epochs back: %v", err)
	}
}

// TestForgedFrameLosesNothing: a member who holds the group's secret tree forges a
// frame in another member's name; it is refused, and the genuine message with the
// same generation is still read.
func TestForgedFrameLosesNothing(t *testing.T) {
	ms := newTestGroup(t, MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, 3)
	a, b, c := ms[0], ms[1], ms[2]
	content := &FramedContent{
		GroupID:         c.g.ctx.GroupID,
		Epoch:           c.g.ctx.Epoch,
		Sender:          Sender{Type: SenderTypeMember, LeafIndex: a.g.OwnLeaf()},
		ContentType:     ContentTypeApplication,
		ApplicationData: []byte("forged"),
	}
	ac, err := signFramedContent(c.cs, c.sig, WireFormatPrivateMessage, content, c.g.ctx.Bytes(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := c.g.encrypt(ac)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.g.Process(wire(t, forged)); !errors.Is(err, ErrSignature) {
		t.Fatalf("forged frame: %v", err)
	}
	genuine, err := a.g.Protect([]byte("genuine"), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.g.Process(wire(t, genuine))
	if err != nil || string(r.ApplicationData) != "genuine" {
		t.Fatalf("genuine message after a forged one: %v", err)
	}
}
