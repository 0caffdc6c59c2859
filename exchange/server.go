// Package exchange is the Mahfooz server that devices connect to: admission (who
// gets past the TLS handshake, enrolment of new devices, cutting off revoked
// ones), the delivery service (Send, commit sequencing, the mailbox, Deliver,
// Ack, expiry), KeyPackages, the signed directory and attachment blobs. It
// speaks the protocol of docs/protocol.md (package wire) and keeps its state in
// a store.Store (package store/sqlite by default).
//
// Start one in a test or a program:
//
//	st, _ := sqlite.Open(filepath.Join(home, sqlite.FileName), sqlite.Options{})
//	srv, _ := exchange.NewServer(exchange.Config{
//		Registry: a.Registry, Authority: a, ServerCert: cert, Store: st,
//	})
//	ln, _ := net.Listen("tcp", "127.0.0.1:0")
//	go srv.Serve(ln)
//	defer st.Close()  // after srv.Close
//	defer srv.Close()
package exchange

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"mahfooz/authority"
	"mahfooz/exchange/relay"
	"mahfooz/exchange/store"
	"mahfooz/wire"
)

// Defaults for the zero fields of Config.
const (
	// DefaultEnrollRateEvents per DefaultEnrollRatePer are the enrolment attempts
	// allowed from one source address.
	DefaultEnrollRateEvents = 5
	DefaultEnrollRatePer    = time.Minute
	// DefaultDeviceRateEvents per DefaultDeviceRatePer are the requests allowed
	// from one device (all its connections together), in bursts of as many.
	DefaultDeviceRateEvents = 5000
	DefaultDeviceRatePer    = time.Second
	// DefaultRevocationPoll is how often the authority's directory sequence is
	// read, so that a revocation made elsewhere (another process on the same
	// authority state) cuts the device off within a second.
	DefaultRevocationPoll = 250 * time.Millisecond
	// DefaultHandshakeTimeout bounds the TLS handshake plus Hello/Welcome, and the
	// whole of an enrolment connection.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultPingInterval is advertised in Welcome; a connection silent for three
	// intervals is closed.
	DefaultPingInterval = time.Minute
	// DefaultMaxTTL is the longest mailbox and blob TTL, advertised in Welcome.
	DefaultMaxTTL = 7 * 24 * time.Hour
	// DefaultExpirySweep is how often expired messages and blobs are deleted.
	DefaultExpirySweep = time.Minute
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
	// Authority redeems enrolment tickets, signs the directory and renews
	// certificates. Nil disables those: Enroll, GetDirectory and RenewCertificate
	// then get Error{unavailable}.
	Authority *authority.Authority
	// ServerCert is the exchange's TLS certificate, issued by the authority.
	ServerCert tls.Certificate
	// Store keeps messages, KeyPackages and blobs. Nil leaves only admission:
	// every other request of a device gets Error{unavailable}. The server does
	// not close it.
	Store store.Store
	// Quotas are handed to Store.SetQuotas; zero fields are store.DefaultQuotas.
	Quotas store.Quotas
	// Logger receives events with routing metadata only; nil discards them.
	Logger *slog.Logger
	// Now is the clock for Welcome, TTLs, expiry, rate limiting and revocation
	// times; nil is time.Now.
	Now func() time.Time
	// EnrollRateLimit bounds enrolment attempts per source address; zero is
	// DefaultEnrollRateEvents per DefaultEnrollRatePer.
	EnrollRateLimit Rate
	// DeviceRateLimit bounds requests per device; zero is DefaultDeviceRateEvents
	// per DefaultDeviceRatePer. Excess requests get Error{rate_limited}.
	DeviceRateLimit Rate
	// RevocationPoll is how often the directory sequence is read; zero is
	// DefaultRevocationPoll.
	RevocationPoll time.Duration
	// HandshakeTimeout; zero is DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// PingInterval; zero is DefaultPingInterval. Whole seconds, at least one.
	PingInterval time.Duration
	// MaxTTL caps the TTL of messages and blobs; zero is DefaultMaxTTL. Whole
	// seconds, at least one.
	MaxTTL time.Duration
	// DefaultTTL applies to a Send or CreateBlob with TTL 0; zero is MaxTTL.
	DefaultTTL time.Duration
	// ExpirySweep is how often expired messages and blobs are deleted and their
	// senders told; zero is DefaultExpirySweep.
	ExpirySweep time.Duration
	// MaxQueue bounds the bytes queued for one connection; zero is DefaultMaxQueue.
	MaxQueue int
	// WriteTimeout bounds one write to a connection; zero is DefaultWriteTimeout.
	WriteTimeout time.Duration
	// Media is the call relay that JoinCall, SetCallMembers and LeaveCall use;
	// nil answers them with Error{unavailable}. The server takes a device out of
	// every call when its last connection closes; it does not close the relay.
	Media *relay.Relay
}

