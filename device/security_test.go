package device

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mahfooz/authority"
	"mahfooz/device/client"
	"mahfooz/device/vault"
	"mahfooz/mls"
	"mahfooz/wire"
)

// TestCommitRace has two members change the same group in the same epoch: the
// exchange takes one commit, the loser takes in the winner's and makes its change
// again, and every member ends with the same group.
func TestCommitRace(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol, dave := e.enroll("alice"), e.enroll("bob"), e.enroll("carol"), e.enroll("dave")
	conv, err := alice.CreateGroup(ctxT(t), "race", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	bob.sync()
	carol.sync()
	dave.sync()
	gid := alice.groupIDs(ConversationRef{ID: conv.ID})[0]
	epoch := alice.group(gid).Epoch()

	// Both commits are built before either is sent.
	gate := newGate(2)
	alice.setHooks(gate.commit(), nil)
	bob.setHooks(gate.commit(), nil)
	errs := make(chan error, 2)
	go func() { errs <- alice.AddMembers(ctxT(t), "race", []string{"dave"}) }()
	go func() { errs <- bob.RemoveMembers(ctxT(t), "race", []string{"carol"}) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	alice.setHooks(nil, nil)
	bob.setHooks(nil, nil)
	for _, d := range []*testDevice{alice, bob, carol, dave} {
		d.sync()
	}
	ga, gb, gd := alice.group(gid), bob.group(gid), dave.group(gid)
	if ga.Epoch() != epoch+2 {
		t.Fatalf("alice is at epoch %d, want %d: one of the changes is missing", ga.Epoch(), epoch+2)
	}
	for _, g := range []*mls.Group{gb, gd} {
		if g.Epoch() != ga.Epoch() || !bytes.Equal(g.EpochAuthenticator(), ga.EpochAuthenticator()) {
			t.Fatal("members do not share the group's epoch")
		}
		if !slices.Equal(rosterDevices(g), rosterDevices(ga)) {
			t.Fatalf("rosters differ: %v, %v", rosterDevices(g), rosterDevices(ga))
		}
	}
	want := []string{alice.Self().DeviceID, bob.Self().DeviceID, dave.Self().DeviceID}
	slices.Sort(want)
	if got := rosterDevices(ga); !slices.Equal(got, want) {
		t.Fatalf("roster %v, want %v", got, want)
	}
	if carol.group(gid).Active() {
		t.Fatal("carol still believes she is in the group")
	}
	// And the group works.
	dave.send(ConversationRef{Group: "race"}, "dave here")
	alice.sync()
	bob.sync()
	for _, d := range []*testDevice{alice, bob} {
		if got := d.texts(ConversationRef{Group: "race"}); !slices.Contains(got, "dave: dave here") {
			t.Fatalf("%s sees %q", d.name, got)
		}
	}
}

// TestRevocation revokes a device at the exchange: it wipes itself at once and
// can no longer connect, and the others remove it from every group they share,
// showing it.
func TestRevocation(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.enroll("alice"), e.enroll("bob"), e.enroll("carol")
	if _, err := alice.CreateGroup(ctxT(t), "ops", []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	alice.send(ConversationRef{To: "bob"}, "hi bob")
	bob.sync()
	carol.sync()
	bobID := bob.self.ID
	bobCert := bob.tlsCertificate()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runs := map[string]chan error{}
	for _, d := range []*testDevice{alice, bob, carol} {
		ch := make(chan error, 1)
		runs[d.name] = ch
		go func() { ch <- d.Run(ctx) }()
	}
	waitFor(t, "bob's connection", func() bool {
		bob.connMu.Lock()
		defer bob.connMu.Unlock()
		return bob.sess != nil
	})
	if err := e.srv.Revoke(bobID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-runs["bob"]:
		if !errors.Is(err, ErrWiped) {
			t.Fatalf("bob's Run returned %v, want ErrWiped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bob's Run did not end after revocation")
	}
	if vault.Exists(bob.cfg.Home) {
		t.Fatal("the revoked device's vault still exists")
	}
	if _, err := Open(bob.cfg); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("opening the wiped device: %v", err)
	}
	if _, err := bob.Messages(ConversationRef{To: "alice"}); !errors.Is(err, ErrWiped) {
		t.Fatalf("the wiped device still answers: %v", err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	if c, err := client.Dial(dctx, client.Config{Addr: e.addr, Root: alice.root, Certificate: bobCert, Now: e.clock.Now}); err == nil {
		// The handshake may complete before the exchange refuses: nothing may pass.
		_, err := c.Directory(dctx)
		c.Close()
		if err == nil {
			t.Fatal("the revoked device can still use the exchange")
		}
	}

	short := authority.DeviceID(bobID).String()[:8]
	for _, d := range []*testDevice{alice, carol} {
		for _, ref := range []ConversationRef{{Group: "ops"}} {
			waitFor(t, d.name+" removing bob's device", func() bool {
				var gid []byte
				for _, g := range d.groupIDsNoFail(ref) {
					gid = g
				}
				if gid == nil {
					return false
				}
				var g *mls.Group
				if err := d.v.View(func(tx *vault.Tx) (err error) { g, err = d.loadGroup(tx, gid); return err }); err != nil {
					return false
				}
				return !slices.Contains(rosterDevices(g), authority.DeviceID(bobID).String())
			})
			waitFor(t, d.name+" showing the removal", func() bool {
				notes, _ := d.Messages(ref)
				return slices.ContainsFunc(notes, func(m Message) bool {
					return m.Kind == MessageRoster && strings.Contains(m.Text, "bob's device "+short) && strings.Contains(m.Text, "revoked")
				})
			})
		}
	}
	waitFor(t, "alice removing bob from their direct conversation", func() bool {
		ids := alice.groupIDsNoFail(ConversationRef{To: "bob"})
		if len(ids) == 0 {
			return false
		}
		var g *mls.Group
		if err := alice.v.View(func(tx *vault.Tx) (err error) { g, err = alice.loadGroup(tx, ids[0]); return err }); err != nil {
			return false
		}
		return len(rosterOf(g)) == 1
	})
	// alice and carol agree on the group.
	waitFor(t, "alice and carol to agree", func() bool {
		ga, gc := alice.groupNoFail(ConversationRef{Group: "ops"}), carol.groupNoFail(ConversationRef{Group: "ops"})
		return ga != nil && gc != nil && bytes.Equal(ga.EpochAuthenticator(), gc.EpochAuthenticator())
	})
	cancel()
	for _, name := range []string{"alice", "carol"} {
		if err := <-runs[name]; !errors.Is(err, context.Canceled) {
			t.Fatalf("%s's Run: %v", name, err)
		}
	}
}

// deliverDirectly hands a payload to the device as if the exchange delivered it
// under a random message ID.
func (d *testDevice) deliverDirectly(payload, gid []byte) {
	d.env.t.Helper()
	var id wire.MessageID
	if _, err := rand.Read(id[:]); err != nil {
		d.env.t.Fatal(err)
	}
	d.deliverAs(id, payload, gid)
}

// deliverAs hands a payload to the device as if the exchange delivered it.
func (d *testDevice) deliverAs(id wire.MessageID, payload, gid []byte) {
	d.env.t.Helper()
	s, err := d.acquire(ctxT(d.env.t))
	if err != nil {
		d.env.t.Fatal(err)
	}
	defer d.release(s)
	d.mu.Lock()
	defer d.mu.Unlock()
	m := &wire.Deliver{MessageID: id, GroupID: gid, SentAt: time.Now(), Payload: payload}
	if err := d.handleDeliverLocked(ctxT(d.env.t), s, m); err != nil {
		d.env.t.Fatalf("processing an injected delivery: %v", err)
	}
	if err := d.retryHeldLocked(ctxT(d.env.t), s); err != nil {
		d.env.t.Fatalf("processing held deliveries: %v", err)
	}
}

func (d *testDevice) groupIDsNoFail(ref ConversationRef) [][]byte {
	var recs []*groupRec
	if err := d.v.View(func(tx *vault.Tx) (err error) { recs, err = d.resolve(tx, ref); return err }); err != nil {
		return nil
	}
	var out [][]byte
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

func (d *testDevice) groupNoFail(ref ConversationRef) *mls.Group {
	ids := d.groupIDsNoFail(ref)
	if len(ids) == 0 {
		return nil
	}
	var g *mls.Group
	if err := d.v.View(func(tx *vault.Tx) (err error) { g, err = d.loadGroup(tx, ids[0]); return err }); err != nil {
		return nil
	}
	return g
}

// TestForgedPayloadsRefused has a member's device send, through the exchange,
// replayed, altered and out-of-date MLS payloads: the recipient refuses each and
// keeps every genuine message exactly once.
func TestForgedPayloadsRefused(t *testing.T) {
	e := newEnv(t)
	alice, bob, _ := e.enroll("alice"), e.enroll("bob"), e.enroll("carol")
	var (
		mu   sync.Mutex
		sent []*wire.Send
	)
	alice.setHooks(func(s *wire.Send) {
		mu.Lock()
		defer mu.Unlock()
		c := *s
		c.Payload = bytes.Clone(s.Payload)
		sent = append(sent, &c)
	}, nil)
	m1 := alice.send(ConversationRef{To: "bob"}, "genuine one")
	bob.sync()
	alice.setHooks(nil, nil)

	var app, commit *wire.Send
	for _, s := range sent {
		switch {
		case s.MessageID.String() == m1.ID:
			app = s
		case s.IsCommit:
			commit = s
		}
	}
	if app == nil || commit == nil {
		t.Fatal("did not capture the message and the commit")
	}
	bobDev := deviceID(bob)
	inject := func(payload []byte, epoch uint64) {
		t.Helper()
		s, err := alice.acquire(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		defer alice.release(s)
		id, _ := alice.newMessageID()
		res, err := s.c.Send(ctxT(t), &wire.Send{MessageID: id, GroupID: app.GroupID, Epoch: epoch,
			Recipients: []wire.DeviceID{bobDev}, Payload: payload})
		if err != nil {
			t.Fatalf("injecting: %v", err)
		}
		if res.Status != wire.SendAccepted {
			t.Fatalf("injected message not accepted: %+v", res)
		}
	}
	// The same ciphertext again, under a new message ID.
	inject(app.Payload, app.Epoch)
	// The ciphertext with one byte changed.
	altered := bytes.Clone(app.Payload)
	altered[len(altered)-5] ^= 1
	inject(altered, app.Epoch)
	bob.sync()
	// The commit that started the conversation, replayed into a later epoch. The
	// exchange refuses to sequence it again, so it goes straight to bob's processing.
	bob.deliverDirectly(commit.Payload, commit.GroupID)
	want := []string{"alice: genuine one"}
	if got := bob.texts(ConversationRef{To: "alice"}); !equalStrings(got, want) {
		t.Fatalf("bob sees %q, want %q", got, want)
	}
	if n := strings.Count(e.logs.String(), "device: delivery refused"); n < 3 {
		t.Fatalf("%d refusals logged, want 3", n)
	}
	// The conversation goes on.
	alice.send(ConversationRef{To: "bob"}, "genuine two")
	bob.sync()
	want = append(want, "alice: genuine two")
	if got := bob.texts(ConversationRef{To: "alice"}); !equalStrings(got, want) {
		t.Fatalf("bob sees %q, want %q", got, want)
	}
}

// TestRevocationNeedsTheAuthority checks that only a revocation the authority
// signed makes a device wipe itself: a Revoked push with no proof, with bytes that
// are not a directory, with a directory of another authority, or with a genuine
// directory that does not list the device, is ignored.
func TestRevocationNeedsTheAuthority(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.enroll("alice"), e.enroll("bob")

	other := newEnv(t)
	stranger := other.enroll("alice")
	if err := other.srv.Revoke(stranger.self.ID); err != nil {
		t.Fatal(err)
	}
	otherDir, err := other.auth.Directory()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Revoke(bob.self.ID); err != nil {
		t.Fatal(err)
	}
	bobRevoked, err := e.auth.Directory() // genuine, but lists bob, not alice
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		proof []byte
	}{
		{"no proof", nil},
		{"not a directory", []byte("mahfooz directory v1, trust me")},
		{"another authority's directory", otherDir.Raw},
		{"another authority's directory, truncated", otherDir.Raw[:len(otherDir.Raw)-1]},
		{"this authority's directory revoking someone else", bobRevoked.Raw},
	} {
		if err := alice.checkRevocation(tc.proof); !errors.Is(err, errNoRevocation) {
			t.Errorf("%s: checkRevocation = %v, want errNoRevocation", tc.name, err)
		}
	}
	if err := e.srv.Revoke(alice.self.ID); err != nil {
		t.Fatal(err)
	}
	genuine, err := e.auth.Directory()
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.checkRevocation(genuine.Raw); err != nil {
		t.Fatalf("the authority's own revocation refused: %v", err)
	}
	// None of the above wiped anything: the check only decides.
	if !vault.Exists(alice.cfg.Home) {
		t.Fatal("checking a proof wiped the vault")
	}
}
