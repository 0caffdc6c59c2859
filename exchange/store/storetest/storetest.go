// Package storetest is the conformance suite for store.Store implementations:
// every implementation runs Run from its own tests, so the exchange can rely on
// the same behaviour from each.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mahfooz/exchange/store"
	"mahfooz/wire"
)

// Run runs the conformance suite. open must return a new, empty store for each
// call; Run closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	for _, tc := range []struct {
		name string
		f    func(t *testing.T, s store.Store)
	}{
		{"EnqueueAndPending", testEnqueuePending},
		{"PendingLimits", testPendingLimits},
		{"Dedup", testDedup},
		{"CommitSequencing", testCommitSequencing},
		{"CommitRace", testCommitRace},
		{"DoneOrder", testDoneOrder},
		{"Ack", testAck},
		{"Expiry", testExpiry},
		{"MailboxQuota", testMailboxQuota},
		{"KeyPackages", testKeyPackages},
		{"Blobs", testBlobs},
		{"BlobExpiryAndQuota", testBlobExpiryAndQuota},
		{"ForgetDevice", testForgetDevice},
		{"Closed", testClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			closed := false
			t.Cleanup(func() {
				if !closed {
					s.Close()
				}
			})
			tc.f(t, s)
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			closed = true
		})
	}
}

var (
	ctx = context.Background()
	t0  = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
)

func dev(n byte) wire.DeviceID { return wire.DeviceID{0: 0xd0, 15: n} }
func mid(n int) wire.MessageID {
	return wire.MessageID{0: 0x11, 12: byte(n >> 24), 13: byte(n >> 16), 14: byte(n >> 8), 15: byte(n)}
}
func blobID(n byte) wire.BlobID      { return wire.BlobID{0: 0xb0, 15: n} }
func group(n byte) wire.GroupID      { return wire.GroupID{0x6, n} }
func payload(n int) []byte           { return fmt.Appendf(nil, "ciphertext %d", n) }
func digestOf(b []byte) store.Digest { return sha256.Sum256(b) }

// msg is an application message from sender to recipients, expiring in a day.
func msg(n int, sender wire.DeviceID, recipients ...wire.DeviceID) *store.Message {
	p := payload(n)
	return &store.Message{
		Sender: sender, ID: mid(n), Digest: digestOf(p), GroupID: group(1), Epoch: 3,
		Recipients: wire.SortDeviceIDs(slices.Clone(recipients)),
		SentAt:     t0, Expires: t0.Add(24 * time.Hour), Payload: p,
	}
}

// commit is a commit in g at epoch, with a payload unique to n.
func commit(n int, g wire.GroupID, epoch uint64, sender wire.DeviceID, recipients ...wire.DeviceID) *store.Message {
	m := msg(n, sender, recipients...)
	m.GroupID, m.Epoch, m.IsCommit = g, epoch, true
	return m
}

func enqueue(t *testing.T, s store.Store, m *store.Message) store.Result {
	t.Helper()
	r, err := store.EnqueueWait(ctx, s, m)
	if err != nil {
		t.Fatalf("Enqueue %x: %v", m.ID[14:], err)
	}
	return r
}

func accepted(t *testing.T, s store.Store, m *store.Message) uint64 {
	t.Helper()
	r := enqueue(t, s, m)
	if r.Stale || r.Duplicate || r.Sequence == 0 {
		t.Fatalf("Enqueue %x: %+v, want accepted", m.ID[14:], r)
	}
	return r.Sequence
}

