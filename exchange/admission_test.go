package exchange

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mahfooz/authority"
	"mahfooz/wire"
)

// testKDF keeps Argon2id cheap in tests, as the authority's own tests do.
var testKDF = authority.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newAuthority(t *testing.T, clock *testClock) *authority.Authority {
	t.Helper()
	a, err := authority.Init(filepath.Join(t.TempDir(), "authority"), []byte("test passphrase"),
		authority.Options{Now: clock.Now, KDF: testKDF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// env is an authority and an exchange serving on 127.0.0.1.
type env struct {
	clock *testClock
	a     *authority.Authority
	srv   *Server
	logs  *syncBuffer
	roots *x509.CertPool
	addr  string
}

func newEnv(t *testing.T, rate Rate) *env {
	t.Helper()
	e := &env{clock: &testClock{t: time.Now().UTC().Truncate(time.Second)}, logs: new(syncBuffer)}
	e.a = newAuthority(t, e.clock)
	cert, err := e.a.IssueServerCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	e.roots = x509.NewCertPool()
	e.roots.AddCert(e.a.RootCertificate())
	e.srv, err = NewServer(Config{
		Registry:        e.a.Registry,
		Authority:       e.a,
		ServerCert:      cert,
		Logger:          slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:             e.clock.Now,
		EnrollRateLimit: rate,
		RevocationPoll:  100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.serve(t)
	return e
}

// serve runs e.srv on 127.0.0.1 until the test ends, then checks that it closed
// cleanly. It sets e.addr.
func (e *env) serve(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := e.srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v, want ErrServerClosed", err)
		}
	})
}

// client is a device's side of one connection.
type client struct {
	tc *tls.Conn
	wc *wire.Conn
}

// dial connects with cert as the TLS client certificate (nil for none) and
// completes the client's side of the TLS handshake.
func (e *env) dial(t *testing.T, cert *tls.Certificate) *client {
	t.Helper()
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: e.roots, ServerName: "127.0.0.1", Time: e.clock.Now}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tc := tls.Client(raw, cfg)
	t.Cleanup(func() { tc.Close() })
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("client TLS handshake: %v", err)
	}
	return &client{tc: tc, wc: wire.NewConn(tc)}
}

func (c *client) hello() (*wire.Welcome, error) {
	return c.wc.ClientHandshake(&wire.Hello{Versions: []uint16{wire.ProtocolVersion1}, Software: "mahfooz-test"})
}

// request sends m and reads one answer.
func (c *client) request(t *testing.T, id uint32, m wire.Message) wire.Message {
	t.Helper()
	if err := c.wc.WriteMessage(id, m); err != nil {
		t.Fatalf("writing %s: %v", m.Type(), err)
	}
	gotID, ans, err := c.wc.ReadMessage()
	for err == nil && gotID == 0 && ans.Type() == wire.TypeDirectoryUpdated {
		gotID, ans, err = c.wc.ReadMessage() // a push, not the answer
	}
	if err != nil {
		t.Fatalf("reading answer to %s: %v", m.Type(), err)
	}
	if gotID != id {
		t.Fatalf("answer to %s has request ID %d, want %d", m.Type(), gotID, id)
	}
	return ans
}

func wantCode(t *testing.T, m wire.Message, code wire.Code) {
	t.Helper()
	e, ok := m.(*wire.Error)
	if !ok || e.Code != code {
		t.Fatalf("got %#v, want Error{%s}", m, code)
	}
}

