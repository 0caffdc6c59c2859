package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"mahfooz/authority"
	"mahfooz/exchange"
	"mahfooz/wire"
)

var testKDF = authority.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

// testExchange is an authority and an exchange on 127.0.0.1.
type testExchange struct {
	a    *authority.Authority
	srv  *exchange.Server
	addr string
}

func newTestExchange(t *testing.T) *testExchange {
	t.Helper()
	a, err := authority.Init(filepath.Join(t.TempDir(), "authority"), []byte("pass"), authority.Options{KDF: testKDF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	cert, err := a.IssueServerCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := exchange.NewServer(exchange.Config{Registry: a.Registry, Authority: a, ServerCert: cert, RevocationPoll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &testExchange{a: a, srv: srv, addr: ln.Addr().String()}
}

type enrolled struct {
	id    authority.DeviceID
	root  *x509.Certificate
	chain [][]byte
	key   ed25519.PrivateKey
}

func csrFor(t *testing.T, k ed25519.PrivateKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (e *testExchange) enrol(t *testing.T, name string) enrolled {
	t.Helper()
	tk, err := e.a.Enroll(name, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	ticket, err := authority.ParseTicket(tk.Text())
	if err != nil {
		t.Fatal(err)
	}
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, chain, root, err := Enroll(ctx, e.addr, ticket, csrFor(t, k), nil, nil)
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	return enrolled{id: id, root: root, chain: chain, key: k}
}

func (e *testExchange) dial(t *testing.T, d enrolled, h Handlers) (*Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, Config{
		Addr:        e.addr,
		Root:        d.root,
		Certificate: tls.Certificate{Certificate: d.chain[:1], PrivateKey: d.key},
		Handlers:    h,
	})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func TestEnrollThenConnect(t *testing.T) {
	e := newTestExchange(t)
	d := e.enrol(t, "Amina")
	if !d.root.Equal(e.a.RootCertificate()) {
		t.Fatal("Enroll returned another root than the authority's")
	}
	c, err := e.dial(t, d, Handlers{})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if c.Welcome().Version != wire.ProtocolVersion1 {
		t.Errorf("Welcome version %d", c.Welcome().Version)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	got, err := e.a.Registry.Device(d.id)
	if err != nil || got.Name != "Amina" {
		t.Fatalf("registry has %+v, %v", got, err)
	}
	c.Close()
	<-c.Done()
	if err := c.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after Close: %v, want ErrClosed", err)
	}
}

func TestEnrollRefusesOtherAuthoritysExchange(t *testing.T) {
	mine, other := newTestExchange(t), newTestExchange(t)
	tk, err := mine.a.Enroll("Bilal", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	ticket, _ := authority.ParseTicket(tk.Text())
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A server of another authority never sees the ticket...
	if _, _, _, err := Enroll(ctx, other.addr, ticket, csrFor(t, k), nil, nil); !errors.Is(err, ErrWrongExchange) {
		t.Fatalf("Enroll at another authority's exchange: %v, want ErrWrongExchange", err)
	}
	// ...so it is still good at the right one.
	if _, _, _, err := Enroll(ctx, mine.addr, ticket, csrFor(t, k), nil, nil); err != nil {
		t.Fatalf("Enroll after refusing the wrong exchange: %v", err)
	}
	// And only once.
	_, _, _, err = Enroll(ctx, mine.addr, ticket, csrFor(t, k), nil, nil)
	if wire.CodeOf(err) != wire.CodeTicketInvalid {
		t.Fatalf("second use of a ticket: %v, want ticket_invalid", err)
	}
}

func TestRevokedWhileConnected(t *testing.T) {
	e := newTestExchange(t)
	d := e.enrol(t, "Chen")
	var revoked atomic.Bool
	c, err := e.dial(t, d, Handlers{Revoked: func(*wire.Revoked) { revoked.Store(true) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Revoke(d.id); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open 5 s after revocation")
	}
	if !revoked.Load() {
		t.Error("Revoked handler not called")
	}
	if _, err := e.dial(t, d, Handlers{}); err == nil {
		t.Fatal("revoked device connected again")
	}
}

func TestRequestHonoursContext(t *testing.T) {
	e := newTestExchange(t)
	d := e.enrol(t, "Dara")
	c, err := e.dial(t, d, Handlers{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ping with a cancelled context: %v", err)
	}
	// The connection is still usable after an abandoned request.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := c.Ping(ctx2); err != nil {
		t.Fatalf("Ping after an abandoned one: %v", err)
	}
}

func TestTTLSeconds(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want uint32
	}{{0, 0}, {-time.Second, 0}, {time.Millisecond, 1}, {time.Second, 1}, {90 * time.Minute, 5400}} {
		if got := ttlSeconds(tc.d); got != tc.want {
			t.Errorf("ttlSeconds(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

// TestEnrollUsesItsClock: certificates are checked against the clock given, so a
// device whose clock is a month ahead refuses the exchange (whose certificate is
// not valid then) before the ticket leaves it; with the right clock it enrols.
func TestEnrollUsesItsClock(t *testing.T) {
	e := newTestExchange(t)
	tk, err := e.a.Enroll("Eun", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	ticket, _ := authority.ParseTicket(tk.Text())
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ahead := func() time.Time { return time.Now().Add(400 * 24 * time.Hour) }
	if _, _, _, err := Enroll(ctx, e.addr, ticket, csrFor(t, k), nil, ahead); !errors.Is(err, ErrWrongExchange) {
		t.Fatalf("Enroll with a clock a year ahead: %v, want ErrWrongExchange", err)
	}
	if _, _, _, err := Enroll(ctx, e.addr, ticket, csrFor(t, k), nil, nil); err != nil {
		t.Fatalf("Enroll with the right clock after a refused attempt: %v", err)
	}
}
