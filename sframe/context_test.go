package sframe

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

var (
	testBaseKey  = BaseKey(bytes.Repeat([]byte{0x42}, 16))
	testMetadata = []byte("rtp header bytes")
)

// allSuites is every suite this package implements.
var allSuites = []CipherSuite{
	AES_128_CTR_HMAC_SHA256_80, AES_128_CTR_HMAC_SHA256_64, AES_128_CTR_HMAC_SHA256_32,
	AES_128_GCM_SHA256_128, AES_256_GCM_SHA512_128,
	AES_256_CTR_HMAC_SHA512_80, AES_256_CTR_HMAC_SHA512_64, AES_256_CTR_HMAC_SHA512_32,
}

func newPair(t testing.TB, cs CipherSuite, kid KeyID) (sender, receiver *Context) {
	t.Helper()
	sender, receiver = NewContext(cs), NewContext(cs)
	if err := sender.AddKey(kid, testBaseKey); err != nil {
		t.Fatal(err)
	}
	if err := receiver.AddKey(kid, testBaseKey); err != nil {
		t.Fatal(err)
	}
	return sender, receiver
}

func protect(t testing.TB, c *Context, kid KeyID, pt string) []byte {
	t.Helper()
	frame, err := c.Protect(kid, testMetadata, []byte(pt))
	if err != nil {
		t.Fatalf("Protect: %v", err)
	}
	return frame
}

func TestRoundTripEverySuite(t *testing.T) {
	for _, cs := range allSuites {
		t.Run(cs.String(), func(t *testing.T) {
			const kid = KeyID(0x1234)
			sender, receiver := newPair(t, cs, kid)
			for i, pt := range []string{"", "a", "a 20 ms opus frame, more or less"} {
				frame := protect(t, sender, kid, pt)
				h, n, err := ParseHeader(frame)
				if err != nil || h.KID != kid || h.CTR != uint64(i) {
					t.Fatalf("frame %d header = %+v, %v; want kid %d ctr %d", i, h, err, kid, i)
				}
				if want := n + len(pt) + cs.TagSize(); len(frame) != want {
					t.Fatalf("frame length %d, want %d", len(frame), want)
				}
				got, gotKID, err := receiver.Unprotect(testMetadata, frame)
				if err != nil {
					t.Fatalf("Unprotect: %v", err)
				}
				if gotKID != kid || string(got) != pt {
					t.Fatalf("Unprotect = %q, kid %d; want %q, kid %d", got, gotKID, pt, kid)
				}
			}
		})
	}
}

func TestTamperedFrameRefused(t *testing.T) {
	for _, cs := range allSuites {
		t.Run(cs.String(), func(t *testing.T) {
			const kid = KeyID(9)
			sender, receiver := newPair(t, cs, kid)
			frame := protect(t, sender, kid, "secret media")
			_, hdrLen, err := ParseHeader(frame)
			if err != nil {
				t.Fatal(err)
			}
			for i := range frame {
				bad := bytes.Clone(frame)
				bad[i] ^= 0x01
				if _, _, err := receiver.Unprotect(testMetadata, bad); err == nil {
					t.Fatalf("accepted frame with byte %d flipped (header is %d bytes)", i, hdrLen)
				}
			}
			if _, _, err := receiver.Unprotect([]byte("other metadata"), frame); !errors.Is(err, ErrAuth) {
				t.Fatalf("other metadata: %v, want ErrAuth", err)
			}
			if _, _, err := receiver.Unprotect(testMetadata, frame[:len(frame)-1]); !errors.Is(err, ErrAuth) {
				t.Fatalf("truncated frame: %v, want ErrAuth", err)
			}
			// Failures above must not have moved the replay window.
			pt, _, err := receiver.Unprotect(testMetadata, frame)
			if err != nil || string(pt) != "secret media" {
				t.Fatalf("genuine frame after tampered ones: %q, %v", pt, err)
			}
		})
	}
}

