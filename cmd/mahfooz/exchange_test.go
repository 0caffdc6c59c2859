package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mahfooz/authority"
	"mahfooz/device/rtc"
	"mahfooz/mls"
	"mahfooz/wire"
)

var listeningRE = regexp.MustCompile(`exchange: listening on (127\.0\.0\.1:\d+)\n`)

// startExchange runs `mahfooz exchange serve` in process until the returned stop
// function is called, and returns the address it printed.
func startExchange(t *testing.T, authDir, home string) (addr string, stop func() error) {
	t.Helper()
	addr, stop, _ = startExchangeArgs(t, authDir, home)
	return addr, stop
}

// startExchangeArgs is startExchange with extra flags; it also returns what
// serve printed.
func startExchangeArgs(t *testing.T, authDir, home string, extra ...string) (addr string, stop func() error, out *lockedBuffer) {
	t.Helper()
	out = new(lockedBuffer)
	c := &exchangeCLI{
		auth:   &authorityCLI{stdout: out, stderr: out, getenv: os.Getenv, kdf: authority.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}},
		stderr: out,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.run(ctx, append([]string{"serve", "--authority", authDir, "--home", home, "--listen", "127.0.0.1:0"}, extra...))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := listeningRE.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve ended before listening: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve printed no address:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("serve did not stop")
		}
	}
	t.Cleanup(func() { stop() })
	return addr, stop, out
}

