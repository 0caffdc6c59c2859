package authority

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Errors of enrolment. Redeem returns each unwrapped or wrapped with detail.
var (
	// ErrTicketUnknown: the ticket's secret matches no ticket this authority issued.
	ErrTicketUnknown = errors.New("authority: unknown enrolment ticket")
	// ErrTicketUsed: the ticket was already redeemed.
	ErrTicketUsed = errors.New("authority: enrolment ticket already used")
	// ErrTicketExpired: the ticket's time ran out before it was redeemed.
	ErrTicketExpired = errors.New("authority: enrolment ticket expired")
	// ErrTicketAuthority: the ticket names another authority's root.
	ErrTicketAuthority = errors.New("authority: enrolment ticket is for another authority")
	// ErrCSR: the certificate request is malformed, its signature does not verify
	// (the device did not prove possession of the key), or its key is not Ed25519.
	ErrCSR = errors.New("authority: unacceptable certificate request")
	// ErrExists: Init found an authority already in the directory.
	ErrExists = errors.New("authority: an authority already exists in this directory")
)

// Authority is an opened authority with its root key: it issues tickets and
// certificates and revokes devices. It embeds the Registry's read side. Its methods
// are safe for concurrent use, also with other processes on the same state.
type Authority struct {
	*Registry
	key ed25519.PrivateKey
}

// Issued is the outcome of a redeemed ticket or a renewal.
type Issued struct {
	DeviceID    DeviceID
	Certificate []byte   // the device certificate, DER
	Chain       [][]byte // leaf first: the device certificate, then the root
	NotAfter    time.Time
}

// Init creates a new authority in dir (created if missing; it must not already
// hold one): a fresh Ed25519 root key encrypted under passphrase, a self-signed
// root certificate and an empty database.
func Init(dir string, passphrase []byte, opts Options) (*Authority, error) {
	opts = opts.withDefaults()
	if len(passphrase) == 0 {
		return nil, errors.New("authority: empty passphrase")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	for _, f := range []string{rootKeyFile, rootCertFile, dbFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("%w (%s)", ErrExists, dir)
		}
	}
	_, key, err := ed25519.GenerateKey(opts.Rand)
	if err != nil {
		return nil, fmt.Errorf("authority: generating root key: %w", err)
	}
	now := opts.Now()
	serial, err := randomSerial(opts.Rand)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: opts.RootName},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(opts.RootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(opts.Rand, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("authority: creating root certificate: %w", err)
	}
	sealed, err := sealRootKey(key, passphrase, opts.KDF, opts.Rand)
	if err != nil {
		return nil, err
	}
	if err := writeNew(filepath.Join(dir, rootKeyFile), sealed, 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(filepath.Join(dir, rootCertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	db, err := openDB(filepath.Join(dir, dbFile), true)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(filepath.Join(dir, dbFile), 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("authority: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		db.Close()
		return nil, err
	}
	a := &Authority{
		Registry: &Registry{dir: dir, db: db, root: root, fingerprint: FingerprintOf(root), opts: opts},
		key:      key,
	}
	// The empty log's head, so that TreeHead always has an answer.
	head := SignedTreeHead{Size: 0, RootHash: RootHash(nil), Timestamp: time.UnixMilli(now.UnixMilli()).UTC()}
	head.Signature = ed25519.Sign(key, head.signedInput())
	if _, err := db.Exec(`INSERT INTO tree_heads (size, root_hash, timestamp, signature) VALUES (0, ?, ?, ?)`,
		head.RootHash[:], ms(head.Timestamp), head.Signature); err != nil {
		db.Close()
		return nil, dbErr(err)
	}
	opts.Logger.Info("authority: initialised", "dir", dir, "root", a.fingerprint.String())
	return a, nil
}

func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("authority: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("authority: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("authority: %w", err)
	}
	return f.Close()
}

// Open opens the authority in dir with its root key. A wrong passphrase gives
// ErrWrongPassphrase.
func Open(dir string, passphrase []byte, opts Options) (*Authority, error) {
	r, err := OpenPublic(dir, opts)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, rootKeyFile))
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("authority: %w", err)
	}
	key, err := openRootKey(data, passphrase)
	if err != nil {
		r.Close()
		return nil, err
	}
	if pub, ok := r.root.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(key.Public()) {
		r.Close()
		return nil, fmt.Errorf("authority: %s does not belong to %s", rootKeyFile, rootCertFile)
	}
	return &Authority{Registry: r, key: key}, nil
}

func randomSerial(rand io.Reader) (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(rand, b); err != nil {
		return nil, fmt.Errorf("authority: reading randomness: %w", err)
	}
	b[0] &= 0x7f
	b[0] |= 0x40 // non-zero, and always 16 bytes long
	return new(big.Int).SetBytes(b), nil
}

