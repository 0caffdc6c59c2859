package jitter

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"mahfooz/media/opus"
)

// speechLike returns n samples of a speech-like signal: harmonics of a gliding
// pitch shaped by two moving formants, in syllables; with pauses, every other
// 200 ms is silent.
func speechLike(n int, pauses bool) []int16 {
	key := signalKey{n, pauses}
	if s, ok := signals.Load(key); ok {
		return s.([]int16)
	}
	out := make([]int16, n)
	phase := 0.0
	for i := range out {
		t := float64(i) / clockRate
		f0 := 140 + 40*math.Sin(2*math.Pi*0.7*t) + 5*math.Sin(2*math.Pi*5*t)
		phase += f0 / clockRate
		f1 := 600 + 250*math.Sin(2*math.Pi*1.3*t)
		f2 := 1700 + 500*math.Sin(2*math.Pi*0.9*t)
		var s float64
		for h := 1; float64(h)*f0 < 7000; h++ {
			f := float64(h) * f0
			d1, d2 := (f-f1)/150, (f-f2)/200
			a := 1/(1+d1*d1) + 0.6/(1+d2*d2) + 0.02
			s += a * math.Sin(2*math.Pi*float64(h)*phase)
		}
		env := 0.6 + 0.4*math.Sin(2*math.Pi*2.5*t)
		if pauses {
			env = math.Max(0, math.Sin(2*math.Pi*2.5*t))
		}
		out[i] = int16(2500 * s * env)
	}
	signals.Store(key, out)
	return out
}

type signalKey struct {
	n      int
	pauses bool
}

// signals caches speechLike's results: the tests share a few long signals.
var signals sync.Map

// scenario is a synthetic call leg: what the sender encodes and how the
// network delivers it.
type scenario struct {
	frame int // samples per packet
	// switches changes the samples per packet from the packet that starts at
	// or after each time, in seconds, as a sender changing profiles does.
	switches []frameSwitch
	seconds  float64
	ts0      uint32
	fec      bool // encoder FEC, tuned for 10% loss
	dtx      bool // encoder DTX; DTX packets are not sent
	pauses   bool // silences in the signal
	silence  [2]float64
	// Network.
	loss      float64 // probability that a packet is lost
	baseDelay time.Duration
	extra     func(r *rand.Rand, k int) time.Duration // added delay of packet k
	seed      uint64
	// copies: each packet carries a copy of the one before (the sender's
	// repetition), which the receiver pushes when that one was lost.
	copies bool
	// Receiver.
	noFEC bool
	cfg   Config
}

// window is what one Next call played.
type window struct {
	pcm      []int16
	pos      int64 // playout position at the start (extended timestamp)
	clean    bool  // played straight from the sender's timeline, no expand or drop
	lostNear bool
}

type frameSwitch struct {
	at    float64
	frame int
}

type result struct {
	windows []window
	ref     []int16 // the clean decode of every packet sent, from ts0
	first   int64   // extended timestamp of ref[0] in the Buffer's timeline
	stats   Stats
	sent    int
	lostK   map[int]bool
	buf     *Buffer
}

type arrival struct {
	at time.Duration
	k  int
}

