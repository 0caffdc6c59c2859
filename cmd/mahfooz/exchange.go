package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"mahfooz/authority"
	"mahfooz/exchange"
	"mahfooz/exchange/relay"
	"mahfooz/exchange/store/sqlite"
)

func init() {
	commands["exchange"] = command{
		summary: "run the exchange server that devices connect to: serve",
		run:     runExchange,
	}
}

// Environment variables and files of the exchange commands.
const (
	envExchangeHome = "MAHFOOZ_EXCHANGE_HOME"
	// serverCertFile and serverKeyFile hold the exchange's TLS certificate chain
	// and key in its home directory, so that a restart does not issue (and log in
	// the transparency log) a new one.
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
	// defaultListen is the address serve listens on without --listen.
	defaultListen = ":7443"
)

const exchangeUsage = `usage: mahfooz exchange <verb> [flags]

verbs:
  serve    run the exchange: admit enrolled devices, store and deliver their
           messages, KeyPackages and attachments, until SIGINT or SIGTERM

Run 'mahfooz exchange serve --help' for its flags.`

// exchangeCLI runs the exchange commands with explicit streams and environment,
// so tests can run them in process. It borrows the authority commands' passphrase
// handling: the exchange opens the authority's state with its root key.
type exchangeCLI struct {
	auth   *authorityCLI
	stderr io.Writer
}

func runExchange(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &exchangeCLI{
		auth:   &authorityCLI{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv},
		stderr: os.Stderr,
	}
	return c.run(ctx, args)
}

func (c *exchangeCLI) run(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(c.stderr, exchangeUsage)
		if len(args) == 0 {
			return errors.New("exchange: missing verb")
		}
		return flag.ErrHelp
	}
	if args[0] != "serve" {
		return &hintError{fmt.Errorf("exchange: unknown verb %q", args[0]), "run 'mahfooz exchange --help' for the list"}
	}
	return c.serve(ctx, args[1:])
}

// hostList is a repeatable string flag.
type hostList []string

func (h *hostList) String() string     { return strings.Join(*h, ",") }
func (h *hostList) Set(v string) error { *h = append(*h, v); return nil }

func (c *exchangeCLI) serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("exchange serve", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	authDir := fs.String("authority", c.auth.getenv(envAuthorityDir), "authority state `directory` (env "+envAuthorityDir+")")
	home := fs.String("home", c.auth.getenv(envExchangeHome), "the exchange's own state `directory`: its database and TLS key (env "+envExchangeHome+")")
	listen := fs.String("listen", defaultListen, "TCP `address` to listen on")
	var hosts hostList
	fs.Var(&hosts, "host", "another `name` or IP address devices use to reach the exchange, for its certificate (repeatable)")
	media := fs.String("media", "", "UDP `address` for call media, e.g. :7444 (one port for every call); empty disables calls")
	var advertise hostList
	fs.Var(&advertise, "media-advertise", "an `IP` address devices reach the media port at, put in the relay's candidates in place of the socket's own (repeatable; for a relay behind a 1:1 NAT)")
	debug := fs.Bool("debug", false, "log every request's routing metadata")
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: mahfooz exchange serve --authority DIR --home DIR [--listen ADDR] [--host NAME ...] [--media ADDR]\n\n"+
			"The root key's passphrase comes from $%s, or else is asked for on the terminal.\n\nflags:\n", envPassphrase)
		fs.PrintDefaults()
	}
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := authorityNeedDir(*authDir); err != nil {
		return err
	}
	if *home == "" {
		return &hintError{errors.New("exchange: no home directory"), "pass --home DIR or set " + envExchangeHome}
	}
	for _, ip := range advertise {
		if net.ParseIP(ip) == nil {
			return &hintError{fmt.Errorf("exchange: --media-advertise %q is not an IP address", ip), "give the address devices reach the media port at"}
		}
	}
	if len(advertise) > 0 && *media == "" {
		return &hintError{errors.New("exchange: --media-advertise without --media"), "pass --media ADDR to enable calls"}
	}
	if err := os.MkdirAll(*home, 0o700); err != nil {
		return fmt.Errorf("exchange: %w", err)
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))

	a, err := c.auth.open(*authDir)
	if err != nil {
		return err
	}
	defer a.Close()
	st, err := sqlite.Open(filepath.Join(*home, sqlite.FileName), sqlite.Options{Logger: logger})
	if err != nil {
		return err
	}
	defer st.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("exchange: %w", err)
	}
	cert, err := serverCertificate(a, *home, certHosts(ln.Addr(), *listen, hosts), time.Now())
	if err != nil {
		ln.Close()
		return err
	}
	var rel *relay.Relay
	if *media != "" {
		udp, err := net.ListenPacket("udp", *media)
		if err != nil {
			ln.Close()
			return fmt.Errorf("exchange: media: %w", err)
		}
		if rel, err = relay.New(relay.Config{Conn: udp, Advertise: advertise, Logger: logger}); err != nil {
			udp.Close()
			ln.Close()
			return err
		}
		defer rel.Close() // after the server, which drops devices from calls as it closes
	}
	srv, err := exchange.NewServer(exchange.Config{
		Registry:   a.Registry,
		Authority:  a,
		ServerCert: cert,
		Store:      st,
		Logger:     logger,
		Media:      rel,
	})
	if err != nil {
		ln.Close()
		return err
	}
	if rel != nil {
		fmt.Fprintf(c.stderr, "exchange: call media on udp %s\n", rel.Addr())
	}
	fmt.Fprintf(c.stderr, "exchange: listening on %s\n", ln.Addr())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		fmt.Fprintln(c.stderr, "exchange: shutting down")
		srv.Close()
		<-served
		return nil
	case err := <-served:
		srv.Close()
		return err
	}
}

// certHosts lists the names the server certificate must cover: the host the
// exchange listens on (unless it is every address), localhost, and the extra ones.
func certHosts(addr net.Addr, listen string, extra []string) []string {
	hosts := []string{}
	if h, _, err := net.SplitHostPort(listen); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	if ta, ok := addr.(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
		hosts = append(hosts, ta.IP.String())
	}
	hosts = append(hosts, "localhost", "127.0.0.1")
	hosts = append(hosts, extra...)
	var out []string
	for _, h := range hosts {
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// serverCertificate returns the certificate kept in home if it is this
// authority's, covers every host and has more than half its validity left;
// otherwise it has the authority issue a new one and keeps that (mode 0600).
func serverCertificate(a *authority.Authority, home string, hosts []string, now time.Time) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(home, serverCertFile), filepath.Join(home, serverKeyFile)
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && usableServerCert(cert, a.RootCertificate(), hosts, now) {
		return cert, nil
	}
	cert, err := a.IssueServerCertificate(hosts...)
	if err != nil {
		return tls.Certificate{}, err
	}
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("exchange: encoding the server key: %w", err)
	}
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := writeFileAtomic(keyPath, key); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(certPath, chain); err != nil {
		return tls.Certificate{}, err
	}
	return cert, nil
}

func usableServerCert(cert tls.Certificate, root *x509.Certificate, hosts []string, now time.Time) bool {
	if len(cert.Certificate) == 0 {
		return false
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return false
	}
	if _, ok := cert.PrivateKey.(ed25519.PrivateKey); !ok {
		return false
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	half := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	return now.Before(half)
}

// writeFileAtomic replaces path with data, readable by the owner only.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("exchange: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("exchange: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("exchange: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("exchange: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("exchange: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("exchange: %w", err)
	}
	return nil
}
