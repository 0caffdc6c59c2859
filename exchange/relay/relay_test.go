package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"mahfooz/device/rtc"
	"mahfooz/wire"
)

const waitTime = 10 * time.Second

func testLogger() *slog.Logger {
	if os.Getenv("MAHFOOZ_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newRelay(t testing.TB, tap func(wire.CallID, wire.DeviceID, *rtp.Packet)) *Relay {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Conn: conn, Tap: tap, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("closing the relay: %v", err)
		}
	})
	return r
}

func dev(n byte) wire.DeviceID  { return wire.DeviceID{0: n, 15: n} }
func callID(n byte) wire.CallID { return wire.CallID{0: 0xCA, 1: n} }

// dial connects a Link for d to call on r.
func dial(t testing.TB, r *Relay, d wire.DeviceID, call wire.CallID, members ...wire.DeviceID) (*rtc.Link, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	l, err := rtc.Dial(ctx, rtc.Config{Logger: testLogger()}, func(ctx context.Context, offer string) (string, error) {
		return r.Join(ctx, d, call, wire.SortDeviceIDs(members), offer)
	})
	if err == nil {
		t.Cleanup(func() { l.Close() })
	}
	return l, err
}

func mustDial(t testing.TB, r *Relay, d wire.DeviceID, call wire.CallID, members ...wire.DeviceID) *rtc.Link {
	t.Helper()
	l, err := dial(t, r, d, call, members...)
	if err != nil {
		t.Fatalf("dialling as %x: %v", d[0], err)
	}
	return l
}

// packet is one received packet, decoded from the test payload "name:index".
type packet struct {
	from   string
	index  int
	ts     uint32
	marker bool
}

// receive reads l until it ends, sending each packet to a channel.
func receive(l *rtc.Link) <-chan packet {
	ch := make(chan packet, 10000)
	go func() {
		defer close(ch)
		buf := make([]byte, 1500)
		for {
			ts, marker, payload, err := l.ReadRTP(buf)
			if err != nil {
				return
			}
			name, idx, _ := strings.Cut(string(payload), ":")
			i, _ := strconv.Atoi(idx)
			ch <- packet{from: name, index: i, ts: ts, marker: marker}
		}
	}()
	return ch
}

func payloadFor(name string, i int) []byte { return []byte(fmt.Sprintf("%s:%d", name, i)) }

// waitDone fails unless l's Done closes within waitTime.
func waitDone(t testing.TB, l *rtc.Link, what string) {
	t.Helper()
	select {
	case <-l.Done():
	case <-time.After(waitTime):
		t.Fatalf("%s: link still up", what)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTime)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// warmUp has every link send until every other link has received from it, so
// that each forwarding path is known to be open.
func warmUp(t testing.TB, names []string, links []*rtc.Link, rx []<-chan packet) {
	t.Helper()
	heard := make([]map[string]bool, len(links))
	for i := range heard {
		heard[i] = map[string]bool{}
	}
	deadline := time.Now().Add(waitTime)
	for n := 0; ; n++ {
		done := true
		for i := range links {
			if len(heard[i]) < len(links)-1 {
				done = false
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm-up: heard %v", heard)
		}
		for i, l := range links {
			if err := l.WriteRTP(uint32(n), false, []byte("warm-"+names[i]+":0")); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond)
		for i := range rx {
		drain:
			for {
				select {
				case p := <-rx[i]:
					heard[i][p.from] = true
				default:
					break drain
				}
			}
		}
	}
}

// TestForward runs calls of two and three participants: each receives every
// packet of the others, with timestamp, marker and payload intact, and none of
// its own. All links number their packets from the same sequence number, so a
// receiver gets them all only if the relay renumbers each outgoing stream
// (SRTP replay protection would drop the repeats).
func TestForward(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			var tapped sync.Map // sender -> *atomic.Int64 of measured packets
			call := callID(byte(n))
			r := newRelay(t, func(c wire.CallID, from wire.DeviceID, p *rtp.Packet) {
				if c != call {
					t.Errorf("tap saw call %s", c)
				}
				if strings.HasPrefix(string(p.Payload), "warm-") {
					return
				}
				v, _ := tapped.LoadOrStore(from, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			})
			var members []wire.DeviceID
			names := []string{"alice", "bilal", "chen"}[:n]
			for i := range n {
				members = append(members, dev(byte(i+1)))
			}
			links := make([]*rtc.Link, n)
			rx := make([]<-chan packet, n)
			for i := range n {
				links[i] = mustDial(t, r, members[i], call, members...)
				rx[i] = receive(links[i])
			}
			if got := r.Participants(call); len(got) != n {
				t.Fatalf("participants %d, want %d", len(got), n)
			}
			warmUp(t, names, links, rx)

			const count = 100
			var wg sync.WaitGroup
			for i, l := range links {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := range count {
						if err := l.WriteRTP(uint32(k*960), k%10 == 0, payloadFor(names[i], k)); err != nil {
							t.Errorf("%s writing: %v", names[i], err)
							return
						}
						time.Sleep(2 * time.Millisecond)
					}
				}()
			}
			wg.Wait()

			for i := range links {
				got := map[string]map[int]bool{}
				want := (n - 1) * count
				total := 0
				deadline := time.After(waitTime)
				for total < want {
					select {
					case p := <-rx[i]:
						if strings.HasPrefix(p.from, "warm-") {
							continue
						}
						if p.from == names[i] {
							t.Fatalf("%s received its own packet %d", names[i], p.index)
						}
						if p.ts != uint32(p.index*960) || p.marker != (p.index%10 == 0) {
							t.Fatalf("%s: packet %s:%d has timestamp %d marker %v", names[i], p.from, p.index, p.ts, p.marker)
						}
						if got[p.from] == nil {
							got[p.from] = map[int]bool{}
						}
						if got[p.from][p.index] {
							t.Fatalf("%s: packet %s:%d twice", names[i], p.from, p.index)
						}
						got[p.from][p.index] = true
						total++
					case <-deadline:
						t.Fatalf("%s received %d of %d packets", names[i], total, want)
					}
				}
			}
			for i, d := range members {
				v, ok := tapped.Load(d)
				if !ok || v.(*atomic.Int64).Load() != count {
					t.Errorf("tap saw %v packets from %s, want %d", v, names[i], count)
				}
			}
		})
	}
}

