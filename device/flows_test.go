package device

import (
	"bytes"
	"context"
	"errors"
	"mahfooz/mls"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"mahfooz/wire"
)

// TestRunDeliversAsItHappens has two devices stay connected with Run and talk:
// each message reaches the other's subscribers without any Sync.
func TestRunDeliversAsItHappens(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.enroll("alice"), e.enroll("bob")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	events := map[string]<-chan Event{}
	for _, d := range []*testDevice{alice, bob} {
		ch, stop := d.Subscribe()
		defer stop()
		events[d.name] = ch
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Run(ctx); !errors.Is(err, context.Canceled) {
				t.Errorf("%s: Run: %v", d.name, err)
			}
		}()
	}
	await := func(name, text string) Message {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case ev := <-events[name]:
				if ev.Kind == EventMessage && ev.Message.Kind == MessageText && ev.Message.Text == text {
					return *ev.Message
				}
			case <-timeout:
				t.Fatalf("%s never got %q", name, text)
			}
		}
	}
	alice.send(ConversationRef{To: "bob"}, "are you there?")
	if m := await("bob", "are you there?"); m.From.Name != "alice" || m.Outgoing || m.ConversationID != "direct:alice" {
		t.Fatalf("bob got %+v", m)
	}
	bob.send(ConversationRef{To: "alice"}, "yes")
	if m := await("alice", "yes"); m.From.Name != "bob" || m.From.DeviceID != bob.Self().DeviceID {
		t.Fatalf("alice got %+v", m)
	}
}

// TestOfficialWithTwoDevices checks that a conversation spans every device of
// both officials, and takes in a device enrolled later.
func TestOfficialWithTwoDevices(t *testing.T) {
	e := newEnv(t)
	alice1, alice2, bob := e.enroll("alice"), e.enroll("alice"), e.enroll("bob")
	alice1.send(ConversationRef{To: "bob"}, "from alice's phone")
	alice2.sync()
	bob.sync()
	for _, d := range []*testDevice{alice2, bob} {
		ref := ConversationRef{To: map[string]string{"alice": "bob", "bob": "alice"}[d.name]}
		if got := d.texts(ref); !slices.Equal(got, []string{"alice: from alice's phone"}) {
			t.Fatalf("%s sees %q", d.name, got)
		}
	}
	bob.send(ConversationRef{To: "alice"}, "to both")
	alice1.sync()
	alice2.sync()
	for _, d := range []*testDevice{alice1, alice2} {
		if got := d.texts(ConversationRef{To: "bob"}); !slices.Contains(got, "bob: to both") {
			t.Fatalf("%s sees %q", d.name, got)
		}
	}

	// Bob enrols a second device: it is added to the conversation and shown.
	bob2 := e.enroll("bob")
	alice1.sync() // takes in the new directory, adds the device
	bob2.sync()
	short := bob2.Self().DeviceID[:8]
	for _, d := range []*testDevice{alice1} {
		if notes := d.notes(ConversationRef{To: "bob"}); !containsSubstring(notes, "added bob's device "+short) {
			t.Fatalf("%s's roster messages %q do not show bob's new device", d.name, notes)
		}
	}
	alice2.sync()
	bob.sync()
	if notes := bob.notes(ConversationRef{To: "alice"}); !containsSubstring(notes, "added bob's device "+short) {
		t.Fatalf("bob's roster messages %q do not show his new device", notes)
	}
	alice2.send(ConversationRef{To: "bob"}, "welcome, second phone")
	bob2.sync()
	if got := bob2.texts(ConversationRef{To: "alice"}); !slices.Equal(got, []string{"alice: welcome, second phone"}) {
		t.Fatalf("bob's new device sees %q", got)
	}
	convs, err := bob2.Conversations()
	if err != nil || len(convs) != 1 || convs[0].ID != "direct:alice" || len(convs[0].Members) != 2 ||
		len(convs[0].Members[0].Devices)+len(convs[0].Members[1].Devices) != 4 {
		t.Fatalf("bob's new device's conversations: %+v %v", convs, err)
	}
}

