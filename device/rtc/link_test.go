package rtc_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mahfooz/device/rtc"
	"mahfooz/exchange/relay"
	"mahfooz/wire"
)

// forwarder relays UDP datagrams between one client and a target, counting them:
// a stand-in for a link emulator.
type forwarder struct {
	conn   *net.UDPConn
	target *net.UDPAddr
	client atomic.Pointer[net.UDPAddr]
	up     atomic.Int64 // datagrams from the client
}

func newForwarder(t *testing.T, target net.Addr) *forwarder {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	f := &forwarder{conn: c, target: target.(*net.UDPAddr)}
	// Replies come back from the target on a second socket, so the relay sees the
	// forwarder, not the client.
	back, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { back.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			f.client.Store(from)
			f.up.Add(1)
			back.WriteToUDP(buf[:n], f.target)
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := back.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if to := f.client.Load(); to != nil {
				c.WriteToUDP(buf[:n], to)
			}
		}
	}()
	return f
}

func newRelay(t *testing.T) *relay.Relay {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{Conn: conn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func dial(t *testing.T, r *relay.Relay, cfg rtc.Config, dev wire.DeviceID, members ...wire.DeviceID) *rtc.Link {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := rtc.Dial(ctx, cfg, func(ctx context.Context, offer string) (string, error) {
		return r.Join(ctx, dev, wire.CallID{1}, members, offer)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestVia checks that with Config.Via all media goes through that address, and
// that Stats counts it.
func TestVia(t *testing.T) {
	r := newRelay(t)
	fw := newForwarder(t, r.Addr())
	a, b := wire.DeviceID{1}, wire.DeviceID{2}
	la := dial(t, r, rtc.Config{Via: fw.conn.LocalAddr().String()}, a, a, b)
	lb := dial(t, r, rtc.Config{}, b, a, b)
	if fw.up.Load() == 0 {
		t.Fatal("a connected without sending through Via")
	}
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 1500)
		for {
			ts, marker, p, err := lb.ReadRTP(buf)
			if err != nil {
				return
			}
			if ts == 4800 && marker {
				got <- string(p)
				return
			}
		}
	}()
	deadline := time.After(10 * time.Second)
	sent := 0
	for done := false; !done; {
		before := fw.up.Load()
		if err := la.WriteRTP(4800, true, []byte("through the emulator")); err != nil {
			t.Fatal(err)
		}
		sent++
		waitFor(t, "the packet to pass the forwarder", func() bool { return fw.up.Load() > before })
		select {
		case p := <-got:
			if p != "through the emulator" {
				t.Fatalf("received %q", p)
			}
			done = true
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("no packet arrived")
		}
	}
	st := la.Stats()
	if st.PacketsSent != uint64(sent) || st.PayloadBytesSent != uint64(sent*len("through the emulator")) ||
		st.RTPBytesSent != st.PayloadBytesSent+12*uint64(sent) || st.WireBytesSent <= st.RTPBytesSent {
		t.Errorf("stats after %d packets: %+v", sent, st)
	}
	if st := lb.Stats(); st.PacketsReceived != 1 || st.PayloadBytesReceived != uint64(len("through the emulator")) {
		t.Errorf("receiver stats: %+v", st)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDialErrors(t *testing.T) {
	ctx := context.Background()
	refused := errors.New("refused")
	if _, err := rtc.Dial(ctx, rtc.Config{}, func(context.Context, string) (string, error) { return "", refused }); !errors.Is(err, refused) {
		t.Fatalf("join error: %v", err)
	}
	if _, err := rtc.Dial(ctx, rtc.Config{Via: "relay.example:3478"}, nil); err == nil {
		t.Fatal("Via with a host name accepted")
	}
	if _, err := rtc.Dial(ctx, rtc.Config{}, func(context.Context, string) (string, error) { return "v=0 garbage", nil }); err == nil {
		t.Fatal("garbage answer accepted")
	}
	// The offer names no STUN/TURN server and no mDNS name: only host candidates.
	var offer string
	rtc.Dial(ctx, rtc.Config{}, func(_ context.Context, o string) (string, error) { offer = o; return "", refused })
	if !strings.Contains(offer, "typ host") || strings.Contains(offer, "typ srflx") || strings.Contains(offer, "typ relay") || strings.Contains(offer, ".local") {
		t.Fatalf("offer candidates:\n%s", offer)
	}
}

// FuzzReplaceCandidates feeds arbitrary answers through the Via rewriting: it
// must fail cleanly or produce SDP whose only candidate is the Via address.
func FuzzReplaceCandidates(f *testing.F) {
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n")
	f.Add("garbage")
	via := netip.MustParseAddrPort("127.0.0.1:4000")
	f.Fuzz(func(t *testing.T, answer string) {
		out, err := rtc.ReplaceCandidates(answer, via)
		if err != nil {
			return
		}
		for _, line := range strings.Split(out, "\r\n") {
			if strings.HasPrefix(line, "a=candidate:") && !strings.Contains(line, " 127.0.0.1 4000 ") {
				t.Fatalf("candidate left in: %q", line)
			}
		}
	})
}
