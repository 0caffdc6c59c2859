package exchange

import (
	"bytes"
	"errors"
	"slices"
	"time"

	"mahfooz/authority"
	"mahfooz/wire"
)

// directory is the registry as the server last read it: which devices are
// enrolled, which revoked, and each official's active devices. It is replaced
// whole, never changed, so readers need no lock.
type directory struct {
	seq     uint64
	devices map[wire.DeviceID]dirDevice
	byName  map[string][]wire.DeviceID // active devices, in increasing order
}

type dirDevice struct {
	name   string
	active bool
}

// loadDirectory reads the registry.
func (s *Server) loadDirectory() (*directory, error) {
	seq, err := s.cfg.Registry.DirectorySequence()
	if err != nil {
		return nil, err
	}
	list, err := s.cfg.Registry.List()
	if err != nil {
		return nil, err
	}
	d := &directory{seq: seq, devices: make(map[wire.DeviceID]dirDevice, len(list)), byName: make(map[string][]wire.DeviceID)}
	for _, dev := range list {
		id := wire.DeviceID(dev.ID)
		active := dev.State == authority.DeviceActive
		d.devices[id] = dirDevice{name: dev.Name, active: active}
		if active {
			d.byName[dev.Name] = append(d.byName[dev.Name], id)
		}
	}
	for _, ids := range d.byName {
		slices.SortFunc(ids, func(a, b wire.DeviceID) int { return bytes.Compare(a[:], b[:]) })
	}
	return d, nil
}

// lookupDevice reports whether a device is enrolled and whether it is active. A
// device enrolled since the last read of the registry is looked up there.
func (s *Server) lookupDevice(id wire.DeviceID) (enrolled, active bool) {
	if d := s.dir.Load(); d != nil {
		if dev, ok := d.devices[id]; ok {
			return true, dev.active
		}
	}
	dev, err := s.cfg.Registry.Device(authority.DeviceID(id))
	if err != nil {
		if !errors.Is(err, authority.ErrDeviceUnknown) {
			s.log.Error("exchange: reading the registry", "err", err)
		}
		return false, false
	}
	return true, dev.State == authority.DeviceActive
}

// currentDirectory returns the directory, first rereading the registry if it
// changed since the last read.
func (s *Server) currentDirectory() (*directory, error) {
	seq, err := s.cfg.Registry.DirectorySequence()
	if err != nil {
		return nil, err
	}
	if d := s.dir.Load(); d != nil && d.seq == seq {
		return d, nil
	}
	if err := s.refreshDirectory(false); err != nil {
		return nil, err
	}
	return s.dir.Load(), nil
}

// pollDirectory reads the directory sequence every RevocationPoll and acts on a
// change, whichever process made it.
func (s *Server) pollDirectory() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.RevocationPoll)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		seq, err := s.cfg.Registry.DirectorySequence()
		if err != nil {
			s.log.Error("exchange: reading the directory sequence", "err", err)
			continue
		}
		if d := s.dir.Load(); d != nil && d.seq == seq {
			continue
		}
		if err := s.refreshDirectory(false); err != nil {
			s.log.Error("exchange: reading the directory", "err", err)
		}
	}
}

// refreshDirectory rereads the registry, cuts off connected devices that are now
// revoked, tells every other connected device the directory changed, and forgets
// the stored data of newly revoked devices (all revoked ones when initial).
func (s *Server) refreshDirectory(initial bool) error {
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	d, err := s.loadDirectory()
	if err != nil {
		return err
	}
	prev := s.dir.Load()
	if prev != nil && prev.seq == d.seq && !initial {
		return nil
	}
	s.dir.Store(d)

	s.mu.RLock()
	var revoked []wire.DeviceID
	var others []*conn
	for id, conns := range s.devices {
		if dev, ok := d.devices[id]; !ok || !dev.active {
			revoked = append(revoked, id)
			continue
		}
		for c := range conns {
			others = append(others, c)
		}
	}
	s.mu.RUnlock()
	for _, id := range revoked {
		s.disconnect(id)
	}
	if !initial {
		frame, _ := wire.AppendFrame(nil, 0, &wire.DirectoryUpdated{})
		for _, c := range others {
			c.send(frame)
		}
	}
	if s.cfg.Store != nil {
		for id, dev := range d.devices {
			if dev.active {
				continue
			}
			if old, ok := prevDevice(prev, id); !initial && ok && !old.active {
				continue // forgotten when it was revoked
			}
			if err := s.cfg.Store.ForgetDevice(background, id); err != nil {
				s.log.Error("exchange: forgetting a revoked device", "device", id.String(), "err", err)
			}
		}
	}
	return nil
}

