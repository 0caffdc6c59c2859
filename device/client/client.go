// Package client is a device's connection to the exchange: TLS 1.3 with the device
// certificate, the framed protocol of docs/protocol.md, requests matched to their
// answers by request ID, and the exchange's pushes handed to callbacks in the order
// they arrive. It keeps no state beyond the connection: what a device does with a
// message is package device's business.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"mahfooz/authority"
	"mahfooz/wire"
)

// DefaultSoftware is sent in Hello when Config.Software is empty.
const DefaultSoftware = "mahfooz-device/1"

// firstRequestID is the first ID a Client gives a request; Hello took 1.
const firstRequestID = 2

// ErrClosed is returned by requests on a connection that has ended, wrapping the
// reason (Err).
var ErrClosed = errors.New("client: connection closed")

// Handlers receive the exchange's pushes on the Client's read goroutine, one at a
// time and in arrival order. A handler must not block for long and must not wait
// for an answer to a request on the same Client (the answer is read by the same
// goroutine); it may hand work to another goroutine that does. Nil handlers drop
// the push.
type Handlers struct {
	Deliver          func(*wire.Deliver)
	Expired          func(*wire.Expired)
	DirectoryUpdated func()
	Revoked          func(*wire.Revoked)
}

// Config is what Dial needs.
type Config struct {
	// Addr is the exchange's host:port. The exchange's certificate must name the host.
	Addr string
	// Root is the authority's root certificate; the exchange's must chain to it.
	Root *x509.Certificate
	// Certificate is the device certificate chain with the device's private key.
	Certificate tls.Certificate
	Handlers    Handlers
	// Software goes in Hello; empty is DefaultSoftware.
	Software string
	// Logger receives connection events (never content); nil discards them.
	Logger *slog.Logger
	// Now is the clock for certificate checks; nil is time.Now.
	Now func() time.Time
	// Dial opens the TCP connection; nil uses a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Client is one authenticated connection to the exchange. Its methods are safe for
// concurrent use.
type Client struct {
	cfg     Config
	log     *slog.Logger
	raw     net.Conn
	wc      *wire.Conn
	welcome *wire.Welcome
	done    chan struct{}

	mu      sync.Mutex
	nextID  uint32                 // guarded by mu
	pending map[uint32]chan answer // guarded by mu
	err     error                  // guarded by mu: why the connection ended
	closed  bool                   // guarded by mu
	once    sync.Once              // closes done
	stopped chan struct{}          // closed when the keepalive goroutine ends

	ioMu   sync.Mutex
	lastIO time.Time // guarded by ioMu: when the connection last carried a frame
}

type answer struct {
	m   wire.Message
	err error
}

// tlsConfig is the TLS side shared by Dial and Enroll.
func tlsConfig(now func() time.Time) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519},
		Time:             now,
	}
}

func dialer(f func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if f != nil {
		return f
	}
	var d net.Dialer
	return d.DialContext
}

// handshake runs TLS and Hello/Welcome on raw within ctx's deadline.
func handshake(ctx context.Context, raw net.Conn, cfg *tls.Config, software string) (*tls.Conn, *wire.Conn, *wire.Welcome, error) {
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	// Cancelling ctx mid-handshake must not leave the caller waiting on the socket.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, nil, nil, fmt.Errorf("client: TLS handshake with the exchange: %w", err)
	}
	wc := wire.NewConn(tc)
	w, err := wc.ClientHandshake(&wire.Hello{Versions: wire.SupportedVersions, Software: software})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("client: protocol handshake: %w", err)
	}
	if ctx.Err() != nil {
		return nil, nil, nil, ctx.Err()
	}
	raw.SetDeadline(time.Time{})
	return tc, wc, w, nil
}

// Dial connects to the exchange with the device certificate and completes the
// protocol handshake. The exchange then starts pushing the device's mailbox.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Root == nil {
		return nil, errors.New("client: config has no authority root")
	}
	if len(cfg.Certificate.Certificate) == 0 || cfg.Certificate.PrivateKey == nil {
		return nil, errors.New("client: config has no device certificate")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Software == "" {
		cfg.Software = DefaultSoftware
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("client: exchange address %q: %v", cfg.Addr, err)
	}
	tcfg := tlsConfig(cfg.Now)
	tcfg.RootCAs = x509.NewCertPool()
	tcfg.RootCAs.AddCert(cfg.Root)
	tcfg.ServerName = host
	tcfg.Certificates = []tls.Certificate{cfg.Certificate}

	raw, err := dialer(cfg.Dial)(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("client: connecting to the exchange: %w", err)
	}
	_, wc, w, err := handshake(ctx, raw, tcfg, cfg.Software)
	if err != nil {
		raw.Close()
		return nil, err
	}
	c := &Client{
		cfg:     cfg,
		log:     cfg.Logger,
		raw:     raw,
		wc:      wc,
		welcome: w,
		done:    make(chan struct{}),
		nextID:  firstRequestID,
		pending: make(map[uint32]chan answer),
		stopped: make(chan struct{}),
		lastIO:  time.Now(),
	}
	go c.readLoop()
	go c.keepalive(time.Duration(w.Limits.PingInterval) * time.Second)
	return c, nil
}

