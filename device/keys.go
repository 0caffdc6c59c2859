package device

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"mahfooz/authority"
	"mahfooz/device/vault"
	"mahfooz/mls"
)

// KeyPackage stock: when fewer than kpLow unused packages are left, the device
// publishes enough to have kpTarget again. Private keys of packages nobody used
// are deleted after kpLifetime (the packages' own lifetime).
const (
	kpTarget   = 16
	kpLow      = 8
	kpLifetime = 90 * 24 * time.Hour
)

// newKeyPackage makes a KeyPackage with the current credential and stores its
// private keys before anyone can see the package.
func (dv *Device) newKeyPackage(tx *vault.Tx, lastResort bool) ([]byte, error) {
	now := dv.now()
	kp, priv, err := mls.NewKeyPackage(cipherSuite, dv.credential(), dv.self.SigKey,
		mls.KeyPackageOptions{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(kpLifetime)}, now, dv.cfg.Rand)
	if err != nil {
		return nil, fmt.Errorf("device: making a KeyPackage: %w", err)
	}
	ref, err := kp.Ref()
	if err != nil {
		return nil, err
	}
	msg := mls.NewKeyPackageMessage(kp).Bytes()
	rec := &kpRec{KeyPackage: msg, InitKey: priv.InitKey.Bytes(), EncKey: priv.EncryptionKey.Bytes(), LastResort: lastResort, Created: now}
	if err := putJSON(tx, bucketKP, ref, rec); err != nil {
		return nil, err
	}
	if lastResort {
		if err := tx.Put(bucketMeta, metaLastResort, ref); err != nil {
			return nil, err
		}
	}
	return msg, nil
}

// keyPackagePrivate rebuilds a stored KeyPackage and its private keys.
func (dv *Device) keyPackagePrivate(r *kpRec) (*mls.KeyPackage, *mls.KeyPackagePrivate, error) {
	m, err := mls.UnmarshalMLSMessage(r.KeyPackage)
	if err != nil || m.WireFormat != mls.WireFormatKeyPackage {
		return nil, nil, errors.New("device: stored KeyPackage is unreadable")
	}
	initKey, err := mls.NewHPKEPrivateKey(cipherSuite, r.InitKey)
	if err != nil {
		return nil, nil, err
	}
	encKey, err := mls.NewHPKEPrivateKey(cipherSuite, r.EncKey)
	if err != nil {
		return nil, nil, err
	}
	return m.KeyPackage, &mls.KeyPackagePrivate{InitKey: initKey, EncryptionKey: encKey, SignatureKey: dv.self.SigKey}, nil
}

// dropOwnKeyPackage deletes the private keys of one of this device's packages that
// the exchange handed out to this device itself (a claim of its own official).
// It reports whether a one-time package was used up.
func (dv *Device) dropOwnKeyPackage(kp *mls.KeyPackage) bool {
	ref, err := kp.Ref()
	if err != nil {
		return false
	}
	used := false
	err = dv.v.Update(func(tx *vault.Tx) error {
		var r kpRec
		if err := getJSON(tx, bucketKP, ref, &r); err != nil {
			if errors.Is(err, vault.ErrNotFound) {
				return nil
			}
			return err
		}
		if r.LastResort {
			return nil
		}
		used = true
		return tx.Delete(bucketKP, ref)
	})
	if err != nil {
		dv.log.Warn("device: dropping a claimed KeyPackage", "err", err)
	}
	return used
}

