package device

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"mahfooz/device/call"
	"mahfooz/media/opus"
)

// The call benchmarks run real devices, exchange and relay on 127.0.0.1 with
// no emulated network, and measure what a user waits for: how long a call
// takes to carry sound, and how late a sound said is heard. docs/benchmarks.md
// ("Calls") gives the figures and the commands.

// benchWait bounds every wait of the call benchmarks.
const benchWait = 30 * time.Second

// benchToneSource says a 1 kHz tone, or short bursts of it, 20 ms at a time.
// Each burst starts on the first sample of a frame; the wall time at which that
// frame is handed to the call (ReadFrame) is sent on said. It is safe for
// concurrent use.
type benchToneSource struct {
	mu     sync.Mutex
	frames int     // frames read so far
	period int     // frames from one burst's start to the next; 0: a steady tone
	length int     // frames each burst lasts
	hum    float64 // amplitude of a quiet murmur under the bursts (0: silence)
	phase  float64 // of the hum
	said   chan time.Time
}

// Amplitudes and threshold of the test signal (full scale is 32767).
const (
	benchBurstAmp  = 12000
	benchThreshold = 6000               // an onset is the first sample above this, after a quiet spell
	benchQuiet     = 100 * 48000 / 1000 // samples below half the threshold that end a sound
)

func (s *benchToneSource) ReadFrame(pcm []int16) error {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.frames
	s.frames++
	clear(pcm)
	for i := range pcm {
		if s.hum == 0 {
			break
		}
		// A voice-like murmur: five harmonics of a pitch that glides between
		// 120 and 180 Hz, its loudness swelling four times a second. A
		// steady tone would not do: the encoder's voice activity detector
		// learns it as background noise and stops sending (DTX).
		t := float64(k*len(pcm)+i) / 48000
		f0 := 150 + 30*math.Sin(2*math.Pi*0.5*t)
		s.phase += 2 * math.Pi * f0 / 48000
		var v float64
		for h := 1.0; h <= 5; h++ {
			v += math.Sin(h*s.phase) / h
		}
		pcm[i] = int16(s.hum * (0.55 + 0.45*math.Sin(2*math.Pi*4*t)) * v)
	}
	s.phase = math.Mod(s.phase, 2*math.Pi)
	inBurst := s.period == 0 || k%s.period < s.length
	if !inBurst {
		return nil
	}
	// A 1 kHz cosine: full amplitude from the burst's first sample.
	start := k * len(pcm)
	if s.period > 0 {
		start = k % s.period * len(pcm)
	}
	for i := range pcm {
		v := float64(pcm[i]) + benchBurstAmp*math.Cos(2*math.Pi*1000*float64(start+i)/48000)
		pcm[i] = int16(max(-32768, min(32767, v)))
	}
	if s.said != nil && s.period > 0 && k%s.period == 0 {
		select {
		case s.said <- now:
		default:
		}
	}
	return nil
}

// benchOnsetSink listens for sound: for each onset (the first sample above
// benchThreshold after at least 100 ms below half of it) it sends on heard the
// wall time of the WriteFrame that played it plus the sample's offset in the
// frame. onCall, if set, runs at each onset. It is safe for concurrent use.
type benchOnsetSink struct {
	mu     sync.Mutex
	quiet  int  // samples since the last one above half the threshold
	armed  bool // quiet long enough for the next onset
	heard  chan time.Time
	onCall func()
	peak   int // the loudest sample played
}

func (s *benchOnsetSink) loudest() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

func newBenchOnsetSink() *benchOnsetSink {
	return &benchOnsetSink{armed: true, heard: make(chan time.Time, 1024)}
}

func (s *benchOnsetSink) WriteFrame(pcm []int16) error {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range pcm {
		a := int(x)
		if a < 0 {
			a = -a
		}
		s.peak = max(s.peak, a)
		if a > benchThreshold && s.armed {
			s.armed = false
			if s.onCall != nil {
				s.onCall()
			}
			select {
			case s.heard <- now.Add(time.Duration(i) * time.Second / 48000):
			default:
			}
		}
		if a > benchThreshold/2 {
			s.quiet = 0
		} else if s.quiet++; s.quiet >= benchQuiet {
			s.armed = true
		}
	}
	return nil
}

