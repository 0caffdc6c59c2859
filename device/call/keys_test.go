package call

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"mahfooz/sframe"
)

// clock is a settable clock for grace-period tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func baseKey(b byte) sframe.BaseKey { return bytes.Repeat([]byte{b}, 16) }

func member(t *testing.T, clk *clock, leaf uint32, epochs ...uint64) *Keys {
	t.Helper()
	k := NewKeys(time.Second, clk.now)
	for _, e := range epochs {
		if err := k.SetEpoch(Epoch{Number: e, Leaf: leaf, BaseKey: baseKey(byte(e)), ContextID: 1}); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func TestKeysCarryFramesBetweenMembers(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	alice, bob := member(t, clk, 0, 1), member(t, clk, 3, 1)
	ct, err := alice.AppendProtect(nil, []byte{0, 0, 0, 7}, []byte("opus frame"))
	if err != nil {
		t.Fatal(err)
	}
	pt, leaf, err := bob.AppendUnprotect(nil, []byte{0, 0, 0, 7}, ct)
	if err != nil || leaf != 0 || string(pt) != "opus frame" {
		t.Fatalf("bob opened %q from leaf %d, err %v", pt, leaf, err)
	}
	if _, _, err := bob.AppendUnprotect(nil, []byte{0, 0, 0, 7}, ct); !errors.Is(err, sframe.ErrReplay) {
		t.Fatalf("replayed frame: err %v, want ErrReplay", err)
	}
	if _, _, err := bob.AppendUnprotect(nil, []byte{0, 0, 0, 8}, append([]byte(nil), ct...)); err == nil {
		t.Fatal("a frame with altered metadata (RTP timestamp) opened")
	}
	if _, _, err := alice.AppendUnprotect(nil, []byte{0, 0, 0, 7}, ct); !errors.Is(err, ErrOwnFrame) {
		t.Fatalf("own frame echoed back: err %v, want ErrOwnFrame", err)
	}
}

func TestKeysOldEpochGrace(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	alice, bob := member(t, clk, 0, 1), member(t, clk, 1, 1)
	old, _ := alice.AppendProtect(nil, nil, []byte("sent in epoch 1"))
	old2, _ := alice.AppendProtect(nil, nil, []byte("also epoch 1"))
	// Bob moves to epoch 2 first; alice's frames of epoch 1 are in flight.
	if err := bob.SetEpoch(Epoch{Number: 2, Leaf: 1, BaseKey: baseKey(2), ContextID: 2}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bob.AppendUnprotect(nil, nil, old); err != nil {
		t.Fatalf("frame of the previous epoch within grace: %v", err)
	}
	clk.add(2 * time.Second)
	if _, _, err := bob.AppendUnprotect(nil, nil, old2); !errors.Is(err, ErrOldEpoch) {
		t.Fatalf("frame of the previous epoch after grace: err %v, want ErrOldEpoch", err)
	}
	if err := bob.SetEpoch(Epoch{Number: 2, Leaf: 1, BaseKey: baseKey(2), ContextID: 3}); err == nil {
		t.Fatal("SetEpoch accepted the same epoch twice")
	}
}

func TestKeysRemovedMemberCannotOpenNextEpoch(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	alice, carol := member(t, clk, 0, 1, 2), member(t, clk, 2, 1) // carol was removed in epoch 2
	ct, _ := alice.AppendProtect(nil, nil, []byte("after the removal"))
	if _, _, err := carol.AppendUnprotect(nil, nil, ct); err == nil {
		t.Fatal("removed member opened a frame of the next epoch")
	}
	// Even knowing the epoch number, without its base key nothing opens.
	if err := carol.SetEpoch(Epoch{Number: 2, Leaf: 2, BaseKey: baseKey(99), ContextID: 1}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := carol.AppendUnprotect(nil, nil, ct); !errors.Is(err, sframe.ErrAuth) {
		t.Fatalf("wrong base key: err %v, want ErrAuth", err)
	}
}

func TestKeysForgedKIDsLeaveNothing(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	bob := member(t, clk, 1, 1)
	for ctx := uint64(1); ctx < 3*maxKIDsPerEpoch; ctx++ {
		kid, _ := Layout.KeyID(ctx, 5, 1)
		forged := sframe.AppendHeader(nil, sframe.Header{KID: kid, CTR: 0})
		forged = append(forged, make([]byte, 40)...)
		if _, _, err := bob.AppendUnprotect(nil, nil, forged); err == nil {
			t.Fatal("forged frame opened")
		}
	}
	bob.mu.Lock()
	n := len(bob.cur.kids)
	bob.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d receive keys kept for forged KIDs", n)
	}
	// A real sender still gets through.
	alice := member(t, clk, 0, 1)
	ct, _ := alice.AppendProtect(nil, nil, []byte("real"))
	if _, _, err := bob.AppendUnprotect(nil, nil, ct); err != nil {
		t.Fatal(err)
	}
}

func TestKeysContextIDsSeparateCalls(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	a := NewKeys(0, clk.now)
	b := NewKeys(0, clk.now)
	a.SetEpoch(Epoch{Number: 4, Leaf: 0, BaseKey: baseKey(4), ContextID: 1})
	b.SetEpoch(Epoch{Number: 4, Leaf: 0, BaseKey: baseKey(4), ContextID: 2})
	x, _ := a.AppendProtect(nil, nil, []byte("same"))
	y, _ := b.AppendProtect(nil, nil, []byte("same"))
	if bytes.Equal(x[len(x)-20:], y[len(y)-20:]) {
		t.Fatal("two calls in one epoch produced the same ciphertext: a nonce was reused")
	}
	if _, err := NewKeys(0, nil).AppendProtect(nil, nil, []byte("x")); !errors.Is(err, ErrNoEpoch) {
		t.Fatalf("protect before any epoch: %v", err)
	}
}

func FuzzUnprotect(f *testing.F) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	alice := NewKeys(0, clk.now)
	alice.SetEpoch(Epoch{Number: 1, Leaf: 0, BaseKey: baseKey(1), ContextID: 1})
	ct, _ := alice.AppendProtect(nil, []byte{1, 2, 3, 4}, []byte("frame"))
	f.Add([]byte{1, 2, 3, 4}, ct)
	f.Add([]byte{}, []byte{0x99})
	f.Fuzz(func(t *testing.T, meta, data []byte) {
		bob := NewKeys(0, clk.now)
		bob.SetEpoch(Epoch{Number: 1, Leaf: 1, BaseKey: baseKey(1), ContextID: 1})
		bob.AppendUnprotect(nil, meta, data)
	})
}