func TestAllowList(t *testing.T) {
	r := newRelay(t, nil)
	a, b, c, x := dev(1), dev(2), dev(3), dev(9)
	call := callID(1)

	// The first join must list its sender.
	if _, err := dial(t, r, a, call, b, c); !errors.Is(err, ErrBadMembers) {
		t.Fatalf("join without the sender in members: %v, want ErrBadMembers", err)
	}
	la := mustDial(t, r, a, call, a, b, c)
	// A later join's members are ignored: x cannot add itself.
	if _, err := dial(t, r, x, call, a, x); !errors.Is(err, ErrForbidden) {
		t.Fatalf("join by a device not on the list: %v, want ErrForbidden", err)
	}
	lb := mustDial(t, r, b, call, b) // on the list; its members field is ignored
	lc := mustDial(t, r, c, call)
	if got := r.Participants(call); len(got) != 3 {
		t.Fatalf("participants %v", got)
	}

	// Only a participant on the new list may change it.
	if err := r.SetMembers(x, call, []wire.DeviceID{a, x}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("SetMembers by an outsider: %v", err)
	}
	if err := r.SetMembers(a, call, []wire.DeviceID{b}); !errors.Is(err, ErrBadMembers) {
		t.Fatalf("SetMembers leaving out the sender: %v", err)
	}
	// Removing c cuts its media at once.
	if err := r.SetMembers(a, call, []wire.DeviceID{a, b}); err != nil {
		t.Fatal(err)
	}
	waitDone(t, lc, "removed participant")
	if got := r.Participants(call); len(got) != 2 {
		t.Fatalf("participants after SetMembers %v", got)
	}
	if _, err := dial(t, r, c, call, c); !errors.Is(err, ErrForbidden) {
		t.Fatalf("rejoin by a removed member: %v, want ErrForbidden", err)
	}
	// The others still hear each other.
	ra, rb := receive(la), receive(lb)
	warmUp(t, []string{"a", "b"}, []*rtc.Link{la, lb}, []<-chan packet{ra, rb})

	// DropDevice and Leave take devices out; the empty call is forgotten, and its
	// ID may start a new call with a new allow-list.
	r.DropDevice(b)
	waitDone(t, lb, "dropped device")
	if err := r.Leave(a, call); err != nil {
		t.Fatal(err)
	}
	waitDone(t, la, "participant that left")
	if n := r.Calls(); n != 0 {
		t.Fatalf("%d calls after everyone left", n)
	}
	if err := r.Leave(a, call); err != nil {
		t.Fatalf("leaving again: %v", err)
	}
	mustDial(t, r, x, call, x)
}

