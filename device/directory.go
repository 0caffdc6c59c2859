package device

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"mahfooz/authority"
	"mahfooz/device/vault"
	"mahfooz/mls"
)

// directory is a verified signed directory, indexed.
type directory struct {
	now       func() time.Time
	signed    *authority.SignedDirectory
	devices   map[authority.DeviceID]dirDevice
	officials map[string]*authority.Official
	revoked   map[authority.DeviceID]bool
}

// dirDevice is one active device of the directory.
type dirDevice struct {
	Name, Role string
	Cert       *x509.Certificate
	Key        ed25519.PublicKey
}

// parseDirectory verifies raw against root and indexes it. A device whose
// certificate does not parse is left out (and so treated as unknown). now is the
// clock against which a device's certificate is current.
func parseDirectory(root *x509.Certificate, raw []byte, now func() time.Time) (*directory, error) {
	sd, err := authority.VerifyDirectory(root, raw)
	if err != nil {
		return nil, err
	}
	d := &directory{
		now:       now,
		signed:    sd,
		devices:   make(map[authority.DeviceID]dirDevice),
		officials: make(map[string]*authority.Official),
		revoked:   make(map[authority.DeviceID]bool),
	}
	for _, id := range sd.Revoked {
		d.revoked[id] = true
	}
	for i := range sd.Officials {
		o := &sd.Officials[i]
		if _, dup := d.officials[o.Name]; !dup {
			d.officials[o.Name] = o
		}
		for _, dev := range o.Devices {
			cert, err := x509.ParseCertificate(dev.Certificate)
			if err != nil {
				continue
			}
			key, ok := cert.PublicKey.(ed25519.PublicKey)
			if !ok || d.revoked[dev.ID] {
				continue
			}
			d.devices[dev.ID] = dirDevice{Name: o.Name, Role: o.Role, Cert: cert, Key: key}
		}
	}
	return d, nil
}

// errNoRevocation is returned by checkRevocation for a Revoked push whose proof
// does not show this device revoked.
var errNoRevocation = errors.New("device: no proof of revocation")

// checkRevocation checks the proof carried by a Revoked push: a directory signed
// by the authority's root that lists this device as revoked. Revocation is final
// in the authority, so a proof of any age is enough.
func (dv *Device) checkRevocation(proof []byte) error {
	if len(proof) == 0 {
		return errNoRevocation
	}
	d, err := parseDirectory(dv.root, proof, dv.now)
	if err != nil {
		return fmt.Errorf("%w: %v", errNoRevocation, err)
	}
	if !d.revoked[dv.self.ID] {
		return fmt.Errorf("%w: the signed directory does not list this device as revoked", errNoRevocation)
	}
	return nil
}

// active reports whether the directory lists the device as enrolled, unrevoked
// and with a current certificate. A device whose certificate expired can never
// renew it (renewal needs a valid one) and will not come back: members remove
// it from their groups as they do a revoked one, and nobody adds it.
func (d *directory) active(id authority.DeviceID) bool {
	if d == nil {
		return false
	}
	dev, ok := d.devices[id]
	return ok && d.now().Before(dev.Cert.NotAfter)
}

// activeDevices returns the active devices of an official, sorted.
func (d *directory) activeDevices(name string) []authority.DeviceID {
	if d == nil {
		return nil
	}
	o := d.officials[name]
	if o == nil {
		return nil
	}
	var out []authority.DeviceID
	for _, dev := range o.Devices {
		if d.active(dev.ID) {
			out = append(out, dev.ID)
		}
	}
	return out
}

func (d *directory) sequence() uint64 {
	if d == nil {
		return 0
	}
	return d.signed.Sequence
}