func prevDevice(d *directory, id wire.DeviceID) (dirDevice, bool) {
	if d == nil {
		return dirDevice{}, false
	}
	dev, ok := d.devices[id]
	return dev, ok
}

// Revoke cuts a device off: it revokes it in the authority (when the server has
// one; otherwise the caller must have done so, or the device may reconnect), then
// at once sends Revoked on each of its open connections and closes them, tells
// every other connected device the directory changed, and deletes what is stored
// for the device. Errors are the authority's (authority.ErrDeviceUnknown).
func (s *Server) Revoke(id authority.DeviceID) error {
	if s.cfg.Authority != nil {
		if err := s.cfg.Authority.Revoke(id); err != nil {
			return err
		}
	}
	if err := s.refreshDirectory(false); err != nil {
		s.log.Error("exchange: reading the directory", "err", err)
	}
	s.disconnect(wire.DeviceID(id)) // even if the registry could not be read
	return nil
}

// maxRevocationProof is the largest directory that fits in a Revoked frame.
const maxRevocationProof = wire.MaxBodySize - 16

// disconnect sends Revoked to, and closes, every connection of the device.
func (s *Server) disconnect(id wire.DeviceID) {
	conns := s.deviceConns(id)
	if len(conns) == 0 {
		return
	}
	at := s.cfg.Now()
	if d, err := s.cfg.Registry.Device(authority.DeviceID(id)); err == nil && !d.RevokedAt.IsZero() {
		at = d.RevokedAt
	}
	// The signed directory that lists the device as revoked is its proof: a device
	// wipes itself only on a revocation its authority signed.
	var proof []byte
	if s.cfg.Authority != nil {
		raw, err := s.signedDirectory()
		switch {
		case err != nil:
			s.log.Error("exchange: signing the directory for a revocation", "err", err)
		case len(raw) > maxRevocationProof:
			s.log.Warn("exchange: directory too large to prove a revocation", "bytes", len(raw))
		default:
			proof = raw
		}
	}
	s.log.Info("exchange: cutting off revoked device", "device", id.String(), "connections", len(conns))
	for _, c := range conns {
		c.cutOff(at, proof)
	}
}

// signedDirectory returns the authority's signed directory, signing a new one
// only when the registry changed since the last.
func (s *Server) signedDirectory() ([]byte, error) {
	seq, err := s.cfg.Registry.DirectorySequence()
	if err != nil {
		return nil, err
	}
	s.signedMu.Lock()
	defer s.signedMu.Unlock()
	if s.signed != nil && s.signed.Sequence == seq {
		return s.signed.Raw, nil
	}
	d, err := s.cfg.Authority.Directory()
	if err != nil {
		return nil, err
	}
	s.signed = d
	return d.Raw, nil
}

func (s *Server) handleGetDirectory(c *conn, requestID uint32) {
	if s.cfg.Authority == nil {
		c.reply(requestID, wire.CodeUnavailable, "no directory here")
		return
	}
	raw, err := s.signedDirectory()
	if err != nil {
		s.log.Error("exchange: signing the directory", "err", err)
		c.reply(requestID, wire.CodeInternal, "")
		return
	}
	c.sendMessage(requestID, &wire.Directory{Signed: raw})
}

func (s *Server) handleRenew(c *conn, requestID uint32, m *wire.RenewCertificate) {
	if s.cfg.Authority == nil {
		c.reply(requestID, wire.CodeUnavailable, "no renewal here")
		return
	}
	issued, err := s.cfg.Authority.Renew(authority.DeviceID(c.device), m.CSR)
	switch {
	case errors.Is(err, authority.ErrCSR):
		s.log.Info("exchange: renewal refused", "device", c.device.String(), "err", err)
		c.reply(requestID, wire.CodeInvalidRequest, "certificate request refused")
		return
	case errors.Is(err, authority.ErrDeviceRevoked):
		c.reply(requestID, wire.CodeRevoked, "")
		return
	case errors.Is(err, authority.ErrDeviceUnknown):
		c.reply(requestID, wire.CodeNotFound, "")
		return
	case err != nil:
		s.log.Error("exchange: renewing a certificate", "device", c.device.String(), "err", err)
		c.reply(requestID, wire.CodeInternal, "")
		return
	}
	s.log.Info("exchange: certificate renewed", "device", c.device.String(), "expires", issued.NotAfter)
	c.sendMessage(requestID, &wire.CertificateResult{Chain: issued.Chain})
}
