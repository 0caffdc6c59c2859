// Package relay is the exchange's media relay for calls: a selective forwarding
// unit (SFU) that takes each participant's audio in over WebRTC and sends every
// packet on to the call's other participants. The payload of every packet is an
// SFrame ciphertext (RFC 9605) made by the sending device with keys from the
// call's MLS group; the relay never parses it and holds no key that opens it.
//
// All media uses one UDP socket (ICE-lite on a UDP mux), so the exchange opens a
// single port for calls. A device reaches the relay only through the exchange's
// JoinCall message on its admitted TLS connection, which hands the SDP offer to
// Join: the relay admits only devices the exchange admitted, and only those on
// the call's allow-list.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"mahfooz/internal/pionlog"
	"mahfooz/wire"
)

// Opus as negotiated on every link: the one codec registered on both sides.
const (
	// OpusPayloadType is the RTP payload type of Opus.
	OpusPayloadType = 111
	// OpusFmtp is the format line of the Opus codec.
	OpusFmtp = "minptime=10;useinbandfec=1"
)

// Defaults for the zero fields of Config.
const (
	// DefaultDisconnectedTimeout is how long a participant may send nothing (no
	// media, no ICE keepalive) before its link counts as disconnected.
	DefaultDisconnectedTimeout = 5 * time.Second
	// DefaultFailedTimeout is how long after that the link is declared failed and
	// the participant removed from its call.
	DefaultFailedTimeout = 15 * time.Second
	// DefaultJoinTimeout bounds preparing an answer.
	DefaultJoinTimeout = 10 * time.Second
)

// Implementation limits.
const (
	// maxPacketSize bounds one RTP packet read from a participant.
	maxPacketSize = 1500
	// keepaliveInterval is pion's ICE keepalive; an ICE-lite agent sends none.
	keepaliveInterval = 2 * time.Second
	// closeGrace bounds the wait for a link's handshake before closing it.
	closeGrace = 2 * time.Second
)

// Errors returned by Join, SetMembers and Leave.
var (
	// ErrForbidden: the device is not on the call's allow-list (Join), or is not a
	// participant of the call (SetMembers).
	ErrForbidden = errors.New("relay: not allowed in this call")
	// ErrLimit: the device is already in as many calls as Config.MaxCallsPerDevice.
	ErrLimit = errors.New("relay: device is in too many calls")
	// ErrBadOffer: the SDP offer does not parse, or does not offer exactly one
	// audio section with Opus that the relay can answer.
	ErrBadOffer = errors.New("relay: unusable SDP offer")
	// ErrBadMembers: a members list is empty, longer than wire.MaxCallMembers, or
	// does not include the device that sent it.
	ErrBadMembers = errors.New("relay: members must include the sender")
	// ErrClosed: the relay is closed.
	ErrClosed = errors.New("relay: closed")
)

// Config configures a Relay.
type Config struct {
	// Conn is the one UDP socket all media uses. Required; the relay takes it
	// over and closes it on Close.
	Conn net.PacketConn
	// Advertise lists the IP addresses put in the relay's host candidates in place
	// of Conn's own address (for a relay behind a 1:1 NAT). Empty means Conn's
	// address, or, if Conn is bound to an unspecified address, every interface's.
	Advertise []string
	// Logger receives events with routing metadata only; nil discards them.
	Logger *slog.Logger
	// Now is the relay's clock; nil is time.Now.
	Now func() time.Time
	// Tap, if set, sees every packet a participant sends before it is forwarded.
	// It runs on the packet path and must not keep p or block. For tests.
	Tap func(call wire.CallID, from wire.DeviceID, p *rtp.Packet)
	// MaxCallsPerDevice bounds the calls one device is in at once; zero is
	// wire.MaxCallsPerDevice.
	MaxCallsPerDevice int
	// DisconnectedTimeout and FailedTimeout are the ICE timeouts; zero is
	// DefaultDisconnectedTimeout and DefaultFailedTimeout.
	DisconnectedTimeout time.Duration
	FailedTimeout       time.Duration
}

