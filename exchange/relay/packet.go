package relay

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5/deadline"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"mahfooz/internal/pionlog"
)

// Packet classes by first byte (RFC 7983).
const (
	classOther = iota
	classSTUN
	classDTLS
	classRTP
)

// classify returns the class of a datagram by its first byte.
func classify(b []byte) int {
	if len(b) == 0 {
		return classOther
	}
	switch c := b[0]; {
	case c < 4:
		return classSTUN
	case c >= 20 && c <= 63:
		return classDTLS
	case c >= 128 && c <= 191:
		return classRTP
	}
	return classOther
}

// isRTCP reports whether an RTP-class datagram is RTCP (RFC 5761: payload types
// 64-95 after masking the marker bit are RTCP packet types 192-223).
func isRTCP(b []byte) bool {
	pt := b[1] & 0x7f
	return pt >= 64 && pt <= 95
}

// Batch sizes of the reader: datagrams read, and written, per system call.
const (
	readBatch  = 16
	writeBatch = 64
)

// batchConn reads and writes several datagrams per system call (recvmmsg and
// sendmmsg on Linux).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// newBatchConn returns the batching view of a UDP socket.
func newBatchConn(c *net.UDPConn) batchConn {
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		return ipv4.NewPacketConn(c)
	}
	return ipv6.NewPacketConn(c)
}

// reader is the state of the relay's one reader goroutine.
type reader struct {
	r         *Relay
	bc        batchConn      // nil if the socket is not a *net.UDPConn
	in        []ipv4.Message // datagrams read
	out       []ipv4.Message // datagrams to write, out[:n] pending
	n         int
	dec       []byte
	hdr, ohdr rtp.Header
}

