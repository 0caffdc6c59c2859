package authority

import (
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"mahfooz/mls"
)

// File names inside the state directory.
const (
	rootKeyFile  = "root.key"
	rootCertFile = "root.crt"
)

// Options carry what the caller supplies. The zero value is usable: crypto/rand,
// time.Now, a discarding logger and the defaults below.
type Options struct {
	Rand   io.Reader
	Now    func() time.Time
	Logger *slog.Logger

	// RootName is the root certificate's common name (Init only).
	RootName string
	// RootValidity is the root certificate's lifetime (Init only). Default 20 years.
	RootValidity time.Duration
	// CertValidity is a device certificate's lifetime. Default 7 days.
	CertValidity time.Duration
	// ServerCertValidity is the exchange's TLS certificate lifetime. Default 30 days.
	ServerCertValidity time.Duration
	// KDF protects the root key (Init only). Zero means DefaultKDFParams.
	KDF KDFParams
}

// Defaults.
const (
	DefaultRootName           = "Mahfooz authority"
	DefaultRootValidity       = 20 * 365 * 24 * time.Hour
	DefaultCertValidity       = 7 * 24 * time.Hour
	DefaultServerCertValidity = 30 * 24 * time.Hour
	DefaultTicketTTL          = 24 * time.Hour
	MaxTicketTTL              = 30 * 24 * time.Hour
)

func (o Options) withDefaults() Options {
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RootName == "" {
		o.RootName = DefaultRootName
	}
	if o.RootValidity <= 0 {
		o.RootValidity = DefaultRootValidity
	}
	if o.CertValidity <= 0 {
		o.CertValidity = DefaultCertValidity
	}
	if o.ServerCertValidity <= 0 {
		o.ServerCertValidity = DefaultServerCertValidity
	}
	if o.KDF == (KDFParams{}) {
		o.KDF = DefaultKDFParams
	}
	return o
}

// DeviceState is an enrolled device's state.
type DeviceState string

// Device states.
const (
	DeviceActive  DeviceState = "active"
	DeviceRevoked DeviceState = "revoked"
)

// Device is one enrolled device as the authority records it.
type Device struct {
	ID          DeviceID
	Name        string
	Role        string
	State       DeviceState
	Enrolled    time.Time
	Issued      time.Time // of the current certificate
	Expires     time.Time // of the current certificate
	LastSeen    time.Time // zero if never seen
	RevokedAt   time.Time // zero unless revoked
	Certificate []byte    // current certificate, DER
}

// Registry is the public side of an authority's state: devices, revocation and the
// root certificate, without the root key. Its methods are safe for concurrent use,
// and other processes may use the same state at the same time.
type Registry struct {
	dir         string
	db          *sql.DB
	root        *x509.Certificate
	fingerprint Fingerprint
	opts        Options
}

// OpenPublic opens the authority state in dir without the root key.
func OpenPublic(dir string, opts Options) (*Registry, error) {
	opts = opts.withDefaults()
	data, err := os.ReadFile(filepath.Join(dir, rootCertFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("authority: no authority in %s (no %s)", dir, rootCertFile)
		}
		return nil, fmt.Errorf("authority: %w", err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		return nil, fmt.Errorf("authority: %s is not one PEM certificate", rootCertFile)
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("authority: %s: %w", rootCertFile, err)
	}
	db, err := openDB(filepath.Join(dir, dbFile), false)
	if err != nil {
		return nil, err
	}
	return &Registry{dir: dir, db: db, root: root, fingerprint: FingerprintOf(root), opts: opts}, nil
}

// Close closes the database.
func (r *Registry) Close() error { return r.db.Close() }

// RootCertificate returns the root certificate. The caller must not modify it.
func (r *Registry) RootCertificate() *x509.Certificate { return r.root }

// Fingerprint returns the root's fingerprint, as carried in tickets.
func (r *Registry) Fingerprint() Fingerprint { return r.fingerprint }

const deviceColumns = `id, name, role, state, enrolled, issued, expires, last_seen, revoked_at, cert`

type scanner interface{ Scan(...any) error }

func scanDevice(s scanner) (Device, error) {
	var (
		d                                        Device
		id                                       []byte
		state                                    string
		enrolled, issued, expires, seen, revoked int64
	)
	if err := s.Scan(&id, &d.Name, &d.Role, &state, &enrolled, &issued, &expires, &seen, &revoked, &d.Certificate); err != nil {
		return d, err
	}
	if len(id) != DeviceIDSize {
		return d, errors.New("authority: database: malformed device ID")
	}
	d.ID = DeviceID(id)
	d.State = DeviceState(state)
	d.Enrolled, d.Issued, d.Expires = fromMS(enrolled), fromMS(issued), fromMS(expires)
	d.LastSeen, d.RevokedAt = fromMS(seen), fromMS(revoked)
	return d, nil
}

// Device returns one device, or ErrDeviceUnknown.
func (r *Registry) Device(id DeviceID) (Device, error) {
	d, err := scanDevice(r.db.QueryRow(`SELECT `+deviceColumns+` FROM devices WHERE id = ?`, id[:]))
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("%w: %s", ErrDeviceUnknown, id)
	}
	return d, dbErr(err)
}

