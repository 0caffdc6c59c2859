package exchange

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mahfooz/wire"
)

var testGroup = wire.GroupID("group-one")

func TestSendFanOutBacklogAck(t *testing.T) {
	e := newStoreEnv(t, nil)
	amina, bilal, chen, dina := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal"), enrolMLS(t, e.a, "Chen"), enrolMLS(t, e.a, "Dina")
	a, b, c := e.session(t, amina), e.session(t, bilal), e.session(t, chen)

	var sent []*wire.Send
	var seqs []uint64
	for i := range 3 {
		m := appMessage(i, testGroup, bilal, chen, dina)
		sent = append(sent, m)
		seqs = append(seqs, a.accepted(m))
	}
	if !slices.IsSorted(seqs) || seqs[0] == seqs[1] || seqs[1] == seqs[2] {
		t.Fatalf("sequences %v not increasing", seqs)
	}
	// Connected recipients get each message pushed at once, in order.
	for _, s := range []*session{b, c} {
		for i, m := range sent {
			d := s.deliver()
			if d.Sequence != seqs[i] || d.MessageID != m.MessageID || d.Sender != amina.wid() ||
				!bytes.Equal(d.GroupID, testGroup) || !bytes.Equal(d.Payload, m.Payload) || !d.SentAt.Equal(e.clock.Now()) {
				t.Errorf("Deliver %+v does not match Send %d", d, i)
			}
		}
	}
	a.quiet("the sender") // the sender is not a recipient

	// Dina was offline: her whole backlog comes, oldest first, before Pong.
	d := e.session(t, dina)
	d.sync()
	got := d.drain()
	if len(got) != 3 {
		t.Fatalf("backlog: %v, want 3 Delivers", types(got))
	}
	for i, m := range got {
		if dv, ok := m.(*wire.Deliver); !ok || dv.Sequence != seqs[i] || !bytes.Equal(dv.Payload, sent[i].Payload) {
			t.Errorf("backlog entry %d: %#v", i, m)
		}
	}

	// A second connection of a device gets the unacknowledged messages again.
	b2 := e.session(t, bilal)
	b2.sync()
	if n := len(b2.drain()); n != 3 {
		t.Errorf("second connection got %d messages, want 3", n)
	}

	// Ack deletes: Dina's next connection gets only what she did not acknowledge.
	d.ok(&wire.Ack{Sequences: seqs[:2]})
	d.close()
	d = e.session(t, dina)
	d.sync()
	if got := d.drain(); len(got) != 1 || got[0].(*wire.Deliver).Sequence != seqs[2] {
		t.Errorf("after acking two: %v", types(got))
	}
	// Acking another device's entries, or unknown ones, changes nothing and is OK.
	d.ok(&wire.Ack{Sequences: []uint64{seqs[0], seqs[2] + 1000}})
	b.ok(&wire.Ack{Sequences: seqs})
	c.ok(&wire.Ack{Sequences: seqs})
	d.ok(&wire.Ack{Sequences: seqs[2:]})
	// Once every recipient acknowledged, the ciphertext is gone from the files.
	if st := e.stats(t); st.Messages != 0 || st.MailboxEntries != 0 {
		t.Errorf("after every ack the store holds %+v", st)
	}
	for _, m := range sent {
		if in := e.dbHolds(t, m.Payload); len(in) > 0 {
			t.Errorf("acknowledged ciphertext still in %v", in)
		}
	}
	// The log (at debug level here) has routing metadata, never a payload.
	logs := e.logs.String()
	if !strings.Contains(logs, sent[0].MessageID.String()) {
		t.Error("the log does not show routing metadata: the check below would prove nothing")
	}
	for _, m := range sent {
		if strings.Contains(logs, string(m.Payload[len(m.Payload)-12:])) || strings.Contains(logs, fmt.Sprintf("%x", m.Payload[len(m.Payload)-12:])) {
			t.Error("a payload appears in the log")
		}
	}
}

func TestPayloadVisibleBeforeAck(t *testing.T) {
	// The counterpart of the check above: the scan finds a payload still stored,
	// so its silence after the acks means something.
	e := newStoreEnv(t, nil)
	amina, bilal := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal")
	a := e.session(t, amina)
	m := appMessage(1, testGroup, bilal)
	a.accepted(m)
	if in := e.dbHolds(t, m.Payload); len(in) == 0 {
		t.Fatal("stored ciphertext not found in the database files")
	}
}