// read is the relay's one reader: it handles every datagram on the socket until
// the socket closes.
func (r *Relay) read() {
	defer r.done.Done()
	rd := &reader{r: r, dec: make([]byte, 0, maxPacketSize+64)}
	rd.in = make([]ipv4.Message, readBatch)
	for i := range rd.in {
		rd.in[i].Buffers = [][]byte{make([]byte, maxPacketSize)}
	}
	rd.out = make([]ipv4.Message, writeBatch)
	for i := range rd.out {
		rd.out[i].Buffers = [][]byte{make([]byte, 0, maxPacketSize+64)}
	}
	if r.udp != nil {
		rd.bc = newBatchConn(r.udp)
	}
	bc := rd.bc
	for {
		var n int
		var err error
		if bc != nil {
			n, err = bc.ReadBatch(rd.in, 0)
		} else {
			var k int
			var a net.Addr
			k, a, err = r.conn.ReadFrom(rd.in[0].Buffers[0])
			rd.in[0].N, rd.in[0].Addr, n = k, a, 1
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-r.stop:
				return
			default:
			}
			continue
		}
		for i := range n {
			ua, ok := rd.in[i].Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			ap := ua.AddrPort()
			rd.handle(rd.in[i].Buffers[0][:rd.in[i].N], netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
		rd.flush()
	}
}

// handle handles one datagram from the socket.
func (rd *reader) handle(b []byte, from netip.AddrPort) {
	r := rd.r
	switch classify(b) {
	case classSTUN:
		r.handleSTUN(b, from)
	case classDTLS:
		if p := r.book.Load().m[from]; p != nil && p.live.Load() {
			p.view.deliver(b)
		}
	case classRTP:
		if len(b) < 12 || isRTCP(b) {
			return
		}
		p := r.book.Load().m[from]
		if p == nil || !p.live.Load() {
			return
		}
		k := p.keys.Load()
		if k == nil {
			return
		}
		plain, err := k.in.DecryptRTP(rd.dec[:0], b, &rd.hdr)
		if err != nil {
			return
		}
		rd.dec = plain[:0]
		p.seen.Store(r.clock.Load())
		if rd.hdr.PayloadType != OpusPayloadType {
			return
		}
		rd.forward(p, plain)
	}
}

// forward queues the decrypted packet plain from p for every other participant
// of its call. It rewrites plain's header in place for each.
func (rd *reader) forward(p *participant, plain []byte) {
	r := rd.r
	c := p.call
	if tap := r.cfg.Tap; tap != nil {
		pkt := rtp.Packet{Header: rd.hdr, Payload: plain[rd.hdr.MarshalSize():]}
		tap(c.id, p.dev, &pkt)
	}
	for _, d := range *c.fwd.Load() {
		if d == p || !d.live.Load() {
			continue
		}
		dk, addr := d.keys.Load(), d.addr.Load()
		if dk == nil || addr == nil {
			continue
		}
		plain[1] = plain[1]&0x80 | OpusPayloadType
		binary.BigEndian.PutUint16(plain[2:], d.seq)
		binary.BigEndian.PutUint32(plain[8:], d.ssrc)
		m := &rd.out[rd.n]
		out, err := dk.out.EncryptRTP(m.Buffers[0][:0], plain, &rd.ohdr)
		if err != nil {
			continue
		}
		d.seq++
		m.Buffers[0] = out
		m.Addr = addr.ua
		rd.n++
		if rd.n == len(rd.out) {
			rd.flush()
		}
	}
}

// flush writes the pending datagrams.
func (rd *reader) flush() {
	bc := rd.bc
	if rd.n == 0 {
		return
	}
	if bc == nil {
		for _, m := range rd.out[:rd.n] {
			_, _ = rd.r.conn.WriteTo(m.Buffers[0], m.Addr)
		}
		rd.n = 0
		return
	}
	for ms := rd.out[:rd.n]; len(ms) > 0; {
		k, err := bc.WriteBatch(ms, 0)
		if err != nil || k == 0 {
			k = 1 // skip the datagram the kernel refused
		}
		ms = ms[k:]
	}
	rd.n = 0
}

func (r *Relay) writeTo(b []byte, a netip.AddrPort) {
	if r.udp != nil {
		_, _ = r.udp.WriteToUDPAddrPort(b, a)
		return
	}
	_, _ = r.conn.WriteTo(b, net.UDPAddrFromAddrPort(a))
}

// handleSTUN answers an ICE connectivity check addressed to one of the relay's
// links, authenticated with that link's ICE password, and learns the device's
// address from it. Anything else is dropped.
func (r *Relay) handleSTUN(b []byte, from netip.AddrPort) {
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil || m.Type != stun.BindingRequest {
		return
	}
	var u stun.Username
	if err := u.GetFrom(m); err != nil {
		return
	}
	local, remote, ok := strings.Cut(u.String(), ":")
	if !ok {
		return
	}
	r.mu.Lock()
	p := r.byUfrag[local]
	r.mu.Unlock()
	if p == nil || remote != p.remote || !p.live.Load() {
		return
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		return
	}
	integrity := stun.NewShortTermIntegrity(p.pwd)
	if err := integrity.Check(m); err != nil {
		return
	}
	p.seen.Store(r.clock.Load())
	if cur := p.addr.Load(); cur == nil || (cur.ap != from && m.Contains(stun.AttrUseCandidate)) {
		p.addr.Store(&peerAddr{ap: from, ua: net.UDPAddrFromAddrPort(from)})
		r.bookAddr(from, p)
		p.view.bind(from)
	}
	resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
		integrity, stun.Fingerprint)
	if err != nil {
		return
	}
	r.writeTo(resp.Raw, from)
}

// handshake runs p's DTLS server once ICE has found the device, installs the
// SRTP keys it yields, then waits for the device to end the session.
func (r *Relay) handshake(p *participant) {
	defer r.wg.Done()
	defer p.connOnce.Do(func() { close(p.connected) })
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.HandshakeTimeout)
	defer cancel()
	var addr netip.AddrPort
	select {
	case <-p.view.bound:
		addr = p.addr.Load().ap
	case <-p.view.closed:
		return
	case <-ctx.Done():
		r.drop(p, "no ICE check")
		return
	}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("relay: no DTLS certificate")
		}
		sum := sha256.Sum256(raw[0])
		if subtle.ConstantTimeCompare(sum[:], p.fp) != 1 {
			return errors.New("relay: DTLS certificate does not match the offer")
		}
		return nil
	}
	conn, err := dtls.ServerWithOptions(p.view, net.UDPAddrFromAddrPort(addr),
		dtls.WithCertificates(r.cert),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80),
		dtls.WithClientAuth(dtls.RequireAnyClientCert),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithLoggerFactory(pionlog.Factory{Log: r.log, Prefix: "relay: "}),
		dtls.WithVerifyPeerCertificate(verify))
	if err != nil {
		r.drop(p, "DTLS set-up")
		return
	}
	if !p.view.setConn(conn) {
		conn.Close()
		return
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		r.drop(p, "DTLS handshake")
		return
	}
	k, err := srtpKeys(conn)
	if err != nil {
		r.drop(p, "SRTP keys")
		return
	}
	p.keys.Store(k)
	p.connOnce.Do(func() { close(p.connected) })
	buf := make([]byte, maxPacketSize)
	for {
		if _, err := conn.Read(buf); err != nil {
			break
		}
	}
	r.drop(p, "DTLS closed")
}

