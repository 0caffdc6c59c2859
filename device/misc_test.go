package device

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"mahfooz/device/vault"
)

func TestVaultLifecycle(t *testing.T) {
	e := newEnv(t)
	alice := e.enroll("alice")
	self := alice.Self()
	if self.Name != "alice" || len(self.DeviceID) != 32 {
		t.Fatalf("identity %+v", self)
	}
	// A second enrolment into the same home is refused.
	ticket, err := e.auth.Enroll("alice", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Enroll(ctxT(t), alice.cfg, e.addr, ticket.Text()); !errors.Is(err, ErrEnrolled) {
		t.Fatalf("second enrolment: %v", err)
	}
	alice.Close()
	wrong := alice.cfg
	wrong.Passphrase = []byte("not it")
	if _, err := Open(wrong); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := Open(e.config(filepath.Join(t.TempDir(), "nobody"))); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("empty home: %v", err)
	}
	alice.reopen()
	if got := alice.Self(); got != self {
		t.Fatalf("reopened identity %+v, want %+v", got, self)
	}
	if err := alice.ChangePassphrase([]byte("not it"), []byte("new one")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("ChangePassphrase with the wrong passphrase: %v", err)
	}
	if err := alice.ChangePassphrase([]byte(testPassphrase), []byte("new one")); err != nil {
		t.Fatal(err)
	}
	alice.Close()
	if _, err := Open(alice.cfg); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("old passphrase after the change: %v", err)
	}
	alice.cfg.Passphrase = []byte("new one")
	alice.reopen()
	events, stop := alice.Subscribe()
	defer stop()
	if err := alice.Wipe(); err != nil {
		t.Fatal(err)
	}
	if vault.Exists(alice.cfg.Home) {
		t.Fatal("Wipe left the vault")
	}
	var kinds []EventKind
	for ev := range events {
		kinds = append(kinds, ev.Kind)
	}
	if len(kinds) == 0 || kinds[len(kinds)-1] != EventWiped {
		t.Fatalf("events %v do not end with the wipe", kinds)
	}
	if _, err := alice.Conversations(); !errors.Is(err, ErrWiped) {
		t.Fatalf("wiped device answered: %v", err)
	}
	if err := WipeHome(alice.cfg.Home); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("WipeHome of nothing: %v", err)
	}
}

func TestConversationRefs(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.enroll("alice"), e.enroll("bob")
	if _, err := alice.SendText(ctxT(t), ConversationRef{To: "nobody"}, "hi"); !errors.Is(err, ErrUnknownOfficial) {
		t.Fatalf("to an unknown official: %v", err)
	}
	if _, err := alice.SendText(ctxT(t), ConversationRef{To: "alice"}, "hi"); err == nil {
		t.Fatal("a direct conversation with oneself was started")
	}
	if _, err := alice.Messages(ConversationRef{To: "bob", Group: "x"}); err == nil {
		t.Fatal("a reference naming two conversations was accepted")
	}
	if _, err := alice.Messages(ConversationRef{Group: "x"}); !errors.Is(err, ErrNoConversation) {
		t.Fatalf("unknown group: %v", err)
	}
	for range 2 {
		if _, err := alice.CreateGroup(ctxT(t), "twins", []string{"bob"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := alice.SendText(ctxT(t), ConversationRef{Group: "twins"}, "which?"); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("two groups of one name: %v", err)
	}
	convs, err := alice.Conversations()
	if err != nil || len(convs) != 2 {
		t.Fatalf("conversations %+v %v", convs, err)
	}
	alice.send(ConversationRef{ID: convs[0].ID}, "by ID")
	bob.sync()
	if got := bob.texts(ConversationRef{ID: convs[0].ID}); !equalStrings(got, []string{"alice: by ID"}) {
		t.Fatalf("bob sees %q", got)
	}
	if _, err := alice.SendText(ctxT(t), ConversationRef{To: "bob"}, ""); err == nil {
		t.Fatal("an empty text was sent")
	}
	if err := alice.SetDisappearing(ctxT(t), ConversationRef{ID: convs[0].ID}, 1500*time.Millisecond); err == nil {
		t.Fatal("a timer of a fraction of a second was accepted")
	}
}

func TestSubscriberGetsEverythingInOrder(t *testing.T) {
	dv := &Device{subs: map[*subscriber]struct{}{}, closing: make(chan struct{}), wiped: make(chan struct{})}
	ch, stop := dv.Subscribe()
	for i := range 1000 {
		dv.publish(Event{Kind: EventMessage, ConversationID: string(rune('a' + i%26))})
	}
	for i := range 1000 {
		ev := <-ch
		if ev.ConversationID != string(rune('a'+i%26)) {
			t.Fatalf("event %d out of order", i)
		}
	}
	stop()
	if _, ok := <-ch; ok {
		t.Fatal("channel open after stop")
	}
}

func TestExpiryNeverLaterThanTheTimer(t *testing.T) {
	now := time.Unix(1_760_000_000, 0)
	for _, c := range []struct {
		carried time.Time
		timer   time.Duration
		want    time.Time
	}{
		{time.Time{}, 0, time.Time{}},
		{now.Add(time.Hour), 0, now.Add(time.Hour)},
		{time.Time{}, time.Minute, now.Add(time.Minute)},
		{now.Add(time.Hour), time.Minute, now.Add(time.Minute)},
		{now.Add(time.Second), time.Minute, now.Add(time.Second)},
	} {
		if got := expiry(c.carried, c.timer, now); !got.Equal(c.want) {
			t.Errorf("expiry(%v, %v) = %v, want %v", c.carried, c.timer, got, c.want)
		}
	}
}