// Server is the exchange. Its methods are safe for concurrent use.
type Server struct {
	cfg        Config
	log        *slog.Logger
	tls        *tls.Config
	limiter    *limiter[netip.Addr]
	devLimiter *limiter[wire.DeviceID]
	done       chan struct{}

	dir      atomic.Pointer[directory] // the registry as last read
	dirMu    sync.Mutex                // serialises refreshDirectory
	signedMu sync.Mutex
	signed   *authority.SignedDirectory // guarded by signedMu: the last one signed

	mu      sync.RWMutex
	ln      net.Listener                         // guarded by mu
	closed  bool                                 // guarded by mu
	conns   map[*conn]struct{}                   // guarded by mu: every open connection
	devices map[wire.DeviceID]map[*conn]struct{} // guarded by mu: authenticated ones, after Welcome
	wg      sync.WaitGroup                       // Add only while the server or the conn is open
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
	if !cfg.DeviceRateLimit.valid() {
		cfg.DeviceRateLimit = Rate{Events: DefaultDeviceRateEvents, Per: DefaultDeviceRatePer}
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
	if cfg.MaxTTL < time.Second {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.DefaultTTL <= 0 || cfg.DefaultTTL > cfg.MaxTTL {
		cfg.DefaultTTL = cfg.MaxTTL
	}
	if cfg.ExpirySweep <= 0 {
		cfg.ExpirySweep = DefaultExpirySweep
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Store != nil {
		cfg.Store.SetQuotas(cfg.Quotas)
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		limiter:    newLimiter[netip.Addr](cfg.EnrollRateLimit, cfg.Now),
		devLimiter: newLimiter[wire.DeviceID](cfg.DeviceRateLimit, cfg.Now),
		done:       make(chan struct{}),
		conns:      make(map[*conn]struct{}),
		devices:    make(map[wire.DeviceID]map[*conn]struct{}),
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
// server takes ln over and closes it. It also runs the directory poll and, with a
// store, the expiry sweep.
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
	if s.cfg.Store != nil {
		s.wg.Add(1)
		go s.sweepLoop()
	}
	s.mu.Unlock()
	if err := s.refreshDirectory(true); err != nil {
		s.log.Error("exchange: reading the directory", "err", err)
	}
	go s.pollDirectory()

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
		c := &conn{srv: s, raw: raw}
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
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops accepting, closes every connection and waits for the server's
// goroutines. Sends already handed to the store still complete there.
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
		c.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// register records an authenticated connection under its device, from when it
// may receive pushes.
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

// forget closes c and drops it from the server's tables. A connection being cut
// off for revocation first gets the chance to write its Revoked frame: its
// reading goroutine may end (a backlog refused, a read error) before the writer
// has written it.
func (s *Server) forget(c *conn) {
	if c.cuttingOff() {
		c.flush(revokedWriteTimeout)
	}
	c.close()
	last := false
	s.mu.Lock()
	delete(s.conns, c)
	if m := s.devices[c.device]; m != nil {
		delete(m, c)
		if len(m) == 0 {
			delete(s.devices, c.device)
			last = true
		}
	}
	s.mu.Unlock()
	if last && s.cfg.Media != nil {
		// A device's media lives no longer than its last admitted connection, so
		// that a revoked or departed device loses the call at once.
		s.cfg.Media.DropDevice(c.device)
	}
}

// deviceConns returns the device's open connections.
func (s *Server) deviceConns(id wire.DeviceID) []*conn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*conn, 0, len(s.devices[id]))
	for c := range s.devices[id] {
		out = append(out, c)
	}
	return out
}

func (s *Server) welcome(maxFrame uint32) *wire.Welcome {
	return &wire.Welcome{
		ServerTime: s.cfg.Now(),
		Limits: wire.Limits{
			MaxFrameSize:  maxFrame,
			MaxChunkSize:  wire.MaxChunkSize,
			MaxRecipients: wire.MaxRecipients,
			MaxTTL:        uint32(min(s.cfg.MaxTTL/time.Second, 1<<32-1)),
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

// serveConn is the reading goroutine of a connection: it runs the TLS handshake,
// pushes an authenticated device's mailbox, then reads and answers requests until
// the connection ends.
func (s *Server) serveConn(c *conn) {
	handedOff := false
	defer func() {
		if !handedOff {
			s.forget(c)
			s.wg.Done()
		}
	}()

	remote := remoteIP(c.raw)
	c.raw.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	tc := tls.Server(c.raw, s.tls)
	if err := tc.Handshake(); err != nil {
		s.log.Info("exchange: TLS handshake refused", "remote", remote.String(), "err", err)
		return
	}
	c.w = tc
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
	c.device = wire.DeviceID(id)
	if err := s.cfg.Registry.Seen(id); err != nil {
		s.log.Warn("exchange: recording last seen", "device", id.String(), "err", err)
	}
	if _, err := c.wc.ServerHandshake(s.welcome(wire.MaxFrameSize)); err != nil {
		s.log.Info("exchange: protocol handshake failed", "device", id.String(), "err", err)
		return
	}
	s.register(c)
	// A revocation between the handshake's check and register would be missed by
	// the directory poll; check once more now that the poll will see this connection.
	if s.cfg.Registry.IsRevoked(id) {
		s.disconnect(c.device)
		return
	}
	s.log.Info("exchange: device connected", "device", id.String(), "remote", remote.String(), "curve", cs.CurveID.String())
	c.raw.SetDeadline(time.Time{})
	if s.cfg.Store != nil {
		if err := s.syncMailbox(c); err != nil {
			s.log.Info("exchange: pushing mailbox", "device", id.String(), "err", err)
			return
		}
	} else {
		c.goLive(0)
	}
	// The handshake grew this goroutine's stack to 8 KiB, which an idle connection
	// would keep for its whole life; a fresh goroutine, which takes over the
	// connection and its place in s.wg, blocks in its reads on a smaller one.
	handedOff = true
	go func() {
		defer s.wg.Done()
		defer s.forget(c)
		s.serveDevice(c, tc)
		s.log.Info("exchange: device disconnected", "device", id.String())
	}()
}

// serveDevice reads an authenticated device's requests until the connection ends.
func (s *Server) serveDevice(c *conn, tc *tls.Conn) {
	silence := 3 * s.cfg.PingInterval
	for {
		tc.SetReadDeadline(time.Now().Add(silence))
		f, err := c.wc.ReadFrame()
		if err != nil {
			if errors.Is(err, wire.ErrUnknownMessageType) {
				c.reply(f.RequestID, wire.CodeUnknownMessage, "")
				continue
			}
			if code := wire.CodeOf(err); code == wire.CodeMalformed || code == wire.CodeTooLarge {
				// The stream is out of step: say why, then close.
				c.reply(0, code, "")
				c.flush(revokedWriteTimeout)
			}
			return
		}
		s.handle(c, f)
	}
}

// serveEnrolment serves a connection without a client certificate: Hello, then one
// Enroll, then close. Anything else is refused as unauthenticated. Only this
// goroutine writes to such a connection.
func (s *Server) serveEnrolment(c *conn, remote netip.Addr) {
	c.wc.SetReadLimit(enrolReadLimit)
	if _, err := c.wc.ServerHandshake(s.welcome(enrolReadLimit)); err != nil {
		s.log.Info("exchange: enrolment connection: protocol handshake failed", "remote", remote.String(), "err", err)
		return
	}
	reply := func(requestID uint32, code wire.Code, msg string) {
		_ = c.wc.WriteMessage(requestID, &wire.Error{Code: code, Message: msg})
	}
	f, err := c.wc.ReadFrame()
	if err != nil {
		if code := wire.CodeOf(err); code != wire.CodeInternal {
			reply(f.RequestID, code, "")
		}
		return
	}
	m, err := wire.Decode(f)
	if err != nil {
		reply(f.RequestID, wire.CodeMalformed, "")
		return
	}
	enroll, ok := m.(*wire.Enroll)
	if !ok {
		s.log.Info("exchange: request without certificate refused", "remote", remote.String(), "type", f.Type.String())
		reply(f.RequestID, wire.CodeUnauthenticated, "enrol first")
		return
	}
	if s.cfg.Authority == nil {
		reply(f.RequestID, wire.CodeUnavailable, "enrolment is not offered here")
		return
	}
	if !s.limiter.allow(limiterKey(remote)) {
		s.log.Warn("exchange: enrolment rate limited", "remote", remote.String())
		reply(f.RequestID, wire.CodeRateLimited, "")
		return
	}
	issued, err := s.cfg.Authority.Redeem(enroll.Ticket, enroll.CSR)
	if err != nil {
		// The authority's errors name the check that failed, never the ticket.
		s.log.Info("exchange: enrolment refused", "remote", remote.String(), "err", err)
		reply(f.RequestID, enrolCode(err), "")
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

// background is the context of the server's own store calls.
var background = context.Background()
