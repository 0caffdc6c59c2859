package device

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mahfooz/device/vault"
	"mahfooz/wire"
)

func TestDirectMessagesBothWays(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.enroll("alice"), e.enroll("bob"), e.enroll("carol")

	alice.send(ConversationRef{To: "bob"}, "hello bob")
	bob.sync()
	if got, want := bob.texts(ConversationRef{To: "alice"}), []string{"alice: hello bob"}; !equalStrings(got, want) {
		t.Fatalf("bob sees %q, want %q", got, want)
	}
	bob.send(ConversationRef{To: "alice"}, "hello alice")
	alice.sync()
	want := []string{"alice: hello bob", "bob: hello alice"}
	if got := alice.texts(ConversationRef{To: "bob"}); !equalStrings(got, want) {
		t.Fatalf("alice sees %q, want %q", got, want)
	}
	if got := bob.texts(ConversationRef{To: "alice"}); !equalStrings(got, want) {
		t.Fatalf("bob sees %q, want %q", got, want)
	}

	// Both see one direct conversation with the other, of two officials.
	for _, d := range []*testDevice{alice, bob} {
		convs, err := d.Conversations()
		if err != nil {
			t.Fatal(err)
		}
		other := map[string]string{"alice": "bob", "bob": "alice"}[d.name]
		if len(convs) != 1 || convs[0].Kind != KindDirect || convs[0].Name != other || convs[0].ID != "direct:"+other ||
			len(convs[0].Members) != 2 || !convs[0].Active {
			t.Fatalf("%s's conversations: %+v", d.name, convs)
		}
	}
	// Carol is in none of it.
	carol.sync()
	if convs, _ := carol.Conversations(); len(convs) != 0 {
		t.Fatalf("carol has conversations: %+v", convs)
	}
	// Bob was told who is in the conversation when he joined.
	if notes := bob.notes(ConversationRef{To: "alice"}); !containsSubstring(notes, "alice's device "+alice.Self().DeviceID[:8]) {
		t.Fatalf("bob's roster messages %q do not name alice's device", notes)
	}
	e.checkNoPlaintext("hello bob", "hello alice")
}

