package jitter

import (
	"slices"
	"sync"
	"time"

	"mahfooz/media/opus"
)

// FrameSamples is the number of samples Next writes: 20 ms at 48 kHz.
const FrameSamples = 960

// Default playout delay bounds.
const (
	DefaultMinDelay = 20 * time.Millisecond
	DefaultMaxDelay = 300 * time.Millisecond
)

// Implementation limits, in samples (48 kHz) unless stated.
const (
	clockRate      = opus.SampleRate
	halfFrame      = FrameSamples / 2
	targetMargin   = 20 * clockRate / 1000 // added to the measured spread: one playout tick
	dropMinExcess  = 2 * FrameSamples      // drop a quiet frame this far behind
	dropHardExcess = 6 * FrameSamples      // drop any frame this far behind
	maxConceal     = opus.MaxFrameSamples  // concealment before going silent
	quietPower     = 300 * 300             // mean square below which a frame may be dropped
	transitWindow  = 200                   // packets in the delay statistics
	recentWindow   = 128                   // timestamps remembered to spot duplicates
	maxPackets     = 256                   // packets held at most
	retargetEvery  = 8                     // packets between target updates
	lossMemory     = 10 * time.Second      // how long a loss keeps the FEC lead
	concealStep    = clockRate / 400       // concealment granularity: 2.5 ms
)