// Relay forwards call media. Its methods are safe for concurrent use.
type Relay struct {
	cfg Config
	log *slog.Logger
	api *webrtc.API
	mux interface{ Close() error }

	mu     sync.Mutex
	closed bool                                           // guarded by mu
	calls  map[wire.CallID]*call                          // guarded by mu
	byDev  map[wire.DeviceID]map[wire.CallID]*participant // guarded by mu
	wg     sync.WaitGroup                                 // closing PeerConnections
}

// call is one call: its allow-list and participants, guarded by Relay.mu, and a
// snapshot of the participants that the packet path reads without a lock.
type call struct {
	id      wire.CallID
	members map[wire.DeviceID]bool
	parts   map[wire.DeviceID]*participant
	fwd     atomic.Pointer[[]*participant]
}

// participant is one device's link in one call.
type participant struct {
	dev  wire.DeviceID
	call *call
	pc   *webrtc.PeerConnection
	out  *webrtc.TrackLocalStaticRTP
	live atomic.Bool // set while it is in its call: only then are its packets forwarded
	// connected is closed once its link is up (ICE and DTLS), or has ended.
	connected chan struct{}
	connOnce  sync.Once

	mu  sync.Mutex // serialises writes to out, so sequence numbers follow write order
	seq uint16     // guarded by mu: the next sequence number on out
}

// New returns a Relay serving media on cfg.Conn.
func New(cfg Config) (*Relay, error) {
	if cfg.Conn == nil {
		return nil, errors.New("relay: config has no UDP socket")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxCallsPerDevice <= 0 {
		cfg.MaxCallsPerDevice = wire.MaxCallsPerDevice
	}
	if cfg.DisconnectedTimeout <= 0 {
		cfg.DisconnectedTimeout = DefaultDisconnectedTimeout
	}
	if cfg.FailedTimeout <= 0 {
		cfg.FailedTimeout = DefaultFailedTimeout
	}
	logs := pionlog.Factory{Log: cfg.Logger, Prefix: "relay: "}

	var me webrtc.MediaEngine
	if err := me.RegisterCodec(OpusCodec(), webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("relay: registering Opus: %w", err)
	}
	var se webrtc.SettingEngine
	se.LoggerFactory = logs
	se.SetLite(true)
	mux := webrtc.NewICEUDPMux(logs.NewLogger("ice"), cfg.Conn)
	se.SetICEUDPMux(mux)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetICETimeouts(cfg.DisconnectedTimeout, cfg.FailedTimeout, keepaliveInterval)
	if len(cfg.Advertise) > 0 {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        slices.Clone(cfg.Advertise),
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			mux.Close()
			return nil, fmt.Errorf("relay: advertised addresses: %w", err)
		}
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(&me), webrtc.WithSettingEngine(se),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	return &Relay{
		cfg:   cfg,
		log:   cfg.Logger,
		api:   api,
		mux:   mux,
		calls: make(map[wire.CallID]*call),
		byDev: make(map[wire.DeviceID]map[wire.CallID]*participant),
	}, nil
}

// OpusCodec returns the one codec both the relay and devices register.
func OpusCodec() webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: OpusFmtp,
		},
		PayloadType: OpusPayloadType,
	}
}

// Join takes dev into call and returns the SDP answer to its offer. If the call
// does not exist, it is created with members as its allow-list, which must
// include dev; otherwise dev must be on the call's allow-list and members is
// ignored. A device that joins a call it is already in replaces its earlier link.
// The answer carries all of the relay's candidates (ICE gathering is complete).
func (r *Relay) Join(ctx context.Context, dev wire.DeviceID, callID wire.CallID, members []wire.DeviceID, offer string) (string, error) {
	r.mu.Lock()
	err := r.admitLocked(dev, callID, members)
	r.mu.Unlock()
	if err != nil {
		return "", err
	}
	if err := checkOffer(offer); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultJoinTimeout)
	defer cancel()

	pc, err := r.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", fmt.Errorf("relay: new peer connection: %w", err)
	}
	p := &participant{dev: dev, pc: pc, connected: make(chan struct{})}
	answer, err := r.answer(ctx, p, offer)
	if err != nil {
		pc.Close()
		return "", err
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.admitLocked(dev, callID, members); err != nil {
		p.connOnce.Do(func() { close(p.connected) }) // it never had an answer: nothing to tell
		r.closeLater(p)
		return "", err
	}
	c := r.calls[callID]
	if c == nil {
		c = &call{id: callID, members: make(map[wire.DeviceID]bool, len(members)), parts: make(map[wire.DeviceID]*participant)}
		for _, m := range members {
			c.members[m] = true
		}
		r.calls[callID] = c
		r.log.Info("relay: call created", "call", callID.String(), "members", len(members))
	}
	if old := c.parts[dev]; old != nil {
		r.removeLocked(old)
		if r.calls[callID] == nil { // it was the last participant
			r.calls[callID] = c
		}
	}
	p.call = c
	c.parts[dev] = p
	if r.byDev[dev] == nil {
		r.byDev[dev] = make(map[wire.CallID]*participant)
	}
	r.byDev[dev][callID] = p
	p.live.Store(true)
	c.publish()
	r.log.Info("relay: device joined call", "call", callID.String(), "device", dev.String(), "participants", len(c.parts))
	return answer, nil
}