// benchRunning keeps a device connected for the rest of the benchmark.
func benchRunning(b *testing.B, d *testDevice) {
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); d.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-ran })
}

// benchAnswered is one call the answerer took.
type benchAnswered struct {
	call   *Call
	ringAt time.Time // when the ring reached the callee
	err    error
}

// benchAnswerer answers every ring that reaches d at once, with the options
// the next value of opts gives, and reports each call on answered.
type benchAnswerer struct {
	opts     chan CallOptions
	answered chan benchAnswered
}

func newBenchAnswerer(b *testing.B, d *testDevice) *benchAnswerer {
	a := &benchAnswerer{opts: make(chan CallOptions, 1), answered: make(chan benchAnswered, 1)}
	events, unsubscribe := d.Subscribe()
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			var e Event
			var ok bool
			select {
			case e, ok = <-events:
			case <-stop:
				return
			}
			if !ok {
				return
			}
			if e.Kind != EventCall || e.Call.Kind != SignalRing {
				continue
			}
			ringAt := time.Now()
			var opts CallOptions
			select {
			case opts = <-a.opts:
			case <-stop:
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), benchWait)
			c, err := d.AnswerCall(ctx, e.Call, opts)
			cancel()
			if err == nil {
				go benchDrain(c)
			}
			a.answered <- benchAnswered{call: c, ringAt: ringAt, err: err}
		}
	}()
	b.Cleanup(func() { close(stop); <-stopped; unsubscribe() })
	return a
}

// next waits for the next call answered.
func (a *benchAnswerer) next(b *testing.B) benchAnswered {
	b.Helper()
	select {
	case ans := <-a.answered:
		if ans.err != nil {
			b.Fatalf("answering: %v", ans.err)
		}
		return ans
	case <-time.After(benchWait):
		b.Fatal("the call was not answered")
		return benchAnswered{}
	}
}

// benchDrain reads a call's events until it ends.
func benchDrain(c *Call) {
	for range c.Events() {
	}
}

func benchReceive(b *testing.B, ch <-chan time.Time, what string) time.Time {
	b.Helper()
	return benchReceiveOr(b, ch, what, nil)
}

// benchReceiveOr is benchReceive that says more when it times out.
func benchReceiveOr(b *testing.B, ch <-chan time.Time, what string, more func() string) time.Time {
	b.Helper()
	select {
	case t := <-ch:
		return t
	case <-time.After(benchWait):
		if more != nil {
			what += ": " + more()
		}
		b.Fatalf("timed out waiting for %s", what)
		return time.Time{}
	}
}

// benchHangup hangs up c and waits until both ends of the call have ended.
func benchHangup(b *testing.B, c, other *Call) {
	b.Helper()
	c.Hangup()
	for _, x := range []*Call{c, other} {
		select {
		case <-x.Done():
		case <-time.After(benchWait):
			b.Fatalf("the call did not end (%s)", x.Reason())
		}
	}
}

// setupTimes is one call's setup, measured from StartCall.
type setupTimes struct {
	ring, answered, caller, callee time.Duration
}

// benchCallOnce has alice call bob, who answers as the ring arrives; both say
// a tone from their first frame. It returns when each has heard the other,
// after hanging up.
func benchCallOnce(b *testing.B, alice *testDevice, bob *benchAnswerer) setupTimes {
	b.Helper()
	aliceHeard, bobHeard := newBenchOnsetSink(), newBenchOnsetSink()
	bob.opts <- CallOptions{Source: &benchToneSource{}, Sink: bobHeard}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), benchWait)
	defer cancel()
	ac, err := alice.StartCall(ctx, ConversationRef{To: "bob"}, CallOptions{Source: &benchToneSource{}, Sink: aliceHeard})
	if err != nil {
		b.Fatal(err)
	}
	go benchDrain(ac)
	ans := bob.next(b)
	answered := time.Now()
	calleeAt := benchReceiveOr(b, bobHeard.heard, "bob to hear alice", func() string {
		return fmt.Sprintf("alice %+v; bob %+v; bob's loudest %d", ac.Stats(), ans.call.Stats(), bobHeard.loudest())
	})
	callerAt := benchReceive(b, aliceHeard.heard, "alice to hear bob")
	benchHangup(b, ac, ans.call)
	return setupTimes{
		ring: ans.ringAt.Sub(start), answered: answered.Sub(start),
		caller: callerAt.Sub(start), callee: calleeAt.Sub(start),
	}
}

