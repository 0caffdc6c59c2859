// Package exchange is the Mahfooz server that devices connect to. This part is
// admission: who gets past the TLS handshake, enrolment of new devices, and cutting
// off revoked ones. Delivery, the mailbox and KeyPackages build on it.
package exchange

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"mahfooz/authority"
	"mahfooz/wire"
)

// Defaults for the zero fields of Config.
const (
	// DefaultEnrollRateEvents per DefaultEnrollRatePer are the enrolment attempts
	// allowed from one source address.
	DefaultEnrollRateEvents = 5
	DefaultEnrollRatePer    = time.Minute
	// DefaultRevocationPoll is how often the registry is asked whether a connected
	// device was revoked, so that a revocation made elsewhere (another process on the
	// same authority state) cuts the device off within a second.
	DefaultRevocationPoll = 250 * time.Millisecond
	// DefaultHandshakeTimeout bounds the TLS handshake plus Hello/Welcome, and the
	// whole of an enrolment connection.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultPingInterval is advertised in Welcome; a connection silent for three
	// intervals is closed.
	DefaultPingInterval = time.Minute
	// DefaultMaxTTL is the longest mailbox TTL advertised in Welcome.
	DefaultMaxTTL = 7 * 24 * time.Hour
)

// Implementation limits.
const (
	// enrolReadLimit bounds the frames of a connection without a certificate: an
	// Enroll holds at most a ticket and a CSR.
	enrolReadLimit = 2*wire.MaxCertificateSize + wire.MaxTicketSize + 64
	// revokedWriteTimeout bounds the attempt to tell a revoked device before its
	// connection is closed, so that a peer that does not read is cut off regardless.
	revokedWriteTimeout = 200 * time.Millisecond
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("exchange: server closed")

// Config configures a Server.
type Config struct {
	// Registry decides which device certificates are admitted. Required.
	Registry *authority.Registry
	// Authority redeems enrolment tickets. Nil disables enrolment: connections
	// without a certificate then get Error{unavailable} to Enroll.
	Authority *authority.Authority
	// ServerCert is the exchange's TLS certificate, issued by the authority.
	ServerCert tls.Certificate
	// Logger receives admission events; nil discards them.
	Logger *slog.Logger
	// Now is the clock for Welcome, rate limiting and revocation times; nil is time.Now.
	Now func() time.Time
	// EnrollRateLimit bounds enrolment attempts per source address; zero is
	// DefaultEnrollRateEvents per DefaultEnrollRatePer.
	EnrollRateLimit Rate
	// RevocationPoll is how often connected devices are checked for revocation;
	// zero is DefaultRevocationPoll.
	RevocationPoll time.Duration
	// HandshakeTimeout; zero is DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// PingInterval; zero is DefaultPingInterval. Whole seconds, at least one.
	PingInterval time.Duration
}

// Server admits devices to the exchange. Its methods are safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	tls     *tls.Config
	limiter *limiter
	done    chan struct{}

	mu      sync.Mutex
	ln      net.Listener                              // guarded by mu
	closed  bool                                      // guarded by mu
	conns   map[*conn]struct{}                        // guarded by mu: every open connection
	devices map[authority.DeviceID]map[*conn]struct{} // guarded by mu: authenticated ones
	wg      sync.WaitGroup                            // Add only under mu while !closed
}

// conn is one client connection. Only its own goroutine reads from it.
type conn struct {
	raw    net.Conn
	wc     *wire.Conn // set before the conn is registered as a device's
	device authority.DeviceID
	cut    sync.Once
}