// TestLinkEndRemoves checks that a participant whose link closes is removed.
func TestLinkEndRemoves(t *testing.T) {
	r := newRelay(t, nil)
	call := callID(2)
	la := mustDial(t, r, dev(1), call, dev(1), dev(2))
	mustDial(t, r, dev(2), call)
	la.Close()
	waitFor(t, "the closed link's removal", func() bool { return len(r.Participants(call)) == 1 })
	ra := receive(la)
	if _, ok := <-ra; ok {
		t.Fatal("ReadRTP returned a packet after Close")
	}
	if err := la.WriteRTP(0, false, []byte{1}); !errors.Is(err, rtc.ErrClosed) {
		t.Fatalf("WriteRTP after Close: %v", err)
	}
}

func TestLimit(t *testing.T) {
	r := newRelay(t, nil)
	a := dev(1)
	for i := range wire.MaxCallsPerDevice {
		mustDial(t, r, a, callID(byte(i)), a)
	}
	if _, err := dial(t, r, a, callID(99), a); !errors.Is(err, ErrLimit) {
		t.Fatalf("join beyond the limit: %v, want ErrLimit", err)
	}
	// Joining a call again replaces the link and is not a new call.
	l := mustDial(t, r, a, callID(0), a)
	if got := r.Participants(callID(0)); len(got) != 1 {
		t.Fatalf("participants after rejoin %v", got)
	}
	select {
	case <-l.Done():
		t.Fatal("new link ended")
	default:
	}
}

// TestBadOffer checks that garbage and unusable offers are refused and leave
// nothing behind.
func TestBadOffer(t *testing.T) {
	r := newRelay(t, nil)
	ctx := context.Background()
	a := dev(1)
	// A real offer to tamper with.
	var good string
	if _, err := rtc.Dial(ctx, rtc.Config{}, func(_ context.Context, offer string) (string, error) {
		good = offer
		return "", io.ErrUnexpectedEOF
	}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	video := strings.Replace(good, "m=audio", "m=video", 1)
	twice := good + good[strings.Index(good, "m=audio"):]
	for name, offer := range map[string]string{
		"garbage": "garbage", "empty": "", "video": video, "two sections": twice,
		"no fingerprint": strings.ReplaceAll(good, "a=fingerprint", "a=x-fingerprint"),
	} {
		if _, err := r.Join(ctx, a, callID(1), []wire.DeviceID{a}, offer); !errors.Is(err, ErrBadOffer) {
			t.Errorf("%s offer: %v, want ErrBadOffer", name, err)
		}
	}
	if n := r.Calls(); n != 0 {
		t.Fatalf("%d calls after bad offers", n)
	}
	waitFor(t, "goroutines of refused offers to end", func() bool { return runtime.NumGoroutine() <= before })
}

// FuzzParseOffer checks that reading an offer never panics, that its errors
// wrap ErrBadOffer, and that what it accepts has usable ICE credentials.
func FuzzParseOffer(f *testing.F) {
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n" +
		"a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwxyz\r\na=setup:actpass\r\na=rtpmap:111 opus/48000/2\r\n" +
		"a=fingerprint:sha-256 " + strings.Repeat("AB:", 31) + "AB\r\n")
	f.Add("garbage")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		o, err := parseOffer(s)
		if err != nil {
			if !errors.Is(err, ErrBadOffer) {
				t.Fatalf("error does not wrap ErrBadOffer: %v", err)
			}
			return
		}
		if !iceChars(o.ufrag, 4, 256) || !iceChars(o.pwd, 22, 256) || len(o.fingerprint) != 32 || strings.ContainsAny(o.mid, " \r\n") {
			t.Fatalf("accepted an unusable offer: %+v", o)
		}
	})
}

// TestNetworks checks forwarding on an IPv6 socket and on a dual-stack socket
// bound to the unspecified address (whose answer lists every interface).
func TestNetworks(t *testing.T) {
	for _, nw := range [][2]string{{"udp6", "[::1]:0"}, {"udp", ":0"}} {
		t.Run(nw[0]+" "+nw[1], func(t *testing.T) {
			conn, err := net.ListenPacket(nw[0], nw[1])
			if err != nil {
				t.Skipf("no such socket here: %v", err)
			}
			r, err := New(Config{Conn: conn, Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			call := callID(1)
			a, b := dev(1), dev(2)
			la := mustDial(t, r, a, call, a, b)
			lb := mustDial(t, r, b, call)
			warmUp(t, []string{"a", "b"}, []*rtc.Link{la, lb}, []<-chan packet{receive(la), receive(lb)})
		})
	}
}