func pending(t *testing.T, s store.Store, d wire.DeviceID) []store.Entry {
	t.Helper()
	es, err := s.Pending(ctx, d, 0, 1000, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func seqs(es []store.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Sequence
	}
	return out
}

func stats(t *testing.T, s store.Store) store.Stats {
	t.Helper()
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func ack(t *testing.T, s store.Store, d wire.DeviceID, sq ...uint64) {
	t.Helper()
	if err := store.AckWait(ctx, s, d, sq); err != nil {
		t.Fatalf("Ack: %v", err)
	}
}

func testEnqueuePending(t *testing.T, s store.Store) {
	a, b, c := dev(1), dev(2), dev(3)
	m := msg(1, a, b, c)
	seq := accepted(t, s, m)
	for _, d := range []wire.DeviceID{b, c} {
		es := pending(t, s, d)
		if len(es) != 1 {
			t.Fatalf("recipient %x has %d entries, want 1", d[15], len(es))
		}
		e := es[0]
		if e.Sequence != seq || e.MessageID != m.ID || e.Sender != a || !bytes.Equal(e.GroupID, m.GroupID) ||
			!e.SentAt.Equal(t0) || !bytes.Equal(e.Payload, m.Payload) {
			t.Errorf("entry %+v does not match the message (sequence %d)", e, seq)
		}
	}
	if es := pending(t, s, a); len(es) != 0 {
		t.Errorf("the sender has %d entries of its own message", len(es))
	}
	if st := stats(t, s); st.Messages != 1 || st.MailboxEntries != 2 {
		t.Errorf("stats %+v: want the payload stored once with 2 mailbox entries", st)
	}
}

func testPendingLimits(t *testing.T, s store.Store) {
	a, b := dev(1), dev(2)
	var want []uint64
	for i := range 10 {
		want = append(want, accepted(t, s, msg(i, a, b)))
	}
	if !slices.IsSorted(want) || len(slices.Compact(slices.Clone(want))) != len(want) {
		t.Fatalf("sequences %v not strictly increasing", want)
	}
	if got := seqs(pending(t, s, b)); !slices.Equal(got, want) {
		t.Fatalf("pending %v, want %v", got, want)
	}
	es, err := s.Pending(ctx, b, want[3], 4, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if got := seqs(es); !slices.Equal(got, want[4:8]) {
		t.Errorf("after %d, 4 entries: %v, want %v", want[3], got, want[4:8])
	}
	es, err = s.Pending(ctx, b, 0, 100, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := seqs(es); !slices.Equal(got, want[:1]) {
		t.Errorf("1 byte budget: %v, want exactly the first entry", got)
	}
	budget := 2*len(payload(0)) + 1 // more than two payloads, less than three
	es, err = s.Pending(ctx, b, 0, 100, budget)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 {
		t.Errorf("budget of %d bytes gave %d entries, want 3 (stop once reached)", budget, len(es))
	}
	if es, _ := s.Pending(ctx, b, want[9], 100, 1<<30); len(es) != 0 {
		t.Errorf("after the last sequence: %d entries", len(es))
	}
}

func testDedup(t *testing.T, s store.Store) {
	a, b, c := dev(1), dev(2), dev(3)
	m := msg(1, a, b)
	seq := accepted(t, s, m)
	accepted(t, s, msg(2, a, b)) // something in between
	again := *m
	r := enqueue(t, s, &again)
	if !r.Duplicate || r.Sequence != seq {
		t.Fatalf("retransmission: %+v, want Duplicate with sequence %d", r, seq)
	}
	if es := pending(t, s, b); len(es) != 2 {
		t.Errorf("retransmission stored a second copy: %d entries", len(es))
	}
	altered := *m
	altered.Payload = []byte("other ciphertext")
	altered.Digest = digestOf(altered.Payload)
	if _, err := store.EnqueueWait(ctx, s, &altered); !errors.Is(err, store.ErrConflict) {
		t.Errorf("same ID, different content: %v, want ErrConflict", err)
	}
	// The ID is the sender's: another sender may use the same one.
	other := *m
	other.Sender = c
	if r := enqueue(t, s, &other); r.Duplicate || r.Sequence == seq {
		t.Errorf("another sender's message with the same ID: %+v", r)
	}
	if st := stats(t, s); st.Messages != 3 {
		t.Errorf("%d payloads stored, want 3", st.Messages)
	}
}

func testCommitSequencing(t *testing.T, s store.Store) {
	a, b := dev(1), dev(2)
	g := group(7)
	// A group not seen yet starts at its first commit's epoch.
	first := commit(1, g, 5, a, b)
	accepted(t, s, first)
	for _, tc := range []struct {
		epoch uint64
		n     int
	}{{5, 2}, {4, 3}, {7, 4}} {
		r := enqueue(t, s, commit(tc.n, g, tc.epoch, a, b))
		if !r.Stale || r.CurrentEpoch != 6 || r.Sequence != 0 {
			t.Errorf("commit at epoch %d: %+v, want stale with current epoch 6", tc.epoch, r)
		}
	}
	// A retransmission of the accepted commit is a duplicate, not a stale commit.
	if r := enqueue(t, s, first); !r.Duplicate {
		t.Errorf("retransmitted commit: %+v, want Duplicate", r)
	}
	// Application messages are not sequenced and do not move the epoch.
	accepted(t, s, msg(5, a, b))
	m := msg(6, a, b)
	m.GroupID, m.Epoch = g, 2
	accepted(t, s, m)
	accepted(t, s, commit(7, g, 6, a, b))
	if r := enqueue(t, s, commit(8, g, 6, a, b)); !r.Stale || r.CurrentEpoch != 7 {
		t.Errorf("second commit at 6: %+v, want stale with 7", r)
	}
	// Stale commits stored nothing: b has the first commit, two messages and the
	// commit at 6.
	if es := pending(t, s, b); len(es) != 4 {
		t.Errorf("recipient has %d entries, want 4", len(es))
	}
	// A stale commit's ID was not recorded, so the sender may reuse it.
	m = commit(8, g, 7, a, b)
	accepted(t, s, m)
	// Other groups are independent; a commit to no recipients still sequences.
	accepted(t, s, commit(9, group(8), 0, a))
	if r := enqueue(t, s, commit(10, group(8), 0, a)); !r.Stale || r.CurrentEpoch != 1 {
		t.Errorf("commit to no recipients did not sequence: %+v", r)
	}
	if st := stats(t, s); st.Groups != 2 {
		t.Errorf("%d groups, want 2", st.Groups)
	}
}

func testCommitRace(t *testing.T, s store.Store) {
	const committers = 16
	g := group(9)
	b := dev(99)
	for epoch := uint64(10); epoch < 13; epoch++ {
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			winners  int
			badStale []store.Result
		)
		for i := range committers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := store.EnqueueWait(ctx, s, commit(int(epoch)*100+i, g, epoch, dev(byte(i)), b))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Errorf("commit: %v", err)
				case !r.Stale:
					winners++
				case r.CurrentEpoch != epoch+1:
					badStale = append(badStale, r)
				}
			}()
		}
		wg.Wait()
		if winners != 1 {
			t.Fatalf("epoch %d: %d commits accepted, want exactly 1", epoch, winners)
		}
		if len(badStale) > 0 {
			t.Errorf("epoch %d: losers told %+v, want current epoch %d", epoch, badStale[0], epoch+1)
		}
	}
	if es := pending(t, s, b); len(es) != 3 {
		t.Errorf("recipient has %d commits, want 3 (one per epoch)", len(es))
	}
}

