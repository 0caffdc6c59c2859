package authority

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// directoryLabel opens every directory encoding, separating what the root signs
// here from certificates and tree heads.
const directoryLabel = "mahfooz directory v1"

// SignedDirectory is the root-signed list of enrolled officials that devices use to
// find each other and learn of revocations. Its encoding (Raw) is deterministic:
//
//	struct {
//	    opaque label<1..255>;            // "mahfooz directory v1"
//	    uint64 sequence;                 // grows with every change to the devices
//	    int64  timestamp;                // Unix milliseconds, when signed
//	    Official officials<0..2^32-1>;   // sorted by (name, role), no duplicates
//	    opaque revoked<0..2^32-1>;       // revoked device IDs, 16 bytes each, ascending
//	    opaque signature<1..2^16-1>;     // Ed25519 by the root over all the above
//	} SignedDirectory;
//
//	struct {
//	    opaque name<0..2^16-1>;
//	    opaque role<0..2^16-1>;
//	    DirectoryDevice devices<0..2^32-1>;  // sorted by id, no duplicates
//	} Official;
//
//	struct {
//	    opaque id[16];
//	    opaque certificate<1..2^32-1>;   // the device's current certificate, DER
//	} DirectoryDevice;
//
// Length prefixes are big-endian of the width the bounds imply.
type SignedDirectory struct {
	Sequence  uint64
	Timestamp time.Time
	Officials []Official
	Revoked   []DeviceID
	Raw       []byte
}

// Official is one official in the directory with their active devices.
type Official struct {
	Name    string
	Role    string
	Devices []DirectoryDevice
}

// DirectoryDevice is one active device and its current certificate.
type DirectoryDevice struct {
	ID          DeviceID
	Certificate []byte
}

// ErrDirectory is returned by VerifyDirectory for bytes that are not a directory
// signed by the given root.
var ErrDirectory = errors.New("authority: invalid signed directory")

func (d *SignedDirectory) marshalTBS() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(directoryLabel)) })
	b.AddUint64(d.Sequence)
	b.AddUint64(uint64(d.Timestamp.UnixMilli()))
	b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, o := range d.Officials {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(o.Name)) })
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(o.Role)) })
			b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, dev := range o.Devices {
					b.AddBytes(dev.ID[:])
					b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(dev.Certificate) })
				}
			})
		}
	})
	b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, id := range d.Revoked {
			b.AddBytes(id[:])
		}
	})
	return b.Bytes()
}

// Directory signs and returns the current directory: every active device grouped
// by official, and every revoked device ID.
func (a *Authority) Directory() (*SignedDirectory, error) {
	d := &SignedDirectory{Timestamp: time.UnixMilli(a.opts.Now().UnixMilli()).UTC()}
	tx, err := a.db.Begin()
	if err != nil {
		return nil, dbErr(err)
	}
	defer tx.Rollback()
	if err := tx.QueryRow(`SELECT value FROM meta WHERE key = ?`, metaDirectorySeq).Scan(&d.Sequence); err != nil {
		return nil, dbErr(err)
	}
	rows, err := tx.Query(`SELECT ` + deviceColumns + ` FROM devices ORDER BY name, role, id`)
	if err != nil {
		return nil, dbErr(err)
	}
	var devs []Device
	for rows.Next() {
		dev, err := scanDevice(rows)
		if err != nil {
			rows.Close()
			return nil, dbErr(err)
		}
		devs = append(devs, dev)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, dbErr(err)
	}
	if err := tx.Commit(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return nil, dbErr(err)
	}
	for _, dev := range devs {
		if dev.State != DeviceActive {
			d.Revoked = append(d.Revoked, dev.ID)
			continue
		}
		if n := len(d.Officials); n == 0 || d.Officials[n-1].Name != dev.Name || d.Officials[n-1].Role != dev.Role {
			d.Officials = append(d.Officials, Official{Name: dev.Name, Role: dev.Role})
		}
		o := &d.Officials[len(d.Officials)-1]
		o.Devices = append(o.Devices, DirectoryDevice{ID: dev.ID, Certificate: dev.Certificate})
	}
	// SQLite's ORDER BY uses byte order for TEXT and BLOB, but sort here too so the
	// encoding's order never depends on the database's collation.
	slices.SortFunc(d.Officials, compareOfficials)
	for i := range d.Officials {
		slices.SortFunc(d.Officials[i].Devices, func(x, y DirectoryDevice) int { return bytes.Compare(x.ID[:], y.ID[:]) })
	}
	slices.SortFunc(d.Revoked, func(x, y DeviceID) int { return bytes.Compare(x[:], y[:]) })
	tbs, err := d.marshalTBS()
	if err != nil {
		return nil, fmt.Errorf("authority: encoding directory: %w", err)
	}
	var b cryptobyte.Builder
	b.AddBytes(tbs)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(ed25519.Sign(a.key, tbs)) })
	d.Raw, err = b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("authority: encoding directory: %w", err)
	}
	return d, nil
}