// List returns every device ever enrolled, revoked ones included, by name then
// enrolment time.
func (r *Registry) List() ([]Device, error) {
	rows, err := r.db.Query(`SELECT ` + deviceColumns + ` FROM devices ORDER BY name, role, enrolled, id`)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, dbErr(err)
		}
		out = append(out, d)
	}
	return out, dbErr(rows.Err())
}

// IsRevoked reports whether the device must be refused: it is revoked, unknown, or
// the database cannot be read (failing closed; the error is logged).
func (r *Registry) IsRevoked(id DeviceID) bool {
	var state string
	err := r.db.QueryRow(`SELECT state FROM devices WHERE id = ?`, id[:]).Scan(&state)
	if err != nil {
		if !errors.Is(err, sql.ErrNoRows) {
			r.opts.Logger.Error("authority: reading device state", "device", id.String(), "err", err)
		}
		return true
	}
	return DeviceState(state) != DeviceActive
}

// seenResolution is how stale a recorded last-seen time may be: a device seen
// again within it is not written again, so that reconnecting devices do not cost
// the exchange a synced database write each.
const seenResolution = time.Minute

// Seen records that the device was seen now (for `authority list`), to within
// seenResolution.
func (r *Registry) Seen(id DeviceID) error {
	now := r.opts.Now()
	_, err := r.db.Exec(`UPDATE devices SET last_seen = ? WHERE id = ? AND last_seen <= ?`,
		ms(now), id[:], ms(now.Add(-seenResolution)))
	return dbErr(err)
}

// VerifyDevice checks a device certificate (DER) as the exchange admits it: issued
// by the root, ClientAuth, valid now, and naming an enrolled, unrevoked device.
func (r *Registry) VerifyDevice(der []byte) (Device, error) {
	_, id, err := VerifyDeviceCertificate(r.root, der, r.opts.Now())
	if err != nil {
		return Device{}, err
	}
	d, err := r.Device(id)
	if err != nil {
		return Device{}, err
	}
	if d.State != DeviceActive {
		return Device{}, fmt.Errorf("%w: %s", ErrDeviceRevoked, id)
	}
	return d, nil
}

// VerifyClientCertificate checks a TLS client's certificate chain (leaf first, as
// tls.Config.VerifyPeerCertificate receives it; use it with ClientAuth set to
// tls.RequireAnyClientCert) with VerifyDevice. Certificates after the leaf are
// ignored: device certificates are issued by the root itself.
func (r *Registry) VerifyClientCertificate(rawCerts [][]byte) error {
	if len(rawCerts) == 0 {
		return fmt.Errorf("%w: no client certificate", ErrCertificateUntrusted)
	}
	_, err := r.VerifyDevice(rawCerts[0])
	return err
}

// Validator returns an MLS credential validator that accepts only credentials
// of this authority's enrolled, unrevoked devices (see NewValidator), checking
// revocation against the database at each call.
func (r *Registry) Validator() mls.CredentialValidator {
	return NewValidator(r.root, r.IsRevoked, r.opts.Now)
}

// TreeHead returns the latest signed head of the issued-certificate log.
func (r *Registry) TreeHead() (SignedTreeHead, error) {
	var (
		h        SignedTreeHead
		rootHash []byte
		ts       int64
	)
	err := r.db.QueryRow(`SELECT size, root_hash, timestamp, signature FROM tree_heads ORDER BY size DESC LIMIT 1`).
		Scan(&h.Size, &rootHash, &ts, &h.Signature)
	if err != nil {
		return h, dbErr(err)
	}
	if len(rootHash) != HashSize {
		return h, errors.New("authority: database: malformed tree head")
	}
	h.RootHash = [HashSize]byte(rootHash)
	h.Timestamp = fromMS(ts)
	return h, nil
}

// IssuedCertificates returns every certificate in the log, in order of issuance.
func (r *Registry) IssuedCertificates() ([][]byte, error) {
	rows, err := r.db.Query(`SELECT cert FROM certificates ORDER BY idx`)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var c []byte
		if err := rows.Scan(&c); err != nil {
			return nil, dbErr(err)
		}
		out = append(out, c)
	}
	return out, dbErr(rows.Err())
}

// DirectorySequence returns the directory's sequence number, which every enrolment,
// renewal and revocation increases in the same transaction. The exchange polls it,
// one small query, to notice changes made by any process on the same state.
func (r *Registry) DirectorySequence() (uint64, error) {
	var v int64
	if err := r.db.QueryRow(`SELECT value FROM meta WHERE key = ?`, metaDirectorySeq).Scan(&v); err != nil {
		return 0, dbErr(err)
	}
	return uint64(v), nil
}
