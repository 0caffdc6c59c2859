package authority

import (
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DeviceIDSize is the size of a device ID in bytes.
const DeviceIDSize = 16

// deviceURIPrefix prefixes the hex device ID in the device certificate's URI SAN.
const deviceURIPrefix = "mahfooz:device:"

// DeviceID names one enrolled device. The authority draws it at random when a
// ticket is redeemed; its text form is 32 lowercase hex digits.
type DeviceID [DeviceIDSize]byte

// String returns the ID as lowercase hex.
func (id DeviceID) String() string { return hex.EncodeToString(id[:]) }

// URI returns the certificate URI SAN for the device: mahfooz:device:<hex>.
func (id DeviceID) URI() *url.URL {
	return &url.URL{Scheme: "mahfooz", Opaque: "device:" + id.String()}
}

// ParseDeviceID parses the text form of a device ID: exactly 32 lowercase hex digits.
func ParseDeviceID(s string) (DeviceID, error) {
	var id DeviceID
	if len(s) != 2*DeviceIDSize || strings.ToLower(s) != s {
		return id, fmt.Errorf("authority: device ID must be %d lowercase hex digits", 2*DeviceIDSize)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("authority: device ID must be %d lowercase hex digits", 2*DeviceIDSize)
	}
	return id, nil
}

// DeviceIDFromCertificate returns the device ID bound by a device certificate: the
// one URI SAN of the form mahfooz:device:<hex>.
func DeviceIDFromCertificate(cert *x509.Certificate) (DeviceID, error) {
	var (
		id    DeviceID
		found int
	)
	for _, u := range cert.URIs {
		s := u.String()
		if !strings.HasPrefix(s, deviceURIPrefix) {
			continue
		}
		v, err := ParseDeviceID(strings.TrimPrefix(s, deviceURIPrefix))
		if err != nil {
			return id, err
		}
		id = v
		found++
	}
	switch found {
	case 0:
		return id, errors.New("authority: certificate names no device")
	case 1:
		return id, nil
	}
	return id, errors.New("authority: certificate names more than one device")
}