// topUpKeyPackagesLocked publishes a replacement for each one-time KeyPackage
// used since the last call (s.replace), more while the stock is low, and a new
// last-resort package when there is none for the current certificate.
func (dv *Device) topUpKeyPackagesLocked(ctx context.Context, s *session) error {
	var (
		count      int
		lastResort bool
	)
	chain := dv.credential().Certificates
	err := dv.v.View(func(tx *vault.Tx) error {
		entries, err := tx.List(bucketKP)
		if err != nil {
			return err
		}
		for _, e := range entries {
			var r kpRec
			if err := json.Unmarshal(e.Value, &r); err != nil {
				return err
			}
			if !r.LastResort {
				count++
			}
		}
		ref, err := tx.Get(bucketMeta, metaLastResort)
		if errors.Is(err, vault.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var r kpRec
		if err := getJSON(tx, bucketKP, ref, &r); err != nil {
			if errors.Is(err, vault.ErrNotFound) {
				return nil
			}
			return err
		}
		kp, _, err := dv.keyPackagePrivate(&r)
		if err != nil {
			return err
		}
		cred := kp.LeafNode.Credential
		lastResort = len(cred.Certificates) > 0 && bytes.Equal(cred.Certificates[0], chain[0])
		return nil
	})
	if err != nil {
		return err
	}
	n := min(s.replace, kpTarget)
	if count < kpLow {
		n = max(n, kpTarget-count)
	}
	if n > 0 {
		var batch [][]byte
		err := dv.v.Update(func(tx *vault.Tx) error {
			batch = nil
			for range n {
				kp, err := dv.newKeyPackage(tx, false)
				if err != nil {
					return err
				}
				batch = append(batch, kp)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := s.c.UploadKeyPackages(ctx, batch, false); err != nil {
			return fmt.Errorf("device: publishing KeyPackages: %w", err)
		}
		s.replace = 0
		dv.log.Info("device: published KeyPackages", "count", len(batch))
	}
	if !lastResort {
		var kp []byte
		err := dv.v.Update(func(tx *vault.Tx) (err error) { kp, err = dv.newKeyPackage(tx, true); return err })
		if err != nil {
			return err
		}
		if err := s.c.UploadKeyPackages(ctx, [][]byte{kp}, true); err != nil {
			return fmt.Errorf("device: publishing the last-resort KeyPackage: %w", err)
		}
	}
	return nil
}

// renewIfDueLocked renews the device certificate once less than half of its
// lifetime is left, for the same key, and publishes KeyPackages that carry it.
func (dv *Device) renewIfDueLocked(ctx context.Context, s *session) error {
	cert, err := dv.certificate()
	if err != nil {
		return err
	}
	now := dv.now()
	half := cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) / 2)
	if now.Before(half) {
		return nil
	}
	csr, err := x509.CreateCertificateRequest(dv.cfg.Rand, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "mahfooz device"}}, dv.self.SigKey.Signer())
	if err != nil {
		return fmt.Errorf("device: certificate request: %w", err)
	}
	chain, err := s.c.Renew(ctx, csr)
	if err != nil {
		return fmt.Errorf("device: renewing the certificate: %w", err)
	}
	if len(chain) == 0 {
		return errors.New("device: renewal returned no certificate")
	}
	fresh, id, err := authority.VerifyDeviceCertificate(dv.root, chain[0], now)
	if err != nil {
		return fmt.Errorf("device: renewed certificate: %w", err)
	}
	if key, ok := ed25519Key(fresh); id != dv.self.ID || !ok || !bytes.Equal(key, dv.self.SigKey.Public()) {
		return errors.New("device: renewed certificate is not for this device's key")
	}
	data, err := json.Marshal(chain)
	if err != nil {
		return err
	}
	if err := dv.v.Update(func(tx *vault.Tx) error { return tx.Put(bucketMeta, metaChain, data) }); err != nil {
		return err
	}
	dv.stateMu.Lock()
	dv.chain = chain
	dv.stateMu.Unlock()
	dv.log.Info("device: certificate renewed", "expires", fresh.NotAfter)
	// The last-resort package carries the old certificate: topUp replaces it.
	return dv.topUpKeyPackagesLocked(ctx, s)
}

// pruneLocked forgets what is no longer needed: message IDs past the time the
// exchange could deliver them again, held deliveries that never became
// readable, and private keys of KeyPackages past their
// lifetime (except the current last-resort one).
func (dv *Device) pruneLocked() error {
	now := dv.now()
	return dv.v.Update(func(tx *vault.Tx) error {
		ids, err := tx.List(bucketIDs)
		if err != nil {
			return err
		}
		for _, e := range ids {
			var r idRec
			if err := json.Unmarshal(e.Value, &r); err != nil || now.After(r.Until) {
				if err := tx.Delete(bucketIDs, e.Key); err != nil {
					return err
				}
			}
		}
		held, err := tx.List(bucketHeld)
		if err != nil {
			return err
		}
		for _, e := range held {
			var h heldRec
			if err := json.Unmarshal(e.Value, &h); err != nil || now.After(h.Until) {
				if err := tx.Delete(bucketHeld, e.Key); err != nil {
					return err
				}
			}
		}
		current, err := tx.Get(bucketMeta, metaLastResort)
		if err != nil && !errors.Is(err, vault.ErrNotFound) {
			return err
		}
		kps, err := tx.List(bucketKP)
		if err != nil {
			return err
		}
		for _, e := range kps {
			var r kpRec
			if err := json.Unmarshal(e.Value, &r); err != nil {
				return err
			}
			if now.Sub(r.Created) > kpLifetime && !bytes.Equal(e.Key, current) {
				if err := tx.Delete(bucketKP, e.Key); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
