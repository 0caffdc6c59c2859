// Package rtc is a device's media link to the exchange's call relay: one WebRTC
// PeerConnection (pion) carrying one Opus audio stream each way, whose RTP
// payloads are SFrame ciphertexts made by the device's call code. The link
// contacts nothing but the relay: no STUN or TURN server, no mDNS, UDP only.
//
// The relay's answer comes back through the exchange (the JoinCall message on
// the device's admitted TLS connection), so Dial takes a join function that does
// that exchange.
package rtc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"mahfooz/internal/pionlog"
)

// Opus as negotiated with the relay: the one codec registered on both sides.
const (
	// OpusPayloadType is the RTP payload type of Opus.
	OpusPayloadType = 111
	// OpusFmtp is the format line of the Opus codec.
	OpusFmtp = "minptime=10;useinbandfec=1"
	// ClockRate is the RTP clock of Opus: timestamps count 48 kHz samples.
	ClockRate = 48000
)

// Defaults for the zero fields of Config.
const (
	// DefaultDisconnectedTimeout is how long the relay may be silent (no media, no
	// answer to an ICE keepalive) before the link counts as disconnected.
	DefaultDisconnectedTimeout = 5 * time.Second
	// DefaultFailedTimeout is how long after that the link fails and Done closes.
	DefaultFailedTimeout = 15 * time.Second
	// DefaultKeepalive is how often an ICE keepalive goes to the relay when there
	// is no media, keeping carrier NAT mappings open.
	DefaultKeepalive = 2 * time.Second
)

// maxPacketSize bounds one RTP packet.
const maxPacketSize = 1500

// ErrClosed is returned by WriteRTP after Close or after the link failed.
var ErrClosed = errors.New("rtc: link closed")

// Config configures a Link.
type Config struct {
	// Logger receives the link's events; nil discards them.
	Logger *slog.Logger
	// Via, if set, replaces every relay candidate in the answer with this one UDP
	// address (an IP literal and port, "host:port"), so that media goes through,
	// say, a link emulator.
	Via string
	// DisconnectedTimeout, FailedTimeout and Keepalive tune ICE; zero is the
	// package default of the same name.
	DisconnectedTimeout time.Duration
	FailedTimeout       time.Duration
	Keepalive           time.Duration
}

// LinkStats counts what a Link carried. Payload bytes are the RTP payloads (the
// SFrame ciphertexts); RTP bytes add the RTP headers; wire bytes are everything
// the link's transport sent or received (SRTP, DTLS, ICE), as pion counts it.
type LinkStats struct {
	PacketsSent, PacketsReceived           uint64
	PayloadBytesSent, PayloadBytesReceived uint64
	RTPBytesSent, RTPBytesReceived         uint64
	WireBytesSent, WireBytesReceived       uint64
}

// Link is one device's media link to the relay. It is safe for concurrent use by
// one writing goroutine and one reading goroutine; Done, Stats and Close may be
// called from any goroutine.
type Link struct {
	log  *slog.Logger
	pc   *webrtc.PeerConnection
	send *sendTrack

	tracks    chan *webrtc.TrackRemote // the relay's track, once it arrives
	connected chan struct{}
	connOnce  sync.Once
	done      chan struct{}
	doneOnce  sync.Once
	closed    atomic.Bool

	wmu sync.Mutex
	seq uint16     // guarded by wmu
	hdr rtp.Header // guarded by wmu

	track *webrtc.TrackRemote // the reader's only
	rhdr  rtp.Header          // the reader's only

	packetsSent, payloadSent, rtpSent atomic.Uint64
	packetsRecv, payloadRecv, rtpRecv atomic.Uint64
}