// admitLocked checks that dev may join callID now.
func (r *Relay) admitLocked(dev wire.DeviceID, callID wire.CallID, members []wire.DeviceID) error {
	if r.closed {
		return ErrClosed
	}
	if c := r.calls[callID]; c != nil {
		if !c.members[dev] {
			return ErrForbidden
		}
	} else if len(members) == 0 || len(members) > wire.MaxCallMembers || !slices.Contains(members, dev) {
		return ErrBadMembers
	}
	in := r.byDev[dev]
	if _, rejoin := in[callID]; !rejoin && len(in) >= r.cfg.MaxCallsPerDevice {
		return ErrLimit
	}
	return nil
}

// answer prepares p's PeerConnection for offer and returns the complete answer.
// Its errors never quote pion's, which may quote the SDP and so its ICE password.
func (r *Relay) answer(ctx context.Context, p *participant, offer string) (string, error) {
	pc := p.pc
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { r.forward(p, tr) })
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			p.connOnce.Do(func() { close(p.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			p.connOnce.Do(func() { close(p.connected) })
			r.drop(p)
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: applying it", ErrBadOffer)
	}
	out, err := webrtc.NewTrackLocalStaticRTP(OpusCodec().RTPCodecCapability, "audio", "relay")
	if err != nil {
		return "", fmt.Errorf("relay: new track: %w", err)
	}
	p.out = out
	if _, err := pc.AddTrack(out); err != nil {
		return "", fmt.Errorf("%w: adding the track", ErrBadOffer)
	}
	if ts := pc.GetTransceivers(); len(ts) != 1 || ts[0].Kind() != webrtc.RTPCodecTypeAudio {
		return "", fmt.Errorf("%w: want one audio transceiver", ErrBadOffer)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: answering it", ErrBadOffer)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("%w: setting the answer", ErrBadOffer)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("relay: gathering candidates: %w", ctx.Err())
	}
	return pc.LocalDescription().SDP, nil
}

// checkOffer refuses an offer that is not one audio section.
func checkOffer(offer string) error {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return fmt.Errorf("%w: not SDP", ErrBadOffer) // the parser's message may quote the offer's credentials
	}
	if len(sd.MediaDescriptions) != 1 || sd.MediaDescriptions[0].MediaName.Media != "audio" {
		return fmt.Errorf("%w: want exactly one audio section", ErrBadOffer)
	}
	return nil
}

// forward reads p's packets and writes each to every other participant of its
// call. It runs on its own goroutine until p's link ends.
func (r *Relay) forward(p *participant, tr *webrtc.TrackRemote) {
	if tr.Kind() != webrtc.RTPCodecTypeAudio {
		return
	}
	buf := make([]byte, maxPacketSize)
	var pkt rtp.Packet
	tap := r.cfg.Tap
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		if !p.live.Load() || pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		c := p.call
		if tap != nil {
			tap(c.id, p.dev, &pkt)
		}
		for _, dst := range *c.fwd.Load() {
			if dst != p {
				dst.write(&pkt)
			}
		}
	}
}

// write sends pkt on dst's outgoing track under dst's own sequence numbering,
// keeping timestamp, marker and payload. The track sets SSRC and payload type.
func (dst *participant) write(pkt *rtp.Packet) {
	dst.mu.Lock()
	pkt.SequenceNumber = dst.seq
	dst.seq++
	_ = dst.out.WriteRTP(pkt) // a failing link is removed by its state callback
	dst.mu.Unlock()
}

