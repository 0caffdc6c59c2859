package device

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"mahfooz/device/call"
	"mahfooz/device/rtc"
	"mahfooz/internal/speech"
	"mahfooz/media/opus"
	"mahfooz/sframe"
	"mahfooz/wire"
)

// The sentences the call tests say, as espeak-ng renders them.
const (
	sentenceA = "The convoy leaves the northern gate at seven tomorrow morning."
	sentenceB = "Understood. I will inform the minister before the meeting."
)

var (
	speechMu   sync.Mutex
	speechMemo = map[string][]int16{}
)

// sentences renders the two test sentences once per test binary.
func sentences(t *testing.T) ([]int16, []int16) {
	t.Helper()
	return said(t, sentenceA), said(t, sentenceB)
}

// said returns text as espeak-ng says it, rendering each text once per test
// binary.
func said(t *testing.T, text string) []int16 {
	t.Helper()
	speechMu.Lock()
	defer speechMu.Unlock()
	if pcm, ok := speechMemo[text]; ok {
		return pcm
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pcm, err := speech.Say(ctx, text)
	if err != nil {
		t.Fatalf("rendering speech (the test command installs espeak-ng): %v", err)
	}
	speechMemo[text] = pcm
	return pcm
}

// pcmSource says samples 20 ms at a time, after a lead of silence, then ends.
type pcmSource struct {
	mu   sync.Mutex
	lead int // frames of silence first
	pcm  []int16
}

func (s *pcmSource) ReadFrame(frame []int16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lead > 0 {
		s.lead--
		clear(frame)
		return nil
	}
	if len(s.pcm) == 0 {
		return io.EOF
	}
	n := copy(frame, s.pcm)
	clear(frame[n:])
	s.pcm = s.pcm[n:]
	return nil
}

// recorder keeps what a member hears.
type recorder struct {
	mu  sync.Mutex
	pcm []int16
}

func (r *recorder) WriteFrame(pcm []int16) error {
	r.mu.Lock()
	r.pcm = append(r.pcm, pcm...)
	r.mu.Unlock()
	return nil
}

func (r *recorder) heard() []int16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int16(nil), r.pcm...)
}

// callLog gathers a call's events as they come.
type callLog struct {
	mu     sync.Mutex
	events []CallEvent
	done   chan struct{}
}

func follow(c *Call) *callLog {
	l := &callLog{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for e := range c.Events() {
			l.mu.Lock()
			l.events = append(l.events, e)
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *callLog) all() []CallEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

func (l *callLog) kinds() []CallEventKind {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []CallEventKind
	for _, e := range l.events {
		out = append(out, e.Kind)
	}
	return out
}

// codes returns the short codes shown, by epoch.
func (l *callLog) codes() map[uint64]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[uint64]string{}
	for _, e := range l.events {
		if e.Kind == CallCode {
			out[e.Epoch] = e.Code
		}
	}
	return out
}

func (l *callLog) has(k CallEventKind) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Kind == k {
			return true
		}
	}
	return false
}

func (l *callLog) ended() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Kind == CallEnded {
			return e.Reason
		}
	}
	return ""
}

// running keeps a device connected (Run) for the rest of the test.
func (d *testDevice) running() {
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); d.Run(ctx) }()
	d.env.t.Cleanup(func() { cancel(); <-ran })
}

// nextRing waits for a ring to reach the device.
func (d *testDevice) nextRing(events <-chan Event) *CallSignal {
	d.env.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case e := <-events:
			if e.Kind == EventCall && e.Call.Kind == SignalRing {
				return e.Call
			}
		case <-timeout:
			d.env.t.Fatalf("%s: no ring came", d.name)
		}
	}
}

// expectHeard asserts that what a member heard contains what was said.
func expectHeard(t *testing.T, who string, said, heard []int16) speech.Result {
	t.Helper()
	r, err := speech.Compare(said, heard)
	if err != nil {
		t.Fatalf("%s: comparing speech: %v", who, err)
	}
	t.Logf("%s heard: delay %v, LSD %.2f dB, correlation %.3f over %d frames", who, r.Delay, r.LSD, r.Correlation, r.ActiveFrames)
	if !r.Intelligible() {
		t.Errorf("%s did not hear what was said (LSD %.2f dB, correlation %.3f)", who, r.LSD, r.Correlation)
	}
	return r
}

func waitEnded(t *testing.T, who string, c *Call, l *callLog) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: the call did not end; events %v, stats %+v", who, l.kinds(), c.Stats())
	}
}

