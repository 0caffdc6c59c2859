package authority

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"mahfooz/mls"
)

// Errors of certificate and credential checks. Each is returned wrapped with detail.
var (
	// ErrCertificateUntrusted: not a device certificate issued by this root (another
	// authority's, self-signed, wrong key usage, unparseable).
	ErrCertificateUntrusted = errors.New("authority: certificate not issued by this authority")
	// ErrCertificateExpired: issued by this root, but outside its validity period.
	ErrCertificateExpired = errors.New("authority: certificate expired or not yet valid")
	// ErrDeviceRevoked: the device the certificate names has been revoked.
	ErrDeviceRevoked = errors.New("authority: device revoked")
	// ErrDeviceUnknown: no such device is enrolled.
	ErrDeviceUnknown = errors.New("authority: unknown device")
	// ErrCredential: an MLS credential that is not a single x509 device certificate
	// whose key is the member's signature key.
	ErrCredential = errors.New("authority: unacceptable MLS credential")
)

// VerifyDeviceCertificate checks that der is a device certificate issued by root
// and valid at now: it chains directly to root, carries the ClientAuth extended key
// usage, is not a CA, has an Ed25519 key and names exactly one device. It does not
// check revocation. It returns the parsed certificate and its device ID.
func VerifyDeviceCertificate(root *x509.Certificate, der []byte, now time.Time) (*x509.Certificate, DeviceID, error) {
	var id DeviceID
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, id, fmt.Errorf("%w: %v", ErrCertificateUntrusted, err)
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		// Checked first so that an expired certificate of this root says so, rather
		// than the generic chain error; the chain is still verified below.
		if cert.CheckSignatureFrom(root) == nil {
			return nil, id, ErrCertificateExpired
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, id, fmt.Errorf("%w: %v", ErrCertificateUntrusted, err)
	}
	if cert.IsCA || bytes.Equal(cert.Raw, root.Raw) || !hasClientAuth(cert) {
		return nil, id, fmt.Errorf("%w: not a device certificate", ErrCertificateUntrusted)
	}
	if _, ok := cert.PublicKey.(ed25519.PublicKey); !ok {
		return nil, id, fmt.Errorf("%w: key is not Ed25519", ErrCertificateUntrusted)
	}
	id, err = DeviceIDFromCertificate(cert)
	if err != nil {
		return nil, id, fmt.Errorf("%w: %v", ErrCertificateUntrusted, err)
	}
	return cert, id, nil
}

// hasClientAuth requires the EKU explicitly: x509.Verify accepts a certificate
// without any EKU for every usage.
func hasClientAuth(cert *x509.Certificate) bool {
	for _, u := range cert.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth {
			return true
		}
	}
	return false
}

// NewValidator returns an MLS credential validator for devices of the authority
// whose root is given. It accepts only x509 credentials whose first certificate is
// a device certificate of root valid at now(), whose device isRevoked does not
// report, and whose public key equals the member's MLS signature key. Devices build
// one from the root and the revocations in the signed directory; the exchange uses
// [Registry.Validator]. It is safe for concurrent use if isRevoked and now are.
func NewValidator(root *x509.Certificate, isRevoked func(DeviceID) bool, now func() time.Time) mls.CredentialValidator {
	return mls.CredentialValidatorFunc(func(cred mls.Credential, key mls.SignaturePublicKey) error {
		if cred.Type != mls.CredentialTypeX509 || len(cred.Certificates) == 0 {
			return fmt.Errorf("%w: not an x509 credential", ErrCredential)
		}
		cert, id, err := VerifyDeviceCertificate(root, cred.Certificates[0], now())
		if err != nil {
			return err
		}
		if isRevoked(id) {
			return fmt.Errorf("%w: %s", ErrDeviceRevoked, id)
		}
		if !bytes.Equal(cert.PublicKey.(ed25519.PublicKey), key) {
			return fmt.Errorf("%w: certificate key is not the signature key", ErrCredential)
		}
		return nil
	})
}
