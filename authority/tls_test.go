package authority

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"mahfooz/mls"
)

// TestTLSHandshake runs a TLS 1.3 handshake on 127.0.0.1 with the exchange's
// server certificate and a device certificate, whose key is the device's MLS
// signature key, as the client certificate.
func TestTLSHandshake(t *testing.T) {
	a, _, _ := newTestAuthority(t)
	other, _, _ := newTestAuthority(t)
	server, err := a.IssueServerCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	k, dev := enrol(t, a, "Amina", "")
	ok, foreign := enrol(t, other, "Amina", "")
	rk, revoked := enrol(t, a, "Lost", "")
	if err := a.Revoke(revoked.DeviceID); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.RootCertificate())

	handshake := func(t *testing.T, clientCert *tls.Certificate) error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		srvErr := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				srvErr <- err
				return
			}
			defer c.Close()
			s := tls.Server(c, &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{server},
				ClientAuth:   tls.RequireAnyClientCert,
				VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
					return a.VerifyClientCertificate(raw)
				},
			})
			s.SetDeadline(time.Now().Add(10 * time.Second))
			srvErr <- s.Handshake()
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "127.0.0.1", Time: a.opts.Now}
		if clientCert != nil {
			cfg.Certificates = []tls.Certificate{*clientCert}
		}
		cl := tls.Client(c, cfg)
		cl.SetDeadline(time.Now().Add(10 * time.Second))
		cl.Handshake()
		cl.Read(make([]byte, 1)) // the server's refusal arrives after the client's Finished
		return <-srvErr
	}
	cert := func(k *mls.SignaturePrivateKey, is Issued) *tls.Certificate {
		return &tls.Certificate{Certificate: is.Chain, PrivateKey: k.Signer()}
	}
	if err := handshake(t, cert(k, dev)); err != nil {
		t.Fatalf("enrolled device refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		want error
	}{
		{"no certificate", nil, nil},
		{"other authority", cert(ok, foreign), ErrCertificateUntrusted},
		{"revoked", cert(rk, revoked), ErrDeviceRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := handshake(t, tc.cert)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("handshake: %v, want refusal %v", err, tc.want)
			}
		})
	}
}
