package call

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"mahfooz/media/jitter"
	"mahfooz/media/opus"
)

// FrameSamples is the samples of one 20 ms frame at 48 kHz: what a Source gives
// and a Sink takes at a time.
const FrameSamples = opus.SampleRate / 50

// frameDuration is one Source or Sink frame.
const frameDuration = 20 * time.Millisecond

// dtxRefresh is how often a silent sender still sends a packet, so receivers
// tell silence from a lost link. libopus itself emits a comfort-noise update
// every 400 ms while in DTX; this bounds the gap if it does not.
const dtxRefresh = 400 * time.Millisecond

// Source is what a member says, 20 ms (FrameSamples) at a time: a microphone or
// a file. ReadFrame returns io.EOF when there is no more; the call then ends.
type Source interface {
	ReadFrame(pcm []int16) error
}

// Sink is what a member hears, 20 ms at a time: a speaker or a file.
type Sink interface {
	WriteFrame(pcm []int16) error
}

// Transport carries RTP between the device and the relay (device/rtc.Link).
type Transport interface {
	WriteRTP(ts uint32, marker bool, payload []byte) error
	ReadRTP(buf []byte) (ts uint32, marker bool, payload []byte, err error)
	Done() <-chan struct{}
}

// Profile is how a member encodes: Opus bitrate, packet duration and the loss
// the in-band FEC is tuned for.
type Profile struct {
	Name    string
	Bitrate int           // bits per second of Opus payload
	Packet  time.Duration // 20, 40 or 60 ms of audio per packet
	FECLoss int           // percent of loss the encoder's in-band FEC protects against
	// Redundant repeats each packet in the next one (MediaPayload), so that a
	// single lost packet costs nothing.
	Redundant bool
}

// The profiles a call moves between as its links change.
//
// libopus (1.3) puts in-band FEC in a packet only from about 18 kbit/s, so it
// protects the good profile alone; the others repeat each packet in the next
// one, so that a lost packet is rebuilt from its successor. The fair profile is
// for links that lose a few percent or jitter by tens of milliseconds but still
// carry 50 kbit/s (3G): 40 ms packets halve the per-packet header cost (IP,
// UDP, RTP, SRTP and SFrame: about 72 bytes), and at 16 kbit/s Opus keeps the
// whole wideband of speech, which at 12 kbit/s it sometimes narrows enough to
// lose fricatives. On the wire that is 2 × 80 bytes of Opus + about 76 bytes per
// 40 ms: 47 kbit/s. The poor profile is for 2G-class links of about 100 kbit/s
// with 5 % loss: 60 ms packets cut the header cost to a third; 2 × 48 bytes of
// Opus + about 76 bytes per 60 ms is 23 kbit/s.
var (
	ProfileGood = Profile{Name: "good", Bitrate: 24000, Packet: 20 * time.Millisecond, FECLoss: 10}
	ProfileFair = Profile{Name: "fair", Bitrate: 16000, Packet: 40 * time.Millisecond, FECLoss: 10, Redundant: true}
	ProfilePoor = Profile{Name: "poor", Bitrate: 6400, Packet: 60 * time.Millisecond, FECLoss: 20, Redundant: true}
)

// Profiles lists the profiles from best to most frugal.
var Profiles = []Profile{ProfileGood, ProfileFair, ProfilePoor}