// TestMessageAheadOfItsWelcome delivers a member's messages before the Welcome
// they follow: they wait and are shown once the device has joined.
func TestMessageAheadOfItsWelcome(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.enroll("alice"), e.enroll("bob")
	var (
		mu   sync.Mutex
		sent []*wire.Send
	)
	alice.setHooks(func(s *wire.Send) {
		mu.Lock()
		defer mu.Unlock()
		c := *s
		sent = append(sent, &c)
	}, nil)
	alice.send(ConversationRef{To: "bob"}, "early")
	alice.setHooks(nil, nil)
	var toBob []*wire.Send
	for _, s := range sent {
		if len(s.Recipients) > 0 {
			toBob = append(toBob, s)
		}
	}
	if len(toBob) != 3 { // Welcome, conversation info, text
		t.Fatalf("alice sent %d messages to bob, want 3", len(toBob))
	}
	for _, i := range []int{2, 1, 0} {
		bob.deliverAs(toBob[i].MessageID, toBob[i].Payload, toBob[i].GroupID)
	}
	bob.sync() // the same messages from the exchange are discarded as duplicates
	if got := bob.texts(ConversationRef{To: "alice"}); !slices.Equal(got, []string{"alice: early"}) {
		t.Fatalf("bob sees %q", got)
	}
}

