package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
	"golang.org/x/net/ipv4"

	"mahfooz/device/rtc"
	"mahfooz/wire"
)

// realOffer returns an offer made by a device link.
func realOffer(t testing.TB) string {
	t.Helper()
	var offer string
	if _, err := rtc.Dial(context.Background(), rtc.Config{}, func(_ context.Context, o string) (string, error) {
		offer = o
		return "", io.ErrUnexpectedEOF
	}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatal(err)
	}
	return offer
}

// iceCredentials returns the ICE username fragment and password of an SDP.
func iceCredentials(t testing.TB, s string) (ufrag, pwd string) {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(s); err != nil {
		t.Fatal(err)
	}
	ufrag, _ = sd.MediaDescriptions[0].Attribute("ice-ufrag")
	pwd, _ = sd.MediaDescriptions[0].Attribute("ice-pwd")
	if ufrag == "" || pwd == "" {
		t.Fatal("no ICE credentials")
	}
	return ufrag, pwd
}

func bindingRequest(t testing.TB, user, pwd string) *stun.Message {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername(user),
		stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestICEChecks checks that the relay answers only connectivity checks made with
// a link's credentials, answers them with its own, and survives junk.
func TestICEChecks(t *testing.T) {
	r := newRelay(t, nil)
	offer := realOffer(t)
	a := dev(1)
	answer, err := r.Join(context.Background(), a, callID(1), []wire.DeviceID{a}, offer)
	if err != nil {
		t.Fatal(err)
	}
	myUfrag, _ := iceCredentials(t, offer)
	ufrag, pwd := iceCredentials(t, answer)

	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to := r.Addr().(*net.UDPAddr)
	send := func(b []byte) {
		if _, err := c.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	// Junk of every class, and checks that must go unanswered.
	send([]byte{0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3})
	send([]byte{22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0})
	send([]byte{0x00, 0x01, 0x00})
	send(bindingRequest(t, ufrag+":"+myUfrag, "not-the-password-at-all-x").Raw)
	send(bindingRequest(t, "nobody:"+myUfrag, pwd).Raw)
	send(bindingRequest(t, ufrag+":someoneelse", pwd).Raw)
	good := bindingRequest(t, ufrag+":"+myUfrag, pwd)
	send(good.Raw)

	if err := c.SetReadDeadline(time.Now().Add(waitTime)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no answer to a valid check: %v", err)
	}
	resp := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
	if err := resp.Decode(); err != nil {
		t.Fatal(err)
	}
	if resp.TransactionID != good.TransactionID || resp.Type != stun.BindingSuccess {
		t.Fatalf("first answer is %v to another transaction", resp.Type)
	}
	if err := stun.NewShortTermIntegrity(pwd).Check(resp); err != nil {
		t.Fatalf("answer's integrity: %v", err)
	}
	if err := stun.Fingerprint.Check(resp); err != nil {
		t.Fatalf("answer's fingerprint: %v", err)
	}
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(resp); err != nil {
		t.Fatal(err)
	}
	if me := c.LocalAddr().(*net.UDPAddr); !xa.IP.Equal(me.IP) || xa.Port != me.Port {
		t.Fatalf("mapped address %v, want %v", xa, me)
	}
}

// TestSilentRemoved checks that a participant that never connects, or falls
// silent, is taken out of its call.
func TestSilentRemoved(t *testing.T) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Conn: conn, Logger: testLogger(), FailedTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a := dev(1)
	if _, err := r.Join(context.Background(), a, callID(1), []wire.DeviceID{a}, realOffer(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(r.Participants(callID(1))); n != 1 {
		t.Fatalf("%d participants", n)
	}
	waitFor(t, "the silent participant's removal", func() bool { return r.Calls() == 0 })
}

// fuzzRelay is a relay with one call of two participants whose addresses and
// SRTP keys are set, driven by calling its reader's handle directly.
type fuzzRelay struct {
	r          *Relay
	rd         *reader
	from       netip.AddrPort
	sender     *participant
	senderKeys *srtp.Context // the device side of the sender's SRTP
	newContext func() *srtp.Context
}

func newFuzzRelay(t testing.TB) *fuzzRelay {
	t.Helper()
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	conn, sink := listen(), listen()
	r := &Relay{conn: conn, udp: conn, byUfrag: map[string]*participant{}, stop: make(chan struct{})}
	r.book.Store(&addrBook{m: map[netip.AddrPort]*participant{}})
	key, salt := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 12)
	ctx := func() *srtp.Context {
		c, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := &call{id: callID(1), members: map[wire.DeviceID]bool{}, parts: map[wire.DeviceID]*participant{}}
	from := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	var ps []*participant
	for i := range 2 {
		p := &participant{dev: dev(byte(i + 1)), call: c, ufrag: "ufrag" + string(rune('a'+i)),
			pwd: "passwordpasswordpassword", remote: "dev", ssrc: uint32(i + 7), connected: make(chan struct{})}
		p.view = newDTLSView(r, p)
		p.keys.Store(&keys{in: ctx(), out: ctx()})
		ap := netip.AddrPortFrom(from.Addr(), from.Port()+uint16(i)) // the second is nowhere
		p.addr.Store(&peerAddr{ap: ap, ua: net.UDPAddrFromAddrPort(ap)})
		p.live.Store(true)
		c.parts[p.dev] = p
		r.byUfrag[p.ufrag] = p
		r.book.Load().m[ap] = p
		ps = append(ps, p)
	}
	c.publish()
	rd := &reader{r: r, dec: make([]byte, 0, maxPacketSize+64), out: make([]ipv4.Message, writeBatch)}
	for i := range rd.out {
		rd.out[i].Buffers = [][]byte{make([]byte, 0, maxPacketSize+64)}
	}
	rd.bc = newBatchConn(conn)
	return &fuzzRelay{r: r, rd: rd, from: from, sender: ps[0], senderKeys: ctx(), newContext: ctx}
}

// FuzzPacket feeds arbitrary datagrams to the relay's reader as if from a
// participant: it must never panic, whatever the bytes.
func FuzzPacket(f *testing.F) {
	fr := newFuzzRelay(f)
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: OpusPayloadType, SequenceNumber: 1, SSRC: 99}, Payload: []byte("a:0")}
	raw, err := pkt.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	srtpPkt, err := fr.senderKeys.EncryptRTP(nil, raw, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(srtpPkt)
	f.Add(bindingRequest(f, fr.sender.ufrag+":dev", fr.sender.pwd).Raw)
	f.Add([]byte{22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1})
	f.Add([]byte{0x80, 200, 0, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr.rd.handle(b, fr.from)
		fr.rd.flush()
		select { // keep the DTLS queue from filling
		case <-fr.sender.view.in:
		default:
		}
	})
}

// TestFuzzRelayForwards checks that the fuzz harness reaches the forwarding
// path: a valid SRTP packet from the sender is queued for the other participant.
func TestFuzzRelayForwards(t *testing.T) {
	fr := newFuzzRelay(t)
	var tapped int
	fr.r.cfg.Tap = func(_ wire.CallID, _ wire.DeviceID, p *rtp.Packet) {
		if string(p.Payload) == "a:0" {
			tapped++
		}
	}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: OpusPayloadType, SequenceNumber: 1, SSRC: 99}, Payload: []byte("a:0")}
	raw, _ := pkt.Marshal()
	srtpPkt, err := fr.senderKeys.EncryptRTP(nil, raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	fr.rd.handle(srtpPkt, fr.from)
	if tapped != 1 || fr.rd.n != 1 {
		t.Fatalf("tapped %d, queued %d; want 1 and 1", tapped, fr.rd.n)
	}
	fr.rd.flush()
}

// TestWrongFingerprint checks that a device whose DTLS certificate does not
// match the fingerprint in the offer the exchange passed on gets no media path
// and is removed from the call.
func TestWrongFingerprint(t *testing.T) {
	r := newRelay(t, nil)
	a := dev(1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	joined := false
	_, err := rtc.Dial(ctx, rtc.Config{Logger: testLogger()}, func(ctx context.Context, offer string) (string, error) {
		var sd sdp.SessionDescription
		if err := sd.UnmarshalString(offer); err != nil {
			return "", err
		}
		fp, ok := sd.MediaDescriptions[0].Attribute("fingerprint")
		if !ok {
			fp, _ = sd.Attribute("fingerprint")
		}
		alg, _, _ := strings.Cut(fp, " ")
		forged := alg + " " + strings.Repeat("AB:", 31) + "AB"
		answer, err := r.Join(ctx, a, callID(1), []wire.DeviceID{a}, strings.ReplaceAll(offer, fp, forged))
		joined = err == nil
		return answer, err
	})
	if err == nil {
		t.Fatal("a link with a forged fingerprint connected")
	}
	if !joined {
		t.Fatal("the relay refused the forged offer before the handshake; this test needs it to get that far")
	}
	waitFor(t, "the impostor's removal", func() bool { return r.Calls() == 0 })
}

// BenchmarkHandle measures the reader's own work for one packet of a two-party
// call: SRTP decryption, re-encryption for the other participant and the write
// (one sendmmsg per packet here; the reader batches more under load).
func BenchmarkHandle(b *testing.B) {
	fr := newFuzzRelay(b)
	payload := make([]byte, 80)
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: OpusPayloadType, SSRC: 99}, Payload: payload}
	packets := make([][]byte, 1<<12)
	for i := range packets {
		pkt.SequenceNumber = uint16(i)
		raw, _ := pkt.Marshal()
		var err error
		if packets[i], err = fr.senderKeys.EncryptRTP(nil, raw, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(packets) { // start the sender's SRTP afresh so they are not replays
			i = 0
			fr.sender.keys.Store(&keys{in: fr.newContext(), out: fr.newContext()})
		}
		fr.rd.handle(packets[i], fr.from)
		if fr.rd.n != 1 {
			b.Fatal("packet not forwarded")
		}
		fr.rd.flush()
		i++
	}
}
