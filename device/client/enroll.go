package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"mahfooz/authority"
	"mahfooz/wire"
)

// ErrWrongExchange is returned by Enroll when the exchange's certificate does not
// chain to the root whose fingerprint the ticket carries: the device is talking to
// some other server and sends it nothing.
var ErrWrongExchange = errors.New("client: the exchange is not the ticket's authority's")

// Enroll redeems an enrolment ticket. It connects without a client certificate,
// accepts the exchange only if its certificate chains to a root whose fingerprint
// is the ticket's, sends the ticket with the certificate request csrDER, and
// checks the answer: a device certificate of that root for the CSR's key. It
// returns the device's ID, the chain (device certificate first, root last) and the
// root, which the device keeps as its trust anchor from then on. now is the
// clock certificates are checked against; nil is time.Now.
func Enroll(ctx context.Context, addr string, ticket authority.Ticket, csrDER []byte, dial func(ctx context.Context, network, addr string) (net.Conn, error), now func() time.Time) (authority.DeviceID, [][]byte, *x509.Certificate, error) {
	if now == nil {
		now = time.Now
	}
	var none authority.DeviceID
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return none, nil, nil, fmt.Errorf("client: certificate request: %v", err)
	}
	csrKey, ok := csr.PublicKey.(ed25519.PublicKey)
	if !ok {
		return none, nil, nil, errors.New("client: certificate request: not an Ed25519 key")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return none, nil, nil, fmt.Errorf("client: exchange address %q: %v", addr, err)
	}

	// The device knows only the root's fingerprint, so Go's verification (which
	// needs the root) is replaced by one that takes the root from the exchange's
	// own chain, checks its fingerprint, and then verifies as usual.
	var root *x509.Certificate
	tcfg := tlsConfig(now)
	tcfg.InsecureSkipVerify = true
	tcfg.VerifyConnection = func(cs tls.ConnectionState) error {
		r, err := verifyExchange(cs.PeerCertificates, ticket.Root, host, now())
		if err != nil {
			return err
		}
		root = r
		return nil
	}

	raw, err := dialer(dial)(ctx, "tcp", addr)
	if err != nil {
		return none, nil, nil, fmt.Errorf("client: connecting to the exchange: %w", err)
	}
	defer raw.Close()
	_, wc, _, err := handshake(ctx, raw, tcfg, DefaultSoftware)
	if err != nil {
		if errors.Is(err, ErrWrongExchange) {
			return none, nil, nil, ErrWrongExchange
		}
		return none, nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := wc.WriteMessage(firstRequestID, &wire.Enroll{Ticket: ticket.Text(), CSR: csrDER}); err != nil {
		return none, nil, nil, fmt.Errorf("client: sending enrolment: %w", err)
	}
	id, m, err := wc.ReadMessage()
	if err != nil {
		return none, nil, nil, fmt.Errorf("client: reading enrolment result: %w", err)
	}
	if id != firstRequestID {
		return none, nil, nil, fmt.Errorf("client: enrolment answered with request ID %d", id)
	}
	switch m := m.(type) {
	case *wire.Error:
		return none, nil, nil, m
	case *wire.EnrollResult:
		if err := checkIssued(m, root, csrKey, now()); err != nil {
			return none, nil, nil, err
		}
		return authority.DeviceID(m.DeviceID), m.Chain, root, nil
	default:
		return none, nil, nil, fmt.Errorf("client: enrolment answered with %s", m.Type())
	}
}

// verifyExchange checks the exchange's chain (leaf first) against the root it
// carries, which must have the ticket's fingerprint, and returns that root.
func verifyExchange(chain []*x509.Certificate, fp authority.Fingerprint, host string, now time.Time) (*x509.Certificate, error) {
	if len(chain) < 2 {
		return nil, fmt.Errorf("%w: no root in its chain", ErrWrongExchange)
	}
	root := chain[len(chain)-1]
	if authority.FingerprintOf(root) != fp {
		return nil, fmt.Errorf("%w: root fingerprint differs", ErrWrongExchange)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range chain[1 : len(chain)-1] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		DNSName:       host,
		CurrentTime:   now,
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWrongExchange, err)
	}
	return root, nil
}

// checkIssued checks an EnrollResult: the chain ends in the root the exchange
// proved, and its first certificate is a device certificate of that root for the
// device's own key.
func checkIssued(r *wire.EnrollResult, root *x509.Certificate, key ed25519.PublicKey, now time.Time) error {
	if len(r.Chain) < 2 || !bytes.Equal(r.Chain[len(r.Chain)-1], root.Raw) {
		return errors.New("client: enrolment result: chain does not end in the authority root")
	}
	cert, id, err := authority.VerifyDeviceCertificate(root, r.Chain[0], now)
	if err != nil {
		return fmt.Errorf("client: enrolment result: %w", err)
	}
	if id != authority.DeviceID(r.DeviceID) {
		return errors.New("client: enrolment result: certificate names another device")
	}
	if pub, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(key) {
		return errors.New("client: enrolment result: certificate is not for this device's key")
	}
	return nil
}