// NewServer checks cfg and returns a Server ready to Serve.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Registry == nil {
		return nil, errors.New("exchange: config has no registry")
	}
	if len(cfg.ServerCert.Certificate) == 0 || cfg.ServerCert.PrivateKey == nil {
		return nil, errors.New("exchange: config has no server certificate")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if !cfg.EnrollRateLimit.valid() {
		cfg.EnrollRateLimit = Rate{Events: DefaultEnrollRateEvents, Per: DefaultEnrollRatePer}
	}
	if cfg.RevocationPoll <= 0 {
		cfg.RevocationPoll = DefaultRevocationPoll
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.PingInterval < time.Second {
		cfg.PingInterval = DefaultPingInterval
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		limiter: newLimiter(cfg.EnrollRateLimit, cfg.Now),
		done:    make(chan struct{}),
		conns:   make(map[*conn]struct{}),
		devices: make(map[authority.DeviceID]map[*conn]struct{}),
	}
	s.tls = &tls.Config{
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519},
		Certificates:     []tls.Certificate{cfg.ServerCert},
		// Request, not require: a client without a certificate may enrol. Go does not
		// verify requested certificates itself; VerifyConnection does, and it also
		// runs on resumed sessions (which are disabled anyway, so that every
		// connection is checked against the registry afresh).
		ClientAuth:             tls.RequestClientCert,
		VerifyConnection:       s.verifyConnection,
		SessionTicketsDisabled: true,
		Time:                   cfg.Now,
	}
	return s, nil
}

// verifyConnection refuses, inside the TLS handshake, any client certificate that
// is not a valid, unrevoked device certificate of this authority.
func (s *Server) verifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil // enrolment only; see serveEnrolment
	}
	raw := make([][]byte, len(cs.PeerCertificates))
	for i, c := range cs.PeerCertificates {
		raw[i] = c.Raw
	}
	return s.cfg.Registry.VerifyClientCertificate(raw)
}

// Serve accepts connections on ln until Close, then returns ErrServerClosed. The
// server takes ln over and closes it.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	case s.ln != nil:
		s.mu.Unlock()
		return errors.New("exchange: Serve called twice")
	}
	s.ln = ln
	s.wg.Add(1)
	s.mu.Unlock()
	go s.pollRevocations()

	s.log.Info("exchange: listening", "addr", ln.Addr().String())
	var backoff time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("exchange: accepting: %w", err)
		}
		backoff = 0
		c := &conn{raw: raw}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			raw.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// Addr returns the listener's address, or nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops accepting, closes every connection and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.conns {
		c.raw.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Revoke cuts a device off: it revokes it in the authority (when the server has
// one; otherwise the caller must have done so, or the device may reconnect), then
// sends Revoked on each of its open connections and closes them. Errors are the
// authority's (authority.ErrDeviceUnknown).
func (s *Server) Revoke(id authority.DeviceID) error {
	if s.cfg.Authority != nil {
		if err := s.cfg.Authority.Revoke(id); err != nil {
			return err
		}
	}
	s.disconnect(id)
	return nil
}

// disconnect sends Revoked to, and closes, every connection of the device.
func (s *Server) disconnect(id authority.DeviceID) {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.devices[id]))
	for c := range s.devices[id] {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if len(conns) == 0 {
		return
	}
	at := s.cfg.Now()
	if d, err := s.cfg.Registry.Device(id); err == nil && !d.RevokedAt.IsZero() {
		at = d.RevokedAt
	}
	s.log.Info("exchange: cutting off revoked device", "device", id.String(), "connections", len(conns))
	for _, c := range conns {
		c.cutOff(at)
	}
}

// cutOff tells the device it is revoked, if it reads within revokedWriteTimeout,
// and closes the connection; the connection's goroutine then ends.
func (c *conn) cutOff(at time.Time) {
	c.cut.Do(func() {
		c.raw.SetWriteDeadline(time.Now().Add(revokedWriteTimeout))
		_ = c.wc.WriteMessage(0, &wire.Revoked{RevokedAt: at})
		c.raw.Close()
	})
}

// pollRevocations catches revocations made outside this server, such as by
// `mahfooz authority revoke` in another process.
func (s *Server) pollRevocations() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.RevocationPoll)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		ids := make([]authority.DeviceID, 0, len(s.devices))
		for id := range s.devices {
			ids = append(ids, id)
		}
		s.mu.Unlock()
		for _, id := range ids {
			if s.cfg.Registry.IsRevoked(id) {
				s.disconnect(id)
			}
		}
	}
}

// register records an authenticated connection under its device.
func (s *Server) register(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.devices[c.device]
	if m == nil {
		m = make(map[*conn]struct{})
		s.devices[c.device] = m
	}
	m[c] = struct{}{}
}

// forget closes c and drops it from the server's tables.
func (s *Server) forget(c *conn, authenticated bool) {
	c.raw.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if authenticated {
		if m := s.devices[c.device]; m != nil {
			delete(m, c)
			if len(m) == 0 {
				delete(s.devices, c.device)
			}
		}
	}
}

func (s *Server) welcome(maxFrame uint32) *wire.Welcome {
	return &wire.Welcome{
		ServerTime: s.cfg.Now(),
		Limits: wire.Limits{
			MaxFrameSize:  maxFrame,
			MaxChunkSize:  wire.MaxChunkSize,
			MaxRecipients: wire.MaxRecipients,
			MaxTTL:        uint32(DefaultMaxTTL / time.Second),
			PingInterval:  uint32(s.cfg.PingInterval / time.Second),
		},
	}
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr()
	}
	return netip.Addr{}
}

// serveConn is the one goroutine of a connection: it runs the TLS handshake, then
// reads and answers requests until the connection ends.
func (s *Server) serveConn(c *conn) {
	defer s.wg.Done()
	authenticated := false
	defer func() { s.forget(c, authenticated) }()

	remote := remoteIP(c.raw)
	c.raw.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	tc := tls.Server(c.raw, s.tls)
	if err := tc.Handshake(); err != nil {
		s.log.Info("exchange: TLS handshake refused", "remote", remote.String(), "err", err)
		return
	}
	c.wc = wire.NewConn(tc)
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		s.serveEnrolment(c, remote)
		return
	}
	id, err := authority.DeviceIDFromCertificate(cs.PeerCertificates[0])
	if err != nil { // verifyConnection has checked it; this cannot happen
		s.log.Error("exchange: admitted certificate without device ID", "remote", remote.String())
		return
	}
	c.device = id
	s.register(c)
	authenticated = true
	// A revocation between the handshake's check and register would be missed until
	// the next poll; check once more now that the poll will see this connection.
	if s.cfg.Registry.IsRevoked(id) {
		s.disconnect(id)
		return
	}
	if err := s.cfg.Registry.Seen(id); err != nil {
		s.log.Warn("exchange: recording last seen", "device", id.String(), "err", err)
	}
	if _, err := c.wc.ServerHandshake(s.welcome(wire.MaxFrameSize)); err != nil {
		s.log.Info("exchange: protocol handshake failed", "device", id.String(), "err", err)
		return
	}
	s.log.Info("exchange: device connected", "device", id.String(), "remote", remote.String(), "curve", cs.CurveID.String())
	c.raw.SetDeadline(time.Time{})
	s.serveDevice(c, tc)
	s.log.Info("exchange: device disconnected", "device", id.String())
}

// serveDevice reads an authenticated device's requests until the connection ends.
func (s *Server) serveDevice(c *conn, tc *tls.Conn) {
	silence := 3 * s.cfg.PingInterval
	for {
		tc.SetReadDeadline(time.Now().Add(silence))
		f, err := c.wc.ReadFrame()
		if err != nil {
			if errors.Is(err, wire.ErrUnknownMessageType) {
				s.reply(c, f.RequestID, wire.CodeUnknownMessage, "")
				continue
			}
			if code := wire.CodeOf(err); code == wire.CodeMalformed || code == wire.CodeTooLarge {
				s.reply(c, 0, code, "")
			}
			return
		}
		m, err := wire.Decode(f)
		if err != nil {
			s.reply(c, f.RequestID, wire.CodeMalformed, "")
			continue
		}
		if f.Type.SentBy()&wire.SideClient == 0 {
			s.reply(c, f.RequestID, wire.CodeUnexpectedMessage, f.Type.String()+" is sent by the exchange")
			continue
		}
		switch m.(type) {
		case *wire.Ping:
			if err := c.wc.WriteMessage(f.RequestID, &wire.Pong{}); err != nil {
				return
			}
		case *wire.Pong, *wire.Error:
			// Answers to requests of the exchange's; it makes none yet.
		case *wire.Hello:
			s.reply(c, f.RequestID, wire.CodeUnexpectedMessage, "second Hello")
		case *wire.Enroll:
			s.reply(c, f.RequestID, wire.CodeForbidden, "already enrolled")
		default:
			s.reply(c, f.RequestID, wire.CodeUnavailable, "not implemented yet")
		}
	}
}