func TestBacklogThenLiveInOrder(t *testing.T) {
	e := newStoreEnv(t, nil)
	amina, bilal, dina := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal"), enrolMLS(t, e.a, "Dina")
	a, b := e.session(t, amina), e.session(t, bilal)
	const stored, live = 300, 300
	for i := range stored {
		a.start(appMessage(i, testGroup, dina)) // pipelined
	}
	a.sync()
	waitFor(t, "the backlog to be stored", func() bool { return e.stats(t).MailboxEntries == stored })

	// Dina connects while Bilal keeps sending: every message arrives once, in
	// sequence order, the backlog first.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range live {
			ans := <-b.start(appMessage(10000+i, testGroup, dina))
			if r, ok := ans.(*wire.SendResult); !ok || r.Status != wire.SendAccepted {
				t.Errorf("live send %d: %s", i, describe(ans))
			}
		}
	}()
	d := e.session(t, dina)
	var last uint64
	for n := range stored + live {
		dv := d.deliver()
		if dv.Sequence <= last {
			t.Fatalf("message %d has sequence %d after %d", n, dv.Sequence, last)
		}
		last = dv.Sequence
	}
	wg.Wait()
	d.quiet("after every message")
}

func TestRetransmissionAfterReconnect(t *testing.T) {
	e := newStoreEnv(t, nil)
	amina, bilal := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal")
	a, b := e.session(t, amina), e.session(t, bilal)
	m := appMessage(1, testGroup, bilal)
	seq := a.accepted(m)
	b.deliver()
	a.close()

	// The sender did not see its answer and sends again on a new connection.
	a = e.session(t, amina)
	if got := a.accepted(m); got != seq {
		t.Errorf("retransmission got sequence %d, want the original %d", got, seq)
	}
	b.quiet("a retransmission") // not delivered twice
	if st := e.stats(t); st.Messages != 1 {
		t.Errorf("%d payloads stored, want 1", st.Messages)
	}
	altered := *m
	altered.Payload = mlsPayload(testGroup, 1, wire.ContentTypeApplication, "different ciphertext")
	wantErr(t, a.call(&altered), wire.CodeConflict)
}

func TestCommitRace(t *testing.T) {
	e := newStoreEnv(t, nil)
	amina, bilal, chen := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal"), enrolMLS(t, e.a, "Chen")
	a, b, c := e.session(t, amina), e.session(t, bilal), e.session(t, chen)
	g := wire.GroupID("raced group")
	// The group's first commit sets its epoch.
	a.accepted(commitMessage(1, g, 4, bilal, chen))
	for epoch := uint64(5); epoch < 10; epoch++ {
		ca := a.start(commitMessage(int(epoch)*10, g, epoch, bilal, chen))
		cb := b.start(commitMessage(int(epoch)*10+1, g, epoch, amina, chen))
		ra, rb := (<-ca).(*wire.SendResult), (<-cb).(*wire.SendResult)
		if ra == nil || rb == nil {
			t.Fatal("a commit was not answered with SendResult")
		}
		winners := 0
		for _, r := range []*wire.SendResult{ra, rb} {
			switch {
			case r.Status == wire.SendAccepted:
				winners++
			case r.Status != wire.SendStaleEpoch || r.CurrentEpoch != epoch+1:
				t.Errorf("epoch %d: loser got %+v, want stale_epoch with %d", epoch, r, epoch+1)
			}
		}
		if winners != 1 {
			t.Fatalf("epoch %d: %d commits accepted, want exactly one", epoch, winners)
		}
	}
	// Chen, in both commits' recipients, got the first commit and one per epoch.
	c.sync()
	if n := len(c.drain()); n != 6 {
		t.Errorf("Chen got %d commits, want 6", n)
	}
	// A stale commit is refused whatever its epoch, and stores nothing.
	r := a.send(commitMessage(99, g, 3, bilal))
	if r.Status != wire.SendStaleEpoch || r.CurrentEpoch != 10 {
		t.Errorf("commit for an old epoch: %+v", r)
	}
}