func testDoneOrder(t *testing.T, s store.Store) {
	const senders, each = 8, 40
	var (
		mu      sync.Mutex
		got     []uint64
		inDone  atomic.Bool
		overlap atomic.Bool
		wg      sync.WaitGroup
	)
	wg.Add(senders * each)
	for i := range senders {
		go func() {
			for j := range each {
				s.Enqueue(msg(i*1000+j, dev(byte(i)), dev(200)), func(r store.Result, err error) {
					defer wg.Done()
					if inDone.Swap(true) {
						overlap.Store(true)
					}
					defer inDone.Store(false)
					if err != nil {
						t.Errorf("Enqueue: %v", err)
						return
					}
					mu.Lock()
					got = append(got, r.Sequence)
					mu.Unlock()
				})
			}
		}()
	}
	wg.Wait()
	if overlap.Load() {
		t.Error("done functions ran concurrently")
	}
	if !slices.IsSorted(got) {
		t.Errorf("done called out of sequence order: %v", got)
	}
	if n := len(slices.Compact(got)); n != senders*each {
		t.Errorf("%d distinct sequences, want %d", n, senders*each)
	}
	// One goroutine's calls are decided in call order.
	var order []uint64
	var wg2 sync.WaitGroup
	wg2.Add(20)
	for j := range 20 {
		s.Enqueue(msg(90000+j, dev(1), dev(200)), func(r store.Result, err error) {
			order = append(order, r.Sequence) // done calls never overlap
			wg2.Done()
		})
	}
	wg2.Wait()
	if !slices.IsSorted(order) {
		t.Errorf("one goroutine's messages sequenced out of call order: %v", order)
	}
}

