// Package relay is the exchange's media relay for calls (an SFU). It does not
// use WebRTC PeerConnections: it speaks just enough of WebRTC to be a peer for
// device/rtc links, which keeps its per-packet path short. It is ICE-lite (it answers STUN
// binding checks), runs a DTLS server per participant only to agree SRTP keys
// (RFC 5764), and forwards media on one goroutine that reads the shared UDP
// socket, demultiplexes each datagram by its first byte (RFC 7983) and its
// source address, decrypts SRTP with the sender's keys and encrypts it again
// for every other participant under that participant's own SSRC and sequence
// numbers. It reads and writes datagrams in batches (recvmmsg and sendmmsg on
// Linux). The RTP payloads are SFrame ciphertexts the relay cannot open. RTCP is
// dropped.
//
// A device reaches the relay only through Join, called by the exchange with the
// SDP offer from the device's JoinCall message: the ICE credentials and the DTLS
// certificate fingerprint of each link come from that offer and the answer, so
// the relay admits only devices the exchange admitted, and only those on the
// call's allow-list.
package relay

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"mahfooz/wire"
)

// Opus as negotiated on every link: the one codec devices register.
const (
	// OpusPayloadType is the RTP payload type of Opus.
	OpusPayloadType = 111
	// OpusFmtp is the format line of the Opus codec.
	OpusFmtp = "minptime=10;useinbandfec=1"
)

// Defaults for the zero fields of Config.
const (
	// DefaultFailedTimeout is how long a participant may send nothing (no media,
	// no ICE check) before it is removed from its call.
	DefaultFailedTimeout = 20 * time.Second
	// DefaultHandshakeTimeout bounds a participant's ICE and DTLS set-up.
	DefaultHandshakeTimeout = 30 * time.Second
)

// Implementation limits.
const (
	// maxPacketSize bounds one datagram.
	maxPacketSize = 1500
	// closeGrace bounds the wait for a link's handshake before closing it, so that
	// a device still connecting is told by DTLS close_notify.
	closeGrace = 2 * time.Second
	// tick is the resolution of the relay's clock and of its silence checks.
	tick = 250 * time.Millisecond
)

// Errors returned by Join, SetMembers and Leave.
var (
	// ErrForbidden: the device is not on the call's allow-list (Join), or is not a
	// participant of the call (SetMembers).
	ErrForbidden = errors.New("relay: not allowed in this call")
	// ErrLimit: the device is already in as many calls as Config.MaxCallsPerDevice.
	ErrLimit = errors.New("relay: device is in too many calls")
	// ErrBadOffer: the SDP offer does not parse, or is not one audio section with
	// Opus, ICE credentials and a SHA-256 DTLS fingerprint.
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
	// of Conn's own address. Empty means Conn's address, or, if Conn is bound to
	// an unspecified address, every interface's.
	Advertise []string
	// Logger receives events with routing metadata only; nil discards them.
	Logger *slog.Logger
	// Rand is the source of ICE credentials, SSRCs and the DTLS key; nil is
	// crypto/rand.Reader.
	Rand io.Reader
	// Now is the relay's clock; nil is time.Now.
	Now func() time.Time
	// Tap, if set, sees every packet a participant sends before it is forwarded.
	// It runs on the packet path and must not keep p or block. For tests.
	Tap func(call wire.CallID, from wire.DeviceID, p *rtp.Packet)
	// MaxCallsPerDevice bounds the calls one device is in at once; zero is
	// wire.MaxCallsPerDevice.
	MaxCallsPerDevice int
	// FailedTimeout and HandshakeTimeout: zero is the default of the same name.
	FailedTimeout    time.Duration
	HandshakeTimeout time.Duration
}

// Relay forwards call media. Its methods are safe for concurrent use.
type Relay struct {
	cfg    Config
	log    *slog.Logger
	conn   net.PacketConn
	udp    *net.UDPConn // conn, if it is one: the allocation-free path
	cert   tls.Certificate
	fp     string                   // SHA-256 fingerprint of cert, as SDP writes it
	addrs  []netip.AddrPort         // host candidates
	clock  atomic.Int64             // coarse Now, in Unix nanoseconds
	stop   chan struct{}            // closed by Close
	done   sync.WaitGroup           // the reader and the ticker
	wg     sync.WaitGroup           // handshakes and closing links
	book   atomic.Pointer[addrBook] // source address -> participant
	ctx    context.Context          // cancelled by Close
	cancel context.CancelFunc

	bookMu sync.Mutex // serialises changes to book

	mu      sync.Mutex
	closed  bool                                           // guarded by mu
	calls   map[wire.CallID]*call                          // guarded by mu
	byDev   map[wire.DeviceID]map[wire.CallID]*participant // guarded by mu
	byUfrag map[string]*participant                        // guarded by mu
}