// checkLabel validates an official's name or role as it goes into a certificate.
func checkLabel(what, s string, required bool, max int) error {
	switch {
	case s == "" && required:
		return fmt.Errorf("authority: %s is empty", what)
	case len(s) > max:
		return fmt.Errorf("authority: %s is longer than %d bytes", what, max)
	case !utf8.ValidString(s):
		return fmt.Errorf("authority: %s is not UTF-8", what)
	case strings.TrimSpace(s) != s:
		return fmt.Errorf("authority: %s has leading or trailing space", what)
	case strings.ContainsFunc(s, unicode.IsControl):
		return fmt.Errorf("authority: %s has control characters", what)
	}
	return nil
}

// Enroll issues a one-time enrolment ticket for an official. ttl <= 0 means
// DefaultTicketTTL; it may not exceed MaxTicketTTL. Only a hash of the ticket's
// secret is stored. The returned ticket's Text is shown to the official once.
func (a *Authority) Enroll(name, role string, ttl time.Duration) (Ticket, error) {
	if err := checkLabel("name", name, true, 128); err != nil {
		return Ticket{}, err
	}
	if err := checkLabel("role", role, false, 64); err != nil {
		return Ticket{}, err
	}
	if ttl <= 0 {
		ttl = DefaultTicketTTL
	}
	if ttl > MaxTicketTTL {
		return Ticket{}, fmt.Errorf("authority: ticket lifetime %v exceeds %v", ttl, MaxTicketTTL)
	}
	t := Ticket{Root: a.fingerprint, Name: name, Role: role}
	if _, err := io.ReadFull(a.opts.Rand, t.Secret[:]); err != nil {
		return Ticket{}, fmt.Errorf("authority: reading randomness: %w", err)
	}
	now := a.opts.Now()
	t.Expires = time.UnixMilli(now.Add(ttl).UnixMilli()).UTC()
	if _, err := a.db.Exec(`INSERT INTO tickets (hash, name, role, created, expires) VALUES (?, ?, ?, ?, ?)`,
		t.Secret.hash(), name, role, ms(now), ms(t.Expires)); err != nil {
		return Ticket{}, dbErr(err)
	}
	a.opts.Logger.Info("authority: ticket issued", "name", name, "role", role, "expires", t.Expires)
	return t, nil
}

// parseCSR checks a device's certificate request: well formed, self-signed by the
// key it carries (proof of possession), and that key Ed25519.
func parseCSR(der []byte) (ed25519.PublicKey, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature does not verify", ErrCSR)
	}
	pub, ok := csr.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: key is not Ed25519", ErrCSR)
	}
	return pub, nil
}

