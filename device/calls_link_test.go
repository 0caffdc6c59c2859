package device

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"mahfooz/device/call"
	"mahfooz/internal/linkem"
)

// linkSeed seeds the emulated links' loss and jitter, so that a failure on one
// loss pattern can be replayed and other patterns tried.
var linkSeed = flag.Uint64("linkseed", 1, "seed of the emulated links' loss and jitter in TestCallOnPoorLinks")

// maxEdgeRate is the most a call may use on an edge link, each way, counting
// every header (IPv4, UDP, SRTP, RTP, SFrame).
const maxEdgeRate = 24_000 // bits per second

// The passages the poor-link calls say: two sentences each, about seven
// seconds, so that a burst of loss (a packet and its copy both lost, which at
// 5 % loss happens to one 60 ms packet in 400) is weighed against several
// seconds of speech, as a listener weighs it, rather than against one short
// sentence.
const (
	passageA = sentenceA + " Please confirm the escort and the route through the eastern district."
	passageB = sentenceB + " The escort will wait for you at the bridge at half past six."
)

// TestCallOnPoorLinks calls between alice, on a clean link, and bob, behind an
// emulated mobile link: both his connection to the exchange and his call media
// cross it. Each must understand what the other says, and on edge bob's media
// must fit in maxEdgeRate.
func TestCallOnPoorLinks(t *testing.T) {
	a, b := said(t, passageA), said(t, passageB)
	for _, name := range []string{"edge", "3g", "lossy"} {
		t.Run(name, func(t *testing.T) {
			callOnLink(t, name, a, b)
		})
	}
}

// callOnLink runs one call with bob behind the named link and checks what each
// side heard and what bob's media used.
func callOnLink(t *testing.T, name string, a, b []int16) {
	up, down, err := linkem.NamedLink(name)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	alice, bob := e.enroll("alice"), e.enroll("bob")

	signals, err := linkem.NewTCP("127.0.0.1:0", e.addr, up, down, linkem.WithSeed(*linkSeed))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { signals.Close() })
	media, err := linkem.NewUDP("127.0.0.1:0", e.relay.Addr().String(), up, down, linkem.WithSeed(*linkSeed))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { media.Close() })
	// Bob reaches the exchange only through the link, whatever address he dials.
	bob.cfg.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, signals.Addr().String())
	}
	bob.reopen()
	alice.running()
	bob.running()
	bobEvents := bob.events()

	// What bob receives is alice's speech delayed by his downlink, and what he
	// sends reaches the relay after his uplink's delay: each talk measures the
	// proxy over the same stretch of audio.
	aliceTalk := &talk{lead: 10, pcm: a, tail: len(b)/call.FrameSamples + 150, probe: media.Stats, lag: down.Delay}
	aliceHeard, bobHeard := new(recorder), new(recorder)
	start := time.Now()
	ac, err := alice.StartCall(ctxT(t), ConversationRef{To: "bob"}, CallOptions{Source: aliceTalk, Sink: aliceHeard})
	if err != nil {
		t.Fatal(err)
	}
	aliceLog := follow(ac)
	aliceStats := sampleStats(ac)
	ring := bob.nextRing(bobEvents)
	if ring.CallID != ac.ID() {
		t.Fatalf("bob was rung for call %s, not alice's %s", ring.CallID, ac.ID())
	}
	bobTalk := &talk{lead: 10 + len(a)/call.FrameSamples + 25, pcm: b, tail: 500, probe: media.Stats, lag: up.Delay}
	bc, err := bob.AnswerCall(ctxT(t), ring, CallOptions{Source: bobTalk, Sink: bobHeard, Via: media.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	bobLog := follow(bc)
	bobStats := sampleStats(bc)
	waitEnded(t, "alice", ac, aliceLog)
	waitEnded(t, "bob", bc, bobLog)
	<-aliceLog.done
	<-bobLog.done
	callTime := time.Since(start)

	if r := aliceLog.ended(); r != "finished speaking" {
		t.Errorf("alice's call ended with %q", r)
	}
	if r := bobLog.ended(); r != "the other side hung up" {
		t.Errorf("bob's call ended with %q", r)
	}
	heardByBob := expectHeard(t, "bob", a, bobHeard.heard())
	heardByAlice := expectHeard(t, "alice", b, aliceHeard.heard())
	t.Logf("dropouts: bob %.1f %%, alice %.1f %%", 100*heardByBob.Dropouts, 100*heardByAlice.Dropouts)

	for _, s := range []struct {
		who  string
		log  *callLog
		last func() call.MediaStats
	}{{"alice", aliceLog, aliceStats}, {"bob", bobLog, bobStats}} {
		st := s.last()
		t.Logf("%s: events %s", s.who, s.log.timeline(start))
		t.Logf("%s: profiles %s; received %d, lost %d, FEC %d, concealed %d, late %d, jitter %v, delay %v",
			s.who, s.log.profiles(start), st.Received, st.Lost, st.RecoveredFEC, st.Concealed, st.Late, st.Jitter, st.Delay)
	}

	bobSpeaking, err := bobTalk.rates()
	if err != nil {
		t.Fatalf("bob: %v", err)
	}
	aliceSpeaking, err := aliceTalk.rates()
	if err != nil {
		t.Fatalf("alice: %v", err)
	}
	t.Logf("alice spoke from %.1fs to %.1fs, bob from %.1fs to %.1fs (as the link delivered it)",
		aliceTalk.first.at.Sub(start).Seconds(), aliceTalk.last.at.Sub(start).Seconds(),
		bobTalk.first.at.Sub(start).Seconds(), bobTalk.last.at.Sub(start).Seconds())
	total := media.Stats()
	t.Logf("bob's media, IP headers included: up %.1f kbit/s (down %.1f) while he spoke, down %.1f kbit/s (up %.1f) while alice spoke; whole call %.1f up, %.1f down over %v",
		bobSpeaking.up/1000, bobSpeaking.down/1000, aliceSpeaking.down/1000, aliceSpeaking.up/1000,
		rate(total.Up.WireBytes, callTime)/1000, rate(total.Down.WireBytes, callTime)/1000, callTime.Round(time.Millisecond))
	t.Logf("bob's media link: up %d packets, %d lost, %d queue drops; down %d packets, %d lost, %d queue drops",
		total.Up.Packets, total.Up.Lost, total.Up.QueueDrops, total.Down.Packets, total.Down.Lost, total.Down.QueueDrops)
	if name == "edge" && bobSpeaking.up > maxEdgeRate {
		t.Errorf("bob's speech used %.1f kbit/s of his edge uplink, more than %d", bobSpeaking.up/1000, maxEdgeRate/1000)
	}
	e.checkNoPlaintext(passageA, passageB)
}

// talk is a Source that says pcm after lead frames of silence, then stays
// silent for tail frames and ends. It notes the media proxy's counters lag
// after its first and after its last frame of speech, the time the speech
// takes to cross the link.
type talk struct {
	lead  int
	pcm   []int16
	tail  int
	probe func() linkem.Stats
	lag   time.Duration

	mu          sync.Mutex
	said        int
	begun, over bool
	first, last counted
}

// counted is a proxy's counters at one moment.
type counted struct {
	at    time.Time
	stats linkem.Stats
}

func (s *talk) ReadFrame(frame []int16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.lead > 0:
		s.lead--
		clear(frame)
	case s.said < len(s.pcm):
		if !s.begun {
			s.begun = true
			s.note(&s.first)
		}
		n := copy(frame, s.pcm[s.said:])
		clear(frame[n:])
		s.said += n
	case s.tail > 0:
		if !s.over {
			s.over = true
			s.note(&s.last)
		}
		s.tail--
		clear(frame)
	default:
		return io.EOF
	}
	return nil
}

