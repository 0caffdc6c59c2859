package jitter

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"mahfooz/media/opus"
)

func logStats(t *testing.T, name string, r *result) {
	t.Helper()
	snr, compared, exact := r.compare()
	s := r.stats
	t.Logf("%s: sent %d, received %d, dup %d, late %d, lost %d, FEC %d, concealed %d, expanded %d, dropped %d, played %d; delay %v target %v jitter %v; SNR %.1f dB over %d windows (%d exact)",
		name, r.sent, s.Received, s.Duplicate, s.Late, s.Lost, s.RecoveredFEC, s.Concealed, s.Expanded, s.Dropped, s.Played,
		s.Delay, s.TargetDelay, s.Jitter, snr, compared, exact)
}

// requireExact checks that, with nothing lost, every window played in a
// talkspurt is exactly the sender's audio, and that all of it was played.
func requireExact(t *testing.T, name string, r *result) {
	t.Helper()
	logStats(t, name, r)
	_, compared, exact := r.compare()
	frames := len(r.ref) / FrameSamples
	if exact != compared || compared < frames-1 {
		t.Errorf("%s: %d of %d windows exact, %d of the sender's %d frames compared", name, exact, compared, compared, frames)
	}
	s := r.stats
	if s.Lost != 0 || s.Late != 0 || s.Duplicate != 0 || s.Dropped != 0 || s.Expanded != 0 {
		t.Errorf("%s: lost %d, late %d, duplicate %d, dropped %d, expanded %d; want none", name, s.Lost, s.Late, s.Duplicate, s.Dropped, s.Expanded)
	}
	if s.Played < uint64(frames)-1 {
		t.Errorf("%s: played %d frames of %d", name, s.Played, frames)
	}
}

func TestSilenceBeforeFirstPacket(t *testing.T) {
	dec, err := opus.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	b := New(Config{}, dec)
	pcm := make([]int16, FrameSamples)
	for i := range pcm {
		pcm[i] = 1
	}
	b.Next(pcm)
	for _, s := range pcm {
		if s != 0 {
			t.Fatal("Next before any packet is not silence")
		}
	}
}

func TestInOrder(t *testing.T) {
	r := run(t, scenario{frame: 960, seconds: 3})
	requireExact(t, "in order", r)
	if d := r.stats.Delay; d < 20*time.Millisecond || d > 45*time.Millisecond {
		t.Errorf("delay %v with a steady network, want about a packet and a playout tick (40 ms)", d)
	}
}

func TestReordered(t *testing.T) {
	// Every other pair of packets swaps places on the way.
	r := run(t, scenario{frame: 960, seconds: 3, extra: func(_ *rand.Rand, k int) time.Duration {
		if k%4 == 0 {
			return 25 * time.Millisecond
		}
		return 0
	}})
	requireExact(t, "reordered", r)
}

func TestTimestampWrap(t *testing.T) {
	r := run(t, scenario{frame: 960, seconds: 3, ts0: math.MaxUint32 - 50*960 + 1})
	requireExact(t, "wrap", r)
}

func TestLongPackets(t *testing.T) {
	for _, frame := range []int{1920, 2880} {
		r := run(t, scenario{frame: frame, seconds: 3})
		requireExact(t, "in order", r)
	}
}

func TestDuplicates(t *testing.T) {
	dec, err := opus.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	b := New(Config{}, dec)
	pkt := []byte{9 << 3, 1, 2, 3}
	before := b.Stats()
	b.Push(12345, pkt)
	b.Push(12345, pkt)
	b.Push(12345+480, pkt) // overlaps the first
	b.Push(1, []byte{9<<3 | 3})
	s := b.Stats()
	if s.Duplicate-before.Duplicate != 2 {
		t.Errorf("%d duplicates counted, want 2", s.Duplicate-before.Duplicate)
	}
	if s.Invalid-before.Invalid != 1 {
		t.Errorf("%d invalid packets counted, want 1", s.Invalid-before.Invalid)
	}
}

