package exchange

import (
	"crypto/x509"
	"errors"
	"fmt"

	"mahfooz/authority"
	"mahfooz/mls"
	"mahfooz/wire"
)

// errNotOwnKeyPackage is returned by checkKeyPackage for a valid package whose
// credential names another device.
var errNotOwnKeyPackage = errors.New("exchange: KeyPackage of another device")

// checkKeyPackage checks an uploaded KeyPackage as far as the exchange can: it is
// an MLSMessage(KeyPackage) that MLS accepts (RFC 9420 §10.1: suite, keys,
// signatures, lifetime), its leaf credential is a certificate of this authority
// for an enrolled, unrevoked device whose key is the leaf's signature key, and
// that device is the uploader. So a device cannot stock packages for another.
func (s *Server) checkKeyPackage(device wire.DeviceID, raw []byte) error {
	h, err := wire.ParseMLSHeader(raw)
	if err != nil {
		return err
	}
	if h.WireFormat != wire.WireFormatKeyPackage {
		return fmt.Errorf("exchange: wire format %d, not a KeyPackage", h.WireFormat)
	}
	msg, err := mls.UnmarshalMLSMessage(raw)
	if err != nil {
		return err
	}
	kp := msg.KeyPackage
	if err := kp.Validate(kp.CipherSuite, s.cfg.Now()); err != nil {
		return err
	}
	cred := kp.LeafNode.Credential
	if err := s.cfg.Registry.Validator().ValidateCredential(cred, kp.LeafNode.SignatureKey); err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(cred.Certificates[0]) // the validator parsed it already
	if err != nil {
		return err
	}
	id, err := authority.DeviceIDFromCertificate(cert)
	if err != nil {
		return err
	}
	if wire.DeviceID(id) != device {
		return errNotOwnKeyPackage
	}
	return nil
}

func (s *Server) handleUploadKeyPackages(c *conn, requestID uint32, m *wire.UploadKeyPackages) {
	for i, kp := range m.KeyPackages {
		if err := s.checkKeyPackage(c.device, kp); err != nil {
			s.log.Info("exchange: KeyPackage refused", "device", c.device.String(), "index", i, "err", err)
			if errors.Is(err, errNotOwnKeyPackage) {
				c.reply(requestID, wire.CodeForbidden, "KeyPackage of another device")
			} else {
				c.reply(requestID, wire.CodeInvalidRequest, "KeyPackage refused")
			}
			return
		}
	}
	var err error
	if m.LastResort {
		err = s.cfg.Store.SetLastResortKeyPackage(background, c.device, m.KeyPackages[0])
	} else {
		err = s.cfg.Store.AddKeyPackages(background, c.device, m.KeyPackages)
	}
	if err != nil {
		code, hint := s.storeCode(c, "upload KeyPackages", err)
		c.reply(requestID, code, hint)
		return
	}
	s.log.Debug("exchange: KeyPackages stored", "device", c.device.String(), "count", len(m.KeyPackages), "last_resort", m.LastResort)
	c.sendMessage(requestID, &wire.OK{})
}

func (s *Server) handleClaimKeyPackage(c *conn, requestID uint32, m *wire.ClaimKeyPackage) {
	var targets []wire.DeviceID
	if m.Official == "" {
		if m.Device == c.device {
			c.reply(requestID, wire.CodeForbidden, "claiming the device's own KeyPackage")
			return
		}
		if enrolled, active := s.lookupDevice(m.Device); !enrolled || !active {
			c.reply(requestID, wire.CodeNotFound, "no such device")
			return
		}
		targets = []wire.DeviceID{m.Device}
	} else {
		d, err := s.currentDirectory()
		if err != nil {
			s.log.Error("exchange: reading the directory", "err", err)
			c.reply(requestID, wire.CodeInternal, "")
			return
		}
		for _, id := range d.byName[m.Official] {
			if id != c.device && len(targets) < wire.MaxKeyPackages {
				targets = append(targets, id)
			}
		}
	}
	claimed, err := s.cfg.Store.ClaimKeyPackages(background, targets)
	if err != nil {
		code, hint := s.storeCode(c, "claim KeyPackages", err)
		c.reply(requestID, code, hint)
		return
	}
	if len(claimed) == 0 {
		c.reply(requestID, wire.CodeNotFound, "no KeyPackage")
		return
	}
	c.sendMessage(requestID, &wire.KeyPackages{KeyPackages: claimed})
}