// Dial creates a PeerConnection with one sendrecv Opus transceiver, makes the
// offer, waits for ICE gathering, calls join(offer) (which sends JoinCall over the
// exchange connection and returns the relay's answer), applies the answer and
// waits until the link is connected and ready to send, or ctx ends.
func Dial(ctx context.Context, cfg Config, join func(ctx context.Context, offer string) (string, error)) (*Link, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DisconnectedTimeout <= 0 {
		cfg.DisconnectedTimeout = DefaultDisconnectedTimeout
	}
	if cfg.FailedTimeout <= 0 {
		cfg.FailedTimeout = DefaultFailedTimeout
	}
	if cfg.Keepalive <= 0 {
		cfg.Keepalive = DefaultKeepalive
	}
	var via netip.AddrPort
	if cfg.Via != "" {
		var err error
		if via, err = netip.ParseAddrPort(cfg.Via); err != nil {
			return nil, fmt.Errorf("rtc: via address: %w", err)
		}
	}

	var me webrtc.MediaEngine
	if err := me.RegisterCodec(opusCodec(), webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("rtc: registering Opus: %w", err)
	}
	var se webrtc.SettingEngine
	se.LoggerFactory = pionlog.Factory{Log: cfg.Logger, Prefix: "rtc: "}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetICETimeouts(cfg.DisconnectedTimeout, cfg.FailedTimeout, cfg.Keepalive)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(&me), webrtc.WithSettingEngine(se),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(webrtc.Configuration{}) // no ICE servers: only the relay
	if err != nil {
		return nil, fmt.Errorf("rtc: new peer connection: %w", err)
	}
	l := &Link{
		log:       cfg.Logger,
		pc:        pc,
		send:      &sendTrack{bound: make(chan struct{})},
		tracks:    make(chan *webrtc.TrackRemote, 1),
		connected: make(chan struct{}),
		done:      make(chan struct{}),
	}
	l.hdr = rtp.Header{Version: 2, PayloadType: OpusPayloadType}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		select {
		case l.tracks <- tr:
		default: // the relay sends one track; ignore any other
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			l.connOnce.Do(func() { close(l.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			l.log.Info("rtc: link ended", "state", s.String())
			l.finish()
		}
	})
	ok := false
	defer func() {
		if !ok {
			l.Close()
		}
	}()
	if _, err := pc.AddTransceiverFromTrack(l.send, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
		return nil, fmt.Errorf("rtc: adding the audio transceiver: %w", err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("rtc: creating the offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, fmt.Errorf("rtc: setting the offer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, fmt.Errorf("rtc: gathering candidates: %w", ctx.Err())
	}
	answer, err := join(ctx, pc.LocalDescription().SDP)
	if err != nil {
		return nil, err
	}
	if via.IsValid() {
		if answer, err = replaceCandidates(answer, via); err != nil {
			return nil, err
		}
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return nil, fmt.Errorf("rtc: applying the relay's answer: %w", err)
	}
	for _, ch := range []chan struct{}{l.connected, l.send.bound} {
		select {
		case <-ch:
		case <-l.done:
			return nil, errors.New("rtc: link failed while connecting")
		case <-ctx.Done():
			return nil, fmt.Errorf("rtc: connecting to the relay: %w", ctx.Err())
		}
	}
	ok = true
	return l, nil
}

func opusCodec() webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: ClockRate, Channels: 2, SDPFmtpLine: OpusFmtp,
		},
		PayloadType: OpusPayloadType,
	}
}

// replaceCandidates rewrites an SDP answer so that its only ICE candidate is via.
func replaceCandidates(answer string, via netip.AddrPort) (string, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		return "", fmt.Errorf("rtc: parsing the relay's answer: %w", err)
	}
	strip := func(attrs []sdp.Attribute) []sdp.Attribute {
		out := attrs[:0]
		for _, a := range attrs {
			if a.Key != sdp.AttrKeyCandidate && a.Key != sdp.AttrKeyEndOfCandidates {
				out = append(out, a)
			}
		}
		return out
	}
	sd.Attributes = strip(sd.Attributes)
	addr := via.Addr().Unmap()
	cand := "1 1 udp 2130706431 " + addr.String() + " " + strconv.Itoa(int(via.Port())) + " typ host"
	for _, md := range sd.MediaDescriptions {
		md.Attributes = append(strip(md.Attributes),
			sdp.Attribute{Key: sdp.AttrKeyCandidate, Value: cand},
			sdp.Attribute{Key: sdp.AttrKeyEndOfCandidates})
		md.MediaName.Port = sdp.RangedPort{Value: int(via.Port())}
		if md.ConnectionInformation != nil {
			ip := "IP4"
			if addr.Is6() {
				ip = "IP6"
			}
			md.ConnectionInformation = &sdp.ConnectionInformation{NetworkType: "IN", AddressType: ip,
				Address: &sdp.Address{Address: addr.String()}}
		}
	}
	out, err := sd.Marshal()
	if err != nil {
		return "", fmt.Errorf("rtc: rewriting the relay's answer: %w", err)
	}
	return string(out), nil
}

// WriteRTP sends one RTP packet with the given timestamp (48 kHz clock), marker
// and payload. The link sets SSRC, payload type and its own sequence numbers.
func (l *Link) WriteRTP(ts uint32, marker bool, payload []byte) error {
	w, ssrc, pt := l.send.writer()
	if w == nil || l.closed.Load() {
		return ErrClosed
	}
	select {
	case <-l.done:
		return ErrClosed
	default:
	}
	l.wmu.Lock()
	l.hdr.SequenceNumber = l.seq
	l.seq++
	l.hdr.Timestamp = ts
	l.hdr.Marker = marker
	l.hdr.SSRC = ssrc
	l.hdr.PayloadType = pt
	_, err := w.WriteRTP(&l.hdr, payload)
	hl := l.hdr.MarshalSize()
	l.wmu.Unlock()
	if err != nil {
		if l.closed.Load() {
			return ErrClosed
		}
		return fmt.Errorf("rtc: writing RTP: %w", err)
	}
	l.packetsSent.Add(1)
	l.payloadSent.Add(uint64(len(payload)))
	l.rtpSent.Add(uint64(hl + len(payload)))
	return nil
}