// Redeem turns an enrolment ticket and the device's certificate request into an
// enrolled device and its first certificate. The request (x509.CreateCertificateRequest
// signed with the device's Ed25519 MLS signature key) proves the device holds the
// key; its subject is ignored, the authority's records decide the certificate's.
// The ticket is consumed atomically with the enrolment: of concurrent redemptions
// one wins and the others get ErrTicketUsed. Errors: ErrTicketMalformed,
// ErrTicketAuthority, ErrTicketUnknown, ErrTicketUsed, ErrTicketExpired, ErrCSR.
// A request that fails does not consume the ticket.
func (a *Authority) Redeem(ticketText string, csrDER []byte) (Issued, error) {
	t, err := ParseTicket(ticketText)
	if err != nil {
		return Issued{}, err
	}
	if t.Root != a.fingerprint {
		return Issued{}, ErrTicketAuthority
	}
	pub, err := parseCSR(csrDER)
	if err != nil {
		return Issued{}, err
	}
	var out Issued
	err = withTx(a.db, func(tx *sql.Tx) error {
		var (
			name, role string
			expires    int64
			used       bool
		)
		hash := t.Secret.hash()
		err := tx.QueryRow(`SELECT name, role, expires, used FROM tickets WHERE hash = ?`, hash).Scan(&name, &role, &expires, &used)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrTicketUnknown
		}
		if err != nil {
			return dbErr(err)
		}
		now := a.opts.Now()
		if used {
			return ErrTicketUsed
		}
		if !now.Before(fromMS(expires)) {
			return ErrTicketExpired
		}
		var id DeviceID
		if _, err := io.ReadFull(a.opts.Rand, id[:]); err != nil {
			return fmt.Errorf("authority: reading randomness: %w", err)
		}
		cert, err := a.issueDevice(id, name, role, pub, now)
		if err != nil {
			return err
		}
		res, err := tx.Exec(`UPDATE tickets SET used = 1, used_at = ?, device = ? WHERE hash = ? AND used = 0`, ms(now), id[:], hash)
		if err != nil {
			return dbErr(err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return ErrTicketUsed
		}
		if _, err := tx.Exec(`INSERT INTO devices (`+deviceColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, ?)`,
			id[:], name, role, string(DeviceActive), ms(now), ms(cert.NotBefore), ms(cert.NotAfter), cert.Raw); err != nil {
			return dbErr(err)
		}
		out, err = a.recordDeviceCertificate(tx, id, cert, now)
		return err
	})
	if err != nil {
		return Issued{}, err
	}
	a.opts.Logger.Info("authority: device enrolled", "device", out.DeviceID.String(), "name", t.Name, "expires", out.NotAfter)
	return out, nil
}

// recordDeviceCertificate appends a newly issued device certificate to the log and
// announces a new directory, within the issuing transaction.
func (a *Authority) recordDeviceCertificate(tx *sql.Tx, id DeviceID, cert *x509.Certificate, now time.Time) (Issued, error) {
	if err := appendToLog(tx, a.key, cert.Raw, &id, "device", now); err != nil {
		return Issued{}, err
	}
	if err := bumpDirectorySeq(tx); err != nil {
		return Issued{}, err
	}
	return a.issued(id, cert), nil
}

func (a *Authority) issued(id DeviceID, cert *x509.Certificate) Issued {
	return Issued{
		DeviceID:    id,
		Certificate: cert.Raw,
		Chain:       [][]byte{cert.Raw, a.root.Raw},
		NotAfter:    cert.NotAfter,
	}
}

// Renew issues a fresh certificate to an enrolled, unrevoked device, for the key in
// csrDER (which may be a new key: the device proves possession either way). The
// exchange calls it over the device's authenticated connection. Errors:
// ErrDeviceUnknown, ErrDeviceRevoked, ErrCSR.
func (a *Authority) Renew(id DeviceID, csrDER []byte) (Issued, error) {
	pub, err := parseCSR(csrDER)
	if err != nil {
		return Issued{}, err
	}
	var out Issued
	err = withTx(a.db, func(tx *sql.Tx) error {
		d, err := scanDevice(tx.QueryRow(`SELECT `+deviceColumns+` FROM devices WHERE id = ?`, id[:]))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrDeviceUnknown, id)
		}
		if err != nil {
			return dbErr(err)
		}
		if d.State != DeviceActive {
			return fmt.Errorf("%w: %s", ErrDeviceRevoked, id)
		}
		now := a.opts.Now()
		cert, err := a.issueDevice(id, d.Name, d.Role, pub, now)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`UPDATE devices SET issued = ?, expires = ?, cert = ? WHERE id = ?`,
			ms(cert.NotBefore), ms(cert.NotAfter), cert.Raw, id[:]); err != nil {
			return dbErr(err)
		}
		out, err = a.recordDeviceCertificate(tx, id, cert, now)
		return err
	})
	if err != nil {
		return Issued{}, err
	}
	a.opts.Logger.Info("authority: certificate renewed", "device", id.String(), "expires", out.NotAfter)
	return out, nil
}

// Revoke revokes a device at once: the Registry refuses it from the next check on,
// in every process. Revoking a revoked device is not an error. Errors: ErrDeviceUnknown.
func (a *Authority) Revoke(id DeviceID) error {
	err := withTx(a.db, func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE devices SET state = ?, revoked_at = ? WHERE id = ? AND state = ?`,
			string(DeviceRevoked), ms(a.opts.Now()), id[:], string(DeviceActive))
		if err != nil {
			return dbErr(err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return bumpDirectorySeq(tx)
		}
		var one int
		if err := tx.QueryRow(`SELECT 1 FROM devices WHERE id = ?`, id[:]).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrDeviceUnknown, id)
		} else if err != nil {
			return dbErr(err)
		}
		return nil
	})
	if err == nil {
		a.opts.Logger.Info("authority: device revoked", "device", id.String())
	}
	return err
}

// issueDevice signs a device certificate (see the package doc for its fields).
func (a *Authority) issueDevice(id DeviceID, name, role string, pub ed25519.PublicKey, now time.Time) (*x509.Certificate, error) {
	serial, err := randomSerial(a.opts.Rand)
	if err != nil {
		return nil, err
	}
	subject := pkix.Name{CommonName: name}
	if role != "" {
		subject.OrganizationalUnit = []string{role}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-time.Minute), // tolerate a little clock skew
		NotAfter:              now.Add(a.opts.CertValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{id.URI()},
	}
	return a.sign(tmpl, pub)
}

func (a *Authority) sign(tmpl *x509.Certificate, pub any) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(a.opts.Rand, tmpl, a.root, pub, a.key)
	if err != nil {
		return nil, fmt.Errorf("authority: signing certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// IssueServerCertificate makes a fresh Ed25519 key for the exchange and a TLS
// server certificate for it, signed by the root, for the given DNS names and IP
// addresses. It goes into the issued-certificate log like every other.
func (a *Authority) IssueServerCertificate(hosts ...string) (tls.Certificate, error) {
	if len(hosts) == 0 {
		return tls.Certificate{}, errors.New("authority: server certificate needs at least one host")
	}
	pub, key, err := ed25519.GenerateKey(a.opts.Rand)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("authority: generating server key: %w", err)
	}
	serial, err := randomSerial(a.opts.Rand)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := a.opts.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0]},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(a.opts.ServerCertValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	cert, err := a.sign(tmpl, pub)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := withTx(a.db, func(tx *sql.Tx) error {
		return appendToLog(tx, a.key, cert.Raw, nil, "server", now)
	}); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw, a.root.Raw}, PrivateKey: key, Leaf: cert}, nil
}
