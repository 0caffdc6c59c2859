package exchangebench

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"mahfooz/authority"
	"mahfooz/exchange"
	"mahfooz/wire"
)

// benchKDF keeps the root key's Argon2id cheap: unlocking the root is not measured.
var benchKDF = authority.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

// benchEnv turns on the measurements that take minutes.
const benchEnv = "MAHFOOZ_BENCH"

// rig is an authority and an exchange serving on 127.0.0.1. Its fields are set
// once by startRig; its methods are safe for concurrent use.
type rig struct {
	dir    string
	a      *authority.Authority
	srv    *exchange.Server
	addr   string
	root   *x509.Certificate
	roots  *x509.CertPool
	served chan error
	extra  io.Closer // closed after the server, if not nil
}

// startRig creates an authority under dir and serves an exchange for it on
// 127.0.0.1. configure, if not nil, adjusts the exchange's Config before the server
// is made; what it returns, if not nil, is closed after the server.
func startRig(dir string, configure func(*exchange.Config) (io.Closer, error)) (*rig, error) {
	a, err := authority.Init(filepath.Join(dir, "authority"), []byte("benchmark passphrase"),
		authority.Options{KDF: benchKDF})
	if err != nil {
		return nil, err
	}
	r := &rig{dir: dir, a: a, root: a.RootCertificate(), served: make(chan error, 1)}
	r.roots = x509.NewCertPool()
	r.roots.AddCert(r.root)
	cert, err := a.IssueServerCertificate("127.0.0.1")
	if err != nil {
		a.Close()
		return nil, err
	}
	cfg := exchange.Config{Registry: a.Registry, Authority: a, ServerCert: cert}
	if configure != nil {
		if r.extra, err = configure(&cfg); err != nil {
			a.Close()
			return nil, err
		}
	}
	fail := func(err error) (*rig, error) {
		if r.extra != nil {
			r.extra.Close()
		}
		a.Close()
		return nil, err
	}
	if r.srv, err = exchange.NewServer(cfg); err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	r.addr = ln.Addr().String()
	go func() { r.served <- r.srv.Serve(ln) }()
	return r, nil
}

// close stops the exchange and closes the authority.
func (r *rig) close() error {
	err := r.srv.Close()
	if serr := <-r.served; !errors.Is(serr, exchange.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("Serve: %w", serr))
	}
	if r.extra != nil {
		err = errors.Join(err, r.extra.Close())
	}
	return errors.Join(err, r.a.Close())
}

// device is an enrolled device's identity: its ID and TLS client certificate.
type device struct {
	id   wire.DeviceID
	cert tls.Certificate
}

// enrol enrols a device with the authority directly (as `mahfooz authority enroll`
// plus the device's redemption would), with a fresh Ed25519 key.
func enrol(a *authority.Authority, name string) (device, error) {
	tk, err := a.Enroll(name, "", 0)
	if err != nil {
		return device{}, err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return device{}, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader,
		&x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}, key)
	if err != nil {
		return device{}, err
	}
	is, err := a.Redeem(tk.Text(), csr)
	if err != nil {
		return device{}, err
	}
	return device{id: wire.DeviceID(is.DeviceID), cert: tls.Certificate{Certificate: is.Chain, PrivateKey: key}}, nil
}

// enrolMany enrols n devices named prefix-0, prefix-1, … and returns them sorted by
// device ID, the order a Send's recipient list needs.
func enrolMany(a *authority.Authority, prefix string, n int) ([]device, error) {
	ds := make([]device, n)
	for i := range ds {
		var err error
		if ds[i], err = enrol(a, fmt.Sprintf("%s-%d", prefix, i)); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(ds, func(x, y device) int { return bytes.Compare(x.id[:], y.id[:]) })
	return ds, nil
}

// client is a device's side of one authenticated connection. As with wire.Conn,
// one goroutine may read while others write.
type client struct {
	tc *tls.Conn
	wc *wire.Conn
}

// handshakeTimeout bounds one client's TLS handshake plus Hello/Welcome.
const handshakeTimeout = 30 * time.Second

// clientTLS is the TLS configuration of a device connecting as d: TLS 1.3 only,
// X25519MLKEM768 preferred (Go's default), the authority's root as the only trust
// anchor.
func clientTLS(roots *x509.CertPool, d *device) *tls.Config {
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		RootCAs:          roots,
		ServerName:       "127.0.0.1",
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768},
	}
	if d != nil {
		cfg.Certificates = []tls.Certificate{d.cert}
	}
	return cfg
}

// connect opens an authenticated connection to addr as cfg's device: TCP, the TLS
// handshake, then Hello/Welcome. In TLS 1.3 the server checks the client's
// certificate after the client's side of the handshake is done, so a refusal shows
// up as an error from the Hello/Welcome exchange.
func connect(addr string, cfg *tls.Config) (*client, error) {
	raw, err := net.DialTimeout("tcp", addr, handshakeTimeout)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, cfg)
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	wc := wire.NewConn(tc)
	if _, err := wc.ClientHandshake(&wire.Hello{Versions: []uint16{wire.ProtocolVersion1}, Software: "mahfooz-bench"}); err != nil {
		raw.Close()
		return nil, fmt.Errorf("Hello: %w", err)
	}
	tc.SetDeadline(time.Time{})
	return &client{tc: tc, wc: wc}, nil
}

func (c *client) close() error { return c.tc.Close() }

// benchDir returns a fresh directory for a measurement's state on the machine's
// disk (under os.TempDir, which here is on the same file system as the repository;
// MAHFOOZ_BENCH_DIR chooses another), so that fsync costs what it costs.
func benchDir(pattern string) (string, error) {
	return os.MkdirTemp(os.Getenv("MAHFOOZ_BENCH_DIR"), pattern)
}