func TestWrongKeyRefused(t *testing.T) {
	sender := NewContext(AES_128_GCM_SHA256_128)
	receiver := NewContext(AES_128_GCM_SHA256_128)
	if err := sender.AddKey(1, testBaseKey); err != nil {
		t.Fatal(err)
	}
	if err := receiver.AddKey(1, BaseKey(bytes.Repeat([]byte{7}, 16))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := receiver.Unprotect(testMetadata, protect(t, sender, 1, "x")); !errors.Is(err, ErrAuth) {
		t.Fatalf("Unprotect with a different base key: %v, want ErrAuth", err)
	}
}

func TestReplayWindow(t *testing.T) {
	const kid = KeyID(3)
	sender, receiver := newPair(t, AES_128_CTR_HMAC_SHA256_80, kid)
	frames := make([][]byte, ReplayWindow+10)
	for i := range frames {
		frames[i] = protect(t, sender, kid, fmt.Sprint("frame ", i))
	}
	accept := func(i int) {
		t.Helper()
		pt, _, err := receiver.Unprotect(testMetadata, frames[i])
		if err != nil {
			t.Fatalf("frame %d refused: %v", i, err)
		}
		if want := fmt.Sprint("frame ", i); string(pt) != want {
			t.Fatalf("frame %d = %q, want %q", i, pt, want)
		}
	}
	refuse := func(i int) {
		t.Helper()
		if _, _, err := receiver.Unprotect(testMetadata, frames[i]); !errors.Is(err, ErrReplay) {
			t.Fatalf("frame %d: %v, want ErrReplay", i, err)
		}
	}

	accept(5)
	refuse(5) // duplicate
	accept(2) // out of order, within the window
	accept(0)
	refuse(2)
	accept(1)
	newest := len(frames) - 1
	accept(newest)
	refuse(newest)
	accept(newest - 3)
	accept(newest - ReplayWindow + 1) // oldest counter still in the window
	refuse(newest - ReplayWindow)     // just outside the window
	refuse(3)                         // far too old, never seen
	refuse(1)
	accept(newest - 1)
	refuse(newest - 3)
}

func TestReplayWindowShift(t *testing.T) {
	for _, step := range []uint64{1, 63, 64, 65, 127, 128, 129, 1000} {
		var w replayWindow
		w.accept(1000)
		w.accept(1000 - 60)
		w.accept(1000 + step)
		for _, c := range []struct {
			ctr  uint64
			seen bool
		}{{1000, true}, {1000 - 60, true}, {1000 + step, true}, {999, false}} {
			age := 1000 + step - c.ctr
			err := w.check(c.ctr)
			switch {
			case age >= ReplayWindow:
				if !errors.Is(err, ErrReplay) {
					t.Errorf("step %d: ctr %d (age %d) allowed, want too old", step, c.ctr, age)
				}
			case c.seen && err == nil:
				t.Errorf("step %d: ctr %d seen but allowed", step, c.ctr)
			case !c.seen && err != nil:
				t.Errorf("step %d: ctr %d unseen but refused: %v", step, c.ctr, err)
			}
		}
	}
}

// TestReplayWindowModel compares the window with a plain set of accepted counters
// over random sequences.
func TestReplayWindowModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 200 {
		var w replayWindow
		accepted := map[uint64]bool{}
		var newest uint64
		started := false
		for range 500 {
			var ctr uint64
			switch {
			case !started || rng.IntN(3) == 0:
				ctr = newest + uint64(rng.IntN(200))
			default:
				ctr = newest - min(newest, uint64(rng.IntN(150)))
			}
			wantOK := !accepted[ctr] && (!started || ctr > newest || newest-ctr < ReplayWindow)
			err := w.check(ctr)
			if (err == nil) != wantOK {
				t.Fatalf("run %d: check(%d) with newest %d = %v, want ok %v", run, ctr, newest, err, wantOK)
			}
			if err == nil {
				w.accept(ctr)
				accepted[ctr] = true
				if !started || ctr > newest {
					newest, started = ctr, true
				}
			}
		}
	}
}

func TestUnknownKeyRefused(t *testing.T) {
	sender, receiver := newPair(t, AES_128_GCM_SHA256_128, 1)
	if err := sender.AddKey(2, testBaseKey); err != nil {
		t.Fatal(err)
	}
	_, kid, err := receiver.Unprotect(testMetadata, protect(t, sender, 2, "x"))
	if !errors.Is(err, ErrUnknownKey) || kid != 2 {
		t.Fatalf("Unprotect for kid 2 = kid %d, %v; want kid 2, ErrUnknownKey", kid, err)
	}
	if _, err := sender.Protect(77, nil, []byte("x")); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Protect with unknown kid: %v, want ErrUnknownKey", err)
	}
	frame := protect(t, sender, 1, "y")
	receiver.RemoveKey(1)
	if _, _, err := receiver.Unprotect(testMetadata, frame); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Unprotect after RemoveKey: %v, want ErrUnknownKey", err)
	}
}