// note records the counters lag from now into c.
func (s *talk) note(c *counted) {
	time.AfterFunc(s.lag, func() {
		st := s.probe()
		s.mu.Lock()
		*c = counted{at: time.Now(), stats: st}
		s.mu.Unlock()
	})
}

// speechRates is the bits per second a proxy carried each way.
type speechRates struct{ up, down float64 }

// rates returns what the proxy carried while the speech crossed it.
func (s *talk) rates() (speechRates, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first.at.IsZero() || s.last.at.IsZero() {
		return speechRates{}, fmt.Errorf("the speech was not all said (%d of %d samples)", s.said, len(s.pcm))
	}
	d := s.last.at.Sub(s.first.at)
	return speechRates{
		up:   rate(s.last.stats.Up.WireBytes-s.first.stats.Up.WireBytes, d),
		down: rate(s.last.stats.Down.WireBytes-s.first.stats.Down.WireBytes, d),
	}, nil
}

func rate(bytes uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) * 8 / d.Seconds()
}

// sampleStats polls a call's media counters until it ends and returns a
// function giving the last taken while its media ran.
func sampleStats(c *Call) func() call.MediaStats {
	var (
		mu   sync.Mutex
		last call.MediaStats
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-c.Done():
				return
			case <-tick.C:
			}
			st := c.Stats()
			mu.Lock()
			// Once the media has closed it no longer counts what it received.
			if st.Received >= last.Received {
				last = st
			}
			mu.Unlock()
		}
	}()
	return func() call.MediaStats {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return last
	}
}

// profiles describes the encodings a call's quality events reported, each
// with when it was first reported, since start.
func (l *callLog) profiles(start time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	prev := ""
	for _, e := range l.events {
		if e.Kind != CallQuality || e.Profile == prev {
			continue
		}
		prev = e.Profile
		out = append(out, fmt.Sprintf("%s at %.1fs", e.Profile, e.At.Sub(start).Seconds()))
	}
	if len(out) == 0 {
		return "none reported"
	}
	return strings.Join(out, ", ")
}

// timeline lists a call's events other than quality reports, with when each
// came, since start.
func (l *callLog) timeline(start time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		if e.Kind != CallQuality {
			out = append(out, fmt.Sprintf("%s at %.1fs", e.Kind, e.At.Sub(start).Seconds()))
		}
	}
	return strings.Join(out, ", ")
}