// ReadRTP blocks until the next packet from the relay arrives and returns its
// timestamp, marker and payload. The payload aliases buf, which should hold 1500
// bytes. After Close, or once the link has failed, it returns io.EOF.
func (l *Link) ReadRTP(buf []byte) (ts uint32, marker bool, payload []byte, err error) {
	for {
		if l.track == nil {
			select {
			case l.track = <-l.tracks:
			case <-l.done:
				return 0, false, nil, io.EOF
			}
		}
		n, _, err := l.track.Read(buf)
		if err != nil {
			if l.closed.Load() || errors.Is(err, io.EOF) {
				return 0, false, nil, io.EOF
			}
			select {
			case <-l.done:
				return 0, false, nil, io.EOF
			default:
			}
			return 0, false, nil, fmt.Errorf("rtc: reading RTP: %w", err)
		}
		hl, err := l.rhdr.Unmarshal(buf[:n])
		if err != nil {
			continue // the relay forwards what it receives; drop what is not RTP
		}
		end := n
		if l.rhdr.Padding {
			pad := int(buf[n-1])
			if pad == 0 || hl+pad > n {
				continue
			}
			end -= pad
		}
		l.packetsRecv.Add(1)
		l.payloadRecv.Add(uint64(end - hl))
		l.rtpRecv.Add(uint64(n))
		return l.rhdr.Timestamp, l.rhdr.Marker, buf[hl:end], nil
	}
}

// Done is closed when the link fails or is closed.
func (l *Link) Done() <-chan struct{} { return l.done }

// Stats returns what the link has carried so far.
func (l *Link) Stats() LinkStats {
	s := LinkStats{
		PacketsSent: l.packetsSent.Load(), PayloadBytesSent: l.payloadSent.Load(), RTPBytesSent: l.rtpSent.Load(),
		PacketsReceived: l.packetsRecv.Load(), PayloadBytesReceived: l.payloadRecv.Load(), RTPBytesReceived: l.rtpRecv.Load(),
	}
	for _, st := range l.pc.GetStats() {
		if t, ok := st.(webrtc.TransportStats); ok {
			s.WireBytesSent += t.BytesSent
			s.WireBytesReceived += t.BytesReceived
		}
	}
	return s
}

// Close ends the link. It is safe to call more than once.
func (l *Link) Close() error {
	l.closed.Store(true)
	l.finish()
	return l.pc.Close()
}

// finish marks the link done and, when it failed rather than being closed,
// closes the PeerConnection in the background.
func (l *Link) finish() {
	l.doneOnce.Do(func() {
		close(l.done)
		if !l.closed.Load() {
			go l.pc.Close()
		}
	})
}

// sendTrack is the link's outgoing audio track: it remembers where pion binds it,
// so that WriteRTP goes straight to the SRTP writer.
type sendTrack struct {
	mu     sync.Mutex
	w      webrtc.TrackLocalWriter // guarded by mu
	ssrc   uint32                  // guarded by mu
	pt     uint8                   // guarded by mu
	bound  chan struct{}
	bindOn sync.Once
}

func (t *sendTrack) writer() (webrtc.TrackLocalWriter, uint32, uint8) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.w, t.ssrc, t.pt
}

// Bind implements webrtc.TrackLocal.
func (t *sendTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if c.MimeType == webrtc.MimeTypeOpus {
			t.mu.Lock()
			t.w, t.ssrc, t.pt = ctx.WriteStream(), uint32(ctx.SSRC()), uint8(c.PayloadType)
			t.mu.Unlock()
			t.bindOn.Do(func() { close(t.bound) })
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

// Unbind implements webrtc.TrackLocal.
func (t *sendTrack) Unbind(webrtc.TrackLocalContext) error {
	t.mu.Lock()
	t.w = nil
	t.mu.Unlock()
	return nil
}

// ID implements webrtc.TrackLocal.
func (*sendTrack) ID() string { return "audio" }

// RID implements webrtc.TrackLocal.
func (*sendTrack) RID() string { return "" }

// StreamID implements webrtc.TrackLocal.
func (*sendTrack) StreamID() string { return "device" }

// Kind implements webrtc.TrackLocal.
func (*sendTrack) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeAudio }
