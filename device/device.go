package device

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"mahfooz/authority"
	"mahfooz/device/client"
	"mahfooz/device/safety"
	"mahfooz/device/vault"
	"mahfooz/mls"
	"mahfooz/wire"
)

// cipherSuite is the suite of every group: X25519 + ML-KEM-768, AES-128-GCM, Ed25519.
const cipherSuite = mls.MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519

// Software is sent to the exchange in Hello.
const Software = "mahfooz-device/1"

// Config is what a Device takes from the application that embeds it.
type Config struct {
	// Home is the device's directory; the vault lives there and nothing is written
	// anywhere else (except files SaveFile is asked to write).
	Home string
	// Passphrase opens the vault. It is never stored.
	Passphrase []byte
	// KDF is the Argon2id cost of a new vault; zero is vault.DefaultKDF().
	KDF vault.KDFParams
	// Rand is the source of every key and ID; nil is crypto/rand.
	Rand io.Reader
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Logger receives operational events, never content or keys; nil discards them.
	Logger *slog.Logger
	// Dial opens connections to the exchange; nil uses a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (c Config) withDefaults() Config {
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.KDF == (vault.KDFParams{}) {
		c.KDF = vault.DefaultKDF()
	}
	return c
}

// self is this device's identity.
type self struct {
	ID     authority.DeviceID
	Name   string
	Role   string
	SigKey *mls.SignaturePrivateKey
}

// Device is an enrolled device: its vault, its connection to the exchange and its
// conversations. Its methods are safe for concurrent use; operations on
// conversations run one at a time.
type Device struct {
	cfg  Config
	log  *slog.Logger
	v    *vault.Vault
	self self
	root *x509.Certificate
	addr string

	// mu serializes all work on group state: operations, processing what the
	// exchange delivers, and the outbox.
	mu          sync.Mutex
	vaultClosed bool // guarded by mu

	stateMu sync.Mutex
	chain   [][]byte // guarded by stateMu: the current certificate chain

	dir        atomic.Pointer[directory]
	nextExpiry atomic.Int64 // Unix ms of the earliest expiry in the vault, 0 if none

	connMu  sync.Mutex
	sess    *session      // guarded by connMu: the current connection, if any
	running bool          // guarded by connMu: Run is active
	kick    chan struct{} // asks Run to reconnect at once

	subsMu sync.Mutex
	subs   map[*subscriber]struct{} // guarded by subsMu

	closeOnce sync.Once
	closing   chan struct{} // closed by Close and by a wipe
	wiping    atomic.Bool   // set when a wipe starts
	wiped     chan struct{} // closed once the vault has been wiped
	wipeOnce  sync.Once

	callMu     sync.Mutex
	activeCall *Call // guarded by callMu: the call this device is in, if any

	groupsMu      sync.Mutex
	groupsChanged chan struct{} // guarded by groupsMu: closed when a group's state is next stored

	// testSend, when set by tests, sees every Send before it leaves.
	testSend func(*wire.Send)
	// testAck, when set by tests, is asked before each Ack; false drops the
	// connection instead, as if the device had crashed before acknowledging.
	testAck func() bool
}