// Welcome returns the exchange's answer to Hello: version, time and limits.
func (c *Client) Welcome() *wire.Welcome { return c.welcome }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended, or nil while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection; pending requests fail with ErrClosed.
func (c *Client) Close() error {
	c.end(ErrClosed)
	<-c.stopped
	return nil
}

// end records why the connection ended (the first reason wins), closes it and
// fails every pending request.
func (c *Client) end(reason error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.err = reason
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	c.raw.Close()
	for _, ch := range pending {
		ch <- answer{err: fmt.Errorf("%w: %v", ErrClosed, reason)}
	}
	c.once.Do(func() { close(c.done) })
}

// readLoop is the only reader of the connection.
func (c *Client) readLoop() {
	for {
		id, m, err := c.wc.ReadMessage()
		c.touch()
		if err != nil {
			switch {
			case errors.Is(err, wire.ErrUnknownMessageType):
				c.log.Warn("client: exchange sent an unknown message type", "request", id)
				continue
			case errors.Is(err, wire.ErrMalformed) && id != 0:
				c.answer(id, answer{err: fmt.Errorf("client: answer from the exchange: %w", err)})
				continue
			}
			c.end(err)
			return
		}
		if id == 0 {
			c.push(m)
			continue
		}
		switch m := m.(type) {
		case *wire.Ping:
			_ = c.wc.WriteMessage(id, &wire.Pong{})
		case *wire.Error:
			c.answer(id, answer{err: m})
		default:
			c.answer(id, answer{m: m})
		}
	}
}

// push dispatches a frame with request ID 0.
func (c *Client) push(m wire.Message) {
	h := c.cfg.Handlers
	switch m := m.(type) {
	case *wire.Deliver:
		if h.Deliver != nil {
			h.Deliver(m)
		}
	case *wire.Expired:
		if h.Expired != nil {
			h.Expired(m)
		}
	case *wire.DirectoryUpdated:
		if h.DirectoryUpdated != nil {
			h.DirectoryUpdated()
		}
	case *wire.Revoked:
		if h.Revoked != nil {
			h.Revoked(m)
		}
	case *wire.Error:
		// The exchange says why it is about to close the connection.
		c.end(m)
	default:
		c.log.Warn("client: unexpected push from the exchange", "type", m.Type().String())
	}
}

func (c *Client) answer(id uint32, a answer) {
	c.mu.Lock()
	ch := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ch != nil {
		ch <- a
	}
}

func (c *Client) touch() {
	c.ioMu.Lock()
	c.lastIO = time.Now()
	c.ioMu.Unlock()
}