// srtpKeys derives the SRTP contexts of a finished DTLS session (RFC 5764).
func srtpKeys(conn *dtls.Conn) (*keys, error) {
	prof, ok := conn.SelectedSRTPProtectionProfile()
	if !ok {
		return nil, errors.New("relay: no SRTP profile negotiated")
	}
	state, ok := conn.ConnectionState()
	if !ok {
		return nil, errors.New("relay: no DTLS state")
	}
	sc := srtp.Config{Profile: srtp.ProtectionProfile(prof)}
	if err := sc.ExtractSessionKeysFromDTLS(&state, false); err != nil {
		return nil, err
	}
	in, err := srtp.CreateContext(sc.Keys.RemoteMasterKey, sc.Keys.RemoteMasterSalt, sc.Profile, srtp.SRTPReplayProtection(64))
	if err != nil {
		return nil, err
	}
	out, err := srtp.CreateContext(sc.Keys.LocalMasterKey, sc.Keys.LocalMasterSalt, sc.Profile)
	if err != nil {
		return nil, err
	}
	return &keys{in: in, out: out}, nil
}

// dtlsView is one participant's view of the shared socket as a net.PacketConn
// for its DTLS session: the reader delivers its DTLS datagrams, and writes go to
// its current address. It is safe for concurrent use.
type dtlsView struct {
	r      *Relay
	p      *participant
	in     chan []byte
	bound  chan struct{} // closed once the device's address is known
	closed chan struct{} // closed by Close or shutdown
	rd     *deadline.Deadline

	bindOnce, closeOnce sync.Once
	mu                  sync.Mutex
	conn                *dtls.Conn // guarded by mu
	shut                bool       // guarded by mu
}

func newDTLSView(r *Relay, p *participant) *dtlsView {
	return &dtlsView{r: r, p: p, in: make(chan []byte, 32), bound: make(chan struct{}),
		closed: make(chan struct{}), rd: deadline.New()}
}

func (v *dtlsView) bind(netip.AddrPort) { v.bindOnce.Do(func() { close(v.bound) }) }

// deliver queues a DTLS datagram for the session, dropping it if the queue is full.
func (v *dtlsView) deliver(b []byte) {
	select {
	case v.in <- append([]byte(nil), b...):
	default:
	}
}

// setConn records the session so that shutdown can close it; it reports false
// if the view is already shut down.
func (v *dtlsView) setConn(c *dtls.Conn) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.shut {
		return false
	}
	v.conn = c
	return true
}

// shutdown ends the session, sending the device a close_notify if it is up.
func (v *dtlsView) shutdown() {
	v.mu.Lock()
	v.shut = true
	c := v.conn
	v.mu.Unlock()
	if c != nil {
		c.Close()
	}
	v.Close()
}

// ReadFrom implements net.PacketConn.
func (v *dtlsView) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case pkt := <-v.in:
		a := v.p.addr.Load()
		if a == nil {
			return 0, nil, errors.New("relay: no address")
		}
		return copy(b, pkt), a.ua, nil
	case <-v.closed:
		return 0, nil, net.ErrClosed
	case <-v.rd.Done():
		return 0, nil, timeoutError{}
	}
}

// WriteTo implements net.PacketConn; it writes to the device's current address.
func (v *dtlsView) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case <-v.closed:
		return 0, net.ErrClosed
	default:
	}
	a := v.p.addr.Load()
	if a == nil {
		return 0, errors.New("relay: no address")
	}
	v.r.writeTo(b, a.ap)
	return len(b), nil
}

// Close implements net.PacketConn.
func (v *dtlsView) Close() error {
	v.closeOnce.Do(func() { close(v.closed) })
	return nil
}

// LocalAddr implements net.PacketConn.
func (v *dtlsView) LocalAddr() net.Addr { return v.r.conn.LocalAddr() }

// SetDeadline implements net.PacketConn.
func (v *dtlsView) SetDeadline(t time.Time) error { v.rd.Set(t); return nil }

// SetReadDeadline implements net.PacketConn.
func (v *dtlsView) SetReadDeadline(t time.Time) error { v.rd.Set(t); return nil }

// SetWriteDeadline implements net.PacketConn; writes never block.
func (v *dtlsView) SetWriteDeadline(time.Time) error { return nil }

type timeoutError struct{}

func (timeoutError) Error() string   { return "relay: read deadline" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