type device struct {
	key  ed25519.PrivateKey
	id   authority.DeviceID
	cert *tls.Certificate
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func makeCSR(t *testing.T, k ed25519.PrivateKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// enrolDirect enrols a device with the authority, bypassing the exchange.
func enrolDirect(t *testing.T, a *authority.Authority, name string) device {
	t.Helper()
	tk, err := a.Enroll(name, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	k := newKey(t)
	is, err := a.Redeem(tk.Text(), makeCSR(t, k))
	if err != nil {
		t.Fatal(err)
	}
	return device{key: k, id: is.DeviceID, cert: &tls.Certificate{Certificate: is.Chain, PrivateKey: k}}
}

// connect dials as d and completes Hello/Welcome.
func (e *env) connect(t *testing.T, d device) *client {
	t.Helper()
	c := e.dial(t, d.cert)
	if _, err := c.hello(); err != nil {
		t.Fatalf("enrolled device refused: %v", err)
	}
	return c
}

func TestEnrolledDeviceConnects(t *testing.T) {
	e := newEnv(t, Rate{})
	d := enrolDirect(t, e.a, "Amina")
	c := e.connect(t, d)
	if got := e.srv.Addr(); got == nil || got.String() != e.addr {
		t.Errorf("Addr() = %v, want %s", got, e.addr)
	}
	if got := c.tc.ConnectionState().CurveID; got != tls.X25519MLKEM768 {
		t.Errorf("key exchange %v, want X25519MLKEM768", got)
	}
	if got := c.tc.ConnectionState().Version; got != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want 1.3", got)
	}
	if _, ok := c.request(t, 7, &wire.Ping{}).(*wire.Pong); !ok {
		t.Fatal("Ping not answered with Pong")
	}
	wantCode(t, c.request(t, 8, &wire.GetDirectory{}), wire.CodeUnavailable)
	wantCode(t, c.request(t, 9, &wire.Enroll{Ticket: "x", CSR: []byte{1}}), wire.CodeForbidden)
	wantCode(t, c.request(t, 10, &wire.OK{}), wire.CodeUnexpectedMessage)
	if dev, err := e.a.Device(d.id); err != nil || dev.LastSeen.IsZero() {
		t.Errorf("last seen not recorded: %v, %v", dev.LastSeen, err)
	}
}

func selfSigned(t *testing.T, k ed25519.PrivateKey, id authority.DeviceID, now time.Time) *tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Mallory"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{id.URI()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// refusedAtTLS reports whether the exchange ended the connection with a TLS alert.
// In TLS 1.3 the client's handshake completes before the server has checked the
// client's certificate; the refusal arrives as an alert on the first read.
func refusedAtTLS(c *client) error {
	_, err := c.hello()
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && strings.Contains(op.Err.Error(), "tls:") {
		return nil
	}
	return err
}

func TestCertificatesRefusedAtHandshake(t *testing.T) {
	e := newEnv(t, Rate{})
	other := newAuthority(t, e.clock)
	mine := enrolDirect(t, e.a, "Amina")
	foreign := enrolDirect(t, other, "Amina")
	revoked := enrolDirect(t, e.a, "Lost")
	if err := e.a.Revoke(revoked.id); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
	}{
		{"self-signed with an enrolled device ID", selfSigned(t, mine.key, mine.id, e.clock.Now())},
		{"another authority", foreign.cert},
		{"revoked", revoked.cert},
		{"the server's own certificate", &tls.Certificate{Certificate: e.srv.cfg.ServerCert.Certificate, PrivateKey: e.srv.cfg.ServerCert.PrivateKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := refusedAtTLS(e.dial(t, tc.cert)); err != nil {
				t.Errorf("not refused with a TLS alert: %v", err)
			}
		})
	}
	// The enrolled device still gets in, which shows the refusals above are about
	// the certificates.
	e.connect(t, mine)

	t.Run("expired", func(t *testing.T) {
		e.clock.Advance(authority.DefaultCertValidity + time.Minute)
		if err := refusedAtTLS(e.dial(t, mine.cert)); err != nil {
			t.Errorf("not refused with a TLS alert: %v", err)
		}
	})
	if !strings.Contains(e.logs.String(), "TLS handshake refused") {
		t.Error("refusals not logged")
	}
}

// enrol runs the enrolment flow over a connection without a certificate.
func (e *env) enrol(t *testing.T, ticket string, k ed25519.PrivateKey) wire.Message {
	t.Helper()
	c := e.dial(t, nil)
	w, err := c.hello()
	if err != nil {
		t.Fatalf("enrolment connection: %v", err)
	}
	if w.Limits.MaxFrameSize >= wire.MaxFrameSize {
		t.Errorf("enrolment connection offered frames of %d bytes", w.Limits.MaxFrameSize)
	}
	ans := c.request(t, 2, &wire.Enroll{Ticket: ticket, CSR: makeCSR(t, k)})
	// The exchange closes the enrolment connection after its one answer.
	if _, _, err := c.wc.ReadMessage(); err == nil {
		t.Error("enrolment connection still open after the answer")
	}
	return ans
}

func TestEnrolOverExchange(t *testing.T) {
	e := newEnv(t, Rate{Events: 100, Per: time.Minute})
	tk, err := e.a.Enroll("Bilal", "clerk", 0)
	if err != nil {
		t.Fatal(err)
	}
	k := newKey(t)
	res, ok := e.enrol(t, tk.Text(), k).(*wire.EnrollResult)
	if !ok {
		t.Fatal("valid ticket not answered with EnrollResult")
	}
	if len(res.Chain) < 2 || !bytes.Equal(res.Chain[len(res.Chain)-1], e.a.RootCertificate().Raw) {
		t.Fatal("chain does not end at the root")
	}
	d := device{key: k, id: authority.DeviceID(res.DeviceID), cert: &tls.Certificate{Certificate: res.Chain, PrivateKey: k}}
	c := e.connect(t, d)
	if _, ok := c.request(t, 3, &wire.Ping{}).(*wire.Pong); !ok {
		t.Fatal("newly enrolled device: Ping not answered with Pong")
	}

	short, err := e.a.Enroll("Chen", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherAuthority, err := newAuthority(t, e.clock).Enroll("Chen", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	for _, tc := range []struct{ name, ticket string }{
		{"reused", tk.Text()},
		{"expired", short.Text()},
		{"another authority's", otherAuthority.Text()},
		{"garbage", "not a ticket"},
		{"wrong secret", tk.Text()[:len(tk.Text())-4] + "AAAA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, e.enrol(t, tc.ticket, newKey(t)), wire.CodeTicketInvalid)
		})
	}
	for _, secret := range []string{tk.Text(), short.Text(), otherAuthority.Text()} {
		if strings.Contains(e.logs.String(), secret) {
			t.Error("a ticket appears in the exchange's log")
		}
	}
}

func TestEnrolmentRateLimited(t *testing.T) {
	e := newEnv(t, Rate{Events: 2, Per: time.Minute})
	for range 2 {
		wantCode(t, e.enrol(t, "not a ticket", newKey(t)), wire.CodeTicketInvalid)
	}
	tk, err := e.a.Enroll("Dina", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, e.enrol(t, tk.Text(), newKey(t)), wire.CodeRateLimited)
	e.clock.Advance(time.Minute)
	if _, ok := e.enrol(t, tk.Text(), newKey(t)).(*wire.EnrollResult); !ok {
		t.Error("not allowed again after the period, or the limited attempt spent the ticket")
	}
}

func TestNoCertificateOnlyEnrols(t *testing.T) {
	e := newEnv(t, Rate{})
	for _, m := range []wire.Message{&wire.Ping{}, &wire.GetDirectory{}} {
		t.Run(m.Type().String(), func(t *testing.T) {
			c := e.dial(t, nil)
			if _, err := c.hello(); err != nil {
				t.Fatal(err)
			}
			wantCode(t, c.request(t, 2, m), wire.CodeUnauthenticated)
			if _, _, err := c.wc.ReadMessage(); err == nil {
				t.Error("connection still open after unauthenticated request")
			}
		})
	}
}

// waitRevoked reads until the connection ends, which it must within a second of
// start, and reports whether Revoked came first.
func waitRevoked(t *testing.T, c *client, start time.Time) {
	t.Helper()
	c.tc.SetReadDeadline(start.Add(time.Second))
	gotRevoked := false
	for {
		_, m, err := c.wc.ReadMessage()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open %v after revocation", time.Since(start))
			}
			if !gotRevoked {
				t.Logf("connection ended: %v", err)
			}
			break
		}
		if _, ok := m.(*wire.Revoked); ok {
			gotRevoked = true
		}
	}
	if took := time.Since(start); took >= time.Second {
		t.Fatalf("connection closed %v after revocation, want < 1s", took)
	}
	if !gotRevoked {
		t.Error("connection closed without Revoked")
	}
}