// BenchmarkCallSetup measures a 1:1 call's setup on loopback: alice calls, bob
// answers as soon as the ring arrives, and the time is taken from StartCall
// until bob hears alice's first sound ("setup-ms", the median: what the setup
// target applies to) and until alice hears bob's ("caller-ms").
// "ring-ms" is when the ring reached bob, "answered-ms" when his AnswerCall
// returned. Each iteration hangs up and waits for both calls to end; ns/op
// includes that.
func BenchmarkCallSetup(b *testing.B) {
	e := newEnv(b)
	alice, bob := e.enroll("alice"), e.enroll("bob")
	benchRunning(b, alice)
	benchRunning(b, bob)
	answerer := newBenchAnswerer(b, bob)
	// The first call creates the conversation (an MLS group and a Welcome):
	// not what a call's setup costs once two officials have talked.
	benchCallOnce(b, alice, answerer)

	var ring, answered, caller, callee []time.Duration
	for b.Loop() {
		t := benchCallOnce(b, alice, answerer)
		ring = append(ring, t.ring)
		answered = append(answered, t.answered)
		caller = append(caller, t.caller)
		callee = append(callee, t.callee)
	}
	b.ReportMetric(benchMS(benchQuantile(callee, 0.5)), "setup-ms")
	b.ReportMetric(benchMS(benchQuantile(callee, 0.95)), "setup-p95-ms")
	b.ReportMetric(benchMS(benchQuantile(caller, 0.5)), "caller-ms")
	b.ReportMetric(benchMS(benchQuantile(ring, 0.5)), "ring-ms")
	b.ReportMetric(benchMS(benchQuantile(answered, 0.5)), "answered-ms")
}

// BenchmarkMouthToEar measures the delay the system adds between a sound
// handed to a call and the same sound played at the other end, on loopback.
// Alice says a 60 ms 1 kHz burst at a known frame; bob's sink finds its onset
// in what he plays. One iteration is one burst: run it with -benchtime 60x or
// more; ns/op is then the bursts' spacing, not a cost. A new call starts every
// benchBurstsPerCall bursts, since the phase between the sender's and the
// player's 20 ms clocks is fixed for a call and differs between calls.
//
// "steady": the bursts ride on a quiet voice-like murmur, so the sender sends
// every 20 ms as during speech. "talkspurt": silence between bursts, so with
// DTX the sender sends nearly nothing and each burst starts a talkspurt.
//
// The metrics are the median and 95th percentile of the delay, and the
// median of bob's jitter buffer playout delay (beyond the fastest packet's
// transit, counted from the packet's end) when each onset played.
func BenchmarkMouthToEar(b *testing.B) {
	for _, mode := range []struct {
		name   string
		period int
		hum    float64
	}{
		{"steady", 15, 1000},
		{"talkspurt", 25, 0},
	} {
		b.Run(mode.name, func(b *testing.B) { benchMouthToEar(b, mode.period, mode.hum) })
	}
}

// benchBurstsPerCall is how many bursts each call of BenchmarkMouthToEar
// measures, after benchSettle bursts it does not.
const (
	benchBurstsPerCall = 20
	benchSettle        = 3
)

// m2eCall is one call of BenchmarkMouthToEar.
type m2eCall struct {
	alice, bob *Call
	said       chan time.Time
	sink       *benchOnsetSink
	jbDelay    chan time.Duration
	period     int
	measured   int
	from       time.Time // when measuring began
	sentFrom   uint64    // alice's packets sent by then
}