func TestAddKeyErrors(t *testing.T) {
	c := NewContext(AES_128_GCM_SHA256_128)
	if err := c.AddKey(1, testBaseKey); err != nil {
		t.Fatal(err)
	}
	if err := c.AddKey(1, testBaseKey); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second AddKey: %v, want ErrKeyExists", err)
	}
	if err := c.AddKey(2, BaseKey(make([]byte, 15))); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("short base key: %v, want ErrInvalidKey", err)
	}
	if err := NewContext(0x0009).AddKey(1, testBaseKey); !errors.Is(err, ErrUnsupportedCipherSuite) {
		t.Fatalf("unknown suite: %v, want ErrUnsupportedCipherSuite", err)
	}
}

func TestCounterExhausted(t *testing.T) {
	const kid = KeyID(8)
	sender, receiver := newPair(t, AES_128_GCM_SHA256_128, kid)
	ks, err := sender.key(kid)
	if err != nil {
		t.Fatal(err)
	}
	ks.mu.Lock()
	ks.nextCTR = math.MaxUint64 - 1
	ks.mu.Unlock()
	for _, want := range []uint64{math.MaxUint64 - 1, math.MaxUint64} {
		frame := protect(t, sender, kid, "x")
		if h, _, err := ParseHeader(frame); err != nil || h.CTR != want {
			t.Fatalf("header = %+v, %v; want ctr %d", h, err, want)
		}
		if _, _, err := receiver.Unprotect(testMetadata, frame); err != nil {
			t.Fatalf("Unprotect ctr %d: %v", want, err)
		}
	}
	for range 2 {
		if _, err := sender.Protect(kid, nil, []byte("x")); !errors.Is(err, ErrCounterExhausted) {
			t.Fatalf("Protect after the last counter: %v, want ErrCounterExhausted", err)
		}
	}
}

func TestParseHeaderRefusesNonMinimal(t *testing.T) {
	for _, in := range []string{
		"",
		"\x80\x05",             // extended KID 5 fits in K
		"\x08\x07",             // extended CTR 7 fits in C
		"\x90\x00\x09",         // KID 9 with a leading zero byte
		"\x09\x00\xff",         // CTR 255 with a leading zero byte
		"\x0f\x00\x00\x00\x00", // CTR truncated
		"\xf0\x01\x02",         // KID truncated
	} {
		if h, n, err := ParseHeader([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseHeader(%x) = %+v, %d, %v; want ErrMalformed", in, h, n, err)
		}
	}
	sender, receiver := newPair(t, AES_128_GCM_SHA256_128, 5)
	frame := protect(t, sender, 5, "x")
	// Re-encode "KID 5, CTR 0" non-minimally: X set, one KID byte of 5.
	bad := append([]byte{0x80, 0x05}, frame[1:]...)
	if _, _, err := receiver.Unprotect(testMetadata, bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("non-minimal header: %v, want ErrMalformed", err)
	}
}

func TestBaseKeyRedacted(t *testing.T) {
	k := BaseKey([]byte("0123456789abcdef"))
	for _, f := range []string{"%v", "%s", "%x", "%X", "%q", "%d", "%+v", "%#v"} {
		if got := fmt.Sprintf(f, k); bytes.Contains([]byte(got), []byte("0123")) ||
			bytes.Contains([]byte(got), []byte("3031")) || bytes.Contains([]byte(got), []byte("48 49")) {
			t.Errorf("Sprintf(%q) = %q leaks the key", f, got)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	const kids = 4
	const frames = 200
	sender, receiver := NewContext(AES_128_CTR_HMAC_SHA256_80), NewContext(AES_128_CTR_HMAC_SHA256_80)
	for k := range KeyID(kids) {
		if err := sender.AddKey(k, testBaseKey); err != nil {
			t.Fatal(err)
		}
		if err := receiver.AddKey(k, testBaseKey); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, kids*2)
	for k := range KeyID(kids) {
		// Per KID, one goroutine protects and unprotects its own frames while another
		// only protects, drawing counters from the same sequence; every frame the
		// first one unprotects is newer than the last it accepted, so all must pass.
		wg.Go(func() {
			for range frames {
				frame, err := sender.Protect(k, testMetadata, []byte("media"))
				if err != nil {
					errs <- err
					return
				}
				if _, got, err := receiver.Unprotect(testMetadata, frame); err != nil || got != k {
					errs <- fmt.Errorf("kid %d: got kid %d, %v", k, got, err)
					return
				}
			}
		})
		wg.Go(func() {
			for range frames {
				if _, err := sender.Protect(k, nil, []byte("other")); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