func testAck(t *testing.T, s store.Store) {
	a, b, c := dev(1), dev(2), dev(3)
	s1 := accepted(t, s, msg(1, a, b, c))
	s2 := accepted(t, s, msg(2, a, b))
	ack(t, s, b, s1, s2+1000) // unknown sequences are ignored
	if got := seqs(pending(t, s, b)); !slices.Equal(got, []uint64{s2}) {
		t.Errorf("after ack b has %v, want [%d]", got, s2)
	}
	// c's entry is its own: b's ack did not touch it, and a's ack of it is ignored.
	ack(t, s, a, s1)
	if got := seqs(pending(t, s, c)); !slices.Equal(got, []uint64{s1}) {
		t.Errorf("c has %v, want [%d]", got, s1)
	}
	if st := stats(t, s); st.Messages != 2 {
		t.Errorf("%d payloads, want 2 while c has not acknowledged", st.Messages)
	}
	ack(t, s, c, s1)
	ack(t, s, b, s2)
	ack(t, s, b, s2) // twice is fine
	if st := stats(t, s); st.Messages != 0 || st.MailboxEntries != 0 {
		t.Errorf("after every ack: %+v, want no payload and no entry", st)
	}
	// The dedup record outlives the entries: a retransmission is still recognised.
	if r := enqueue(t, s, msg(1, a, b, c)); !r.Duplicate || r.Sequence != s1 {
		t.Errorf("retransmission after delivery: %+v", r)
	}
	// A commit to nobody sequences without storing a payload.
	accepted(t, s, commit(3, group(3), 0, a))
	if st := stats(t, s); st.Messages != 0 {
		t.Errorf("commit to no recipients stored a payload: %+v", st)
	}
}