// publish makes the packet path see c's current participants.
func (c *call) publish() {
	s := make([]*participant, 0, len(c.parts))
	for _, p := range c.parts {
		s = append(s, p)
	}
	c.fwd.Store(&s)
}

// SetMembers replaces the allow-list of call, on behalf of dev, which must be one
// of its participants and on the new list. Participants not on it are cut off at
// once.
func (r *Relay) SetMembers(d wire.DeviceID, callID wire.CallID, members []wire.DeviceID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	c := r.calls[callID]
	if c == nil || c.parts[d] == nil {
		return ErrForbidden
	}
	if len(members) == 0 || len(members) > wire.MaxCallMembers || !slices.Contains(members, d) {
		return ErrBadMembers
	}
	c.members = make(map[wire.DeviceID]bool, len(members))
	for _, m := range members {
		c.members[m] = true
	}
	for id, p := range c.parts {
		if !c.members[id] {
			r.log.Info("relay: participant no longer on the allow-list", "call", callID.String(), "device", id.String())
			r.removeLocked(p)
		}
	}
	return nil
}

// Leave takes dev out of call. Leaving a call one is not in is not an error.
func (r *Relay) Leave(dev wire.DeviceID, callID wire.CallID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if p := r.byDev[dev][callID]; p != nil {
		r.removeLocked(p)
	}
	return nil
}

// DropDevice takes dev out of every call, as when its last connection to the
// exchange closes or it is revoked.
func (r *Relay) DropDevice(dev wire.DeviceID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.byDev[dev] {
		r.removeLocked(p)
	}
}

// drop removes p if it is still in its call: its link failed or closed.
func (r *Relay) drop(p *participant) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.call != nil && p.call.parts[p.dev] == p {
		r.log.Info("relay: participant's link ended", "call", p.call.id.String(), "device", p.dev.String())
		r.removeLocked(p)
	}
}

// removeLocked takes p out of its call, forgets the call if it is now empty,
// and closes p's link in the background.
func (r *Relay) removeLocked(p *participant) {
	c := p.call
	if c == nil || c.parts[p.dev] != p {
		return
	}
	p.live.Store(false)
	delete(c.parts, p.dev)
	c.publish()
	if in := r.byDev[p.dev]; in != nil {
		delete(in, c.id)
		if len(in) == 0 {
			delete(r.byDev, p.dev)
		}
	}
	if len(c.parts) == 0 {
		delete(r.calls, c.id)
		r.log.Info("relay: call ended", "call", c.id.String())
	}
	r.closeLater(p)
}

// closeLater closes p's PeerConnection without holding up the caller. A link
// still completing its DTLS handshake is given closeGrace to finish it first, so
// that the device is told (by DTLS close_notify) rather than left to find out
// by ICE timeouts.
func (r *Relay) closeLater(p *participant) {
	if r.closed {
		return // Close closes it
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTimer(closeGrace)
		select {
		case <-p.connected:
		case <-t.C:
		}
		t.Stop()
		p.pc.Close()
	}()
}

// Participants returns the devices in call now, for tests and monitoring.
func (r *Relay) Participants(callID wire.CallID) []wire.DeviceID {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls[callID]
	if c == nil {
		return nil
	}
	out := make([]wire.DeviceID, 0, len(c.parts))
	for id := range c.parts {
		out = append(out, id)
	}
	return wire.SortDeviceIDs(out)
}

// Calls returns how many calls have participants now.
func (r *Relay) Calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// Addr returns the address of the relay's UDP socket.
func (r *Relay) Addr() net.Addr { return r.cfg.Conn.LocalAddr() }

// Close ends every call, closes the UDP socket and waits for the relay's
// goroutines.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	var all []*participant
	for _, c := range r.calls {
		for _, p := range c.parts {
			p.live.Store(false)
			all = append(all, p)
		}
	}
	r.closed = true
	r.calls, r.byDev = map[wire.CallID]*call{}, map[wire.DeviceID]map[wire.CallID]*participant{}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.pc.Close()
		}()
	}
	wg.Wait()
	r.wg.Wait()
	return r.mux.Close()
}
