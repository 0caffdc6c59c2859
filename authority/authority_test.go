package authority

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"mahfooz/mls"
)

// testKDF keeps Argon2id cheap in tests; the format and code path are the same.
var testKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

var testPassphrase = []byte("correct horse battery staple")

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newClock() *testClock {
	return &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func testOptions(c *testClock) Options {
	return Options{Rand: rand.Reader, Now: c.Now, KDF: testKDF}
}

func newTestAuthority(t *testing.T) (*Authority, *testClock, string) {
	t.Helper()
	c := newClock()
	dir := filepath.Join(t.TempDir(), "authority")
	a, err := Init(dir, testPassphrase, testOptions(c))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, c, dir
}

func newDeviceKey(t testing.TB) *mls.SignaturePrivateKey {
	t.Helper()
	k, err := mls.GenerateSignatureKey(mls.DefaultCipherSuite, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func makeCSR(t testing.TB, k *mls.SignaturePrivateKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, k.Signer())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// enrol issues and redeems a ticket, returning the device key and what was issued.
func enrol(t *testing.T, a *Authority, name, role string) (*mls.SignaturePrivateKey, Issued) {
	t.Helper()
	tk, err := a.Enroll(name, role, 0)
	if err != nil {
		t.Fatal(err)
	}
	k := newDeviceKey(t)
	is, err := a.Redeem(tk.Text(), makeCSR(t, k))
	if err != nil {
		t.Fatal(err)
	}
	return k, is
}

func TestInitOpen(t *testing.T) {
	a, c, dir := newTestAuthority(t)
	fp := a.Fingerprint()
	a.Close()

	for _, f := range []string{rootKeyFile, dbFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no group/other access", f, st.Mode().Perm())
		}
	}
	if _, err := Init(dir, testPassphrase, testOptions(c)); !errors.Is(err, ErrExists) {
		t.Errorf("Init over an existing authority: %v, want ErrExists", err)
	}
	if _, err := Open(dir, []byte("wrong passphrase"), testOptions(c)); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Open with a wrong passphrase: %v, want ErrWrongPassphrase", err)
	}
	if _, err := Open(dir, nil, testOptions(c)); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Open with no passphrase: %v, want ErrWrongPassphrase", err)
	}
	b, err := Open(dir, testPassphrase, testOptions(c))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Fingerprint() != fp {
		t.Error("fingerprint changed across Open")
	}
	// The reopened key can issue.
	enrol(t, b, "Amina", "")

	r, err := OpenPublic(dir, testOptions(c))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if devs, err := r.List(); err != nil || len(devs) != 1 {
		t.Errorf("OpenPublic List = %d devices, %v; want 1", len(devs), err)
	}
	if _, err := OpenPublic(t.TempDir(), Options{}); err == nil {
		t.Error("OpenPublic of an empty directory succeeded")
	}
}

func TestRootKeyFileTampered(t *testing.T) {
	_, c, dir := newTestAuthority(t)
	path := filepath.Join(dir, rootKeyFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Raising a KDF parameter changes the derived key and the AAD: refused.
	bad := bytes.Replace(data, []byte("Argon2-Time: 1"), []byte("Argon2-Time: 2"), 1)
	if bytes.Equal(bad, data) {
		t.Fatal("header not found")
	}
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, testPassphrase, testOptions(c)); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Open with altered parameters: %v, want ErrWrongPassphrase", err)
	}
	huge := bytes.Replace(data, []byte("Argon2-Memory-KiB: 64"), []byte("Argon2-Memory-KiB: 4294967295"), 1)
	if err := os.WriteFile(path, huge, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, testPassphrase, testOptions(c)); err == nil || errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Open with out-of-range parameters: %v, want a range error", err)
	}
}