func run(t testing.TB, sc scenario) *result {
	t.Helper()
	if sc.baseDelay == 0 {
		sc.baseDelay = 50 * time.Millisecond
	}
	rng := rand.New(rand.NewPCG(sc.seed, 7))
	n := int(sc.seconds * clockRate)
	sig := slices.Clone(speechLike(n, sc.pauses)) // the cached signal is shared
	if sc.silence[1] > 0 {
		clear(sig[int(sc.silence[0]*clockRate):int(sc.silence[1]*clockRate)])
	}
	enc, err := opus.NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	if sc.fec {
		if err := enc.SetFEC(true, 10); err != nil {
			t.Fatal(err)
		}
	}
	if sc.dtx {
		if err := enc.SetDTX(true); err != nil {
			t.Fatal(err)
		}
	}
	refDec, err := opus.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer refDec.Close()
	var (
		pkts  [][]byte
		offs  []int // sample offset of each packet
		frame = sc.frame
		sw    = sc.switches
	)
	ref := make([]int16, n)
	buf := make([]byte, opus.MaxPacketSize)
	for off := 0; ; off += frame {
		if len(sw) > 0 && float64(off) >= sw[0].at*clockRate {
			frame, sw = sw[0].frame, sw[1:]
		}
		if off+frame > n {
			ref = ref[:off]
			break
		}
		m, err := enc.Encode(sig[off:off+frame], buf)
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, off)
		pkt := append([]byte(nil), buf[:m]...)
		if sc.dtx && opus.IsDTX(pkt) {
			pkts = append(pkts, nil)
			continue
		}
		pkts = append(pkts, pkt)
		if _, err := refDec.Decode(pkt, ref[off:off+frame]); err != nil {
			t.Fatal(err)
		}
	}
	offs = append(offs, len(ref)) // the end of the last packet

	res := &result{ref: ref, lostK: map[int]bool{}}
	var arrivals []arrival
	for k, p := range pkts {
		if p == nil {
			continue
		}
		res.sent++
		if rng.Float64() < sc.loss {
			res.lostK[k] = true
			continue
		}
		at := time.Duration(offs[k+1])*time.Second/clockRate + sc.baseDelay
		if sc.extra != nil {
			at += sc.extra(rng, k)
		}
		arrivals = append(arrivals, arrival{at, k})
	}
	sort.SliceStable(arrivals, func(i, j int) bool { return arrivals[i].at < arrivals[j].at })

	var now time.Time
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := sc.cfg
	cfg.Now = func() time.Time { return now }
	dec, err := opus.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dec.Close)
	b := New(cfg, dec)
	b.noFEC = sc.noFEC
	res.buf = b
	end := time.Duration(sc.seconds*float64(time.Second)) + time.Second
	firstSet := false
	ai := 0
	for tick := 7 * time.Millisecond; tick < end; tick += 20 * time.Millisecond {
		for ai < len(arrivals) && arrivals[ai].at <= tick {
			a := arrivals[ai]
			now = start.Add(a.at)
			if sc.copies {
				b.SetCopies(true)
			}
			b.Push(sc.ts0+uint32(offs[a.k]), pkts[a.k])
			if prev := a.k - 1; sc.copies && prev >= 0 && res.lostK[prev] && pkts[prev] != nil {
				b.PushCopy(sc.ts0+uint32(offs[prev]), pkts[prev])
			}
			if !firstSet {
				// The Buffer's timeline starts at the first packet's timestamp.
				res.first = int64(sc.ts0+uint32(offs[a.k])) - int64(offs[a.k])
				firstSet = true
			}
			ai++
		}
		now = start.Add(tick)
		talking, pos := b.talking, b.pos
		exp, drop := b.expanded, b.dropped
		pcm := make([]int16, FrameSamples)
		b.Next(pcm)
		if !talking {
			pos = b.pos - FrameSamples // started in this call, or silent
		}
		res.windows = append(res.windows, window{
			pcm:   pcm,
			pos:   pos,
			clean: b.talking && exp == b.expanded && drop == b.dropped,
		})
	}
	res.stats = b.Stats()
	return res
}

// refAt returns the reference samples for a window starting at pos, or nil
// when it falls outside.
func (r *result) refAt(pos int64) []int16 {
	i := pos - r.first
	if i < 0 || i+FrameSamples > int64(len(r.ref)) {
		return nil
	}
	return r.ref[i : i+FrameSamples]
}

// compare returns the SNR in dB of the clean windows against the reference,
// and how many windows were compared and how many matched exactly.
func (r *result) compare() (snr float64, compared, exact int) {
	var sig, noise float64
	for _, w := range r.windows {
		ref := r.refAt(w.pos)
		if !w.clean || ref == nil {
			continue
		}
		compared++
		same := true
		for i, s := range w.pcm {
			d := float64(s) - float64(ref[i])
			sig += float64(ref[i]) * float64(ref[i])
			noise += d * d
			same = same && d == 0
		}
		if same {
			exact++
		}
	}
	if noise == 0 {
		return math.Inf(1), compared, exact
	}
	return 10 * math.Log10(sig/noise), compared, exact
}