// ProfileNamed returns the profile of that name.
func ProfileNamed(name string) (Profile, bool) {
	for _, p := range Profiles {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}

// MediaConfig is what Media needs.
type MediaConfig struct {
	Keys      *Keys
	Transport Transport
	Source    Source // nil: the member says nothing
	Sink      Sink   // nil: what arrives is decoded and dropped
	Profile   Profile
	Logger    *slog.Logger
	// FirstAudio, if set, is called once, when the first frame from another
	// member has been decoded and played.
	FirstAudio func()
	// FirstPacket, if set, is called once, when the first packet from another
	// member has arrived and opened: the relay forwards both ways.
	FirstPacket func()
}

// MediaStats is what Media measured.
type MediaStats struct {
	PacketsSent  uint64
	BytesSent    uint64 // SFrame payload bytes sent
	Refused      uint64 // packets received that did not open (wrong key, replay, old epoch)
	Senders      int    // other members heard from
	Received     uint64 // packets
	Played       uint64 // 20 ms frames played from received packets
	Lost         uint64 // 20 ms frames lost (then rebuilt by FEC or concealed)
	RecoveredFEC uint64
	// RecoveredRedundant counts the 20 ms frames of lost packets rebuilt from
	// the copy in the next one (redundant profiles).
	RecoveredRedundant uint64
	Concealed          uint64
	Late               uint64
	Jitter             time.Duration // the worst sender's
	Delay              time.Duration // the worst sender's playout delay
	Profile            string
}

// Media runs one member's audio in a call: it encodes and encrypts what Source
// gives, sends it through Transport, and decrypts, reorders, conceals and mixes
// what the other members send into Sink, in real time. It is safe for
// concurrent use.
type Media struct {
	cfg  MediaConfig
	log  *slog.Logger
	stop chan struct{}
	done chan struct{} // closed when the source ends, the transport fails or Close
	wg   sync.WaitGroup

	tr      atomic.Pointer[Transport]
	swapped chan struct{} // a new transport was set

	sourceEnded atomic.Bool
	closeOnce   sync.Once
	doneOnce    sync.Once
	firstOnce   sync.Once
	packetOnce  sync.Once

	mu        sync.Mutex
	profile   Profile
	senders   map[uint32]*sender // by MLS leaf
	final     *MediaStats        // set by Close: what was measured
	sent      atomic.Uint64
	sentB     atomic.Uint64
	refused   atomic.Uint64
	redundant atomic.Uint64
}

type sender struct {
	buf    *jitter.Buffer
	dec    *opus.Decoder
	recent [recentTimestamps]uint32 // timestamps of packets received; only the receiver uses them
	next   int
}

// StartMedia starts a member's audio.
func StartMedia(cfg MediaConfig) (*Media, error) {
	if cfg.Keys == nil || cfg.Transport == nil {
		return nil, errors.New("call: media needs keys and a transport")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Profile.Bitrate == 0 {
		cfg.Profile = ProfileGood
	}
	enc, err := opus.NewEncoder()
	if err != nil {
		return nil, err
	}
	m := &Media{
		cfg: cfg, log: cfg.Logger, stop: make(chan struct{}), done: make(chan struct{}), swapped: make(chan struct{}, 1),
		profile: cfg.Profile, senders: make(map[uint32]*sender),
	}
	if err := m.configure(enc, cfg.Profile); err != nil {
		enc.Close()
		return nil, err
	}
	m.tr.Store(&cfg.Transport)
	m.wg.Add(3)
	go m.sendLoop(enc)
	go m.receiveLoop()
	go m.playLoop()
	return m, nil
}

// transport returns the transport in use.
func (m *Media) transport() Transport { return *m.tr.Load() }

// SetTransport replaces a transport that failed (a new link to the relay after
// a reconnection). The keys, and so the SFrame counters, carry on: nothing is
// sent twice under one nonce.
func (m *Media) SetTransport(t Transport) {
	m.tr.Store(&t)
	select {
	case m.swapped <- struct{}{}:
	default:
	}
}

// SetProfile changes how this member encodes from its next packet on.
func (m *Media) SetProfile(p Profile) {
	m.mu.Lock()
	m.profile = p
	m.mu.Unlock()
}

// Profile returns the profile in use.
func (m *Media) Profile() Profile {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.profile
}

// Done is closed when the source has ended or Close was called. A failed
// transport does not end the media: audio is dropped until SetTransport.
func (m *Media) Done() <-chan struct{} { return m.done }

// SourceEnded reports whether Done was closed because the Source ran out.
func (m *Media) SourceEnded() bool { return m.sourceEnded.Load() }

func (m *Media) finish() { m.doneOnce.Do(func() { close(m.done) }) }

// Close stops the audio and waits for its goroutines. The Transport is the
// caller's to close, and must be closed first: the receiver waits on it.
func (m *Media) Close() {
	m.closeOnce.Do(func() { close(m.stop) })
	m.finish()
	m.wg.Wait()
	final := m.Stats()
	m.mu.Lock()
	m.final = &final
	for _, s := range m.senders {
		s.dec.Close()
	}
	m.senders = map[uint32]*sender{}
	m.mu.Unlock()
}

// Stats returns what was measured so far (after Close, in all).
func (m *Media) Stats() MediaStats {
	st := MediaStats{PacketsSent: m.sent.Load(), BytesSent: m.sentB.Load(), Refused: m.refused.Load(),
		RecoveredRedundant: m.redundant.Load()}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.final != nil {
		return *m.final
	}
	st.Profile = m.profile.Name
	st.Senders = len(m.senders)
	for _, s := range m.senders {
		js := s.buf.Stats()
		st.Received += js.Received
		st.Lost += js.Lost
		st.RecoveredFEC += js.RecoveredFEC
		st.Concealed += js.Concealed
		st.Played += js.Played
		st.Late += js.Late
		st.Jitter = max(st.Jitter, js.Jitter)
		st.Delay = max(st.Delay, js.Delay)
	}
	return st
}

// configure sets the encoder for a profile. The bitrate is constant: with a
// variable one, the lengths of the encrypted packets the relay and the network
// see would follow the sounds spoken.
func (m *Media) configure(enc *opus.Encoder, p Profile) error {
	if err := enc.SetVBR(false); err != nil {
		return err
	}
	if err := enc.SetBitrate(p.Bitrate); err != nil {
		return err
	}
	if err := enc.SetFEC(true, p.FECLoss); err != nil {
		return err
	}
	return enc.SetDTX(true)
}

// sendLoop reads the source every 20 ms, in real time, and sends a packet each
// time a profile's packet duration has been gathered.
func (m *Media) sendLoop(enc *opus.Encoder) {
	defer m.wg.Done()
	defer enc.Close()
	var seed [4]byte
	rand.Read(seed[:])
	ts := binary.BigEndian.Uint32(seed[:])
	var (
		pcm      = make([]int16, 0, 3*FrameSamples)
		frame    = make([]int16, FrameSamples)
		pkt      = make([]byte, 1500)
		out      = make([]byte, 0, 1600)
		meta     [4]byte
		current  = m.Profile()
		lastSent time.Time
		silent   bool
		previous []byte // the last packet; nil if it was a silence not sent
		spoken   bool   // the packet sent last was speech, not DTX
		framed   = make([]byte, 0, 1600)
	)
	pace(m.stop, func() bool {
		if m.cfg.Source == nil {
			clear(frame)
		} else if err := m.cfg.Source.ReadFrame(frame); err != nil {
			if !errors.Is(err, io.EOF) {
				m.log.Warn("call: reading audio", "err", err)
			}
			m.sourceEnded.Store(true)
			m.finish()
			return false
		}
		pcm = append(pcm, frame...)
		want := current.samples()
		if len(pcm) < want {
			return true
		}
		if p := m.Profile(); p != current && len(pcm) == want {
			// Switch only on a packet boundary of the old profile.
			current = p
			if err := m.configure(enc, p); err != nil {
				m.log.Warn("call: changing the encoder", "err", err)
			}
		}
		n, err := enc.Encode(pcm[:want], pkt)
		packetTS := ts
		ts += uint32(want)
		pcm = append(pcm[:0], pcm[want:]...)
		if err != nil {
			m.log.Warn("call: encoding", "err", err)
			return true
		}
		now := time.Now()
		dtx := opus.IsDTX(pkt[:n])
		// A silence is not sent, except for its first packet when the one
		// before must still be repeated: the end of a sentence is protected
		// like its middle.
		if dtx && now.Sub(lastSent) < dtxRefresh && !(current.Redundant && previous != nil && spoken) {
			silent, previous = true, nil
			return true
		}
		var repeat []byte
		if current.Redundant {
			repeat = previous
		}
		framed = appendPayload(framed[:0], pkt[:n], repeat, silent)
		resumes := silent
		// The next packet repeats this one, DTX or not, sent or lost on the
		// way out: in a redundant profile every packet carries the one before
		// but for the first after a silence, so that one without says the
		// profile changed.
		previous, spoken, silent = append(previous[:0], pkt[:n]...), !dtx, false
		lastSent = now
		binary.BigEndian.PutUint32(meta[:], packetTS)
		out, err = m.cfg.Keys.AppendProtect(out[:0], meta[:], framed)
		if err != nil {
			m.log.Warn("call: protecting a frame", "err", err)
			return true
		}
		if err := m.transport().WriteRTP(packetTS, resumes, out); err != nil {
			// The link is down; the call is reconnecting or ending.
			return true
		}
		m.sent.Add(1)
		m.sentB.Add(uint64(len(out)))
		return true
	})
}

// pace calls f once for every 20 ms frame due since it started, in real time.
// After a late wakeup (a loaded machine) it catches up rather than skipping,
// so no audio is dropped and the timeline stays true. It returns when stop is
// closed or f returns false.
func pace(stop <-chan struct{}, f func() bool) {
	start := time.Now()
	done := 0
	t := time.NewTimer(frameDuration)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for due := int(time.Since(start) / frameDuration); done < due; done++ {
			if !f() {
				return
			}
		}
		t.Reset(time.Until(start.Add(time.Duration(done+1) * frameDuration)))
	}
}

func (p Profile) samples() int {
	n := int(p.Packet / frameDuration)
	if n < 1 {
		n = 1
	}
	return n * FrameSamples
}

// receiveLoop opens every packet that arrives and hands it to its sender's
// jitter buffer. A packet that does not open is counted and dropped: it harms
// nobody else's audio.
func (m *Media) receiveLoop() {
	defer m.wg.Done()
	buf := make([]byte, 1500)
	plain := make([]byte, 0, 1500)
	var meta [4]byte
	for {
		ts, _, payload, err := m.transport().ReadRTP(buf)
		if err != nil {
			select {
			case <-m.stop:
				return
			case <-m.swapped:
				continue
			}
		}
		binary.BigEndian.PutUint32(meta[:], ts)
		frame, leaf, err := m.cfg.Keys.AppendUnprotect(plain[:0], meta[:], payload)
		if err != nil {
			m.refused.Add(1)
			continue
		}
		mp, err := ParsePayload(frame)
		if err != nil {
			m.refused.Add(1)
			continue
		}
		s, err := m.sender(leaf)
		if err != nil {
			m.log.Warn("call: decoder", "err", err)
			continue
		}
		if m.cfg.FirstPacket != nil {
			m.packetOnce.Do(m.cfg.FirstPacket)
		}
		if mp.Resumes {
			s.buf.PushResumed(ts, mp.Packet)
		} else {
			// Every packet of a redundant profile carries the one before,
			// but for the first after a silence.
			s.buf.SetCopies(mp.Previous != nil)
			s.buf.Push(ts, mp.Packet)
		}
		s.saw(ts)
		if mp.Previous != nil {
			if pts := ts - uint32(mp.PreviousSamples); !s.seen(pts) {
				s.buf.PushCopy(pts, mp.Previous)
				s.saw(pts)
				m.redundant.Add(uint64(mp.PreviousSamples / FrameSamples))
			}
		}
	}
}

// recentTimestamps is how many packet timestamps a sender's record keeps, to
// tell a repeated packet already received from one that was lost.
const recentTimestamps = 16

// saw records that the packet at ts was received.
func (s *sender) saw(ts uint32) {
	s.recent[s.next%recentTimestamps] = ts
	s.next++
}

// seen reports whether the packet at ts was received.
func (s *sender) seen(ts uint32) bool {
	for i := range min(s.next, recentTimestamps) {
		if s.recent[i] == ts {
			return true
		}
	}
	return false
}

func (m *Media) sender(leaf uint32) (*sender, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.senders[leaf]; s != nil {
		return s, nil
	}
	dec, err := opus.NewDecoder()
	if err != nil {
		return nil, err
	}
	s := &sender{dec: dec, buf: jitter.New(jitter.Config{}, dec)}
	m.senders[leaf] = s
	return s, nil
}

// playLoop mixes 20 ms from every sender's jitter buffer into the sink, in real
// time, writing silence before anyone has spoken.
func (m *Media) playLoop() {
	defer m.wg.Done()
	mix := make([]int16, FrameSamples)
	one := make([]int16, FrameSamples)
	var played bool
	pace(m.stop, func() bool {
		clear(mix)
		m.mu.Lock()
		for _, s := range m.senders {
			s.buf.Next(one)
			jitter.Mix(mix, one)
			if !played && s.buf.Stats().Played > 0 {
				played = true
			}
		}
		m.mu.Unlock()
		if m.cfg.Sink != nil {
			if err := m.cfg.Sink.WriteFrame(mix); err != nil {
				m.log.Warn("call: playing audio", "err", err)
			}
		}
		if played && m.cfg.FirstAudio != nil {
			m.firstOnce.Do(m.cfg.FirstAudio)
		}
		return true
	})
}