func TestEnrollRedeem(t *testing.T) {
	a, c, _ := newTestAuthority(t)
	tk, err := a.Enroll("Amina Yusuf", "Deputy Minister", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := tk.Expires.Sub(c.Now()); got != DefaultTicketTTL {
		t.Errorf("ticket lifetime %v, want %v", got, DefaultTicketTTL)
	}
	if s := tk.String(); bytes.Contains([]byte(s), []byte(b32.EncodeToString(tk.Secret[:]))) {
		t.Error("Ticket.String reveals the secret")
	}
	parsed, err := ParseTicket(tk.Text())
	if err != nil || parsed.Root != a.Fingerprint() || parsed.Secret != tk.Secret {
		t.Fatalf("ParseTicket(Text()) = %v, %v", parsed, err)
	}
	k := newDeviceKey(t)
	is, err := a.Redeem(tk.Text(), makeCSR(t, k))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(is.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "Amina Yusuf" || len(cert.Subject.OrganizationalUnit) != 1 || cert.Subject.OrganizationalUnit[0] != "Deputy Minister" {
		t.Errorf("subject %v", cert.Subject)
	}
	wantURI := "mahfooz:device:" + is.DeviceID.String()
	if len(cert.URIs) != 1 || cert.URIs[0].String() != wantURI {
		t.Errorf("URIs %v, want [%s]", cert.URIs, wantURI)
	}
	if len(is.DeviceID.String()) != 32 {
		t.Errorf("device ID %q is not 32 hex digits", is.DeviceID)
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || cert.IsCA {
		t.Errorf("EKU %v, IsCA %v", cert.ExtKeyUsage, cert.IsCA)
	}
	if got := cert.NotAfter.Sub(c.Now()); got != DefaultCertValidity {
		t.Errorf("validity %v, want %v", got, DefaultCertValidity)
	}
	if !bytes.Equal(cert.PublicKey.(ed25519.PublicKey), k.Public()) {
		t.Error("certificate key is not the device's MLS signature key")
	}
	if len(is.Chain) != 2 || !bytes.Equal(is.Chain[0], is.Certificate) || !bytes.Equal(is.Chain[1], a.RootCertificate().Raw) {
		t.Error("chain is not [device, root]")
	}
	if err := cert.CheckSignatureFrom(a.RootCertificate()); err != nil {
		t.Errorf("not signed by the root: %v", err)
	}
	if err := a.VerifyClientCertificate(is.Chain); err != nil {
		t.Errorf("VerifyClientCertificate: %v", err)
	}
	if err := a.Validator().ValidateCredential(mls.NewX509Credential(is.Chain), k.Public()); err != nil {
		t.Errorf("Validator: %v", err)
	}
	d, err := a.Device(is.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "Amina Yusuf" || d.State != DeviceActive || !d.Expires.Equal(cert.NotAfter) || !bytes.Equal(d.Certificate, is.Certificate) {
		t.Errorf("device record %+v", d)
	}
	if a.IsRevoked(is.DeviceID) {
		t.Error("new device reported revoked")
	}
	c.Advance(time.Hour)
	if err := a.Seen(is.DeviceID); err != nil {
		t.Fatal(err)
	}
	if d, _ := a.Device(is.DeviceID); !d.LastSeen.Equal(c.Now()) {
		t.Errorf("LastSeen %v, want %v", d.LastSeen, c.Now())
	}
	// Seen again within a minute: kept as it was (no write); after it, updated.
	first := c.Now()
	c.Advance(30 * time.Second)
	if err := a.Seen(is.DeviceID); err != nil {
		t.Fatal(err)
	}
	if d, _ := a.Device(is.DeviceID); !d.LastSeen.Equal(first) {
		t.Errorf("LastSeen %v after a second sighting within a minute, want %v", d.LastSeen, first)
	}
	c.Advance(31 * time.Second)
	if err := a.Seen(is.DeviceID); err != nil {
		t.Fatal(err)
	}
	if d, _ := a.Device(is.DeviceID); !d.LastSeen.Equal(c.Now()) {
		t.Errorf("LastSeen %v, want %v", d.LastSeen, c.Now())
	}
}

func TestTicketRefusals(t *testing.T) {
	a, c, _ := newTestAuthority(t)
	other, _, _ := newTestAuthority(t)
	csr := makeCSR(t, newDeviceKey(t))

	used, err := a.Enroll("Used", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Redeem(used.Text(), csr); err != nil {
		t.Fatal(err)
	}
	expired, err := a.Enroll("Late", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Enroll("Elsewhere", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	unknown := Ticket{Root: a.Fingerprint()}
	rand.Read(unknown.Secret[:])
	c.Advance(time.Hour)

	for _, tc := range []struct {
		name, text string
		want       error
	}{
		{"reused", used.Text(), ErrTicketUsed},
		{"expired", expired.Text(), ErrTicketExpired},
		{"unknown", unknown.Text(), ErrTicketUnknown},
		{"other authority", foreign.Text(), ErrTicketAuthority},
		{"malformed", "mahfooz-ticket:1:nonsense", ErrTicketMalformed},
		{"lower case", string(bytes.ToLower([]byte(used.Text()))), ErrTicketMalformed},
		{"empty", "", ErrTicketMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Redeem(tc.text, makeCSR(t, newDeviceKey(t)))
			if !errors.Is(err, tc.want) {
				t.Errorf("Redeem: %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := a.Enroll("Too long", "", MaxTicketTTL+time.Hour); err == nil {
		t.Error("Enroll accepted a ticket lifetime above the maximum")
	}
	if _, err := a.Enroll("", "", 0); err == nil {
		t.Error("Enroll accepted an empty name")
	}
	if _, err := a.Enroll("bad\nname", "", 0); err == nil {
		t.Error("Enroll accepted a control character")
	}
}

func TestTicketExpiresExactly(t *testing.T) {
	a, c, _ := newTestAuthority(t)
	tk, _ := a.Enroll("Edge", "", time.Hour)
	c.Advance(time.Hour - time.Millisecond)
	if _, err := a.Redeem(tk.Text(), makeCSR(t, newDeviceKey(t))); err != nil {
		t.Errorf("Redeem 1 ms before expiry: %v", err)
	}
	tk2, _ := a.Enroll("Edge", "", time.Hour)
	c.Advance(time.Hour)
	if _, err := a.Redeem(tk2.Text(), makeCSR(t, newDeviceKey(t))); !errors.Is(err, ErrTicketExpired) {
		t.Errorf("Redeem at expiry: %v, want ErrTicketExpired", err)
	}
}

func TestCSRRefused(t *testing.T) {
	a, _, _ := newTestAuthority(t)
	tk, _ := a.Enroll("Amina", "", 0)
	k, other := newDeviceKey(t), newDeviceKey(t)
	csr := makeCSR(t, k)
	// Swap in another public key: the request no longer proves possession.
	mismatch := bytes.Replace(csr, k.Public(), other.Public(), 1)
	if bytes.Equal(mismatch, csr) {
		t.Fatal("public key not found in the request")
	}
	for name, der := range map[string][]byte{
		"key mismatch": mismatch,
		"truncated":    csr[:len(csr)-1],
		"garbage":      []byte("not a request"),
	} {
		if _, err := a.Redeem(tk.Text(), der); !errors.Is(err, ErrCSR) {
			t.Errorf("%s: %v, want ErrCSR", name, err)
		}
	}
	// A refused request does not use the ticket up.
	if _, err := a.Redeem(tk.Text(), csr); err != nil {
		t.Errorf("Redeem after refused requests: %v", err)
	}
}

func TestConcurrentRedeemOneWins(t *testing.T) {
	a, c, dir := newTestAuthority(t)
	// A second handle stands for another process on the same state.
	b, err := Open(dir, testPassphrase, testOptions(c))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tk, _ := a.Enroll("Race", "", 0)
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		h := a
		if i%2 == 1 {
			h = b
		}
		csr := makeCSR(t, newDeviceKey(t))
		wg.Go(func() { _, errs[i] = h.Redeem(tk.Text(), csr) })
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, ErrTicketUsed):
			t.Errorf("losing Redeem: %v, want ErrTicketUsed", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d redemptions of one ticket succeeded, want 1", wins)
	}
	if devs, _ := a.List(); len(devs) != 1 {
		t.Errorf("%d devices enrolled, want 1", len(devs))
	}
}

func TestRevoke(t *testing.T) {
	a, c, dir := newTestAuthority(t)
	k, is := enrol(t, a, "Lost Phone", "")
	_, keep := enrol(t, a, "Kept Phone", "")
	r, err := OpenPublic(dir, testOptions(c)) // the exchange's handle
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.VerifyClientCertificate(is.Chain); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(is.DeviceID); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(is.DeviceID); err != nil {
		t.Errorf("second Revoke: %v", err)
	}
	if !r.IsRevoked(is.DeviceID) {
		t.Error("IsRevoked false after Revoke")
	}
	if err := r.VerifyClientCertificate(is.Chain); !errors.Is(err, ErrDeviceRevoked) {
		t.Errorf("VerifyClientCertificate of a revoked device: %v, want ErrDeviceRevoked", err)
	}
	if err := r.Validator().ValidateCredential(mls.NewX509Credential(is.Chain), k.Public()); !errors.Is(err, ErrDeviceRevoked) {
		t.Errorf("Validator of a revoked device: %v, want ErrDeviceRevoked", err)
	}
	if _, err := a.Renew(is.DeviceID, makeCSR(t, k)); !errors.Is(err, ErrDeviceRevoked) {
		t.Errorf("Renew of a revoked device: %v, want ErrDeviceRevoked", err)
	}
	if err := r.VerifyClientCertificate(keep.Chain); err != nil {
		t.Errorf("other device refused after a revocation: %v", err)
	}
	var unknown DeviceID
	if err := a.Revoke(unknown); !errors.Is(err, ErrDeviceUnknown) {
		t.Errorf("Revoke of an unknown device: %v, want ErrDeviceUnknown", err)
	}
	if !r.IsRevoked(unknown) {
		t.Error("IsRevoked false for an unknown device")
	}
	d, _ := r.Device(is.DeviceID)
	if d.State != DeviceRevoked || !d.RevokedAt.Equal(c.Now()) {
		t.Errorf("device after revoke: %v at %v", d.State, d.RevokedAt)
	}
}

func TestRenew(t *testing.T) {
	a, c, _ := newTestAuthority(t)
	k, is := enrol(t, a, "Amina", "Minister")
	c.Advance(6 * 24 * time.Hour)
	re, err := a.Renew(is.DeviceID, makeCSR(t, k))
	if err != nil {
		t.Fatal(err)
	}
	if re.DeviceID != is.DeviceID || !re.NotAfter.After(is.NotAfter) {
		t.Errorf("renewed: %v until %v; was %v until %v", re.DeviceID, re.NotAfter, is.DeviceID, is.NotAfter)
	}
	cert, _ := x509.ParseCertificate(re.Certificate)
	if cert.Subject.CommonName != "Amina" || cert.Subject.OrganizationalUnit[0] != "Minister" {
		t.Errorf("renewed subject %v", cert.Subject)
	}
	c.Advance(2 * 24 * time.Hour) // the first certificate has expired
	if err := a.VerifyClientCertificate(is.Chain); !errors.Is(err, ErrCertificateExpired) {
		t.Errorf("first certificate after expiry: %v, want ErrCertificateExpired", err)
	}
	if err := a.VerifyClientCertificate(re.Chain); err != nil {
		t.Errorf("renewed certificate: %v", err)
	}
	if d, _ := a.Device(is.DeviceID); !d.Expires.Equal(re.NotAfter) {
		t.Errorf("device expiry %v, want %v", d.Expires, re.NotAfter)
	}
	var unknown DeviceID
	if _, err := a.Renew(unknown, makeCSR(t, k)); !errors.Is(err, ErrDeviceUnknown) {
		t.Errorf("Renew of an unknown device: %v, want ErrDeviceUnknown", err)
	}
}

func selfSignedDevice(t *testing.T, k *mls.SignaturePrivateKey, id DeviceID, notAfter time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Mallory"},
		NotBefore:             notAfter.Add(-30 * 24 * time.Hour),
		NotAfter:              notAfter,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{id.URI()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Signer().Public(), k.Signer())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestForeignCertificatesRefused(t *testing.T) {
	a, c, _ := newTestAuthority(t)
	other, _, _ := newTestAuthority(t)
	k, mine := enrol(t, a, "Amina", "")
	ok, theirs := enrol(t, other, "Amina", "")
	server, err := a.IssueServerCertificate("exchange.mahfooz", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	self := selfSignedDevice(t, k, mine.DeviceID, c.Now().Add(24*time.Hour))

	for _, tc := range []struct {
		name  string
		chain [][]byte
		want  error
	}{
		{"other authority", theirs.Chain, ErrCertificateUntrusted},
		{"other authority with our root appended", [][]byte{theirs.Certificate, a.RootCertificate().Raw}, ErrCertificateUntrusted},
		{"self-signed with an enrolled device ID", [][]byte{self}, ErrCertificateUntrusted},
		{"the root itself", [][]byte{a.RootCertificate().Raw}, ErrCertificateUntrusted},
		{"server certificate", server.Certificate, ErrCertificateUntrusted},
		{"no certificate", nil, ErrCertificateUntrusted},
		{"garbage", [][]byte{[]byte("junk")}, ErrCertificateUntrusted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := a.VerifyClientCertificate(tc.chain); !errors.Is(err, tc.want) {
				t.Errorf("VerifyClientCertificate: %v, want %v", err, tc.want)
			}
		})
	}
	v := a.Validator()
	for _, tc := range []struct {
		name string
		cred mls.Credential
		key  mls.SignaturePublicKey
	}{
		{"other authority", mls.NewX509Credential(theirs.Chain), ok.Public()},
		{"self-signed", mls.NewX509Credential([][]byte{self}), k.Public()},
		{"basic credential", mls.NewBasicCredential([]byte("Amina")), k.Public()},
		{"empty x509", mls.NewX509Credential(nil), k.Public()},
		{"key is not the signature key", mls.NewX509Credential(mine.Chain), newDeviceKey(t).Public()},
	} {
		t.Run("validator/"+tc.name, func(t *testing.T) {
			if err := v.ValidateCredential(tc.cred, tc.key); err == nil {
				t.Error("credential accepted")
			}
		})
	}
	c.Advance(DefaultCertValidity + time.Minute)
	if err := a.VerifyClientCertificate(mine.Chain); !errors.Is(err, ErrCertificateExpired) {
		t.Errorf("expired: %v, want ErrCertificateExpired", err)
	}
	if err := v.ValidateCredential(mls.NewX509Credential(mine.Chain), k.Public()); !errors.Is(err, ErrCertificateExpired) {
		t.Errorf("validator, expired: %v, want ErrCertificateExpired", err)
	}
}

func TestDirectory(t *testing.T) {
	a, _, _ := newTestAuthority(t)
	other, _, _ := newTestAuthority(t)
	_, amina1 := enrol(t, a, "Amina", "Minister")
	_, amina2 := enrol(t, a, "Amina", "Minister")
	_, bilal := enrol(t, a, "Bilal", "")
	_, lost := enrol(t, a, "Chen", "")
	if err := a.Revoke(lost.DeviceID); err != nil {
		t.Fatal(err)
	}
	d, err := a.Directory()
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyDirectory(a.RootCertificate(), d.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.Sequence != d.Sequence || got.Sequence == 0 || !got.Timestamp.Equal(d.Timestamp) {
		t.Errorf("sequence/timestamp %d %v, want %d %v", got.Sequence, got.Timestamp, d.Sequence, d.Timestamp)
	}
	if len(got.Officials) != 2 || got.Officials[0].Name != "Amina" || len(got.Officials[0].Devices) != 2 ||
		got.Officials[1].Name != "Bilal" || len(got.Officials[1].Devices) != 1 ||
		!bytes.Equal(got.Officials[1].Devices[0].Certificate, bilal.Certificate) {
		t.Errorf("officials %+v", got.Officials)
	}
	ids := map[DeviceID]bool{got.Officials[0].Devices[0].ID: true, got.Officials[0].Devices[1].ID: true}
	if !ids[amina1.DeviceID] || !ids[amina2.DeviceID] {
		t.Error("Amina's devices missing")
	}
	if len(got.Revoked) != 1 || got.Revoked[0] != lost.DeviceID {
		t.Errorf("revoked %v, want [%v]", got.Revoked, lost.DeviceID)
	}
	// Deterministic: the same state at the same time encodes the same bytes.
	again, _ := a.Directory()
	if !bytes.Equal(again.Raw, d.Raw) {
		t.Error("directory encoding is not deterministic")
	}
	for i := range d.Raw {
		bad := bytes.Clone(d.Raw)
		bad[i] ^= 0x01
		if _, err := VerifyDirectory(a.RootCertificate(), bad); err == nil {
			t.Fatalf("directory with byte %d flipped verified", i)
		}
	}
	if _, err := VerifyDirectory(a.RootCertificate(), append(bytes.Clone(d.Raw), 0)); err == nil {
		t.Error("directory with a trailing byte verified")
	}
	for n := range d.Raw {
		if _, err := VerifyDirectory(a.RootCertificate(), d.Raw[:n]); err == nil {
			t.Fatalf("directory truncated to %d bytes verified", n)
		}
	}
	if _, err := VerifyDirectory(other.RootCertificate(), d.Raw); !errors.Is(err, ErrDirectory) {
		t.Errorf("directory verified under another root: %v", err)
	}
	// A change to the devices moves the sequence number on.
	enrol(t, a, "Dara", "")
	d2, _ := a.Directory()
	if d2.Sequence <= d.Sequence {
		t.Errorf("sequence %d after a change, was %d", d2.Sequence, d.Sequence)
	}
}

// refMTH is an independent RFC 6962 §2.1 Merkle tree hash over raw entries.
func refMTH(entries [][]byte) []byte {
	switch len(entries) {
	case 0:
		h := sha256.Sum256(nil)
		return h[:]
	case 1:
		h := sha256.Sum256(append([]byte{0}, entries[0]...))
		return h[:]
	}
	k := 1
	for 2*k < len(entries) {
		k *= 2
	}
	h := sha256.Sum256(append(append([]byte{1}, refMTH(entries[:k])...), refMTH(entries[k:])...))
	return h[:]
}

func TestMerkleTreeHead(t *testing.T) {
	a, c, _ := newTestAuthority(t)
	h0, err := a.TreeHead()
	if err != nil {
		t.Fatal(err)
	}
	if h0.Size != 0 || !bytes.Equal(h0.RootHash[:], refMTH(nil)) {
		t.Errorf("empty head %d %x", h0.Size, h0.RootHash)
	}
	seen := map[[HashSize]byte]bool{h0.RootHash: true}
	k, is := enrol(t, a, "D0", "")
	for i := 1; i <= 7; i++ {
		switch {
		case i == 3:
			c.Advance(time.Hour)
			if _, err := a.Renew(is.DeviceID, makeCSR(t, k)); err != nil {
				t.Fatal(err)
			}
		case i == 5:
			if _, err := a.IssueServerCertificate("exchange.mahfooz"); err != nil {
				t.Fatal(err)
			}
		case i > 1:
			enrol(t, a, "D", "")
		}
		h, err := a.TreeHead()
		if err != nil {
			t.Fatal(err)
		}
		certs, err := a.IssuedCertificates()
		if err != nil {
			t.Fatal(err)
		}
		if h.Size != uint64(i) || len(certs) != i {
			t.Fatalf("after %d issuances: head size %d, %d certificates", i, h.Size, len(certs))
		}
		if !bytes.Equal(h.RootHash[:], refMTH(certs)) {
			t.Errorf("size %d: root %x, recomputed %x", i, h.RootHash, refMTH(certs))
		}
		if seen[h.RootHash] {
			t.Errorf("size %d: root hash repeated", i)
		}
		seen[h.RootHash] = true
		if err := VerifyTreeHead(a.RootCertificate(), &h); err != nil {
			t.Errorf("size %d: %v", i, err)
		}
		h.Size++
		if err := VerifyTreeHead(a.RootCertificate(), &h); err == nil {
			t.Errorf("size %d: altered head verified", i)
		}
	}
	// The log is append-only in the database too.
	if _, err := a.db.Exec(`DELETE FROM certificates`); err == nil {
		t.Error("deleting from the certificate log succeeded")
	}
}

func TestDatabaseHoldsNoSecrets(t *testing.T) {
	a, _, dir := newTestAuthority(t)
	var secrets [][]byte
	for i := range 5 {
		tk, err := a.Enroll("Official", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, bytes.Clone(tk.Secret[:]), []byte(b32.EncodeToString(tk.Secret[:])), []byte(tk.Text()))
		if i%2 == 0 {
			if _, err := a.Redeem(tk.Text(), makeCSR(t, newDeviceKey(t))); err != nil {
				t.Fatal(err)
			}
		}
	}
	secrets = append(secrets, testPassphrase)
	files, _ := filepath.Glob(filepath.Join(dir, "authority.db*"))
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range secrets {
			if bytes.Contains(data, s) {
				t.Errorf("%s contains secret %d", filepath.Base(f), i)
			}
		}
	}
	key, _ := os.ReadFile(filepath.Join(dir, rootKeyFile))
	if bytes.Contains(key, testPassphrase) || bytes.Contains(key, a.key.Seed()) {
		t.Error("root.key holds the passphrase or the key in clear")
	}
}

func TestQR(t *testing.T) {
	a, _, _ := newTestAuthority(t)
	tk, _ := a.Enroll("Amina", "", 0)
	png, err := TicketQRPNG(tk.Text(), 256)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Error("not a PNG")
	}
	term, err := TicketQRTerminal(tk.Text())
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix([]byte(term), []byte("\n")), []byte("\n"))
	if len(lines) < 10 || !bytes.Contains([]byte(term), []byte("▀")) {
		t.Errorf("terminal QR has %d lines", len(lines))
	}
}