func testExpiry(t *testing.T, s store.Store) {
	a, b, c := dev(1), dev(2), dev(3)
	m := msg(1, a, b, c)
	m.Expires = t0.Add(time.Hour)
	seq := accepted(t, s, m)
	keep := msg(2, a, c) // expires in a day
	accepted(t, s, keep)
	ack(t, s, b, seq)

	sw, err := s.Sweep(ctx, t0.Add(30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(sw.Notices) != 0 || sw.Messages != 0 {
		t.Fatalf("sweep before the TTL removed %+v", sw)
	}
	sw, err = s.Sweep(ctx, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := store.Notice{Sender: a, MessageID: m.ID, Recipient: c}
	if sw.Messages != 1 || len(sw.Notices) != 1 || sw.Notices[0] != want {
		t.Fatalf("sweep at the TTL: %+v, want one message and a notice for c only", sw)
	}
	if got := pending(t, s, c); len(got) != 1 || got[0].MessageID != keep.ID {
		t.Errorf("c still has the expired message: %v", seqs(got))
	}
	if st := stats(t, s); st.Messages != 1 || st.Notices != 1 {
		t.Errorf("stats after expiry %+v", st)
	}
	// The dedup record went with the TTL: the same ID is a new message now.
	again := *m
	again.SentAt, again.Expires = t0.Add(time.Hour), t0.Add(2*time.Hour)
	if r := enqueue(t, s, &again); r.Duplicate {
		t.Errorf("dedup record kept past the TTL: %+v", r)
	}
	ns, err := s.TakeNotices(ctx, a, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 || ns[0] != want {
		t.Errorf("TakeNotices: %+v, want [%+v]", ns, want)
	}
	if ns, _ := s.TakeNotices(ctx, a, 100); len(ns) != 0 {
		t.Errorf("notices not deleted when taken: %+v", ns)
	}
	// A notice not taken is kept for as long again as the TTL but at least
	// MinNoticeRetention (here the longer), then deleted. (The message sent again
	// above went to b and c, and neither acknowledged it.)
	sw, err = s.Sweep(ctx, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(sw.Notices) != 2 {
		t.Fatalf("second expiry: %+v, want notices for b and c", sw)
	}
	if _, err := s.Sweep(ctx, t0.Add(2*time.Hour+store.MinNoticeRetention-time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	// By now keep (a day's TTL) has expired too: its notice for c joins them.
	if st := stats(t, s); st.Notices != 3 {
		t.Errorf("notice deleted before its time: %+v, want 3", st)
	}
	if _, err := s.Sweep(ctx, t0.Add(2*time.Hour+store.MinNoticeRetention)); err != nil {
		t.Fatal(err)
	}
	if st := stats(t, s); st.Notices != 1 {
		t.Errorf("notice kept past its retention: %+v, want only keep's", st)
	}
	if ns, _ := s.TakeNotices(ctx, a, 100); len(ns) != 1 || ns[0].MessageID != keep.ID {
		t.Errorf("notices left: %+v, want keep's", ns)
	}
	// TakeNotices honours its limit.
	for i := range 5 {
		m := msg(10+i, a, c)
		m.Expires = t0.Add(5 * time.Hour)
		accepted(t, s, m)
	}
	if _, err := s.Sweep(ctx, t0.Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	ns1, _ := s.TakeNotices(ctx, a, 3)
	ns2, _ := s.TakeNotices(ctx, a, 3)
	if len(ns1) != 3 || len(ns2) != 2 {
		t.Errorf("TakeNotices with limit 3: %d then %d, want 3 then 2", len(ns1), len(ns2))
	}
}

func testMailboxQuota(t *testing.T, s store.Store) {
	a, b, c := dev(1), dev(2), dev(3)
	s.SetQuotas(store.Quotas{MailboxEntries: 2})
	s1 := accepted(t, s, msg(1, a, b))
	accepted(t, s, msg(2, a, b))
	if _, err := store.EnqueueWait(ctx, s, msg(3, a, b, c)); !errors.Is(err, store.ErrQuota) {
		t.Fatalf("third message to a full mailbox: %v, want ErrQuota", err)
	}
	if es := pending(t, s, c); len(es) != 0 {
		t.Error("a refused message was stored for another recipient")
	}
	ack(t, s, b, s1)
	accepted(t, s, msg(3, a, b, c))
	s.SetQuotas(store.Quotas{MailboxBytes: int64(len(payload(4))) * 2})
	accepted(t, s, msg(4, a, c))
	if _, err := store.EnqueueWait(ctx, s, msg(5, a, c)); !errors.Is(err, store.ErrQuota) {
		t.Errorf("beyond the byte quota: %v, want ErrQuota", err)
	}
}

func testKeyPackages(t *testing.T, s store.Store) {
	d1, d2, d3 := dev(1), dev(2), dev(3)
	claim := func(devs ...wire.DeviceID) []wire.ClaimedKeyPackage {
		t.Helper()
		out, err := s.ClaimKeyPackages(ctx, devs)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	one := func(d wire.DeviceID) string {
		t.Helper()
		out := claim(d)
		if len(out) == 0 {
			return ""
		}
		if len(out) != 1 || out[0].Device != d {
			t.Fatalf("claim for one device: %+v", out)
		}
		return string(out[0].KeyPackage)
	}
	if err := s.AddKeyPackages(ctx, d1, [][]byte{[]byte("kp1"), []byte("kp2")}); err != nil {
		t.Fatal(err)
	}
	if n, lr, err := s.KeyPackageCount(ctx, d1); err != nil || n != 2 || lr {
		t.Errorf("count %d, last resort %v, %v; want 2, false", n, lr, err)
	}
	if got := one(d1); got != "kp1" {
		t.Errorf("first claim %q, want the oldest, kp1", got)
	}
	if got := one(d1); got != "kp2" {
		t.Errorf("second claim %q, want kp2 (each one-time package once)", got)
	}
	if got := one(d1); got != "" {
		t.Errorf("claim from an empty stock: %q", got)
	}
	if err := s.SetLastResortKeyPackage(ctx, d1, []byte("lr1")); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := one(d1); got != "lr1" {
			t.Errorf("claim with only a last-resort package: %q, want lr1 every time", got)
		}
	}
	if err := s.SetLastResortKeyPackage(ctx, d1, []byte("lr2")); err != nil {
		t.Fatal(err)
	}
	if got := one(d1); got != "lr2" {
		t.Errorf("after replacing the last-resort package: %q, want lr2", got)
	}
	if err := s.AddKeyPackages(ctx, d1, [][]byte{[]byte("kp3")}); err != nil {
		t.Fatal(err)
	}
	if n, lr, _ := s.KeyPackageCount(ctx, d1); n != 1 || !lr {
		t.Errorf("count %d, last resort %v; want 1, true", n, lr)
	}
	if got := one(d1); got != "kp3" {
		t.Errorf("one-time package not preferred: %q", got)
	}
	if err := s.AddKeyPackages(ctx, d2, [][]byte{[]byte("d2")}); err != nil {
		t.Fatal(err)
	}
	got := claim(d2, d3, d1)
	if len(got) != 2 || got[0].Device != d2 || string(got[0].KeyPackage) != "d2" ||
		got[1].Device != d1 || string(got[1].KeyPackage) != "lr2" {
		t.Errorf("claim for three devices: %+v, want d2's then d1's last resort, d3 left out", got)
	}
	s.SetQuotas(store.Quotas{KeyPackages: 3})
	if err := s.AddKeyPackages(ctx, d3, [][]byte{[]byte("a"), []byte("b")}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddKeyPackages(ctx, d3, [][]byte{[]byte("c"), []byte("d")}); !errors.Is(err, store.ErrQuota) {
		t.Errorf("beyond the quota: %v, want ErrQuota", err)
	}
	if n, _, _ := s.KeyPackageCount(ctx, d3); n != 2 {
		t.Errorf("a refused upload stored %d packages", n-2)
	}
}

func testBlobs(t *testing.T, s store.Store) {
	owner, r1, r2, other := dev(1), dev(2), dev(3), dev(4)
	id := blobID(1)
	b := store.Blob{ID: id, Owner: owner, Recipients: []wire.DeviceID{r1, r2}, Expires: t0.Add(time.Hour)}
	if err := s.CreateBlob(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateBlob(ctx, b); err != nil {
		t.Errorf("creating the same blob again: %v", err)
	}
	for _, bad := range []store.Blob{
		{ID: id, Owner: other, Recipients: b.Recipients, Expires: b.Expires},
		{ID: id, Owner: owner, Recipients: []wire.DeviceID{r1}, Expires: b.Expires},
	} {
		if err := s.CreateBlob(ctx, bad); !errors.Is(err, store.ErrConflict) {
			t.Errorf("blob ID reused differently: %v, want ErrConflict", err)
		}
	}
	appendChunk := func(who wire.DeviceID, bid wire.BlobID, i uint32, last bool, data string) error {
		return s.AppendChunk(ctx, who, bid, i, last, []byte(data))
	}
	for _, tc := range []struct {
		name  string
		err   error
		apply func() error
	}{
		{"not the owner", store.ErrForbidden, func() error { return appendChunk(other, id, 0, false, "x") }},
		{"unknown blob", store.ErrNotFound, func() error { return appendChunk(owner, blobID(9), 0, false, "x") }},
		{"skipping index 0", store.ErrOutOfOrder, func() error { return appendChunk(owner, id, 1, false, "x") }},
		{"chunk 0", nil, func() error { return appendChunk(owner, id, 0, false, "first") }},
		{"chunk 0 again", nil, func() error { return appendChunk(owner, id, 0, false, "first") }},
		{"chunk 0 altered", store.ErrOutOfOrder, func() error { return appendChunk(owner, id, 0, false, "FIRST") }},
		{"chunk 1, last", nil, func() error { return appendChunk(owner, id, 1, true, "second") }},
		{"after the last", store.ErrOutOfOrder, func() error { return appendChunk(owner, id, 2, true, "third") }},
	} {
		if err := tc.apply(); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	read := func(who wire.DeviceID, bid wire.BlobID, i uint32) (store.Chunk, error) {
		return s.ReadChunk(ctx, who, bid, i)
	}
	if c, err := read(r1, id, 1); err != nil || string(c.Data) != "second" || !c.Last {
		t.Errorf("recipient reads chunk 1: %q last=%v, %v", c.Data, c.Last, err)
	}
	if c, err := read(r2, id, 0); err != nil || string(c.Data) != "first" || c.Last {
		t.Errorf("recipient reads chunk 0: %q last=%v, %v", c.Data, c.Last, err)
	}
	for _, tc := range []struct {
		name string
		who  wire.DeviceID
		bid  wire.BlobID
		i    uint32
		err  error
	}{
		{"non-recipient", other, id, 0, store.ErrForbidden},
		{"the owner, not a recipient", owner, id, 0, store.ErrForbidden},
		{"no such chunk", r1, id, 2, store.ErrNotFound},
		{"no such blob", r1, blobID(9), 0, store.ErrNotFound},
	} {
		if _, err := read(tc.who, tc.bid, tc.i); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	if err := s.BlobFetched(ctx, other, id); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("non-recipient marks fetched: %v, want ErrForbidden", err)
	}
	if err := s.BlobFetched(ctx, r1, id); err != nil {
		t.Fatal(err)
	}
	if _, err := read(r2, id, 1); err != nil {
		t.Errorf("blob gone before every recipient fetched it: %v", err)
	}
	if err := s.BlobFetched(ctx, r2, id); err != nil {
		t.Fatal(err)
	}
	if _, err := read(r2, id, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("blob still there after every recipient fetched it: %v", err)
	}
	if st := stats(t, s); st.Blobs != 0 || st.BlobBytes != 0 {
		t.Errorf("stats after the last fetch: %+v", st)
	}
	// A blob fetched by everyone before it is complete stays until it is.
	id2 := blobID(2)
	if err := s.CreateBlob(ctx, store.Blob{ID: id2, Owner: owner, Recipients: []wire.DeviceID{r1}, Expires: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := appendChunk(owner, id2, 0, false, "part"); err != nil {
		t.Fatal(err)
	}
	if err := s.BlobFetched(ctx, r1, id2); err != nil {
		t.Fatal(err)
	}
	if err := appendChunk(owner, id2, 1, true, "end"); err != nil {
		t.Errorf("blob deleted while still being uploaded: %v", err)
	}
}

func testBlobExpiryAndQuota(t *testing.T, s store.Store) {
	owner, r := dev(1), dev(2)
	s.SetQuotas(store.Quotas{BlobBytes: 10})
	for i, exp := range []time.Duration{time.Hour, 2 * time.Hour} {
		if err := s.CreateBlob(ctx, store.Blob{ID: blobID(byte(i)), Owner: owner, Recipients: []wire.DeviceID{r}, Expires: t0.Add(exp)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AppendChunk(ctx, owner, blobID(0), 0, true, []byte("12345678")); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendChunk(ctx, owner, blobID(1), 0, true, []byte("abc")); !errors.Is(err, store.ErrQuota) {
		t.Fatalf("beyond the blob quota: %v, want ErrQuota", err)
	}
	sw, err := s.Sweep(ctx, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if sw.Blobs != 1 {
		t.Errorf("sweep deleted %d blobs, want 1", sw.Blobs)
	}
	if _, err := s.ReadChunk(ctx, r, blobID(0), 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired blob still readable: %v", err)
	}
	if err := s.AppendChunk(ctx, owner, blobID(1), 0, true, []byte("abc")); err != nil {
		t.Errorf("quota not freed by expiry: %v", err)
	}
}

func testForgetDevice(t *testing.T, s store.Store) {
	a, b, c := dev(1), dev(2), dev(3)
	accepted(t, s, msg(1, a, b, c))
	accepted(t, s, msg(2, a, b))
	if err := s.AddKeyPackages(ctx, b, [][]byte{[]byte("kp")}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateBlob(ctx, store.Blob{ID: blobID(1), Owner: a, Recipients: []wire.DeviceID{b, c}, Expires: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendChunk(ctx, a, blobID(1), 0, true, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.BlobFetched(ctx, c, blobID(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetDevice(ctx, b); err != nil {
		t.Fatal(err)
	}
	if es := pending(t, s, b); len(es) != 0 {
		t.Errorf("forgotten device still has %d entries", len(es))
	}
	if es := pending(t, s, c); len(es) != 1 {
		t.Errorf("another recipient lost its entry: %d", len(es))
	}
	st := stats(t, s)
	if st.Messages != 1 || st.KeyPackages != 0 || st.Blobs != 0 {
		t.Errorf("after forgetting: %+v, want 1 message, no KeyPackage, and the blob done with", st)
	}
}

func testClosed(t *testing.T, s store.Store) {
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := store.EnqueueWait(ctx, s, msg(1, dev(1), dev(2))); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Enqueue after Close: %v, want ErrClosed", err)
	}
	if err := store.AckWait(ctx, s, dev(1), []uint64{1}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Ack after Close: %v, want ErrClosed", err)
	}
	if err := s.AddKeyPackages(ctx, dev(1), [][]byte{{1}}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("AddKeyPackages after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