func benchMouthToEar(b *testing.B, period int, hum float64) {
	if enc, err := opus.NewEncoder(); err == nil {
		if look, err := enc.Lookahead(); err == nil {
			b.Logf("opus encoder lookahead: %d samples (%v)", look, time.Duration(look)*time.Second/48000)
		}
		enc.Close()
	}
	e := newEnv(b)
	alice, bob := e.enroll("alice"), e.enroll("bob")
	benchRunning(b, alice)
	benchRunning(b, bob)
	answerer := newBenchAnswerer(b, bob)
	benchCallOnce(b, alice, answerer) // creates the conversation

	start := func() *m2eCall {
		m := &m2eCall{said: make(chan time.Time, 1024), sink: newBenchOnsetSink(), jbDelay: make(chan time.Duration, 1024), period: period}
		var bobCall struct {
			sync.Mutex
			c *Call
		}
		m.sink.onCall = func() {
			// Runs in bob's playout, just after the jitter buffer gave the
			// frame: its Delay is the one this onset was played with.
			bobCall.Lock()
			c := bobCall.c
			bobCall.Unlock()
			var d time.Duration = -1
			if c != nil {
				d = c.Stats().Delay
			}
			m.jbDelay <- d
		}
		answerer.opts <- CallOptions{Sink: m.sink}
		ctx, cancel := context.WithTimeout(context.Background(), benchWait)
		defer cancel()
		src := &benchToneSource{period: period, length: 3, hum: hum, said: m.said}
		ac, err := alice.StartCall(ctx, ConversationRef{To: "bob"}, CallOptions{Source: src})
		if err != nil {
			b.Fatal(err)
		}
		go benchDrain(ac)
		ans := answerer.next(b)
		bobCall.Lock()
		bobCall.c = ans.call
		bobCall.Unlock()
		m.alice, m.bob = ac, ans.call
		for range benchSettle {
			m.next(b)
		}
		m.from, m.sentFrom = time.Now(), ac.Stats().PacketsSent
		return m
	}

	var delays, jb []time.Duration
	var cur *m2eCall
	var sentRate []float64
	for b.Loop() {
		if cur == nil || cur.measured == benchBurstsPerCall {
			if cur != nil {
				sentRate = append(sentRate, cur.packetRate())
				benchHangup(b, cur.alice, cur.bob)
			}
			cur = start()
		}
		d, j := cur.next(b)
		cur.measured++
		delays = append(delays, d)
		if j >= 0 {
			jb = append(jb, j)
		}
	}
	sentRate = append(sentRate, cur.packetRate())
	benchHangup(b, cur.alice, cur.bob)
	b.ReportMetric(benchMS(benchQuantile(delays, 0.5)), "m2e-ms")
	b.ReportMetric(benchMS(benchQuantile(delays, 0.95)), "m2e-p95-ms")
	b.ReportMetric(benchMS(benchQuantile(jb, 0.5)), "jb-ms")
	b.Logf("%d bursts over %d calls: delay min %v median %v p95 %v max %v; jitter buffer delay median %v (min %v, max %v); alice sent at least %.1f packets/s in each call",
		len(delays), len(sentRate), benchQuantile(delays, 0).Round(time.Microsecond), benchQuantile(delays, 0.5).Round(time.Microsecond),
		benchQuantile(delays, 0.95).Round(time.Microsecond), benchQuantile(delays, 1).Round(time.Microsecond),
		benchQuantile(jb, 0.5), benchQuantile(jb, 0), benchQuantile(jb, 1), slices.Min(sentRate))
}

// next pairs the next burst said with its onset heard.
func (m *m2eCall) next(b *testing.B) (time.Duration, time.Duration) {
	b.Helper()
	said := benchReceive(b, m.said, "alice to say a burst")
	heard := benchReceive(b, m.sink.heard, "bob to hear a burst")
	var j time.Duration
	select {
	case j = <-m.jbDelay:
	case <-time.After(benchWait):
		b.Fatal("no jitter buffer delay recorded")
	}
	d := heard.Sub(said)
	// A burst is heard before the next one is said, or the pairing is off.
	if d <= 0 || d >= time.Duration(m.period)*20*time.Millisecond {
		b.Fatalf("burst heard %v after it was said: a burst was lost or a sound was heard that was not said", d)
	}
	return d, j
}

// packetRate returns the packets per second alice has sent since measuring
// began.
func (m *m2eCall) packetRate() float64 {
	sent := m.alice.Stats().PacketsSent - m.sentFrom
	return float64(sent) / time.Since(m.from).Seconds()
}

// benchQuantile returns the q-quantile (nearest rank) of ds, 0 if there are none.
func benchQuantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func benchMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

var _ call.Source = (*benchToneSource)(nil)
var _ call.Sink = (*benchOnsetSink)(nil)