// addrBook maps source addresses to participants. The reader goroutine reads it
// without a lock; writers copy it under bookMu.
type addrBook struct {
	m map[netip.AddrPort]*participant
}

// call is one call: its allow-list and participants, guarded by Relay.mu, and a
// snapshot of the participants that the packet path reads without a lock.
type call struct {
	id      wire.CallID
	members map[wire.DeviceID]bool
	parts   map[wire.DeviceID]*participant
	fwd     atomic.Pointer[[]*participant]
}

// participant is one device's link in one call. Fields marked "reader" belong
// to the reader goroutine.
type participant struct {
	dev       wire.DeviceID
	call      *call
	ufrag     string // the relay's ICE username fragment for this link
	pwd       string // the relay's ICE password for this link
	remote    string // the device's ICE username fragment
	fp        []byte // the device's DTLS certificate fingerprint
	ssrc      uint32 // the SSRC of the stream the relay sends to it
	live      atomic.Bool
	seen      atomic.Int64             // Relay.clock when it last sent anything valid
	addr      atomic.Pointer[peerAddr] // where its packets come from and go to
	keys      atomic.Pointer[keys]     // set once DTLS is done
	view      *dtlsView
	connected chan struct{} // closed once DTLS is done or has failed
	connOnce  sync.Once
	seq       uint16 // reader: next outgoing sequence number
}

// peerAddr is a participant's address, in both forms the socket takes.
type peerAddr struct {
	ap netip.AddrPort
	ua *net.UDPAddr
}

// keys are a participant's SRTP contexts, used only by the reader goroutine.
type keys struct {
	in, out *srtp.Context
}