// TestLossFEC checks that with random loss the audio played is closer to what
// was sent when the Buffer uses the FEC of the following packets than with
// concealment alone.
func TestLossFEC(t *testing.T) {
	for _, tc := range []struct {
		loss  float64
		frame int
	}{{0.05, 960}, {0.10, 960}, {0.10, 1920}, {0.10, 2880}} {
		var snrs [2]float64
		var stats [2]Stats
		for i, noFEC := range []bool{true, false} {
			r := run(t, scenario{frame: tc.frame, seconds: 10, fec: true, loss: tc.loss, seed: 3, noFEC: noFEC})
			logStats(t, "", r)
			snrs[i], _, _ = r.compare()
			stats[i] = r.stats
			lostFrames := uint64(len(r.lostK) * tc.frame / FrameSamples)
			if s := r.stats; s.Lost < lostFrames*85/100 || s.Lost > lostFrames+2 {
				t.Errorf("loss %.0f%%, %d-sample packets: %d frames counted lost, %d were", tc.loss*100, tc.frame, s.Lost, lostFrames)
			}
		}
		t.Logf("loss %.0f%%, %d-sample packets: SNR %.1f dB with concealment only, %.1f dB with FEC", tc.loss*100, tc.frame, snrs[0], snrs[1])
		if stats[1].RecoveredFEC < stats[1].Lost/2 {
			t.Errorf("loss %.0f%%: %d of %d lost frames recovered by FEC", tc.loss*100, stats[1].RecoveredFEC, stats[1].Lost)
		}
		if snrs[1] < snrs[0]+3 {
			t.Errorf("loss %.0f%%, %d-sample packets: FEC gives %.1f dB, concealment %.1f dB; want FEC 3 dB better", tc.loss*100, tc.frame, snrs[1], snrs[0])
		}
	}
}

// TestLossCopies checks packets that carry a copy of the one before: at 10 %
// loss in 60 ms packets, a lost packet's copy arrives with the next one, one
// packet late, and the Buffer waits for it, so nearly everything plays as sent.
func TestLossCopies(t *testing.T) {
	var snrs [2]float64
	for i, copies := range []bool{false, true} {
		r := run(t, scenario{frame: 2880, seconds: 10, loss: 0.10, seed: 5, copies: copies,
			extra: func(rng *rand.Rand, k int) time.Duration { return time.Duration(rng.IntN(30)) * time.Millisecond }})
		logStats(t, fmt.Sprintf("copies %v: ", copies), r)
		snrs[i], _, _ = r.compare()
		if copies && r.stats.Late > 2 {
			t.Errorf("with copies, %d packets came too late to play: the Buffer did not wait for them", r.stats.Late)
		}
	}
	t.Logf("10%% loss, 60 ms packets: SNR %.1f dB with concealment only, %.1f dB with copies", snrs[0], snrs[1])
	if snrs[1] < snrs[0]+6 {
		t.Errorf("copies give %.1f dB, concealment %.1f dB; want copies 6 dB better", snrs[1], snrs[0])
	}
}

// TestJitter checks the Buffer against a network adding 0 to 60 ms of
// random delay (30 ms jitter on average): the target delay grows to cover it
// (with the 20 ms of each packet, the playout tick and the packet of FEC lead
// that reordering calls for), and few packets are late.
func TestJitter(t *testing.T) {
	r := run(t, scenario{frame: 960, seconds: 10, fec: true, seed: 5, extra: func(rng *rand.Rand, _ int) time.Duration {
		return time.Duration(rng.Float64() * float64(60*time.Millisecond))
	}})
	logStats(t, "jitter", r)
	s := r.stats
	if s.TargetDelay < 80*time.Millisecond || s.TargetDelay > 130*time.Millisecond {
		t.Errorf("target delay %v for 0-60 ms of jitter", s.TargetDelay)
	}
	if s.Late > uint64(r.sent)/20 {
		t.Errorf("%d of %d packets late", s.Late, r.sent)
	}
	if s.Jitter < 10*time.Millisecond || s.Jitter > 40*time.Millisecond {
		t.Errorf("jitter estimate %v", s.Jitter)
	}
	if snr, _, _ := r.compare(); snr < 10 {
		t.Errorf("SNR %.1f dB", snr)
	}
}

// TestDTX sends speech with pauses through a DTX encoder: the silences are not
// sent, and the Buffer must play them as silence without counting losses, and
// start each talkspurt on time.
func TestDTX(t *testing.T) {
	r := run(t, scenario{frame: 960, seconds: 6, dtx: true, pauses: true, silence: [2]float64{2, 4}})
	logStats(t, "DTX", r)
	s := r.stats
	if r.sent > len(r.ref)/FrameSamples*85/100 {
		t.Errorf("DTX encoder sent %d of %d packets", r.sent, len(r.ref)/FrameSamples)
	}
	if s.Lost != 0 || s.Late != 0 || s.Dropped != 0 {
		t.Errorf("lost %d, late %d, dropped %d; want none", s.Lost, s.Late, s.Dropped)
	}
	if s.Played != uint64(r.sent) {
		t.Errorf("played %d of %d packets", s.Played, r.sent)
	}
	// The long silence in the middle plays as (near) silence.
	for _, w := range r.windows {
		if i := w.pos - r.first; i > 2*clockRate+clockRate/5 && i < 4*clockRate-FrameSamples && meanSquare(w.pcm) > 100*100 {
			t.Errorf("window at %d ms of silence has power %d", i/48, meanSquare(w.pcm))
		}
	}
	if snr, _, _ := r.compare(); snr < 10 {
		t.Errorf("SNR %.1f dB", snr)
	}
}

// TestLateBurst stalls the network for 250 ms: the packets held up arrive in a
// burst, some too late. The Buffer counts them, raises its delay, and comes
// back to a low delay once the network is steady again.
func TestLateBurst(t *testing.T) {
	r := run(t, scenario{frame: 960, seconds: 8, fec: true, extra: func(_ *rand.Rand, k int) time.Duration {
		// Packets sent from 2 s to 2.25 s wait until 2.25 s + 200 ms.
		if sent := (k + 1) * 20; sent >= 2000 && sent < 2250 {
			return time.Duration(2250+200-sent) * time.Millisecond
		}
		return 0
	}})
	logStats(t, "late burst", r)
	s := r.stats
	if s.Late == 0 {
		t.Error("no late packets counted")
	}
	if s.Delay > 60*time.Millisecond {
		t.Errorf("delay %v after the network steadied, want back under 60 ms", s.Delay)
	}
	// Once steady again the audio is the sender's.
	var tail int
	for _, w := range r.windows[len(r.windows)-200 : len(r.windows)-60] {
		if ref := r.refAt(w.pos); w.clean && ref != nil && snr16(ref, w.pcm) > 20 {
			tail++
		}
	}
	if tail < 130 {
		t.Errorf("%d of the last 140 windows match the sender's audio", tail)
	}
}

func snr16(ref, got []int16) float64 {
	var sig, noise float64
	for i := range ref {
		d := float64(ref[i]) - float64(got[i])
		sig += float64(ref[i]) * float64(ref[i])
		noise += d * d
	}
	if noise == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(sig/noise)
}

func TestMix(t *testing.T) {
	dst := []int16{1, 30000, -30000, 5}
	Mix(dst, []int16{2, 10000, -10000}, []int16{3, 1, -1, 7, 99})
	want := []int16{6, 32767, -32768, 12}
	for i := range want {
		if dst[i] != want[i] {
			t.Fatalf("Mix = %v, want %v", dst, want)
		}
	}
}

func BenchmarkPushNext(b *testing.B) {
	enc, err := opus.NewEncoder()
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	sig := speechLike(clockRate, false)
	var pkts [][]byte
	buf := make([]byte, opus.MaxPacketSize)
	for k := 0; k < 50; k++ {
		n, err := enc.Encode(sig[k*960:(k+1)*960], buf)
		if err != nil {
			b.Fatal(err)
		}
		pkts = append(pkts, append([]byte(nil), buf[:n]...))
	}
	dec, err := opus.NewDecoder()
	if err != nil {
		b.Fatal(err)
	}
	defer dec.Close()
	now := time.Unix(0, 0)
	jb := New(Config{Now: func() time.Time { return now }}, dec)
	pcm := make([]int16, FrameSamples)
	b.ReportAllocs()
	k := 0
	for b.Loop() {
		jb.Push(uint32(k*960), pkts[k%len(pkts)])
		now = now.Add(20 * time.Millisecond)
		jb.Next(pcm)
		k++
	}
}

// TestPacketDurationChanges has the sender change its packet duration in
// mid-speech, as a call changing profiles does (20, 40, 60 ms and back), over
// a network with 0 to 40 ms of jitter: a longer packet leaves the sender later,
// and none of them may arrive too late to be played.
func TestPacketDurationChanges(t *testing.T) {
	r := run(t, scenario{frame: 960, seconds: 12, seed: 3,
		switches: []frameSwitch{{3, 1920}, {6, 2880}, {9, 960}},
		extra: func(rng *rand.Rand, _ int) time.Duration {
			return time.Duration(rng.Float64() * float64(40*time.Millisecond))
		}})
	logStats(t, "duration changes", r)
	s := r.stats
	if s.Late != 0 || s.Lost != 0 || s.Dropped != 0 {
		t.Errorf("late %d, lost %d, dropped %d; want none", s.Late, s.Lost, s.Dropped)
	}
	// Each change adds at most one concealed frame (a longer packet's extra
	// 20 ms of delay); nothing else is concealed but the 120 ms that fade out
	// after the last packet.
	if s.Expanded > 3 || s.Concealed > s.Expanded+6 {
		t.Errorf("%d frames concealed, %d of them to raise the delay; want 3 and 9 at most", s.Concealed, s.Expanded)
	}
	// Back on 20 ms packets, the target is that of 20 ms packets again: 40 ms
	// of jitter, the packet's 20 ms and a 20 ms playout tick.
	if s.TargetDelay > 85*time.Millisecond {
		t.Errorf("target %v after going back to 20 ms packets", s.TargetDelay)
	}
	if snr, _, _ := r.compare(); snr < 10 {
		t.Errorf("SNR %.1f dB", snr)
	}
}

