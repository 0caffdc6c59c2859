package device

import (
	"bytes"
	"slices"
	"sync"
	"testing"

	"mahfooz/wire"
)

// loseAnswer returns a send hook that lets the first matching Send reach the
// exchange and then cuts the connection, so that the device never learns the
// answer: as if it crashed while the message was in flight.
func (d *testDevice) loseAnswer(match func(*wire.Send) bool) *sync.Once {
	var once sync.Once
	d.setHooks(func(s *wire.Send) {
		if !match(s) {
			return
		}
		once.Do(func() {
			d.connMu.Lock()
			sess := d.sess
			d.connMu.Unlock()
			if _, err := sess.c.Send(ctxT(d.env.t), s); err != nil {
				d.env.t.Errorf("sending ahead: %v", err)
			}
			sess.c.Close()
		})
	}, nil)
	return &once
}

// TestMessageInFlightAtCrash: the exchange stored a message but the device never
// heard back. After a restart the outbox sends it again under the same ID; the
// recipient gets it once and the sender sees it sent.
func TestMessageInFlightAtCrash(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.enroll("alice"), e.enroll("bob")
	alice.send(ConversationRef{To: "bob"}, "before")
	bob.sync()
	alice.loseAnswer(func(s *wire.Send) bool { return !s.IsCommit })
	m, err := alice.SendText(ctxT(t), ConversationRef{To: "bob"}, "in flight")
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != StatusPending {
		t.Fatalf("status %s, want pending", m.Status)
	}
	alice.setHooks(nil, nil)
	alice.reopen()
	alice.sync()
	ms, err := alice.Messages(ConversationRef{To: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ms, func(x Message) bool { return x.ID == m.ID })
	if i < 0 || ms[i].Status != StatusSent {
		t.Fatalf("after restart the message is %+v", ms)
	}
	bob.sync()
	if got, want := bob.texts(ConversationRef{To: "alice"}), []string{"alice: before", "alice: in flight"}; !equalStrings(got, want) {
		t.Fatalf("bob sees %q, want %q", got, want)
	}
	// The conversation continues: no generation was used twice.
	alice.send(ConversationRef{To: "bob"}, "after")
	bob.sync()
	if got := bob.texts(ConversationRef{To: "alice"}); len(got) != 3 || got[2] != "alice: after" {
		t.Fatalf("bob sees %q", got)
	}
}

// TestCommitInFlightAtCrash: a commit the exchange accepted while the device was
// cut off takes effect after the restart, and its Welcome goes out then.
func TestCommitInFlightAtCrash(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.enroll("alice"), e.enroll("bob"), e.enroll("carol")
	if _, err := alice.CreateGroup(ctxT(t), "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	bob.sync()
	alice.loseAnswer(func(s *wire.Send) bool { return s.IsCommit })
	if err := alice.AddMembers(ctxT(t), "g", []string{"carol"}); err == nil {
		t.Fatal("AddMembers succeeded without an answer from the exchange")
	}
	alice.setHooks(nil, nil)
	alice.reopen()
	alice.sync()
	bob.sync()
	carol.sync()
	ref := ConversationRef{Group: "g"}
	ga, gb, gc := alice.groupNoFail(ref), bob.groupNoFail(ref), carol.groupNoFail(ref)
	if ga == nil || gb == nil || gc == nil {
		t.Fatalf("a member has no group: alice %v, bob %v, carol %v", ga != nil, gb != nil, gc != nil)
	}
	if !bytes.Equal(ga.EpochAuthenticator(), gb.EpochAuthenticator()) || !bytes.Equal(ga.EpochAuthenticator(), gc.EpochAuthenticator()) {
		t.Fatal("members are not in the same epoch")
	}
	carol.send(ref, "in at last")
	alice.sync()
	bob.sync()
	for _, d := range []*testDevice{alice, bob} {
		if got := d.texts(ref); !slices.Contains(got, "carol: in at last") {
			t.Fatalf("%s sees %q", d.name, got)
		}
	}
}