func TestExchangeServe(t *testing.T) {
	const pass = "exchange test passphrase"
	authDir := filepath.Join(t.TempDir(), "auth")
	home := filepath.Join(t.TempDir(), "exchange")
	t.Setenv(envPassphrase, pass)
	t.Setenv(envAuthorityDir, "")
	t.Setenv(envExchangeHome, "")
	if _, _, err := authorityRun(t, "init", "--dir", authDir); err != nil {
		t.Fatal(err)
	}
	out, _, err := authorityRun(t, "enroll", "--dir", authDir, "--name", "Amina Yusuf")
	if err != nil {
		t.Fatal(err)
	}
	ticket := strings.TrimSpace(out)

	addr, stop := startExchange(t, authDir, home)

	// The device enrols over the exchange, then connects with its certificate.
	reg, err := authority.OpenPublic(authDir, authority.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	roots := x509.NewCertPool()
	roots.AddCert(reg.RootCertificate())
	dial := func(cert *tls.Certificate) *wire.Conn {
		t.Helper()
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "127.0.0.1"}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		tc, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		wc := wire.NewConn(tc)
		if _, err := wc.ClientHandshake(&wire.Hello{Versions: []uint16{wire.ProtocolVersion1}}); err != nil {
			t.Fatal(err)
		}
		return wc
	}
	call := func(wc *wire.Conn, id uint32, m wire.Message) wire.Message {
		t.Helper()
		if err := wc.WriteMessage(id, m); err != nil {
			t.Fatal(err)
		}
		for {
			got, ans, err := wc.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if got == id {
				return ans
			}
		}
	}
	k, err := mls.GenerateSignatureKey(mls.DefaultCipherSuite, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k.Signer())
	if err != nil {
		t.Fatal(err)
	}
	res, ok := call(dial(nil), 2, &wire.Enroll{Ticket: ticket, CSR: csr}).(*wire.EnrollResult)
	if !ok {
		t.Fatal("enrolment over the exchange failed")
	}
	wc := dial(&tls.Certificate{Certificate: res.Chain, PrivateKey: k.Signer()})
	if _, ok := call(wc, 2, &wire.Ping{}).(*wire.Pong); !ok {
		t.Fatal("Ping not answered")
	}
	d, ok := call(wc, 3, &wire.GetDirectory{}).(*wire.Directory)
	if !ok {
		t.Fatal("GetDirectory not answered with Directory")
	}
	if dir, err := authority.VerifyDirectory(reg.RootCertificate(), d.Signed); err != nil || len(dir.Officials) != 1 {
		t.Fatalf("directory: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}

	// The certificate is kept, owner-only, and reused by the next start.
	for _, f := range []string{serverCertFile, serverKeyFile} {
		fi, err := os.Stat(filepath.Join(home, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	before, err := reg.IssuedCertificates()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _ := os.ReadFile(filepath.Join(home, serverCertFile))
	addr, stop = startExchange(t, authDir, home)
	if _, ok := call(dial(&tls.Certificate{Certificate: res.Chain, PrivateKey: k.Signer()}), 2, &wire.Ping{}).(*wire.Pong); !ok {
		t.Fatal("Ping not answered after a restart")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	after, _ := reg.IssuedCertificates()
	again, _ := os.ReadFile(filepath.Join(home, serverCertFile))
	if len(after) != len(before) || !bytes.Equal(again, certPEM) {
		t.Errorf("restart issued a new server certificate (%d issued before, %d after)", len(before), len(after))
	}
}

func TestExchangeHelp(t *testing.T) {
	out := new(lockedBuffer)
	c := &exchangeCLI{auth: &authorityCLI{stderr: out, getenv: os.Getenv}, stderr: out}
	if err := c.run(context.Background(), []string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	if !strings.Contains(out.String(), "serve") {
		t.Errorf("--help does not list serve:\n%s", out.String())
	}
	out.b.Reset()
	if err := c.run(context.Background(), []string{"serve", "--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("serve --help: %v", err)
	}
	for _, f := range []string{"--authority", "--home", "--listen", "--host"} {
		if !strings.Contains(out.String(), strings.TrimPrefix(f, "-")) {
			t.Errorf("serve --help does not mention %s", f)
		}
	}
	t.Setenv(envExchangeHome, "")
	t.Setenv(envAuthorityDir, "")
	if err := c.run(context.Background(), []string{"serve", "--authority", t.TempDir()}); err == nil || !strings.Contains(err.Error(), "hint:") {
		t.Errorf("serve without --home: %v", err)
	}
}

func TestCertHosts(t *testing.T) {
	for _, tc := range []struct {
		listen string
		extra  []string
		want   string
	}{
		{"127.0.0.1:0", nil, "127.0.0.1,localhost"},
		{":7443", []string{"exchange.gov.example"}, "localhost,127.0.0.1,exchange.gov.example"},
		{"10.1.2.3:7443", nil, "10.1.2.3,localhost,127.0.0.1"},
	} {
		if got := strings.Join(certHosts(nil, tc.listen, tc.extra), ","); got != tc.want {
			t.Errorf("certHosts(%q, %v) = %s, want %s", tc.listen, tc.extra, got, tc.want)
		}
	}
}

// TestExchangeServeMedia runs serve with --media: an enrolled device joins a call
// over its connection and its media link to the relay comes up; without --media,
// JoinCall is unavailable.
func TestExchangeServeMedia(t *testing.T) {
	authDir := filepath.Join(t.TempDir(), "auth")
	t.Setenv(envPassphrase, "exchange media test passphrase")
	t.Setenv(envAuthorityDir, "")
	t.Setenv(envExchangeHome, "")
	if _, _, err := authorityRun(t, "init", "--dir", authDir); err != nil {
		t.Fatal(err)
	}
	a, err := authority.Open(authDir, []byte("exchange media test passphrase"), authority.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := a.Enroll("Amina Yusuf", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	k, err := mls.GenerateSignatureKey(mls.DefaultCipherSuite, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k.Signer())
	if err != nil {
		t.Fatal(err)
	}
	issued, err := a.Redeem(tk.Text(), csr)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.RootCertificate())
	a.Close()
	me := wire.DeviceID(issued.DeviceID)

	join := func(addr string) (*rtc.Link, error) {
		tc, err := tls.Dial("tcp", addr, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "127.0.0.1",
			Certificates: []tls.Certificate{{Certificate: issued.Chain, PrivateKey: k.Signer()}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		wc := wire.NewConn(tc)
		if _, err := wc.ClientHandshake(&wire.Hello{Versions: []uint16{wire.ProtocolVersion1}}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return rtc.Dial(ctx, rtc.Config{}, func(_ context.Context, offer string) (string, error) {
			if err := wc.WriteMessage(2, &wire.JoinCall{CallID: wire.CallID{1}, Members: []wire.DeviceID{me}, Offer: offer}); err != nil {
				return "", err
			}
			for {
				id, m, err := wc.ReadMessage()
				if err != nil {
					return "", err
				}
				if id != 2 {
					continue
				}
				switch m := m.(type) {
				case *wire.CallJoined:
					return m.Answer, nil
				case *wire.Error:
					return "", m
				}
				return "", fmt.Errorf("JoinCall answered with %s", m.Type())
			}
		})
	}

	addr, stop, out := startExchangeArgs(t, authDir, filepath.Join(t.TempDir(), "exchange"), "--media", "127.0.0.1:0")
	if !regexp.MustCompile(`exchange: call media on udp 127\.0\.0\.1:\d+`).MatchString(out.String()) {
		t.Fatalf("serve did not report its media port:\n%s", out.String())
	}
	l, err := join(addr)
	if err != nil {
		t.Fatalf("joining a call: %v", err)
	}
	if err := l.WriteRTP(0, false, []byte("x")); err != nil {
		t.Fatal(err)
	}
	// A call in progress, not one a millisecond old: pion/webrtc (v4.2.26)
	// misses a DTLS close_notify that arrives as its handshake completes, and
	// the link then ends only when ICE fails, 20 s later.
	time.Sleep(250 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("media link still up after the exchange stopped")
	}

	addr, _, _ = startExchangeArgs(t, authDir, filepath.Join(t.TempDir(), "exchange2"))
	if _, err := join(addr); wire.CodeOf(err) != wire.CodeUnavailable {
		t.Fatalf("JoinCall without --media: %v, want unavailable", err)
	}
}