// serveEnrolment serves a connection without a client certificate: Hello, then one
// Enroll, then close. Anything else is refused as unauthenticated.
func (s *Server) serveEnrolment(c *conn, remote netip.Addr) {
	c.wc.SetReadLimit(enrolReadLimit)
	if _, err := c.wc.ServerHandshake(s.welcome(enrolReadLimit)); err != nil {
		s.log.Info("exchange: enrolment connection: protocol handshake failed", "remote", remote.String(), "err", err)
		return
	}
	f, err := c.wc.ReadFrame()
	if err != nil {
		if code := wire.CodeOf(err); code != wire.CodeInternal {
			s.reply(c, f.RequestID, code, "")
		}
		return
	}
	m, err := wire.Decode(f)
	if err != nil {
		s.reply(c, f.RequestID, wire.CodeMalformed, "")
		return
	}
	enroll, ok := m.(*wire.Enroll)
	if !ok {
		s.log.Info("exchange: request without certificate refused", "remote", remote.String(), "type", f.Type.String())
		s.reply(c, f.RequestID, wire.CodeUnauthenticated, "enrol first")
		return
	}
	if s.cfg.Authority == nil {
		s.reply(c, f.RequestID, wire.CodeUnavailable, "enrolment is not offered here")
		return
	}
	if !s.limiter.allow(remote) {
		s.log.Warn("exchange: enrolment rate limited", "remote", remote.String())
		s.reply(c, f.RequestID, wire.CodeRateLimited, "")
		return
	}
	issued, err := s.cfg.Authority.Redeem(enroll.Ticket, enroll.CSR)
	if err != nil {
		// The authority's errors name the check that failed, never the ticket.
		s.log.Info("exchange: enrolment refused", "remote", remote.String(), "err", err)
		s.reply(c, f.RequestID, enrolCode(err), "")
		return
	}
	s.log.Info("exchange: device enrolled", "device", issued.DeviceID.String(), "remote", remote.String())
	res := &wire.EnrollResult{DeviceID: wire.DeviceID(issued.DeviceID), Chain: issued.Chain}
	if err := c.wc.WriteMessage(f.RequestID, res); err != nil {
		s.log.Warn("exchange: sending enrolment result", "device", issued.DeviceID.String(), "err", err)
	}
}

// enrolCode maps Redeem's errors to one wire code each; every ticket failure is
// the same code, so that probing learns nothing.
func enrolCode(err error) wire.Code {
	switch {
	case errors.Is(err, authority.ErrTicketMalformed), errors.Is(err, authority.ErrTicketUnknown),
		errors.Is(err, authority.ErrTicketUsed), errors.Is(err, authority.ErrTicketExpired),
		errors.Is(err, authority.ErrTicketAuthority):
		return wire.CodeTicketInvalid
	case errors.Is(err, authority.ErrCSR):
		return wire.CodeInvalidRequest
	}
	return wire.CodeInternal
}

// reply sends an Error; a failure to send shows up at the next read.
func (s *Server) reply(c *conn, requestID uint32, code wire.Code, msg string) {
	_ = c.wc.WriteMessage(requestID, &wire.Error{Code: code, Message: msg})
}