func TestSendChecks(t *testing.T) {
	e := newStoreEnv(t, func(c *Config) { c.MaxTTL = time.Hour })
	amina, bilal, lost := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal"), enrolMLS(t, e.a, "Lost")
	if err := e.a.Revoke(lost.id); err != nil {
		t.Fatal(err)
	}
	a, b := e.session(t, amina), e.session(t, bilal)
	stranger := mlsDevice{name: "stranger", id: [16]byte{0xee}}

	bad := func(name string, m *wire.Send, code wire.Code) {
		t.Helper()
		if e, ok := a.call(m).(*wire.Error); !ok || e.Code != code {
			t.Errorf("%s: got %#v, want Error{%s}", name, e, code)
		}
	}
	m := appMessage(1, testGroup, bilal)
	m.GroupID = wire.GroupID("another group")
	bad("group disagrees with payload", m, wire.CodeInvalidRequest)
	m = appMessage(2, testGroup, bilal)
	m.Epoch = 2
	bad("epoch disagrees with payload", m, wire.CodeInvalidRequest)
	m = appMessage(3, testGroup, bilal)
	m.IsCommit = true
	bad("commit flag on an application message", m, wire.CodeInvalidRequest)
	m = commitMessage(4, testGroup, 1, bilal)
	m.IsCommit = false
	bad("commit without the commit flag", m, wire.CodeInvalidRequest)
	m = appMessage(5, testGroup, bilal)
	m.Payload = []byte("not an MLSMessage")
	bad("payload not MLS", m, wire.CodeInvalidRequest)
	bad("unknown recipient", appMessage(6, testGroup, bilal, stranger), wire.CodeInvalidRequest)
	bad("the sender among the recipients", appMessage(7, testGroup, bilal, amina), wire.CodeInvalidRequest)

	// A revoked recipient is left out without failing the Send.
	m = appMessage(8, testGroup, bilal, lost)
	seq := a.accepted(m)
	if dv := b.deliver(); dv.MessageID != m.MessageID {
		t.Errorf("Bilal got %x", dv.MessageID)
	}
	b.ok(&wire.Ack{Sequences: []uint64{seq}})
	if es, err := e.store.Pending(t.Context(), lost.wid(), 0, 10, 1<<20); err != nil || len(es) != 0 {
		t.Errorf("stored for a revoked device: %d entries, %v", len(es), err)
	}

	// A TTL beyond the limit is shortened to it: the message expires after an hour.
	b.close()
	m = appMessage(9, testGroup, bilal)
	m.TTLSeconds = 30 * 24 * 3600
	a.accepted(m)
	a.quiet("before expiry")
	e.clock.Advance(time.Hour)
	ex, ok := a.next().(*wire.Expired)
	if !ok || len(ex.Messages) != 1 || ex.Messages[0].MessageID != m.MessageID {
		t.Errorf("capped TTL: got %#v, want Expired for the message", ex)
	}
}

func TestExpiredNotices(t *testing.T) {
	e := newStoreEnv(t, nil)
	amina, bilal, chen := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal"), enrolMLS(t, e.a, "Chen")
	a, c := e.session(t, amina), e.session(t, chen)

	// Bilal is offline; Chen acknowledges. At the TTL only Bilal's copy expires,
	// and Amina, connected, is told at once.
	m := appMessage(1, testGroup, bilal, chen)
	m.TTLSeconds = 60
	seq := a.accepted(m)
	c.deliver()
	c.ok(&wire.Ack{Sequences: []uint64{seq}})
	e.clock.Advance(59 * time.Second)
	a.quiet("before the TTL")
	e.clock.Advance(time.Second)
	ex, ok := a.next().(*wire.Expired)
	if !ok || len(ex.Messages) != 1 || ex.Messages[0] != (wire.ExpiredMessage{MessageID: m.MessageID, Recipient: bilal.wid()}) {
		t.Fatalf("got %#v, want Expired for Bilal's copy", ex)
	}
	b := e.session(t, bilal)
	b.quiet("the expired message")

	// A sender that is offline at expiry is told on its next connection, after
	// its backlog and before the answer to its first request.
	a.close()
	m2 := appMessage(2, testGroup, amina)
	m2.TTLSeconds = 60
	c.accepted(m2)
	c.close()
	e.clock.Advance(time.Minute)
	waitFor(t, "the notice to be recorded", func() bool { return e.stats(t).Notices == 1 })
	c = e.session(t, chen)
	c.sync()
	got := c.drain()
	if len(got) != 1 {
		t.Fatalf("Chen on reconnecting: %v, want one Expired", types(got))
	}
	if ex, ok := got[0].(*wire.Expired); !ok || len(ex.Messages) != 1 ||
		ex.Messages[0] != (wire.ExpiredMessage{MessageID: m2.MessageID, Recipient: amina.wid()}) {
		t.Errorf("Chen's notice: %#v", got[0])
	}
	// Notices are deleted once pushed.
	c.close()
	e.session(t, chen).quiet("notices already pushed")
	e.session(t, amina).quiet("the expired message")
}