// New returns a Relay serving media on cfg.Conn and starts its reader.
func New(cfg Config) (*Relay, error) {
	if cfg.Conn == nil {
		return nil, errors.New("relay: config has no UDP socket")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxCallsPerDevice <= 0 {
		cfg.MaxCallsPerDevice = wire.MaxCallsPerDevice
	}
	if cfg.FailedTimeout <= 0 {
		cfg.FailedTimeout = DefaultFailedTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	cert, err := selfSigned(cfg.Rand, cfg.Now())
	if err != nil {
		return nil, err
	}
	addrs, err := candidates(cfg.Conn.LocalAddr(), cfg.Advertise)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(cert.Certificate[0])
	hexfp := make([]string, len(sum))
	for i, b := range sum {
		hexfp[i] = fmt.Sprintf("%02X", b)
	}
	r := &Relay{
		cfg: cfg, log: cfg.Logger, conn: cfg.Conn, cert: cert, fp: strings.Join(hexfp, ":"), addrs: addrs,
		stop:    make(chan struct{}),
		calls:   make(map[wire.CallID]*call),
		byDev:   make(map[wire.DeviceID]map[wire.CallID]*participant),
		byUfrag: make(map[string]*participant),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.udp, _ = cfg.Conn.(*net.UDPConn)
	r.book.Store(&addrBook{m: map[netip.AddrPort]*participant{}})
	r.clock.Store(cfg.Now().UnixNano())
	r.done.Add(2)
	go r.read()
	go r.ticker()
	return r, nil
}

// selfSigned makes the relay's DTLS certificate: only its fingerprint, sent in
// each answer over the device's authenticated exchange connection, matters.
func selfSigned(rnd io.Reader, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("relay: DTLS key: %w", err)
	}
	serial := make([]byte, 16)
	if _, err := io.ReadFull(rnd, serial); err != nil {
		return tls.Certificate{}, fmt.Errorf("relay: DTLS certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(serial),
		Subject:      pkix.Name{CommonName: "mahfooz relay"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rnd, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("relay: DTLS certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// candidates lists the host candidates for a socket bound to local.
func candidates(local net.Addr, advertise []string) ([]netip.AddrPort, error) {
	ua, ok := local.(*net.UDPAddr)
	if !ok {
		return nil, errors.New("relay: socket is not UDP")
	}
	port := uint16(ua.Port)
	var out []netip.AddrPort
	for _, s := range advertise {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("relay: advertised address: %w", err)
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), port))
	}
	if len(out) > 0 {
		return out, nil
	}
	if a, ok := netip.AddrFromSlice(ua.IP); ok && !a.IsUnspecified() {
		return []netip.AddrPort{netip.AddrPortFrom(a.Unmap(), port)}, nil
	}
	ifs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("relay: interface addresses: %w", err)
	}
	for _, ia := range ifs {
		if n, ok := ia.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(n.IP); ok && !a.Unmap().IsLinkLocalUnicast() {
				out = append(out, netip.AddrPortFrom(a.Unmap(), port))
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("relay: no address to advertise")
	}
	return out, nil
}

// Join takes dev into call and returns the SDP answer to its offer. If the call
// does not exist, it is created with members as its allow-list, which must
// include dev; otherwise dev must be on the call's allow-list and members is
// ignored. A device that joins a call it is already in replaces its earlier link.
func (r *Relay) Join(ctx context.Context, dev wire.DeviceID, callID wire.CallID, members []wire.DeviceID, offerSDP string) (string, error) {
	r.mu.Lock()
	err := r.admitLocked(dev, callID, members)
	r.mu.Unlock()
	if err != nil {
		return "", err
	}
	o, err := parseOffer(offerSDP)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var rnd [6 + 18 + 4 + 8]byte
	if _, err := io.ReadFull(r.cfg.Rand, rnd[:]); err != nil {
		return "", fmt.Errorf("relay: random: %w", err)
	}
	p := &participant{
		dev:       dev,
		ufrag:     base64.RawStdEncoding.EncodeToString(rnd[:6]),
		pwd:       base64.RawStdEncoding.EncodeToString(rnd[6:24]),
		remote:    o.ufrag,
		fp:        o.fingerprint,
		ssrc:      binary.BigEndian.Uint32(rnd[24:28]),
		connected: make(chan struct{}),
	}
	p.seen.Store(r.clock.Load())
	p.view = newDTLSView(r, p)
	answer := answerSDP(o, p.ufrag, p.pwd, r.fp, p.ssrc, binary.BigEndian.Uint64(rnd[28:])>>1, r.addrs)

	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.admitLocked(dev, callID, members); err != nil {
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
		if r.calls[callID] == nil {
			r.calls[callID] = c
		}
	}
	p.call = c
	c.parts[dev] = p
	if r.byDev[dev] == nil {
		r.byDev[dev] = make(map[wire.CallID]*participant)
	}
	r.byDev[dev][callID] = p
	r.byUfrag[p.ufrag] = p
	p.live.Store(true)
	c.publish()
	r.wg.Add(1)
	go r.handshake(p)
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
func (r *Relay) drop(p *participant, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return // Close ends every link
	}
	if p.call != nil && p.call.parts[p.dev] == p {
		r.log.Info("relay: participant's link ended", "call", p.call.id.String(), "device", p.dev.String(), "why", why)
		r.removeLocked(p)
	}
}

// removeLocked takes p out of its call, forgets the call if it is now empty,
// and closes p's DTLS session in the background (telling the device).
func (r *Relay) removeLocked(p *participant) {
	c := p.call
	if c == nil || c.parts[p.dev] != p {
		return
	}
	p.live.Store(false)
	delete(c.parts, p.dev)
	c.publish()
	delete(r.byUfrag, p.ufrag)
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
	r.unbook(p)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTimer(closeGrace)
		select {
		case <-p.connected:
		case <-t.C:
		case <-r.stop:
		}
		t.Stop()
		p.view.shutdown()
	}()
}

// bookAddr routes packets from a to p.
func (r *Relay) bookAddr(a netip.AddrPort, p *participant) {
	r.bookMu.Lock()
	defer r.bookMu.Unlock()
	old := r.book.Load().m
	if old[a] == p {
		return
	}
	m := make(map[netip.AddrPort]*participant, len(old)+1)
	for k, v := range old {
		if v != p && v.live.Load() {
			m[k] = v
		}
	}
	m[a] = p
	r.book.Store(&addrBook{m: m})
}

// unbook forgets p's address.
func (r *Relay) unbook(p *participant) {
	a := p.addr.Load()
	if a == nil {
		return
	}
	r.bookMu.Lock()
	defer r.bookMu.Unlock()
	old := r.book.Load().m
	if old[a.ap] != p {
		return
	}
	m := make(map[netip.AddrPort]*participant, len(old))
	for k, v := range old {
		if v != p {
			m[k] = v
		}
	}
	r.book.Store(&addrBook{m: m})
}

// ticker keeps the coarse clock and removes participants gone silent.
func (r *Relay) ticker() {
	defer r.done.Done()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		now := r.cfg.Now().UnixNano()
		r.clock.Store(now)
		var silent []*participant
		r.mu.Lock()
		for _, c := range r.calls {
			for _, p := range c.parts {
				if time.Duration(now-p.seen.Load()) > r.cfg.FailedTimeout {
					silent = append(silent, p)
				}
			}
		}
		r.mu.Unlock()
		for _, p := range silent {
			r.drop(p, "silent")
		}
	}
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
func (r *Relay) Addr() net.Addr { return r.conn.LocalAddr() }

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
	r.calls, r.byDev, r.byUfrag = map[wire.CallID]*call{}, map[wire.DeviceID]map[wire.CallID]*participant{}, map[string]*participant{}
	r.mu.Unlock()
	close(r.stop)
	r.cancel()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.view.shutdown()
		}()
	}
	wg.Wait()
	r.wg.Wait()
	err := r.conn.Close()
	r.done.Wait()
	return err
}