func TestRevocationClosesConnections(t *testing.T) {
	e := newEnv(t, Rate{})
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(e.logs.String())
		}
	})
	t.Run("revoked in the authority", func(t *testing.T) {
		d := enrolDirect(t, e.a, "Amina")
		c := e.connect(t, d)
		c2 := e.connect(t, d)
		start := time.Now()
		if err := e.a.Revoke(d.id); err != nil {
			t.Fatal(err)
		}
		waitRevoked(t, c, start)
		waitRevoked(t, c2, start)
	})
	t.Run("Server.Revoke", func(t *testing.T) {
		d := enrolDirect(t, e.a, "Bilal")
		other := e.connect(t, enrolDirect(t, e.a, "Chen"))
		c := e.connect(t, d)
		start := time.Now()
		if err := e.srv.Revoke(d.id); err != nil {
			t.Fatal(err)
		}
		waitRevoked(t, c, start)
		if err := refusedAtTLS(e.dial(t, d.cert)); err != nil {
			t.Errorf("revoked device reconnected: %v", err)
		}
		if _, ok := other.request(t, 2, &wire.Ping{}).(*wire.Pong); !ok {
			t.Error("another device's connection was affected")
		}
	})
}

func TestMalformedRequestsKeepConnection(t *testing.T) {
	e := newEnv(t, Rate{})
	c := e.connect(t, enrolDirect(t, e.a, "Amina"))
	for _, tc := range []struct {
		name  string
		frame wire.Frame
		want  wire.Code
	}{
		{"unknown type", wire.Frame{Type: 999, RequestID: 2, Body: []byte{1, 2}}, wire.CodeUnknownMessage},
		{"trailing bytes", wire.Frame{Type: wire.TypePing, RequestID: 3, Body: []byte{0}}, wire.CodeMalformed},
		{"truncated", wire.Frame{Type: wire.TypeEnroll, RequestID: 4, Body: []byte{5, 'a'}}, wire.CodeMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.wc.WriteFrame(tc.frame); err != nil {
				t.Fatal(err)
			}
			id, m, err := c.wc.ReadMessage()
			if err != nil || id != tc.frame.RequestID {
				t.Fatalf("answer: request ID %d, %v", id, err)
			}
			wantCode(t, m, tc.want)
			if _, ok := c.request(t, 100, &wire.Ping{}).(*wire.Pong); !ok {
				t.Fatal("connection unusable afterwards")
			}
		})
	}
}

func TestCloseEndsConnections(t *testing.T) {
	e := newEnv(t, Rate{})
	c := e.connect(t, enrolDirect(t, e.a, "Amina"))
	idle := e.dial(t, nil) // still before Hello
	done := make(chan error, 1)
	go func() { done <- e.srv.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, cl := range []*client{c, idle} {
		// Generous, for a loaded machine: Close has returned, so the
		// connections are closed; only reading the close can be slow.
		cl.tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := cl.wc.ReadMessage(); err == nil {
			t.Error("connection still open after Close")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Error("connection still open after Close")
		}
	}
}

func TestLimiterKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
	} {
		if got := limiterKey(netip.MustParseAddr(tc.in)); got.String() != tc.want {
			t.Errorf("limiterKey(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