func TestSlowReaderDoesNotStallOthers(t *testing.T) {
	e := newStoreEnv(t, func(c *Config) { c.MaxQueue = 256 << 10 })
	amina, bilal, slow := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal"), enrolMLS(t, e.a, "Slow")
	a, b := e.session(t, amina), e.session(t, bilal)
	s := e.dial(t, slow.cert) // completes Hello, then never reads again
	if _, err := s.hello(); err != nil {
		t.Fatal(err)
	}
	const n = 200
	big := bytes.Repeat([]byte{0x42}, 32<<10)
	var seqs []uint64
	for i := range n {
		m := appMessage(i, testGroup, bilal, slow)
		m.Payload = mlsPayload(testGroup, 1, wire.ContentTypeApplication, string(big))
		seqs = append(seqs, a.accepted(m))
	}
	for i := range n {
		if dv := b.deliver(); dv.Sequence != seqs[i] {
			t.Fatalf("Bilal's message %d has sequence %d, want %d", i, dv.Sequence, seqs[i])
		}
	}
	// The slow client fell behind and was disconnected; its messages wait in its mailbox.
	waitFor(t, "the slow client to be disconnected", func() bool { return len(e.srv.deviceConns(slow.wid())) == 0 })
	if es, err := e.store.Pending(t.Context(), slow.wid(), 0, 1000, 1<<30); err != nil || len(es) != n {
		t.Errorf("slow client's mailbox has %d entries, %v; want %d", len(es), err, n)
	}
	// Reconnecting, it gets the whole backlog, many times the queue's limit: the
	// backlog waits for the client rather than overflowing.
	again := e.session(t, slow)
	for i := range n {
		if dv := again.deliver(); dv.Sequence != seqs[i] {
			t.Fatalf("backlog message %d has sequence %d, want %d", i, dv.Sequence, seqs[i])
		}
	}
	again.sync()
}

func TestDeviceRateLimit(t *testing.T) {
	e := newStoreEnv(t, func(c *Config) { c.DeviceRateLimit = Rate{Events: 3, Per: time.Hour} })
	amina, bilal := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal")
	a := e.session(t, amina)
	for i := range 3 {
		a.accepted(appMessage(i, testGroup, bilal))
	}
	wantErr(t, a.call(appMessage(3, testGroup, bilal)), wire.CodeRateLimited)
	a.sync() // Ping is not limited
	// The limit is per device: another device is unaffected.
	e.session(t, bilal).accepted(appMessage(4, testGroup, amina))
}

func TestIdleConnectionsHoldNoWriter(t *testing.T) {
	e := newStoreEnv(t, nil)
	amina, bilal := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal")
	a, b := e.session(t, amina), e.session(t, bilal)
	for i := range 50 {
		a.accepted(appMessage(i, testGroup, bilal))
	}
	for range 50 {
		b.deliver()
	}
	waitFor(t, "every writer to finish", func() bool {
		for _, d := range []mlsDevice{amina, bilal} {
			for _, c := range e.srv.deviceConns(d.wid()) {
				c.mu.Lock()
				busy := c.writing || c.queue != nil || c.drained != nil
				c.mu.Unlock()
				if busy {
					return false
				}
			}
		}
		return true
	})
}

func TestNoStoreMeansUnavailable(t *testing.T) {
	e := newEnv(t, Rate{})
	c := e.connect(t, enrolDirect(t, e.a, "Amina"))
	for i, m := range []wire.Message{appMessage(1, testGroup), &wire.Ack{Sequences: []uint64{1}}, &wire.GetDirectory{}} {
		wantCode(t, c.request(t, uint32(10+i), m), wire.CodeUnavailable)
	}
}