// Config configures a Buffer. The zero value is usable.
type Config struct {
	// MinDelay and MaxDelay bound the target playout delay beyond the
	// fastest packet's transit; zero means DefaultMinDelay and
	// DefaultMaxDelay.
	MinDelay, MaxDelay time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Stats counts what a Buffer did. Packet counts are in packets; frame counts
// are in 20 ms of audio (FrameSamples samples).
type Stats struct {
	// Received counts the well-formed packets given to Push, including
	// duplicates and late ones.
	Received uint64
	// Duplicate counts packets with a timestamp already received, or
	// overlapping a packet held.
	Duplicate uint64
	// Late counts packets dropped because their audio had already been
	// played or skipped (or, rarely, because the Buffer was full).
	Late uint64
	// Invalid counts packets that are not well-formed Opus packets, or that
	// the decoder refused.
	Invalid uint64
	// Lost counts frames that were due while their packet was missing and a
	// later one had arrived; each was recovered by FEC or concealed.
	Lost uint64
	// RecoveredFEC counts frames rebuilt from the next packet's in-band FEC.
	RecoveredFEC uint64
	// Concealed counts frames synthesised by packet loss concealment, for
	// losses, expansions and the start of the sender's silences.
	Concealed uint64
	// Expanded counts concealed frames played without moving on in the
	// sender's timeline, to raise the delay.
	Expanded uint64
	// Dropped counts frames of the sender's audio skipped to lower the delay.
	Dropped uint64
	// Played counts frames decoded from received packets and played.
	Played uint64
	// Delay is the playout delay at the last Next, beyond the fastest
	// packet's transit; TargetDelay is what the Buffer steers it towards.
	Delay, TargetDelay time.Duration
	// Jitter is the interarrival jitter estimate of RFC 3550 §6.4.1.
	Jitter time.Duration
}

// packet is one Opus packet held for playout.
type packet struct {
	ts      int64 // extended RTP timestamp of the first sample
	dur     int   // samples
	fec     bool  // carries FEC for the packet before it
	resumes bool  // the first after the sender's silence: no audio is missing before it
	data    []byte
}

func (p *packet) end() int64 { return p.ts + int64(p.dur) }

// stageKind says what the staged samples are.
type stageKind int

const (
	stageDecoded stageKind = iota // decoded from their own packet
	stageFEC                      // concealed up to split, then rebuilt from FEC
)

// Buffer is a jitter buffer for the packets of one sender. It is safe for
// concurrent use.
type Buffer struct {
	mu       sync.Mutex
	now      func() time.Time
	dec      *opus.Decoder
	minDelay int64 // samples
	maxDelay int64
	noFEC    bool // tests compare with concealment alone

	// The sender's timeline.
	started bool
	epoch   time.Time // arrival times are measured from the first packet's
	ref     int64     // highest extended timestamp seen
	pkts    []*packet // held packets, sorted by timestamp, not overlapping
	free    []*packet
	recent  [recentWindow]int64
	nRecent int

	// Arrival statistics.
	transits    [transitWindow]int64
	nTransit    int
	sorted      [transitWindow]int64
	sinceTarget int
	lastTransit int64
	jitter      float64   // samples, RFC 3550
	base        int64     // smallest recent transit
	target      int64     // samples beyond base
	highEnd     int64     // end of the highest packet received
	lastDur     int       // duration of the last packet received
	lastFEC     bool      // whether it carries FEC
	fecAt       time.Time // arrival of the last packet carrying FEC
	copies      bool      // the sender's packets carry a copy of the one before
	lossAt      time.Time
	lossSeen    bool

	// Playout.
	playing    bool  // Next has run since the first packet: pos is set
	talking    bool  // in a talkspurt, rather than waiting for one
	pos        int64 // timestamp of the next sample to play
	stage      [opus.MaxFrameSamples]int16
	stageStart int64
	stageLen   int
	stageSplit int
	stageKind  stageKind
	concealRun int // samples concealed since the last real audio
	scratch    [FrameSamples]int16
	delay      int64
	lastQuiet  bool // the last frame played was quiet

	// Counters in samples, reported in frames.
	lost, fec, concealed, expanded, dropped, played int64
	received, duplicate, late, invalid              uint64
}

// New returns a Buffer that decodes with dec. The Buffer uses dec from its own
// methods only; the caller must not use it while the Buffer is in use, and
// still owns it (Close it after the Buffer is done).
func New(cfg Config, dec *opus.Decoder) *Buffer {
	b := &Buffer{now: cfg.Now, dec: dec}
	if b.now == nil {
		b.now = time.Now
	}
	if cfg.MinDelay <= 0 {
		cfg.MinDelay = DefaultMinDelay
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = DefaultMaxDelay
	}
	cfg.MaxDelay = max(cfg.MaxDelay, cfg.MinDelay)
	b.minDelay = durationSamples(cfg.MinDelay)
	b.maxDelay = durationSamples(cfg.MaxDelay)
	b.target = b.minDelay
	b.pkts = make([]*packet, 0, 64)
	return b
}

func durationSamples(d time.Duration) int64 { return int64(d) * clockRate / int64(time.Second) }

func samplesDuration(n int64) time.Duration { return time.Duration(n * int64(time.Second) / clockRate) }

// pushKind says how a packet came.
type pushKind int

const (
	pushed  pushKind = iota // a packet of the sender's stream
	resumed                 // the first packet after the sender's silence
	copied                  // a copy that came inside a later packet
)

// Push stores one Opus packet whose first sample has RTP timestamp ts. The
// Buffer copies pkt. Malformed packets, duplicates and packets too late to
// play are dropped and counted.
func (b *Buffer) Push(ts uint32, pkt []byte) { b.push(ts, pkt, pushed) }

// PushResumed stores the first packet the sender sent after a silence, in
// which it sent nothing (discontinuous transmission): the gap before it is
// the sender's silence, to be played as such, not a loss to be repaired or
// counted.
func (b *Buffer) PushResumed(ts uint32, pkt []byte) { b.push(ts, pkt, resumed) }

// PushCopy stores a packet that arrived again inside a later one (the
// sender repeats each packet in the next), after its own was lost. Its
// arrival says nothing of the network's delay, so it is not measured.
func (b *Buffer) PushCopy(ts uint32, pkt []byte) { b.push(ts, pkt, copied) }

// SetCopies tells the Buffer whether the sender's packets carry a copy of the
// packet before, as a sender on a poor link sends them. Like FEC, a copy can
// only rebuild a lost packet once the next one is in, so while copies come the
// Buffer plays one packet later.
//
// Unlike FEC, which comes and goes with the encoder's choices, copies are sent
// for as long as a link is poor, so the Buffer keeps the extra packet from the
// first copy until a packet says they stopped, through the sender's silences
// and whether or not a loss was seen: a target that rose only at the first loss,
// or at the first copy after a pause, would be reached only in mid-sentence, and
// the copy that follows a loss there would come too late.
func (b *Buffer) SetCopies(on bool) {
	b.mu.Lock()
	if on != b.copies {
		b.copies = on
		b.sinceTarget = retargetEvery // move the target at the next packet
	}
	b.mu.Unlock()
}

func (b *Buffer) push(ts uint32, pkt []byte, kind pushKind) {
	dur, err := opus.PacketSamples(pkt)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.invalid++
		return
	}
	now := b.now()
	var e int64
	if !b.started {
		b.started = true
		b.epoch = now
		e = int64(ts)
		b.ref = e
	} else {
		e = b.ref + int64(int32(ts-uint32(b.ref)))
		b.ref = max(b.ref, e)
	}
	b.received++
	for _, r := range b.recent[:min(b.nRecent, recentWindow)] {
		if r == e {
			b.duplicate++
			return
		}
	}
	b.recent[b.nRecent%recentWindow] = e
	b.nRecent++
	fec := opus.HasFEC(pkt)
	if kind != copied {
		if dur != b.lastDur {
			// A new packet duration moves the target at once (see retarget).
			b.sinceTarget = retargetEvery
		}
		b.lastDur, b.lastFEC = dur, fec
		if fec {
			b.fecAt = now
		}
	}
	if gap := e - b.highEnd; kind == pushed && b.received > 1 && gap > 0 && gap <= 3*int64(dur) {
		// A short gap in the timestamps: a packet lost or still on its way
		// (a long one is more likely the sender's silence).
		if !b.lossSeen {
			b.sinceTarget = retargetEvery // take the FEC lead into account now
		}
		b.lossAt, b.lossSeen = now, true
	}
	b.highEnd = max(b.highEnd, e+int64(dur))
	if b.received == 1 {
		b.highEnd = e + int64(dur)
	}
	if kind != copied {
		b.observe(now, e+int64(dur))
	}
	if b.playing && e+int64(dur) <= b.pos {
		b.late++
		return
	}
	i, _ := slices.BinarySearchFunc(b.pkts, e, func(p *packet, ts int64) int { return cmpInt64(p.ts, ts) })
	if (i > 0 && b.pkts[i-1].end() > e) || (i < len(b.pkts) && b.pkts[i].ts < e+int64(dur)) {
		b.duplicate++ // overlaps audio already held
		return
	}
	if len(b.pkts) >= maxPackets {
		b.late++
		return
	}
	p := b.newPacket()
	p.ts, p.dur, p.data = e, dur, append(p.data[:0], pkt...)
	p.fec, p.resumes = fec, kind == resumed
	b.pkts = slices.Insert(b.pkts, i, p)
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (b *Buffer) newPacket() *packet {
	if n := len(b.free); n > 0 {
		p := b.free[n-1]
		b.free = b.free[:n-1]
		return p
	}
	return &packet{data: make([]byte, 0, 256)}
}

// observe records the transit of a packet that arrived at now and whose last
// sample ends at extended timestamp end. Measured from the end, which is when
// the sender could send it, the transit is the network's alone, whatever the
// packet's duration: it stays comparable when the sender changes durations.
func (b *Buffer) observe(now time.Time, end int64) {
	arrival := durationSamples(now.Sub(b.epoch))
	transit := arrival - end
	if b.nTransit > 0 {
		d := float64(transit - b.lastTransit)
		if d < 0 {
			d = -d
		}
		b.jitter += (d - b.jitter) / 16
	}
	b.lastTransit = transit
	b.transits[b.nTransit%transitWindow] = transit
	b.nTransit++
	b.sinceTarget++
	if b.nTransit <= 2*retargetEvery || b.sinceTarget >= retargetEvery || transit < b.base {
		b.retarget(now)
	}
}

// retarget recomputes the base transit and the target delay. A packet's first
// sample can play only once the whole packet is in, so the target includes the
// duration of the sender's current packets. While packets are being lost (a
// short gap in the timestamps of those received, in the last lossMemory) and
// carry FEC, or while they carry copies, it includes one packet more, so that
// a lost packet's successor is in by the time the lost one is due.
func (b *Buffer) retarget(now time.Time) {
	b.sinceTarget = 0
	n := min(b.nTransit, transitWindow)
	s := b.sorted[:n]
	copy(s, b.transits[:n])
	slices.Sort(s)
	b.base = s[0]
	// The slowest packet of the window, not a percentile: on a poor link the
	// slow tail is what would otherwise be played as concealment, and a
	// packet played late costs less than one not played at all.
	spread := s[n-1] - b.base + int64(b.lastDur)
	if b.lossSeen && now.Sub(b.lossAt) > lossMemory {
		b.lossSeen = false
	}
	if b.copies || b.lossSeen && now.Sub(b.fecAt) <= lossMemory {
		spread += int64(b.lastDur)
	}
	b.target = max(b.minDelay, min(b.maxDelay, spread+targetMargin))
}

// Next writes the next 20 ms of audio (FrameSamples samples) to pcm[:FrameSamples]:
// decoded when its packet is there, rebuilt from the next packet's FEC when it
// was lost, concealed for a short gap, and silence when the sender is silent or
// before its first packet. It panics if len(pcm) < FrameSamples.
func (b *Buffer) Next(pcm []int16) {
	pcm = pcm[:FrameSamples]
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.started {
		clear(pcm)
		return
	}
	nowS := durationSamples(b.now().Sub(b.epoch))
	want := nowS - b.base - b.target
	b.playing = true
	if b.talking {
		excess := want - b.pos
		switch {
		case excess < -halfFrame && b.lastQuiet && b.concealRun < maxConceal:
			// Ahead of schedule in a pause: stretch it.
			b.conceal(pcm)
			b.expanded += FrameSamples
			b.delay = nowS - b.base - b.pos
			b.lastQuiet = meanSquare(pcm) < quietPower
			return
		case excess > b.maxDelay:
			// Far behind: start again at the next talkspurt.
			b.dropped += excess
			b.talking = false
			b.stageLen = 0
		case excess >= dropMinExcess:
			b.fill(b.scratch[:], want)
			if excess >= dropHardExcess || meanSquare(b.scratch[:]) < quietPower {
				b.dropped += FrameSamples
			} else {
				copy(pcm, b.scratch[:])
				b.delay = nowS - b.base - (b.pos - FrameSamples)
				b.lastQuiet = meanSquare(pcm) < quietPower
				return
			}
		}
	}
	if !b.talking {
		b.purge(want - FrameSamples)
		if len(b.pkts) == 0 || b.pkts[0].ts > want+halfFrame {
			clear(pcm)
			b.pos = want + FrameSamples
			b.delay = b.target
			b.lastQuiet = true
			return
		}
		b.talking = true
		b.pos = b.pkts[0].ts
		b.stageLen = 0
		b.concealRun = 0
	}
	b.delay = nowS - b.base - b.pos
	b.fill(pcm, want)
	b.lastQuiet = meanSquare(pcm) < quietPower
}

// purge drops held packets that end at or before ts, counting them late.
func (b *Buffer) purge(ts int64) {
	n := 0
	for n < len(b.pkts) && b.pkts[n].end() <= ts {
		b.free = append(b.free, b.pkts[n])
		n++
	}
	if n > 0 {
		b.late += uint64(n)
		b.pkts = slices.Delete(b.pkts, 0, n)
	}
}

// fill writes dst from the playout position on, moving it; want is the
// position that should be playing at the start of dst.
func (b *Buffer) fill(dst []int16, want int64) {
	out, p := 0, b.pos
	for out < len(dst) && b.talking {
		if b.stageLen > 0 && p >= b.stageStart && p < b.stageStart+int64(b.stageLen) {
			off := int(p - b.stageStart)
			n := copy(dst[out:], b.stage[off:b.stageLen])
			b.countStaged(off, n)
			out += n
			p += int64(n)
			continue
		}
		b.purge(p)
		if len(b.pkts) > 0 && b.pkts[0].ts <= p {
			b.decode(b.pkts[0])
			b.free = append(b.free, b.pkts[0])
			b.pkts = slices.Delete(b.pkts, 0, 1)
			continue
		}
		// The audio at p is missing.
		var next *packet
		if len(b.pkts) > 0 {
			next = b.pkts[0]
		}
		room := len(dst) - out
		due := p-int64(out) <= want+halfFrame
		switch {
		case b.concealRun >= maxConceal:
			// Too long a gap to conceal: silence until the next talkspurt.
			clear(dst[out:])
			b.talking = false
			out = len(dst)
		case !due:
			// Ahead of schedule: wait for the packet, concealing meanwhile.
			n := min(room, FrameSamples)
			b.conceal(dst[out : out+n])
			b.expanded += int64(n)
			out += n
		case next != nil && !next.resumes && !b.noFEC && next.fec && b.fecFits(next, p):
			b.decodeFEC(next, p)
		default:
			// Lost, or the sender's silence: concealment fades into it.
			n := room
			if next != nil {
				n = int(min(int64(room), next.ts-p))
				if !next.resumes {
					b.lost += int64(n)
				}
			}
			b.conceal(dst[out : out+n])
			out += n
			p += int64(n)
		}
	}
	if !b.talking && out < len(dst) {
		clear(dst[out:])
	}
	b.pos = p + int64(len(dst)-out)
}

// fecFits reports whether the gap from p to next can be filled by DecodeFEC:
// libopus rebuilds the last next.dur samples of the gap from next's FEC and
// conceals the rest.
func (b *Buffer) fecFits(next *packet, p int64) bool {
	g := next.ts - p
	return g >= int64(next.dur) && g <= opus.MaxFrameSamples && g%concealStep == 0 &&
		b.concealRun+int(g)-next.dur <= maxConceal
}

// countStaged counts n staged samples from offset off as played.
func (b *Buffer) countStaged(off, n int) {
	if b.stageKind == stageDecoded {
		b.played += int64(n)
		return
	}
	plc := max(0, min(off+n, b.stageSplit)-off)
	b.lost += int64(n)
	b.concealed += int64(plc)
	b.fec += int64(n - plc)
}

// decode decodes p into the stage.
func (b *Buffer) decode(p *packet) {
	n, err := b.dec.Decode(p.data, b.stage[:])
	if err != nil {
		b.invalid++
		n = p.dur
		b.concealInto(b.stage[:n])
		b.concealed += int64(n)
	}
	b.stageStart, b.stageLen, b.stageKind = p.ts, n, stageDecoded
	b.concealRun = 0
}

// decodeFEC fills the stage from p (the playout position) to next with
// concealment followed by next's FEC.
func (b *Buffer) decodeFEC(next *packet, p int64) {
	g := int(next.ts - p)
	if _, err := b.dec.DecodeFEC(next.data, b.stage[:g]); err != nil {
		b.concealInto(b.stage[:g])
		b.stageStart, b.stageLen, b.stageKind, b.stageSplit = p, g, stageFEC, g
		return
	}
	b.stageStart, b.stageLen, b.stageKind, b.stageSplit = p, g, stageFEC, g-next.dur
	b.concealRun = 0
}

// conceal writes concealment to dst and counts it.
func (b *Buffer) conceal(dst []int16) {
	b.concealInto(dst)
	b.concealed += int64(len(dst))
	b.concealRun += len(dst)
}

// concealInto writes concealment to dst, of any length up to
// opus.MaxFrameSamples: libopus conceals in steps of 2.5 ms, so a ragged end is
// concealed in full and cut.
func (b *Buffer) concealInto(dst []int16) {
	whole := len(dst) / concealStep * concealStep
	if whole > 0 {
		if _, err := b.dec.Conceal(dst[:whole]); err != nil {
			clear(dst[:whole])
		}
	}
	if rest := len(dst) - whole; rest > 0 {
		var tmp [concealStep]int16
		if _, err := b.dec.Conceal(tmp[:]); err != nil {
			clear(tmp[:])
		}
		copy(dst[whole:], tmp[:rest])
	}
}

func meanSquare(pcm []int16) int64 {
	var sum int64
	for _, s := range pcm {
		sum += int64(s) * int64(s)
	}
	return sum / int64(len(pcm))
}

// Stats returns the Buffer's counters and current delays.
func (b *Buffer) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{
		Received:     b.received,
		Duplicate:    b.duplicate,
		Late:         b.late,
		Invalid:      b.invalid,
		Lost:         uint64(b.lost / FrameSamples),
		RecoveredFEC: uint64(b.fec / FrameSamples),
		Concealed:    uint64(b.concealed / FrameSamples),
		Expanded:     uint64(b.expanded / FrameSamples),
		Dropped:      uint64(b.dropped / FrameSamples),
		Played:       uint64(b.played / FrameSamples),
		Delay:        samplesDuration(b.delay),
		TargetDelay:  samplesDuration(b.target),
		Jitter:       samplesDuration(int64(b.jitter)),
	}
}

// Mix adds srcs into dst sample by sample, saturating at the int16 limits.
// Sources shorter than dst add nothing past their end. Mix is safe for
// concurrent use on distinct dst.
func Mix(dst []int16, srcs ...[]int16) {
	for i := range dst {
		sum := int32(dst[i])
		for _, s := range srcs {
			if i < len(s) {
				sum += int32(s[i])
			}
		}
		dst[i] = int16(max(-32768, min(32767, sum)))
	}
}