func TestCallOneToOne(t *testing.T) {
	a, b := sentences(t)
	e := newEnv(t)
	alice, bob := e.enroll("alice"), e.enroll("bob")
	alice.running()
	bob.running()
	bobEvents := bob.events()

	aliceHeard, bobHeard := new(recorder), new(recorder)
	// Alice says her sentence, then listens to bob's and hangs up when her file ends.
	aliceSays := append(append([]int16(nil), a...), make([]int16, len(b)+3*48000)...)
	ac, err := alice.StartCall(ctxT(t), ConversationRef{To: "bob"}, CallOptions{
		Source: &pcmSource{pcm: aliceSays, lead: 10}, Sink: aliceHeard,
	})
	if err != nil {
		t.Fatal(err)
	}
	aliceLog := follow(ac)
	ring := bob.nextRing(bobEvents)
	if ring.From.Name != "alice" || ring.ConversationName != "alice" || ring.CallID != ac.ID() {
		t.Fatalf("ring %+v does not name alice's call", ring)
	}
	// Bob says his sentence after alice's, and stays on until she hangs up.
	bc, err := bob.AnswerCall(ctxT(t), ring, CallOptions{
		Source: &pcmSource{pcm: append(b, make([]int16, 48000*10)...), lead: 10 + len(a)/call.FrameSamples + 25},
		Sink:   bobHeard,
	})
	if err != nil {
		t.Fatal(err)
	}
	bobLog := follow(bc)
	// Alice's file ends first: she hangs up, and bob's call ends too.
	waitEnded(t, "alice", ac, aliceLog)
	waitEnded(t, "bob", bc, bobLog)
	<-aliceLog.done
	<-bobLog.done

	if r := aliceLog.ended(); r != "finished speaking" {
		t.Errorf("alice's call ended with %q", r)
	}
	if r := bobLog.ended(); r != "the other side hung up" {
		t.Errorf("bob's call ended with %q", r)
	}
	for _, l := range []*callLog{aliceLog, bobLog} {
		if !l.has(CallConnected) || !l.has(CallCode) {
			t.Errorf("events %v lack connected or code", l.kinds())
		}
	}
	ca, cb := aliceLog.codes(), bobLog.codes()
	if len(ca) == 0 || len(cb) == 0 {
		t.Fatal("no short code shown")
	}
	for epoch, code := range cb {
		if ca[epoch] != code {
			t.Errorf("epoch %d: alice shows %q, bob %q", epoch, ca[epoch], code)
		}
	}
	expectHeard(t, "bob", a, bobHeard.heard())
	expectHeard(t, "alice", b, aliceHeard.heard())
	e.checkNoPlaintext(sentenceA, sentenceB)

	// The call left a line in each side's history.
	for _, c := range []struct {
		d    *testDevice
		peer string
		want string
	}{{alice, "bob", "you called"}, {bob, "alice", "alice called"}} {
		ms, err := c.d.Messages(ConversationRef{To: c.peer})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(ms, func(m Message) bool { return m.Kind == MessageCall && m.Text == c.want }) {
			t.Errorf("%s's history has no %q: %+v", c.d.name, c.want, ms)
		}
	}
}