func TestGroupOfThree(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.enroll("alice"), e.enroll("bob"), e.enroll("carol")
	conv, err := alice.CreateGroup(ctxT(t), "crisis cell", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	if conv.Kind != KindGroup || conv.Name != "crisis cell" || len(conv.Members) != 3 {
		t.Fatalf("created %+v", conv)
	}
	ref := ConversationRef{Group: "crisis cell"}
	alice.send(ref, "one")
	bob.sync()
	bob.send(ref, "two")
	carol.sync()
	carol.send(ref, "three")
	alice.sync()
	bob.sync()
	want := []string{"alice: one", "bob: two", "carol: three"}
	for _, d := range []*testDevice{alice, bob, carol} {
		if got := d.texts(ref); !equalStrings(got, want) {
			t.Fatalf("%s sees %q, want %q", d.name, got, want)
		}
		convs, err := d.Conversations()
		if err != nil || len(convs) != 1 || convs[0].Name != "crisis cell" || convs[0].ID != conv.ID {
			t.Fatalf("%s's conversations: %+v, %v", d.name, convs, err)
		}
	}
	e.checkNoPlaintext("crisis cell")
}

func TestFileRoundTrip(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.enroll("alice"), e.enroll("bob")
	data := make([]byte, 600<<10) // three chunks
	rand.Read(data)
	src := filepath.Join(t.TempDir(), "minutes.pdf")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sent, err := alice.SendFile(ctxT(t), ConversationRef{To: "bob"}, src)
	if err != nil {
		t.Fatal(err)
	}
	if sent.Kind != MessageFile || sent.File.Name != "minutes.pdf" || sent.File.Size != int64(len(data)) || sent.Status != StatusSent {
		t.Fatalf("sent %+v", sent)
	}
	bob.sync()
	ms, err := bob.Messages(ConversationRef{To: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ms, func(m Message) bool { return m.Kind == MessageFile })
	if i < 0 {
		t.Fatalf("bob has no file message: %+v", ms)
	}
	got := ms[i]
	if got.File.Name != "minutes.pdf" || got.File.MediaType != "application/pdf" || got.File.Size != int64(len(data)) || got.From.Name != "alice" {
		t.Fatalf("bob's file message: %+v %+v", got, got.File)
	}
	dst := filepath.Join(t.TempDir(), "saved.pdf")
	if err := bob.SaveFile(ctxT(t), got, dst); err != nil {
		t.Fatal(err)
	}
	saved, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(saved, data) {
		t.Fatalf("saved file differs from the sent one (%v)", err)
	}
	// An existing file is never overwritten.
	if err := bob.SaveFile(ctxT(t), got, dst); err == nil {
		t.Fatal("SaveFile replaced an existing file")
	}
	entries, _ := os.ReadDir(filepath.Dir(dst))
	if len(entries) != 1 {
		t.Fatalf("SaveFile left files behind: %v", entries)
	}
}

func TestOfflineDeliveryInOrderOnce(t *testing.T) {
	e := newEnv(t)
	alice, bob, _ := e.enroll("alice"), e.enroll("bob"), e.enroll("carol")
	alice.send(ConversationRef{To: "bob"}, "m0")
	bob.sync()
	bob.Close()
	var want []string
	want = append(want, "alice: m0")
	for i := 1; i <= 5; i++ {
		text := "m" + string(rune('0'+i))
		alice.send(ConversationRef{To: "bob"}, text)
		want = append(want, "alice: "+text)
	}
	bob.reopen()
	bob.sync()
	if got := bob.texts(ConversationRef{To: "alice"}); !equalStrings(got, want) {
		t.Fatalf("bob sees %q, want %q", got, want)
	}
	bob.sync()
	if got := bob.texts(ConversationRef{To: "alice"}); !equalStrings(got, want) {
		t.Fatalf("after a second sync bob sees %q, want %q", got, want)
	}
	unread, err := bob.Unread()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range unread {
		ids = append(ids, m.ID)
	}
	if err := bob.MarkRead(ids...); err != nil {
		t.Fatal(err)
	}
	if unread, _ := bob.Unread(); len(unread) != 0 {
		t.Fatalf("unread after MarkRead: %+v", unread)
	}
}

func TestExactlyOnceWhenDeliveredTwice(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.enroll("alice"), e.enroll("bob")
	alice.send(ConversationRef{To: "bob"}, "first")
	bob.sync()
	// Bob processes the next messages but loses the connection before his Ack:
	// the exchange delivers them again on the next connection.
	dropped := 0
	bob.setHooks(nil, func() bool { dropped++; return dropped > 1 })
	alice.send(ConversationRef{To: "bob"}, "second")
	alice.send(ConversationRef{To: "bob"}, "third")
	if err := bob.Sync(ctxT(t)); !errors.Is(err, ErrOffline) {
		t.Fatalf("Sync with the Ack dropped: %v, want ErrOffline", err)
	}
	want := []string{"alice: first", "alice: second", "alice: third"}
	if got := bob.texts(ConversationRef{To: "alice"}); !equalStrings(got, want) {
		t.Fatalf("bob sees %q, want %q", got, want)
	}
	bob.sync() // redelivered, discarded, acknowledged
	if dropped < 2 {
		t.Fatal("the second sync did not acknowledge anything: the messages were not delivered again")
	}
	if got := bob.texts(ConversationRef{To: "alice"}); !equalStrings(got, want) {
		t.Fatalf("after redelivery bob sees %q, want %q", got, want)
	}
	bob.setHooks(nil, nil)
	bob.sync()
	if got := bob.texts(ConversationRef{To: "alice"}); !equalStrings(got, want) {
		t.Fatalf("after a third sync bob sees %q, want %q", got, want)
	}
}

func TestDisappearingMessages(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.enroll("alice"), e.enroll("bob")
	ref := ConversationRef{To: "bob"}
	alice.send(ref, "kept")
	if err := alice.SetDisappearing(ctxT(t), ref, time.Minute); err != nil {
		t.Fatal(err)
	}
	m := alice.send(ref, "gone soon")
	if m.ExpiresAt.IsZero() {
		t.Fatal("message in a conversation with a timer has no expiry")
	}
	src := filepath.Join(t.TempDir(), "note.txt")
	if err := os.WriteFile(src, []byte("secret note"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendFile(ctxT(t), ref, src); err != nil {
		t.Fatal(err)
	}
	bob.sync()
	saved := filepath.Join(t.TempDir(), "saved.txt")
	ms, _ := bob.Messages(ConversationRef{To: "alice"})
	fi := slices.IndexFunc(ms, func(m Message) bool { return m.Kind == MessageFile })
	if fi < 0 {
		t.Fatal("bob has no file message")
	}
	if err := bob.SaveFile(ctxT(t), ms[fi], saved); err != nil {
		t.Fatal(err)
	}
	back := ConversationRef{To: "alice"}
	convs, _ := bob.Conversations()
	if len(convs) != 1 || convs[0].Disappearing != time.Minute {
		t.Fatalf("bob's conversation: %+v", convs)
	}
	want := []string{"alice: kept", "alice: gone soon"}
	for _, d := range []*testDevice{alice, bob} {
		r := map[string]ConversationRef{"alice": ref, "bob": back}[d.name]
		if got := d.texts(r); !equalStrings(got, want) {
			t.Fatalf("before the timer %s sees %q, want %q", d.name, got, want)
		}
	}
	e.clock.Advance(30 * time.Second)
	for _, d := range []*testDevice{alice, bob} {
		r := map[string]ConversationRef{"alice": ref, "bob": back}[d.name]
		if got := d.texts(r); !equalStrings(got, want) {
			t.Fatalf("half way %s sees %q, want %q", d.name, got, want)
		}
	}
	e.clock.Advance(45 * time.Second)
	for _, d := range []*testDevice{alice, bob} {
		r := map[string]ConversationRef{"alice": ref, "bob": back}[d.name]
		if got := d.texts(r); !equalStrings(got, []string{"alice: kept"}) {
			t.Fatalf("after the timer %s sees %q", d.name, got)
		}
		// And the sweep deleted it from the vault.
		d.sync()
		var stored int
		d.v.View(func(tx *vault.Tx) error {
			for _, gid := range d.groupIDs(r) {
				list, _ := loadMessages(tx, gid)
				for _, mr := range list {
					if mr.Text == "gone soon" {
						stored++
					}
				}
			}
			return nil
		})
		if stored != 0 {
			t.Fatalf("%s still stores the expired message", d.name)
		}
		var timers int
		ms, _ := d.Messages(r)
		for _, m := range ms {
			if m.Kind == MessageTimer && m.Timer == time.Minute {
				timers++
			}
		}
		if timers != 1 {
			t.Fatalf("%s shows %d timer messages, want 1", d.name, timers)
		}
	}
	if _, err := os.Stat(saved); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the saved copy of an expired attachment is still there: %v", err)
	}
}

func TestRosterMessagesOnAddAndRemove(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol, dave := e.enroll("alice"), e.enroll("bob"), e.enroll("carol"), e.enroll("dave")
	if _, err := alice.CreateGroup(ctxT(t), "board", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	ref := ConversationRef{Group: "board"}
	if err := alice.AddMembers(ctxT(t), "board", []string{"carol", "dave"}); err != nil {
		t.Fatal(err)
	}
	bob.sync()
	carol.sync()
	dave.sync()
	carolDev := carol.Self().DeviceID[:8]
	for _, d := range []*testDevice{alice, bob} {
		if notes := d.notes(ref); !containsSubstring(notes, "added carol's device "+carolDev) {
			t.Fatalf("%s's roster messages %q do not show carol's device being added", d.name, notes)
		}
	}
	if err := bob.RemoveMembers(ctxT(t), "board", []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	alice.sync()
	carol.sync()
	dave.sync()
	daveDev := dave.Self().DeviceID[:8]
	for _, d := range []*testDevice{alice, bob, carol} {
		if notes := d.notes(ref); !containsSubstring(notes, "removed dave's device "+daveDev) {
			t.Fatalf("%s's roster messages %q do not show dave's device being removed", d.name, notes)
		}
	}
	convs, err := dave.Conversations()
	if err != nil || len(convs) != 1 || convs[0].Active {
		t.Fatalf("dave's conversations after removal: %+v %v", convs, err)
	}
	if notes := dave.notes(ConversationRef{ID: convs[0].ID}); !containsSubstring(notes, "bob removed this device") {
		t.Fatalf("dave's roster messages %q do not say he was removed", notes)
	}
	if _, err := dave.SendText(ctxT(t), ConversationRef{ID: convs[0].ID}, "still here?"); !errors.Is(err, ErrNotMember) {
		t.Fatalf("removed member sent: %v", err)
	}
	// The three left still talk.
	carol.send(ref, "after")
	alice.sync()
	bob.sync()
	for _, d := range []*testDevice{alice, bob} {
		if got := d.texts(ref); !slices.Contains(got, "carol: after") {
			t.Fatalf("%s sees %q", d.name, got)
		}
	}
	dave.sync()
	if got := dave.texts(ConversationRef{ID: convs[0].ID}); slices.Contains(got, "carol: after") {
		t.Fatal("a removed member read a later message")
	}
}

func TestSimultaneousDirectConversationsShowAsOne(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.enroll("alice"), e.enroll("bob")
	// Each builds the group of the conversation before the other's arrives.
	gate := newGate(2)
	alice.setHooks(gate.commit(), nil)
	bob.setHooks(gate.commit(), nil)
	errs := make(chan error, 2)
	go func() { _, err := alice.SendText(ctxT(t), ConversationRef{To: "bob"}, "from alice"); errs <- err }()
	go func() { _, err := bob.SendText(ctxT(t), ConversationRef{To: "alice"}, "from bob"); errs <- err }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	alice.sync()
	bob.sync()
	for _, d := range []*testDevice{alice, bob} {
		convs, err := d.Conversations()
		if err != nil || len(convs) != 1 || convs[0].Kind != KindDirect {
			t.Fatalf("%s's conversations: %+v %v", d.name, convs, err)
		}
		if n := len(d.groupIDs(ConversationRef{ID: convs[0].ID})); n != 2 {
			t.Fatalf("%s has %d groups for the conversation, want 2", d.name, n)
		}
	}
	// Both now send on the same group: the one with the smaller ID.
	var sentOn [][]byte
	for _, d := range []*testDevice{alice, bob} {
		var gid []byte
		d.setHooks(func(s *wire.Send) { gid = s.GroupID }, nil)
		other := map[string]string{"alice": "bob", "bob": "alice"}[d.name]
		d.send(ConversationRef{To: other}, "again from "+d.name)
		d.setHooks(nil, nil)
		sentOn = append(sentOn, gid)
	}
	if !bytes.Equal(sentOn[0], sentOn[1]) {
		t.Fatal("alice and bob send on different groups")
	}
	ids := alice.groupIDs(ConversationRef{To: "bob"})
	if !bytes.Equal(sentOn[0], ids[0]) || bytes.Compare(ids[0], ids[1]) >= 0 {
		t.Fatal("the conversation is not sent on the group with the smaller ID")
	}
	alice.sync()
	bob.sync()
	want := []string{"from alice", "from bob", "again from alice", "again from bob"}
	for _, d := range []*testDevice{alice, bob} {
		other := map[string]string{"alice": "bob", "bob": "alice"}[d.name]
		var got []string
		for _, s := range d.texts(ConversationRef{To: other}) {
			got = append(got, s[strings.Index(s, ": ")+2:])
		}
		slices.Sort(got)
		w := slices.Clone(want)
		slices.Sort(w)
		if !equalStrings(got, w) {
			t.Fatalf("%s sees %q", d.name, got)
		}
	}
}