// TestResumed plays a gap before a packet pushed as the first after the
// sender's silence: it is played as the silence it was, not counted as a
// loss, and it does not make the Buffer wait for FEC.
func TestResumed(t *testing.T) {
	for _, resumed := range []bool{false, true} {
		b, now := clockedBuffer(t)
		pkts := encodeSpeech(t, 30, true)
		start := time.Unix(1000, 0)
		pcm := make([]int16, FrameSamples)
		for k := range 30 {
			*now = start.Add(time.Duration(k+1) * 20 * time.Millisecond)
			switch {
			case k == 10: // the sender was silent for this packet
			case k == 11 && resumed:
				b.PushResumed(uint32(k*FrameSamples), pkts[k])
			default:
				b.Push(uint32(k*FrameSamples), pkts[k])
			}
			b.Next(pcm)
		}
		s := b.Stats()
		if resumed && (s.Lost != 0 || s.TargetDelay > 40*time.Millisecond) {
			t.Errorf("after a silence: lost %d, target %v; want no loss and 40 ms", s.Lost, s.TargetDelay)
		}
		if !resumed && s.Lost != 1 {
			t.Errorf("after a lost packet: lost %d, want 1", s.Lost)
		}
	}
}

// clockedBuffer returns a Buffer whose clock reads *now.
func clockedBuffer(t *testing.T) (*Buffer, *time.Time) {
	t.Helper()
	dec, err := opus.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dec.Close)
	now := new(time.Time)
	return New(Config{Now: func() time.Time { return *now }}, dec), now
}

// encodeSpeech returns n 20 ms packets of speech, with in-band FEC if fec.
func encodeSpeech(t *testing.T, n int, fec bool) [][]byte {
	t.Helper()
	enc, err := opus.NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	if err := enc.SetFEC(fec, 10); err != nil {
		t.Fatal(err)
	}
	sig := speechLike(n*FrameSamples, false)
	buf := make([]byte, opus.MaxPacketSize)
	pkts := make([][]byte, n)
	for k := range pkts {
		m, err := enc.Encode(sig[k*FrameSamples:(k+1)*FrameSamples], buf)
		if err != nil {
			t.Fatal(err)
		}
		pkts[k] = append([]byte(nil), buf[:m]...)
	}
	return pkts
}

// TestCopiesOutlastSilence checks that the packet of delay a sender's copies
// call for is still there when it speaks again after a long silence: it must
// be in place from the first word, not built up in mid-sentence.
func TestCopiesOutlastSilence(t *testing.T) {
	var targets [2]time.Duration
	for i, copies := range []bool{false, true} {
		b, now := clockedBuffer(t)
		pkts := encodeSpeech(t, 60, false)
		start := time.Unix(1000, 0)
		pcm := make([]int16, FrameSamples)
		push := func(k int, resumed bool) {
			*now = start.Add(time.Duration(k+1) * 20 * time.Millisecond)
			if resumed {
				// The first packet after a silence carries no copy either way.
				b.PushResumed(uint32(k*FrameSamples), pkts[k%len(pkts)])
			} else {
				b.SetCopies(copies)
				b.Push(uint32(k*FrameSamples), pkts[k%len(pkts)])
			}
		}
		for k := range 50 {
			push(k, false)
			b.Next(pcm)
		}
		// 15 s of silence, with no packet at all, then the sender speaks.
		for k := 50; k < 800; k++ {
			*now = start.Add(time.Duration(k+1) * 20 * time.Millisecond)
			b.Next(pcm)
		}
		push(800, true)
		targets[i] = b.Stats().TargetDelay
	}
	if targets[1]-targets[0] != 20*time.Millisecond {
		t.Errorf("target after a silence %v with copies, %v without; want one packet (20 ms) more", targets[1], targets[0])
	}
}