// crisisCell enrols alice, bob and carol, keeps their devices running, and
// has alice create the group "crisis cell" with the other two.
func crisisCell(t *testing.T) (*testEnv, *testDevice, *testDevice, *testDevice) {
	t.Helper()
	e := newEnv(t)
	alice, bob, carol := e.enroll("alice"), e.enroll("bob"), e.enroll("carol")
	for _, d := range []*testDevice{alice, bob, carol} {
		d.running()
	}
	if _, err := alice.CreateGroup(ctxT(t), "crisis cell", []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	return e, alice, bob, carol
}

// events subscribes to the device's events for the rest of the test.
func (d *testDevice) events() <-chan Event {
	ch, cancel := d.Subscribe()
	d.env.t.Cleanup(cancel)
	return ch
}

// tone440 is a 440 Hz tone of duration d at 48 kHz.
func tone440(d time.Duration) []int16 {
	pcm := make([]int16, int(d.Seconds()*48000))
	for i := range pcm {
		pcm[i] = int16(8000 * math.Sin(2*math.Pi*440*float64(i)/48000))
	}
	return pcm
}

// groupOf returns the ID of the group conversation of that name on d.
func (d *testDevice) groupOf(name string) []byte {
	d.env.t.Helper()
	ids := d.groupIDs(ConversationRef{Group: name})
	if len(ids) != 1 {
		d.env.t.Fatalf("%s: %d groups named %q", d.name, len(ids), name)
	}
	return ids[0]
}

// answerNext answers the next ring on d.
func (d *testDevice) answerNext(events <-chan Event, opts CallOptions) (*Call, *callLog) {
	d.env.t.Helper()
	ring := d.nextRing(events)
	c, err := d.AnswerCall(ctxT(d.env.t), ring, opts)
	if err != nil {
		d.env.t.Fatalf("%s: AnswerCall: %v", d.name, err)
	}
	return c, follow(c)
}

// opener returns Keys that open every frame of the group's current epoch, as
// any member could: the test's view of what the relay would need.
func (d *testDevice) opener(gid []byte) *call.Keys {
	d.env.t.Helper()
	g := d.group(gid)
	base, err := sframe.MLSBaseKey(g, call.Suite)
	if err != nil {
		d.env.t.Fatal(err)
	}
	k := call.NewKeys(time.Hour, nil)
	// A leaf no member has, so that every member's frames open.
	if err := k.SetEpoch(call.Epoch{Number: g.Epoch(), Leaf: 0xffff, BaseKey: base, ContextID: 1}); err != nil {
		d.env.t.Fatal(err)
	}
	return k
}

func TestGroupCallThreeParties(t *testing.T) {
	a, b := sentences(t)
	e, alice, bob, carol := crisisCell(t)
	bobEvents, carolEvents := bob.events(), carol.events()

	aliceHeard, bobHeard, carolHeard := new(recorder), new(recorder), new(recorder)
	aliceSays := append(append([]int16(nil), a...), make([]int16, len(b)+3*48000)...)
	// Alice starts speaking a second after the first answer, so that carol, who
	// answers after bob, hears her from the start.
	ac, err := alice.StartCall(ctxT(t), ConversationRef{Group: "crisis cell"}, CallOptions{
		Source: &pcmSource{pcm: aliceSays, lead: 50}, Sink: aliceHeard,
	})
	if err != nil {
		t.Fatal(err)
	}
	aliceLog := follow(ac)
	bc, bobLog := bob.answerNext(bobEvents, CallOptions{
		Source: &pcmSource{pcm: b, lead: 50 + len(a)/call.FrameSamples + 25}, Sink: bobHeard,
	})
	cc, carolLog := carol.answerNext(carolEvents, CallOptions{Sink: carolHeard})

	// Alice's file ends and she leaves; bob and carol stay until bob hangs up.
	waitEnded(t, "alice", ac, aliceLog)
	for _, e := range aliceLog.all() {
		if e.Kind == CallQuality {
			t.Logf("alice: profile %s, %d received, %d lost, jitter %v", e.Profile, e.Stats.Received, e.Stats.Lost, e.Stats.Jitter)
		}
	}
	waitFor(t, "bob to finish speaking", func() bool {
		select {
		case <-bc.Done():
			return true
		default:
		}
		return bc.media.SourceEnded()
	})
	waitEnded(t, "bob", bc, bobLog)
	waitEnded(t, "carol", cc, carolLog)
	<-aliceLog.done
	<-bobLog.done
	<-carolLog.done
	if r := aliceLog.ended(); r != "finished speaking" {
		t.Errorf("alice's call ended with %q", r)
	}
	if r := carolLog.ended(); r != "everyone else left" {
		t.Errorf("carol's call ended with %q, want everyone else left", r)
	}
	ca, cb, cc2 := aliceLog.codes(), bobLog.codes(), carolLog.codes()
	if len(ca) == 0 {
		t.Fatal("alice was shown no code")
	}
	for epoch, code := range ca {
		if cb[epoch] != code || cc2[epoch] != code {
			t.Errorf("epoch %d: codes differ: alice %q, bob %q, carol %q", epoch, code, cb[epoch], cc2[epoch])
		}
	}
	expectHeard(t, "bob (alice's words)", a, bobHeard.heard())
	expectHeard(t, "carol (alice's words)", a, carolHeard.heard())
	expectHeard(t, "carol (bob's words)", b, carolHeard.heard())
	expectHeard(t, "alice (bob's words)", b, aliceHeard.heard())

	// What the relay forwarded is SFrame under the group's keys, every packet of
	// it; decoded as Opus directly, as the relay would have to, it says nothing.
	gid := alice.groupOf("crisis cell")
	keys := alice.opener(gid)
	var (
		opened, total int
		asOpus        = map[wire.DeviceID][]tappedPacket{}
		frames        = map[wire.DeviceID][]tappedPacket{}
	)
	for _, p := range e.tap.all() {
		if p.call.String() != ac.ID() {
			continue
		}
		total++
		meta := binary.BigEndian.AppendUint32(nil, p.ts)
		frame, _, err := keys.AppendUnprotect(nil, meta, p.payload)
		if err != nil {
			t.Errorf("a forwarded packet is not SFrame under the group's keys: %v", err)
			continue
		}
		opened++
		if len(frame) >= 8 && bytes.Contains(p.payload, frame) {
			t.Error("a forwarded packet carries its Opus frame in the clear")
		}
		asOpus[p.from] = append(asOpus[p.from], p)
		m, err := call.ParsePayload(frame)
		if err != nil {
			t.Errorf("a forwarded frame holds no Opus packet: %v", err)
			continue
		}
		frames[p.from] = append(frames[p.from], tappedPacket{p.call, p.from, p.ts, m.Packet})
	}
	t.Logf("relay forwarded %d packets of the call; %d open as SFrame with the group's keys", total, opened)
	if total < 100 {
		t.Fatalf("only %d packets tapped", total)
	}
	aliceID := wire.DeviceID(alice.self.ID)
	// The lengths the relay sees do not follow the sounds: every packet of
	// speech has one length (constant bitrate); only silences differ.
	lengths := map[int]int{}
	for _, p := range asOpus[aliceID] {
		lengths[len(p.payload)]++
	}
	t.Logf("lengths of alice's packets at the relay: %v", lengths)
	// A variable bitrate gives dozens of lengths over a sentence; a constant
	// one gives one per profile in use (and a byte more once the SFrame
	// counter needs it), plus the comfort-noise updates of silences.
	if len(lengths) > 8 {
		t.Errorf("alice's packets have many lengths %v: they leak what is said", lengths)
	}
	if r := decodeTapped(t, frames[aliceID]); r == nil || !mustCompare(t, a, r).Intelligible() {
		t.Error("the opened frames do not say what alice said: the measure below would prove nothing")
	}
	if r := decodeTapped(t, asOpus[aliceID]); r != nil {
		if res := mustCompare(t, a, r); res.Intelligible() {
			t.Errorf("the relay's packets decode as Opus to alice's words (%v)", res)
		} else {
			t.Logf("relay's packets decoded as Opus: %v (not intelligible, as required)", res)
		}
	}
}

// decodeTapped plays packets through a jitter buffer as a receiver would, in
// their timestamp order, and returns the audio.
func decodeTapped(t *testing.T, pkts []tappedPacket) []int16 {
	t.Helper()
	if len(pkts) == 0 {
		return nil
	}
	dec, err := opus.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	var out []int16
	start := pkts[0].ts
	for _, p := range pkts {
		at := int(p.ts-start) / call.FrameSamples
		for len(out)/call.FrameSamples < at {
			out = append(out, make([]int16, call.FrameSamples)...)
		}
		pcm := make([]int16, 3*call.FrameSamples)
		n, err := dec.Decode(p.payload, pcm)
		if err != nil {
			// Not Opus at all: nothing to hear.
			continue
		}
		out = append(out[:min(len(out), at*call.FrameSamples)], pcm[:n]...)
	}
	return out
}

func mustCompare(t *testing.T, said, heard []int16) speech.Result {
	t.Helper()
	r, err := speech.Compare(said, heard)
	if err != nil {
		// Too little or nothing heard compares as nothing heard.
		return speech.Result{}
	}
	return r
}

func TestCallRemovedMemberLosesTheAudio(t *testing.T) {
	e, alice, bob, carol := crisisCell(t)
	dave := e.enroll("dave")
	bobEvents, carolEvents := bob.events(), carol.events()
	tone := tone440(30 * time.Second)
	ac, err := alice.StartCall(ctxT(t), ConversationRef{Group: "crisis cell"}, CallOptions{Source: &pcmSource{pcm: tone}})
	if err != nil {
		t.Fatal(err)
	}
	aliceLog := follow(ac)
	bc, bobLog := bob.answerNext(bobEvents, CallOptions{})
	cc, carolLog := carol.answerNext(carolEvents, CallOptions{})
	waitFor(t, "carol to hear alice", func() bool { return carolLog.has(CallConnected) })
	gid := alice.groupOf("crisis cell")
	before := alice.group(gid).Epoch()
	carolKeys := carol.opener(gid) // what carol holds before she is removed

	// A device outside the group cannot join the call's media, even knowing its ID.
	var callID wire.CallID
	copy(callID[:], ac.id[:])
	s, err := dave.acquire(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rtc.Dial(ctxT(t), rtc.Config{}, s.c.CallJoiner(callID, []wire.DeviceID{wire.DeviceID(dave.self.ID)}))
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeForbidden {
		t.Errorf("an outsider joining the media: err %v, want forbidden", err)
	}
	dave.release(s)

	if err := alice.RemoveMembers(ctxT(t), "crisis cell", []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	waitEnded(t, "carol", cc, carolLog)
	<-carolLog.done
	if r := carolLog.ended(); r != "removed from the conversation" {
		t.Errorf("carol's call ended with %q", r)
	}
	after := alice.group(gid).Epoch()
	deadline := time.Now().Add(20 * time.Second)
	for aliceLog.codes()[after] == "" || bobLog.codes()[after] == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no code for epoch %d (before %d): alice %v %v, bob %v %v", after, before, aliceLog.codes(), aliceLog.kinds(), bobLog.codes(), bobLog.kinds())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if aliceLog.codes()[after] != bobLog.codes()[after] || aliceLog.codes()[after] == aliceLog.codes()[before] {
		t.Errorf("codes after the removal: alice %q, bob %q (before: %q)", aliceLog.codes()[after], bobLog.codes()[after], aliceLog.codes()[before])
	}
	// Let alice send for a while in the new epoch.
	mark := len(e.tap.all())
	waitFor(t, "frames of the new epoch", func() bool { return len(e.tap.all()) > mark+50 })
	newKeys := alice.opener(gid)
	var fresh int
	for _, p := range e.tap.all()[mark:] {
		if p.call != callID || p.from != wire.DeviceID(alice.self.ID) {
			continue
		}
		meta := binary.BigEndian.AppendUint32(nil, p.ts)
		if _, _, err := newKeys.AppendUnprotect(nil, meta, p.payload); err != nil {
			continue // still of the old epoch, within the grace period
		}
		fresh++
		if _, _, err := carolKeys.AppendUnprotect(nil, meta, p.payload); err == nil {
			t.Fatal("the removed member opened a frame sent after her removal")
		}
	}
	if fresh < 20 {
		t.Fatalf("only %d frames of the new epoch seen", fresh)
	}
	t.Logf("%d frames sent after the removal; carol opened none", fresh)
	ac.Hangup()
	waitEnded(t, "alice", ac, aliceLog)
	waitEnded(t, "bob", bc, bobLog)
}

func TestCallSurvivesAConnectionDrop(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.enroll("alice"), e.enroll("bob")
	alice.running()
	bob.running()
	bobEvents := bob.events()
	tone := tone440(60 * time.Second)
	ac, err := alice.StartCall(ctxT(t), ConversationRef{To: "bob"}, CallOptions{Source: &pcmSource{pcm: tone}})
	if err != nil {
		t.Fatal(err)
	}
	aliceLog := follow(ac)
	bc, bobLog := bob.answerNext(bobEvents, CallOptions{Source: &pcmSource{pcm: tone}})
	waitFor(t, "both to hear each other", func() bool { return aliceLog.has(CallConnected) && bobLog.has(CallConnected) })

	// Bob's connection to the exchange drops, as on a change of mobile network:
	// the relay drops his media; his device reconnects and joins again.
	bob.dropSession()
	waitFor(t, "bob to rejoin the call's media", func() bool { return bobLog.has(CallReconnected) })
	if !bobLog.has(CallReconnecting) {
		t.Error("no reconnecting event before reconnected")
	}
	heardByAlice, heardByBob := ac.Stats().Received, bc.Stats().Received
	waitFor(t, "audio both ways after the reconnection", func() bool {
		return ac.Stats().Received > heardByAlice+50 && bc.Stats().Received > heardByBob+50
	})
	if ac.Stats().Refused > 0 || bc.Stats().Refused > 0 {
		t.Errorf("frames refused after the reconnection (alice %d, bob %d): nonces or keys went wrong",
			ac.Stats().Refused, bc.Stats().Refused)
	}
	ac.Hangup()
	waitEnded(t, "alice", ac, aliceLog)
	waitEnded(t, "bob", bc, bobLog)
}