// Enroll enrols a new device with a one-time ticket: it makes the device's key,
// creates the vault in cfg.Home, redeems the ticket at the exchange (which must
// prove it belongs to the ticket's authority) and stores the certificate, then
// connects once to fetch the directory and publish KeyPackages. If that last step
// fails the device is still enrolled; Run or Sync completes it.
func Enroll(ctx context.Context, cfg Config, exchangeAddr, ticketText string) (*Device, error) {
	cfg = cfg.withDefaults()
	ticket, err := authority.ParseTicket(ticketText)
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	if vault.Exists(cfg.Home) {
		return nil, ErrEnrolled
	}
	sigKey, err := mls.GenerateSignatureKey(cipherSuite, cfg.Rand)
	if err != nil {
		return nil, fmt.Errorf("device: making the device key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(cfg.Rand, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "mahfooz device"}}, sigKey.Signer())
	if err != nil {
		return nil, fmt.Errorf("device: certificate request: %w", err)
	}
	v, err := vault.Create(cfg.Home, cfg.Passphrase, cfg.KDF, cfg.Rand)
	if err != nil {
		if errors.Is(err, vault.ErrExists) {
			return nil, ErrEnrolled
		}
		return nil, fmt.Errorf("device: %w", err)
	}
	fail := func(err error) (*Device, error) {
		v.Close()
		vault.Wipe(cfg.Home)
		return nil, err
	}
	// The key is in the vault before the exchange sees its request.
	if err := v.Update(func(tx *vault.Tx) error { return tx.Put(bucketMeta, metaIdentity, sigKey.Bytes()) }); err != nil {
		return fail(fmt.Errorf("device: storing the device key: %w", err))
	}
	id, chain, root, err := client.Enroll(ctx, exchangeAddr, ticket, csr, cfg.Dial, cfg.Now)
	if err != nil {
		return fail(fmt.Errorf("device: enrolling: %w", err))
	}
	chainJSON, err := json.Marshal(chain)
	if err != nil {
		return fail(err)
	}
	err = v.Update(func(tx *vault.Tx) error {
		for _, kv := range []struct {
			k, v []byte
		}{
			{metaChain, chainJSON},
			{metaRoot, root.Raw},
			{metaExchange, []byte(exchangeAddr)},
			{metaDeviceID, id[:]},
		} {
			if err := tx.Put(bucketMeta, kv.k, kv.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fail(fmt.Errorf("device: storing the identity: %w", err))
	}
	dv, err := newDevice(cfg, v)
	if err != nil {
		v.Close()
		return nil, err
	}
	dv.log.Info("device: enrolled", "device", id.String())
	if err := dv.Sync(ctx); err != nil {
		dv.log.Warn("device: first connection after enrolment", "err", err)
	}
	return dv, nil
}

// Open opens an enrolled device's vault. It does not connect; Run and Sync do.
func Open(cfg Config) (*Device, error) {
	cfg = cfg.withDefaults()
	v, err := vault.Open(cfg.Home, cfg.Passphrase)
	switch {
	case errors.Is(err, vault.ErrNoVault):
		return nil, ErrNotEnrolled
	case errors.Is(err, vault.ErrWrongPassphrase):
		return nil, ErrWrongPassphrase
	case err != nil:
		return nil, fmt.Errorf("device: %w", err)
	}
	dv, err := newDevice(cfg, v)
	if err != nil {
		v.Close()
		return nil, err
	}
	return dv, nil
}

// newDevice loads the identity from an open vault.
func newDevice(cfg Config, v *vault.Vault) (*Device, error) {
	dv := &Device{
		cfg:     cfg,
		log:     cfg.Logger,
		v:       v,
		kick:    make(chan struct{}, 1),
		subs:    make(map[*subscriber]struct{}),
		closing: make(chan struct{}),
		wiped:   make(chan struct{}),
	}
	err := v.View(func(tx *vault.Tx) error {
		seed, err := tx.Get(bucketMeta, metaIdentity)
		if err != nil {
			return err
		}
		if dv.self.SigKey, err = mls.NewSignaturePrivateKey(cipherSuite, seed); err != nil {
			return err
		}
		rootDER, err := tx.Get(bucketMeta, metaRoot)
		if err != nil {
			return err
		}
		if dv.root, err = x509.ParseCertificate(rootDER); err != nil {
			return err
		}
		addr, err := tx.Get(bucketMeta, metaExchange)
		if err != nil {
			return err
		}
		dv.addr = string(addr)
		id, err := tx.Get(bucketMeta, metaDeviceID)
		if err != nil {
			return err
		}
		if len(id) != len(dv.self.ID) {
			return errors.New("device ID has the wrong length")
		}
		copy(dv.self.ID[:], id)
		if err := getJSON(tx, bucketMeta, metaChain, &dv.chain); err != nil {
			return err
		}
		return dv.loadDirectory(tx)
	})
	if errors.Is(err, vault.ErrNotFound) {
		return nil, errors.New("device: the vault holds no complete enrolment (wipe it and enrol again)")
	}
	if err != nil {
		return nil, fmt.Errorf("device: reading the vault: %w", err)
	}
	cert, err := dv.certificate()
	if err != nil {
		return nil, err
	}
	dv.self.Name = cert.Subject.CommonName
	if len(cert.Subject.OrganizationalUnit) > 0 {
		dv.self.Role = cert.Subject.OrganizationalUnit[0]
	}
	if err := dv.sweep(); err != nil {
		dv.log.Warn("device: sweeping expired messages", "err", err)
	}
	return dv, nil
}

// certificate returns the current device certificate, parsed.
func (dv *Device) certificate() (*x509.Certificate, error) {
	dv.stateMu.Lock()
	chain := dv.chain
	dv.stateMu.Unlock()
	if len(chain) == 0 {
		return nil, errors.New("device: no certificate in the vault")
	}
	cert, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("device: stored certificate: %w", err)
	}
	return cert, nil
}

// credential is this device's MLS credential: its certificate chain.
func (dv *Device) credential() mls.Credential {
	dv.stateMu.Lock()
	defer dv.stateMu.Unlock()
	return mls.NewX509Credential(dv.chain)
}

// tlsCertificate is the client certificate for the exchange.
func (dv *Device) tlsCertificate() tls.Certificate {
	dv.stateMu.Lock()
	defer dv.stateMu.Unlock()
	// Only the device certificate: the exchange knows the root, and every
	// certificate sent is parsed and kept for the life of the connection there.
	return tls.Certificate{Certificate: dv.chain[:1], PrivateKey: dv.self.SigKey.Signer()}
}

func (dv *Device) now() time.Time { return dv.cfg.Now() }

// usable returns ErrWiped or ErrClosed once the device is either.
func (dv *Device) usable() error {
	if dv.wiping.Load() {
		return ErrWiped
	}
	select {
	case <-dv.closing:
		return ErrClosed
	default:
	}
	return nil
}

// Self returns this device's identity. It is safe for concurrent use.
func (dv *Device) Self() Identity {
	return Identity{Name: dv.self.Name, Role: dv.self.Role, DeviceID: dv.self.ID.String()}
}

// SafetyNumber returns the safety number this device's official and the named
// official compare to know that each holds the other's true keys: it covers the
// MLS signature keys of both officials' active devices in the verified directory.
// It is safe for concurrent use.
func (dv *Device) SafetyNumber(name string) (string, error) {
	if err := dv.usable(); err != nil {
		return "", err
	}
	d := dv.dir.Load()
	keys := func(official string) [][]byte {
		var out [][]byte
		for _, id := range d.activeDevices(official) {
			out = append(out, []byte(d.devices[id].Key))
		}
		return out
	}
	theirs := keys(name)
	if len(theirs) == 0 {
		return "", fmt.Errorf("%w: %q", ErrUnknownOfficial, name)
	}
	mine := keys(dv.self.Name)
	if len(mine) == 0 {
		mine = [][]byte{[]byte(dv.self.SigKey.Public())}
	}
	return safety.Number(dv.self.Name, mine, name, theirs), nil
}

// Close disconnects and closes the vault. Run returns ErrClosed. It is safe to
// call more than once.
func (dv *Device) Close() error {
	dv.closeOnce.Do(func() { close(dv.closing) })
	dv.dropSession()
	dv.closeSubscribers()
	dv.mu.Lock()
	defer dv.mu.Unlock()
	if dv.vaultClosed {
		return nil
	}
	dv.vaultClosed = true
	return dv.v.Close()
}

// Wipe destroys the vault: keys, conversations and messages. The Device is
// unusable afterwards; its methods return ErrWiped.
func (dv *Device) Wipe() error {
	return dv.wipe("requested")
}

// wipe closes everything and destroys the vault, once.
func (dv *Device) wipe(reason string) error {
	var err error
	dv.wipeOnce.Do(func() {
		dv.wiping.Store(true)
		dv.closeOnce.Do(func() { close(dv.closing) })
		dv.dropSession()
		dv.mu.Lock()
		defer dv.mu.Unlock()
		if !dv.vaultClosed {
			dv.vaultClosed = true
			dv.v.Close()
		}
		err = vault.Wipe(dv.cfg.Home)
		close(dv.wiped)
		dv.log.Warn("device: vault wiped", "reason", reason)
		dv.publish(Event{Kind: EventWiped})
		dv.closeSubscribers()
	})
	return err
}

// ed25519Key returns the public key of a certificate, if it is Ed25519.
func ed25519Key(cert *x509.Certificate) (ed25519.PublicKey, bool) {
	k, ok := cert.PublicKey.(ed25519.PublicKey)
	return k, ok
}

// WipeHome destroys the vault in home without opening it (no passphrase is
// needed to destroy). A Device open on home becomes unusable.
func WipeHome(home string) error {
	if !vault.Exists(home) {
		return ErrNotEnrolled
	}
	return vault.Wipe(home)
}

// ChangePassphrase seals the vault's key under a new passphrase (with
// Config.KDF's cost); the data stays as it is. It returns ErrWrongPassphrase if
// oldPassphrase is not the current passphrase. It is safe for concurrent use.
func (dv *Device) ChangePassphrase(oldPassphrase, newPassphrase []byte) error {
	if err := dv.usable(); err != nil {
		return err
	}
	err := dv.v.ChangePassphrase(oldPassphrase, newPassphrase, dv.cfg.KDF)
	if errors.Is(err, vault.ErrWrongPassphrase) {
		return ErrWrongPassphrase
	}
	return err
}