// TestCertificateRenewal lets time pass: devices renew their certificates, and
// a group whose members still carry the certificates they joined with, now
// expired, takes in a new member.
func TestCertificateRenewal(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.enroll("alice"), e.enroll("bob"), e.enroll("carol")
	if _, err := alice.CreateGroup(ctxT(t), "long", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	bob.sync()
	first, err := alice.certificate()
	if err != nil {
		t.Fatal(err)
	}
	leafKey := func(d *testDevice) string {
		g := d.groupNoFail(ConversationRef{Group: "long"})
		m, _ := g.Member(g.OwnLeaf())
		return string(m.LeafNode.EncryptionKey)
	}
	keysBefore := map[string]string{"alice": leafKey(alice), "bob": leafKey(bob)}
	e.clock.Advance(4 * 24 * time.Hour) // past half of the 7-day lifetime
	alice.sync()
	bob.sync()
	carol.sync()
	renewed, err := alice.certificate()
	if err != nil {
		t.Fatal(err)
	}
	if !renewed.NotAfter.After(first.NotAfter) {
		t.Fatal("the certificate was not renewed")
	}
	e.clock.Advance(4 * 24 * time.Hour) // the first certificates have expired
	alice.sync()
	bob.sync()
	if err := alice.AddMembers(ctxT(t), "long", []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	carol.sync()
	bob.sync()
	carol.send(ConversationRef{Group: "long"}, "joined late")
	alice.sync()
	bob.sync()
	for _, d := range []*testDevice{alice, bob} {
		if got := d.texts(ConversationRef{Group: "long"}); !slices.Contains(got, "carol: joined late") {
			t.Fatalf("%s sees %q", d.name, got)
		}
	}
	// Each member replaced its keys in the group once a week had passed.
	for _, d := range []*testDevice{alice, bob} {
		if leafKey(d) == keysBefore[d.name] {
			t.Fatalf("%s's keys in the group were not updated after a week", d.name)
		}
	}
	// Each member's leaf now carries its renewed certificate: the key-update
	// commit put it there (mls CommitOptions.Credential), and carol, who joined
	// after, sees it too.
	g := carol.groupNoFail(ConversationRef{Group: "long"})
	for _, d := range []*testDevice{alice, bob} {
		m, ok := g.Member(mlsLeafOf(t, d, "long"))
		if !ok {
			t.Fatalf("%s not in carol's view of the group", d.name)
		}
		if !bytes.Equal(m.Credential.Certificates[0], d.credential().Certificates[0]) {
			t.Errorf("%s's leaf still carries its first certificate", d.name)
		}
		if cert, err := parseCert(m.Credential.Certificates[0]); err != nil || !e.clock.Now().Before(cert.NotAfter) {
			t.Errorf("%s's leaf certificate is not current: %v", d.name, err)
		}
	}
}

// mlsLeafOf returns d's own leaf in its group of that name.
func mlsLeafOf(t *testing.T, d *testDevice, group string) mls.LeafIndex {
	t.Helper()
	return d.groupNoFail(ConversationRef{Group: group}).OwnLeaf()
}

// TestUndeliveredNotice lets a message expire at the exchange before its
// recipient connects: the sender, connected, is told.
func TestUndeliveredNotice(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.enroll("alice"), e.enroll("bob")
	alice.send(ConversationRef{To: "bob"}, "hello")
	bob.sync()
	if err := alice.SetDisappearing(ctxT(t), ConversationRef{To: "bob"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- alice.Run(ctx) }()
	defer func() { cancel(); <-ran }()
	alice.send(ConversationRef{To: "bob"}, "too late")
	// Past the message's TTL, within the time the exchange keeps the notice.
	e.clock.Advance(70 * time.Second)
	short := bob.Self().DeviceID[:8]
	waitFor(t, "the undelivered notice", func() bool {
		ms, _ := alice.Messages(ConversationRef{To: "bob"})
		return slices.ContainsFunc(ms, func(m Message) bool {
			return m.Kind == MessageUndelivered && m.Text == "not delivered to bob's device "+short
		})
	})
	bob.sync()
	if got := bob.texts(ConversationRef{To: "alice"}); slices.Contains(got, "alice: too late") {
		t.Fatal("bob got the expired message")
	}
	convs, _ := bob.Conversations()
	if len(convs) != 1 || convs[0].Disappearing != time.Minute {
		t.Fatalf("the timer change did not reach bob: %+v", convs)
	}
}

// cutter is a Config.Dial that can cut every connection it made.
type cutter struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (c *cutter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err == nil {
		c.mu.Lock()
		c.conns = append(c.conns, conn)
		c.mu.Unlock()
	}
	return conn, err
}

func (c *cutter) cut() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.conns)
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
	return n
}

// TestRunReconnects cuts Run's connection: it reconnects on its own and
// receives what was sent meanwhile; Close then ends Run.
func TestRunReconnects(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.enroll("alice"), e.enroll("bob")
	alice.send(ConversationRef{To: "bob"}, "first")
	bob.Close()
	cut := &cutter{}
	bob.cfg.Dial = cut.dial
	bob.reopen()
	ran := make(chan error, 1)
	go func() { ran <- bob.Run(context.Background()) }()
	waitFor(t, "bob to receive the first message", func() bool {
		return slices.Equal(bob.textsNoFail(ConversationRef{To: "alice"}), []string{"alice: first"})
	})
	if cut.cut() == 0 {
		t.Fatal("Run made no connection through Config.Dial")
	}
	alice.send(ConversationRef{To: "bob"}, "second")
	waitFor(t, "bob to reconnect and receive the second message", func() bool {
		return slices.Equal(bob.textsNoFail(ConversationRef{To: "alice"}), []string{"alice: first", "alice: second"})
	})
	bob.Close()
	select {
	case err := <-ran:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Run after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end after Close")
	}
}

// TestDeviceLeftOfflineIsRemoved: a device that stays away past its certificate's
// lifetime can never renew it. The members remove it from their groups (each
// shows it), and the group can take new members again: a joiner would refuse a
// tree with an expired certificate in it.
func TestDeviceLeftOfflineIsRemoved(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol, dave := e.enroll("alice"), e.enroll("bob"), e.enroll("carol"), e.enroll("dave")
	if _, err := alice.CreateGroup(ctxT(t), "desk", []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	bob.sync()
	carol.sync()
	dave.sync()
	// Carol's phone goes into a drawer; the others keep renewing.
	for range 2 {
		e.clock.Advance(4 * 24 * time.Hour)
		alice.sync()
		bob.sync()
		dave.sync()
	}
	alice.sync()
	bob.sync()
	for _, d := range []*testDevice{alice, bob} {
		if slices.Contains(rosterDevices(d.groupNoFail(ConversationRef{Group: "desk"})), carol.Self().DeviceID) {
			t.Fatalf("%s still has carol's expired device in the group", d.name)
		}
		if !containsSubstring(d.notes(ConversationRef{Group: "desk"}), "(its certificate expired)") {
			t.Errorf("%s was not shown carol's device leaving: %q", d.name, d.notes(ConversationRef{Group: "desk"}))
		}
	}
	if err := alice.AddMembers(ctxT(t), "desk", []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	dave.sync()
	alice.send(ConversationRef{Group: "desk"}, "welcome dave")
	dave.sync()
	if got := dave.texts(ConversationRef{Group: "desk"}); !slices.Contains(got, "alice: welcome dave") {
		t.Fatalf("dave sees %q", got)
	}
}