// keepalive pings after a ping interval of silence, as Welcome asks, and ends the
// connection if the exchange does not answer within another interval.
func (c *Client) keepalive(interval time.Duration) {
	defer close(c.stopped)
	if interval <= 0 {
		<-c.done
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		c.ioMu.Lock()
		idle := time.Since(c.lastIO)
		c.ioMu.Unlock()
		if idle < interval {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		err := c.Ping(ctx)
		cancel()
		if err != nil && !errors.Is(err, ErrClosed) {
			c.end(fmt.Errorf("client: keepalive: %w", err))
		}
	}
}

// request sends m and waits for its answer. An *wire.Error answer is returned as
// the error.
func (c *Client) request(ctx context.Context, m wire.Message) (wire.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch := make(chan answer, 1)
	c.mu.Lock()
	if c.closed {
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %v", ErrClosed, err)
	}
	id := c.nextID
	c.nextID++
	if c.nextID == 0 {
		c.nextID = firstRequestID
	}
	c.pending[id] = ch
	c.mu.Unlock()

	if err := c.wc.WriteMessage(id, m); err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		if errors.Is(err, wire.ErrFrameTooLarge) {
			return nil, err
		}
		c.end(err)
		return nil, fmt.Errorf("%w: %v", ErrClosed, err)
	}
	c.touch()
	select {
	case a := <-ch:
		return a.m, a.err
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

// expect narrows an answer to the type the request calls for.
func expect[T wire.Message](m wire.Message, err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	t, ok := m.(T)
	if !ok {
		return zero, fmt.Errorf("client: exchange answered with %s, want %s", m.Type(), zero.Type())
	}
	return t, nil
}

// Ping asks the exchange for a Pong.
func (c *Client) Ping(ctx context.Context) error {
	_, err := expect[*wire.Pong](c.request(ctx, &wire.Ping{}))
	return err
}

// Sync returns once every message that was in the device's mailbox when the
// connection opened has been handed to Handlers.Deliver: the exchange pushes that
// backlog before it answers any request of the connection.
func (c *Client) Sync(ctx context.Context) error { return c.Ping(ctx) }

// Send hands one MLS message to the exchange for its recipients. Retry with the
// same MessageID until a result arrives; the exchange stores it once.
func (c *Client) Send(ctx context.Context, m *wire.Send) (*wire.SendResult, error) {
	return expect[*wire.SendResult](c.request(ctx, m))
}

// Ack tells the exchange the device has durably processed these deliveries.
func (c *Client) Ack(ctx context.Context, sequences []uint64) error {
	for len(sequences) > 0 {
		n := min(len(sequences), wire.MaxAck)
		if _, err := expect[*wire.OK](c.request(ctx, &wire.Ack{Sequences: sequences[:n]})); err != nil {
			return err
		}
		sequences = sequences[n:]
	}
	return nil
}

// UploadKeyPackages stores KeyPackages (MLSMessage encodings) for others to claim;
// lastResort replaces the device's last-resort package with the single one given.
func (c *Client) UploadKeyPackages(ctx context.Context, keyPackages [][]byte, lastResort bool) error {
	_, err := expect[*wire.OK](c.request(ctx, &wire.UploadKeyPackages{KeyPackages: keyPackages, LastResort: lastResort}))
	return err
}

// ClaimOfficial claims one KeyPackage for each of an official's devices that has
// one (never the caller's own device).
func (c *Client) ClaimOfficial(ctx context.Context, name string) ([]wire.ClaimedKeyPackage, error) {
	kp, err := expect[*wire.KeyPackages](c.request(ctx, &wire.ClaimKeyPackage{Official: name}))
	if err != nil {
		return nil, err
	}
	return kp.KeyPackages, nil
}

// ClaimDevice claims one KeyPackage of one device.
func (c *Client) ClaimDevice(ctx context.Context, id authority.DeviceID) (wire.ClaimedKeyPackage, error) {
	kp, err := expect[*wire.KeyPackages](c.request(ctx, &wire.ClaimKeyPackage{Device: wire.DeviceID(id)}))
	if err != nil {
		return wire.ClaimedKeyPackage{}, err
	}
	for _, p := range kp.KeyPackages {
		if p.Device == wire.DeviceID(id) {
			return p, nil
		}
	}
	return wire.ClaimedKeyPackage{}, fmt.Errorf("client: exchange answered a claim for device %s with another device's package", id)
}

// Directory returns the authority-signed directory as the exchange serves it; the
// caller verifies it (authority.VerifyDirectory).
func (c *Client) Directory(ctx context.Context) ([]byte, error) {
	d, err := expect[*wire.Directory](c.request(ctx, &wire.GetDirectory{}))
	if err != nil {
		return nil, err
	}
	return d.Signed, nil
}

// Renew asks for a fresh device certificate for the key in csrDER and returns its
// chain, device certificate first. The caller checks it.
func (c *Client) Renew(ctx context.Context, csrDER []byte) ([][]byte, error) {
	r, err := expect[*wire.CertificateResult](c.request(ctx, &wire.RenewCertificate{CSR: csrDER}))
	if err != nil {
		return nil, err
	}
	return r.Chain, nil
}

// CreateBlob announces an attachment and who may download it.
func (c *Client) CreateBlob(ctx context.Context, id wire.BlobID, ttl time.Duration, recipients []wire.DeviceID) error {
	r := wire.SortDeviceIDs(append([]wire.DeviceID(nil), recipients...))
	_, err := expect[*wire.OK](c.request(ctx, &wire.CreateBlob{BlobID: id, TTLSeconds: ttlSeconds(ttl), Recipients: r}))
	return err
}

// UploadChunk uploads one ciphertext chunk; chunks go in order from index 0.
func (c *Client) UploadChunk(ctx context.Context, id wire.BlobID, index uint32, last bool, data []byte) error {
	_, err := expect[*wire.OK](c.request(ctx, &wire.UploadChunk{BlobID: id, Index: index, Last: last, Data: data}))
	return err
}

// DownloadChunk fetches one ciphertext chunk of an attachment.
func (c *Client) DownloadChunk(ctx context.Context, id wire.BlobID, index uint32) ([]byte, bool, error) {
	r, err := expect[*wire.BlobChunk](c.request(ctx, &wire.DownloadChunk{BlobID: id, Index: index}))
	if err != nil {
		return nil, false, err
	}
	if r.BlobID != id || r.Index != index {
		return nil, false, fmt.Errorf("client: exchange answered chunk %d of %s with another chunk", index, id)
	}
	return r.Data, r.Last, nil
}

// ttlSeconds converts a TTL for the wire: 0 stays 0 (the exchange's default) and
// anything else rounds up to a whole second.
func ttlSeconds(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	s := (d + time.Second - 1) / time.Second
	return uint32(min(s, 1<<32-1))
}
