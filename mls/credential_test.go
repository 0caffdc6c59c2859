package mls

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

// x509Authority is a test certificate authority that issues MLS x509 credentials
// binding a name to an MLS signature key, and validates them as an application
// would: the chain must lead to the root, and the certificate's key must be the
// leaf's signature key.
type x509Authority struct {
	root    *x509.Certificate
	rootKey ed25519.PrivateKey
}

func newX509Authority(t *testing.T) *x509Authority {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test authority"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &x509Authority{root: root, rootKey: key}
}

func (a *x509Authority) issue(t *testing.T, name string, sig *SignaturePrivateKey) Credential {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.root, sig.Signer().Public(), a.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return NewX509Credential([][]byte{der})
}

func (a *x509Authority) ValidateCredential(c Credential, key SignaturePublicKey) error {
	if c.Type != CredentialTypeX509 || len(c.Certificates) == 0 {
		return errors.New("not an x509 credential")
	}
	cert, err := x509.ParseCertificate(c.Certificates[0])
	if err != nil {
		return err
	}
	if err := cert.CheckSignatureFrom(a.root); err != nil {
		return err
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok || !bytes.Equal(pub, key) {
		return errors.New("certificate is for another key")
	}
	return nil
}

// TestX509Credentials runs a group whose members carry certificates from one
// authority, and shows that a member certified by another authority is refused.
func TestX509Credentials(t *testing.T) {
	cs := DefaultCipherSuite
	ca := newX509Authority(t)
	cfg := Config{Validator: ca}
	member := func(name string, issuer *x509Authority) *testMember {
		m := newTestMember(t, cs, name)
		m.cred = issuer.issue(t, name, m.sig)
		m.newKeyPackage(t)
		return m
	}
	alice, bob := member("alice", ca), member("bob", ca)
	g, err := NewGroup(cs, GroupID("certified"), alice.cred, alice.sig, CreateOptions{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := g.Commit(CommitOptions{Proposals: []*Proposal{addProposal(bob)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	bg, err := JoinGroup(wire(t, res.Welcome).Welcome, bob.kp, bob.priv, JoinOptions{}, cfg)
	if err != nil {
		t.Fatalf("bob joining: %v", err)
	}
	if !bytes.Equal(bg.EpochAuthenticator(), g.EpochAuthenticator()) {
		t.Fatal("members disagree")
	}
	m, _ := bg.Member(0)
	if m.Credential.Type != CredentialTypeX509 {
		t.Fatal("roster lost the certificate")
	}
	// A device certified by a rogue authority is refused by every member.
	mallory := member("mallory", newX509Authority(t))
	if _, err := g.Commit(CommitOptions{Proposals: []*Proposal{addProposal(mallory)}}); !errors.Is(err, ErrCredentialRejected) {
		t.Fatalf("rogue certificate: %v", err)
	}
	// And a Welcome into a group holding such a member is refused by the joiner.
	rogueCfg := Config{Validator: AcceptAllCredentials}
	rg, err := NewGroup(cs, GroupID("rogue"), mallory.cred, mallory.sig, CreateOptions{}, rogueCfg)
	if err != nil {
		t.Fatal(err)
	}
	carol := member("carol", ca)
	res, err = rg.Commit(CommitOptions{Proposals: []*Proposal{addProposal(carol)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := JoinGroup(wire(t, res.Welcome).Welcome, carol.kp, carol.priv, JoinOptions{}, cfg); !errors.Is(err, ErrCredentialRejected) {
		t.Fatalf("joining a group with a rogue member: %v", err)
	}
}