func compareOfficials(x, y Official) int {
	return cmp.Or(cmp.Compare(x.Name, y.Name), cmp.Compare(x.Role, y.Role))
}

// VerifyDirectory parses a signed directory strictly (trailing bytes, unsorted or
// duplicate entries are errors) and checks the root's signature over it.
func VerifyDirectory(root *x509.Certificate, data []byte) (*SignedDirectory, error) {
	pub, ok := root.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: root key is not Ed25519", ErrDirectory)
	}
	s := cryptobyte.String(data)
	var (
		d               = &SignedDirectory{Raw: append([]byte{}, data...)}
		label           cryptobyte.String
		ts              uint64
		officials, revs cryptobyte.String
		sig             cryptobyte.String
	)
	if !s.ReadUint8LengthPrefixed(&label) || string(label) != directoryLabel ||
		!s.ReadUint64(&d.Sequence) || !s.ReadUint64(&ts) ||
		!readUint32Prefixed(&s, &officials) || !readUint32Prefixed(&s, &revs) {
		return nil, fmt.Errorf("%w: malformed", ErrDirectory)
	}
	tbs := data[:len(data)-len(s)]
	if !s.ReadUint16LengthPrefixed(&sig) || !s.Empty() {
		return nil, fmt.Errorf("%w: malformed", ErrDirectory)
	}
	if !ed25519.Verify(pub, tbs, sig) {
		return nil, fmt.Errorf("%w: signature does not verify", ErrDirectory)
	}
	d.Timestamp = time.UnixMilli(int64(ts)).UTC()
	for !officials.Empty() {
		var (
			o                Official
			name, role, devs cryptobyte.String
		)
		if !officials.ReadUint16LengthPrefixed(&name) || !officials.ReadUint16LengthPrefixed(&role) ||
			!readUint32Prefixed(&officials, &devs) {
			return nil, fmt.Errorf("%w: malformed", ErrDirectory)
		}
		o.Name, o.Role = string(name), string(role)
		if n := len(d.Officials); n > 0 && compareOfficials(d.Officials[n-1], o) >= 0 {
			return nil, fmt.Errorf("%w: officials out of order", ErrDirectory)
		}
		for !devs.Empty() {
			var (
				dev  DirectoryDevice
				cert cryptobyte.String
			)
			if !devs.CopyBytes(dev.ID[:]) || !readUint32Prefixed(&devs, &cert) || cert.Empty() {
				return nil, fmt.Errorf("%w: malformed", ErrDirectory)
			}
			if n := len(o.Devices); n > 0 && bytes.Compare(o.Devices[n-1].ID[:], dev.ID[:]) >= 0 {
				return nil, fmt.Errorf("%w: devices out of order", ErrDirectory)
			}
			dev.Certificate = append([]byte{}, cert...)
			o.Devices = append(o.Devices, dev)
		}
		d.Officials = append(d.Officials, o)
	}
	for !revs.Empty() {
		var id DeviceID
		if !revs.CopyBytes(id[:]) {
			return nil, fmt.Errorf("%w: malformed", ErrDirectory)
		}
		if n := len(d.Revoked); n > 0 && bytes.Compare(d.Revoked[n-1][:], id[:]) >= 0 {
			return nil, fmt.Errorf("%w: revocations out of order", ErrDirectory)
		}
		d.Revoked = append(d.Revoked, id)
	}
	return d, nil
}

// readUint32Prefixed reads a vector with a 32-bit length prefix.
func readUint32Prefixed(s *cryptobyte.String, out *cryptobyte.String) bool {
	var n uint32
	if !s.ReadUint32(&n) {
		return false
	}
	return s.ReadBytes((*[]byte)(out), int(n))
}