// validator is the mls.CredentialValidator of every group of the device: a
// credential must be a device certificate of the root (authority.NewValidator) for
// a device the verified directory lists as active. A certificate that expired is
// still accepted for a member whose device the directory lists as active with a
// current certificate for the same key: a member's leaf carries the certificate
// of its last commit (a device commits its renewed one at its next maintenance
// pass, so this covers the time in between and members that are offline), while
// the authority vouches for the key through the directory it signs now.
func (dv *Device) validator() mls.CredentialValidator {
	base := authority.NewValidator(dv.root, func(id authority.DeviceID) bool { return !dv.dir.Load().active(id) }, dv.now)
	return mls.CredentialValidatorFunc(func(cred mls.Credential, key mls.SignaturePublicKey) error {
		err := base.ValidateCredential(cred, key)
		if err == nil || !errors.Is(err, authority.ErrCertificateExpired) {
			return err
		}
		cert, cerr := x509.ParseCertificate(cred.Certificates[0])
		if cerr != nil {
			return err
		}
		if cerr := cert.CheckSignatureFrom(dv.root); cerr != nil {
			return err
		}
		id, cerr := authority.DeviceIDFromCertificate(cert)
		if cerr != nil {
			return err
		}
		dev, ok := dv.dir.Load().devices[id]
		if !ok || !bytes.Equal(dev.Key, key) {
			return err
		}
		if _, _, cerr := authority.VerifyDeviceCertificate(dv.root, dev.Cert.Raw, dv.now()); cerr != nil {
			return err
		}
		return nil
	})
}

// mlsConfig is the configuration of every group: the post-quantum suite's
// groups encrypt their handshakes and pad their content.
func (dv *Device) mlsConfig() mls.Config {
	return mls.Config{
		Rand:             dv.cfg.Rand,
		Now:              dv.now,
		Validator:        dv.validator(),
		EncryptHandshake: true,
		PaddingBlock:     paddingBlock,
	}
}

// paddingBlock pads every MLS PrivateMessage's content to a multiple of this many
// bytes, so that the exchange learns message lengths only roughly.
const paddingBlock = 256

// loadDirectory reads the stored directory into dv.dir.
func (dv *Device) loadDirectory(tx *vault.Tx) error {
	raw, err := tx.Get(bucketMeta, metaDirectory)
	if errors.Is(err, vault.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	d, err := parseDirectory(dv.root, raw, dv.now)
	if err != nil {
		return fmt.Errorf("device: stored directory: %w", err)
	}
	dv.dir.Store(d)
	return nil
}

// refreshDirectory fetches the signed directory, verifies it against the root
// and, if it is newer than the one held, stores it. It never goes back to an
// older directory: an exchange replaying one cannot undo a revocation. It
// reports whether the directory changed.
func (dv *Device) refreshDirectory(ctx context.Context, s *session) (bool, error) {
	raw, err := s.c.Directory(ctx)
	if err != nil {
		return false, fmt.Errorf("device: fetching the directory: %w", err)
	}
	d, err := parseDirectory(dv.root, raw, dv.now)
	if err != nil {
		return false, fmt.Errorf("device: directory from the exchange: %w", err)
	}
	old := dv.dir.Load()
	if old != nil && d.sequence() <= old.sequence() {
		return false, nil
	}
	if err := dv.v.Update(func(tx *vault.Tx) error { return tx.Put(bucketMeta, metaDirectory, raw) }); err != nil {
		return false, err
	}
	dv.dir.Store(d)
	dv.noticeOwnDevices(old, d)
	dv.publish(Event{Kind: EventDirectory})
	return true, nil
}

// noticeOwnDevices raises an event for every device that appeared under this
// device's official since the previous directory: the official should know of
// each device that can read their conversations.
func (dv *Device) noticeOwnDevices(old, d *directory) {
	if old == nil {
		return
	}
	for _, id := range d.activeDevices(dv.self.Name) {
		if id == dv.self.ID || old.active(id) || old.revoked[id] {
			continue
		}
		dv.log.Info("device: a new device was enrolled for this official", "device", id.String())
		dv.publish(Event{Kind: EventNewOwnDevice, Message: &Message{Kind: MessageRoster, Text: "a new device " + shortID(id) + " was enrolled under your name"}})
	}
}

// Contacts returns every official of the verified directory with their active
// devices, sorted by name. It is safe for concurrent use.
func (dv *Device) Contacts() ([]Contact, error) {
	if err := dv.usable(); err != nil {
		return nil, err
	}
	d := dv.dir.Load()
	if d == nil {
		return nil, nil
	}
	var out []Contact
	for _, o := range d.signed.Officials {
		c := Contact{Name: o.Name, Role: o.Role}
		for _, id := range d.activeDevices(o.Name) {
			c.Devices = append(c.Devices, id.String())
		}
		if len(c.Devices) > 0 {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b Contact) int { return cmpStrings(a.Name, b.Name) })
	return out, nil
}

func cmpStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// shortID is how a device is named to users: the first 8 hex digits of its ID.
func shortID(id [16]byte) string { return authority.DeviceID(id).String()[:8] }
