package exchange

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"mahfooz/authority"
	"mahfooz/exchange/store"
	"mahfooz/exchange/store/sqlite"
	"mahfooz/mls"
	"mahfooz/wire"
)

// testPassphrase opens the authorities of these tests.
var testPassphrase = []byte("test passphrase")

// storeEnv is an authority and an exchange with a SQLite store, serving on
// 127.0.0.1, with an injected clock and a fast expiry sweep.
type storeEnv struct {
	*env
	dir    string // the authority's state
	dbPath string
	store  *sqlite.Store
}

func newStoreEnv(t testing.TB, configure func(*Config)) *storeEnv {
	t.Helper()
	clock := &testClock{t: time.Now().UTC().Truncate(time.Second)}
	dir := filepath.Join(t.TempDir(), "authority")
	a, err := authority.Init(dir, testPassphrase, authority.Options{Now: clock.Now, KDF: testKDF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	cert, err := a.IssueServerCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	e := &storeEnv{env: &env{clock: clock, a: a, logs: new(syncBuffer), roots: x509.NewCertPool()}, dir: dir}
	e.roots.AddCert(a.RootCertificate())
	e.dbPath = filepath.Join(t.TempDir(), sqlite.FileName)
	e.store, err = sqlite.Open(e.dbPath, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Registry:       a.Registry,
		Authority:      a,
		ServerCert:     cert,
		Store:          e.store,
		Logger:         slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:            clock.Now,
		RevocationPoll: 100 * time.Millisecond,
		ExpirySweep:    20 * time.Millisecond,
	}
	if configure != nil {
		configure(&cfg)
	}
	e.srv, err = NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: the store closes after the server.
	t.Cleanup(func() {
		if err := e.store.Close(); err != nil {
			t.Errorf("closing the store: %v", err)
		}
	})
	e.serve(t)
	return e
}

// mlsDevice is an enrolled device with an MLS signature key.
type mlsDevice struct {
	name  string
	key   *mls.SignaturePrivateKey
	id    authority.DeviceID
	chain [][]byte
	cert  *tls.Certificate
}

func (d mlsDevice) wid() wire.DeviceID { return wire.DeviceID(d.id) }

func csrFor(t testing.TB, k *mls.SignaturePrivateKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}, k.Signer())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// enrolMLS enrols a device of the named official directly with the authority.
func enrolMLS(t testing.TB, a *authority.Authority, name string) mlsDevice {
	t.Helper()
	tk, err := a.Enroll(name, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	k, err := mls.GenerateSignatureKey(mls.DefaultCipherSuite, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is, err := a.Redeem(tk.Text(), csrFor(t, k))
	if err != nil {
		t.Fatal(err)
	}
	return mlsDevice{name: name, key: k, id: is.DeviceID, chain: is.Chain,
		cert: &tls.Certificate{Certificate: is.Chain, PrivateKey: k.Signer()}}
}

// keyPackage makes an MLSMessage(KeyPackage) for d.
func keyPackage(t testing.TB, d mlsDevice, now time.Time) []byte {
	t.Helper()
	kp, _, err := mls.NewKeyPackage(mls.DefaultCipherSuite, mls.NewX509Credential(d.chain), d.key, mls.KeyPackageOptions{}, now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return mls.NewKeyPackageMessage(kp).Bytes()
}

// mlsPayload builds an MLSMessage whose header the exchange reads: a
// PrivateMessage of the given content type (1 application, 3 commit), followed
// by bytes standing for the encrypted rest.
func mlsPayload(group wire.GroupID, epoch uint64, contentType byte, rest string) []byte {
	b := []byte{0, 1, 0, 2, byte(len(group))}
	b = append(b, group...)
	b = append(b, byte(epoch>>56), byte(epoch>>48), byte(epoch>>40), byte(epoch>>32), byte(epoch>>24), byte(epoch>>16), byte(epoch>>8), byte(epoch))
	b = append(b, contentType)
	return append(b, rest...)
}

// appMessage is a Send of an application message in group g at epoch 1.
func appMessage(n int, g wire.GroupID, to ...mlsDevice) *wire.Send {
	return &wire.Send{
		MessageID:  wire.MessageID{0: 0xaa, 12: byte(n >> 24), 13: byte(n >> 16), 14: byte(n >> 8), 15: byte(n)},
		GroupID:    g,
		Epoch:      1,
		Recipients: ids(to...),
		Payload:    mlsPayload(g, 1, wire.ContentTypeApplication, fmt.Sprintf("ciphertext %d", n)),
	}
}

// commitMessage is a Send of a commit in group g at epoch.
func commitMessage(n int, g wire.GroupID, epoch uint64, to ...mlsDevice) *wire.Send {
	m := appMessage(n, g, to...)
	m.Epoch, m.IsCommit = epoch, true
	m.Payload = mlsPayload(g, epoch, wire.ContentTypeCommit, fmt.Sprintf("commit %d", n))
	return m
}

func ids(ds ...mlsDevice) []wire.DeviceID {
	out := make([]wire.DeviceID, len(ds))
	for i, d := range ds {
		out[i] = d.wid()
	}
	return wire.SortDeviceIDs(out)
}

// session is a device's connection with a reading goroutine: answers go to the
// request that waits for them, pushes to a channel, in the order they arrived.
type session struct {
	t      testing.TB
	tc     *tls.Conn
	wc     *wire.Conn
	pushes chan wire.Message
	dirUp  chan struct{} // one per DirectoryUpdated, kept apart from other pushes
	done   chan struct{}

	mu      sync.Mutex
	nextID  uint32
	waiting map[uint32]chan wire.Message
	err     error // why the connection ended
}

const waitTime = 10 * time.Second

// connect dials as d, completes Hello/Welcome, and starts reading.
func (e *env) session(t testing.TB, d mlsDevice) *session {
	t.Helper()
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: e.roots, ServerName: "127.0.0.1",
		Time: e.clock.Now, Certificates: []tls.Certificate{*d.cert}})
	tc.SetDeadline(time.Now().Add(waitTime))
	s := &session{t: t, tc: tc, wc: wire.NewConn(tc), pushes: make(chan wire.Message, 100000),
		dirUp: make(chan struct{}, 1000), done: make(chan struct{}), nextID: 1, waiting: make(map[uint32]chan wire.Message)}
	t.Cleanup(s.close)
	if _, err := s.wc.ClientHandshake(&wire.Hello{Versions: []uint16{wire.ProtocolVersion1}, Software: "mahfooz-test"}); err != nil {
		t.Fatalf("%s refused: %v", d.name, err)
	}
	tc.SetDeadline(time.Time{})
	go s.read()
	return s
}

func (s *session) close() { s.tc.Close() }

func (s *session) read() {
	defer close(s.done)
	for {
		id, m, err := s.wc.ReadMessage()
		if err != nil {
			s.mu.Lock()
			s.err = err
			for _, ch := range s.waiting {
				close(ch)
			}
			s.waiting = nil
			s.mu.Unlock()
			return
		}
		if id == 0 {
			if m.Type() == wire.TypeDirectoryUpdated {
				s.dirUp <- struct{}{}
			} else {
				s.pushes <- m
			}
			continue
		}
		s.mu.Lock()
		ch := s.waiting[id]
		delete(s.waiting, id)
		s.mu.Unlock()
		if ch == nil {
			s.pushes <- m // an answer nobody waits for shows up as a surprise
			continue
		}
		ch <- m
	}
}

// start sends m as a request and returns where its answer will arrive.
func (s *session) start(m wire.Message) <-chan wire.Message {
	s.t.Helper()
	ch := make(chan wire.Message, 1)
	s.mu.Lock()
	if s.waiting == nil {
		s.mu.Unlock()
		close(ch)
		return ch
	}
	s.nextID++
	id := s.nextID
	s.waiting[id] = ch
	s.mu.Unlock()
	if err := s.wc.WriteMessage(id, m); err != nil {
		s.t.Errorf("writing %s: %v", m.Type(), err)
	}
	return ch
}

// call sends m and waits for its answer.
func (s *session) call(m wire.Message) wire.Message {
	s.t.Helper()
	select {
	case a, ok := <-s.start(m):
		if !ok {
			s.t.Fatalf("connection ended before the answer to %s: %v", m.Type(), s.connErr())
		}
		return a
	case <-time.After(waitTime):
		s.t.Fatalf("no answer to %s", m.Type())
	}
	return nil
}

func (s *session) connErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// sync is a Ping round trip: every push queued before the Pong has arrived once
// it returns.
func (s *session) sync() {
	s.t.Helper()
	if _, ok := s.call(&wire.Ping{}).(*wire.Pong); !ok {
		s.t.Fatal("Ping not answered with Pong")
	}
}

// send sends m and returns the SendResult, failing on anything else.
func (s *session) send(m *wire.Send) *wire.SendResult {
	s.t.Helper()
	a := s.call(m)
	r, ok := a.(*wire.SendResult)
	if !ok {
		s.t.Fatalf("Send answered with %s", describe(a))
	}
	return r
}

// accepted sends m and returns its sequence, failing unless it was accepted.
func (s *session) accepted(m *wire.Send) uint64 {
	s.t.Helper()
	r := s.send(m)
	if r.Status != wire.SendAccepted || r.Sequence == 0 {
		s.t.Fatalf("Send: %+v, want accepted", r)
	}
	return r.Sequence
}

// ok sends m and fails unless it is answered with OK.
func (s *session) ok(m wire.Message) {
	s.t.Helper()
	if a := s.call(m); a.Type() != wire.TypeOK {
		s.t.Fatalf("%s answered with %s, want OK", m.Type(), describe(a))
	}
}

// next returns the next push, failing after waitTime.
func (s *session) next() wire.Message {
	s.t.Helper()
	select {
	case m := <-s.pushes:
		return m
	case <-time.After(waitTime):
		s.t.Fatal("no push arrived")
	}
	return nil
}

// deliver returns the next push, failing unless it is a Deliver.
func (s *session) deliver() *wire.Deliver {
	s.t.Helper()
	m := s.next()
	d, ok := m.(*wire.Deliver)
	if !ok {
		s.t.Fatalf("push %s, want Deliver", describe(m))
	}
	return d
}

// drain returns the pushes that have arrived so far.
func (s *session) drain() []wire.Message {
	var out []wire.Message
	for {
		select {
		case m := <-s.pushes:
			out = append(out, m)
		default:
			return out
		}
	}
}

// quiet syncs and fails if any push arrived.
func (s *session) quiet(what string) {
	s.t.Helper()
	s.sync()
	if ms := s.drain(); len(ms) > 0 {
		s.t.Errorf("%s: unexpected pushes %v", what, types(ms))
	}
}

func types(ms []wire.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Type().String()
	}
	return out
}

// waitFor polls cond until it holds or waitTime passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTime)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantErr fails unless m is Error{code}.
func wantErr(t testing.TB, m wire.Message, code wire.Code) {
	t.Helper()
	e, ok := m.(*wire.Error)
	if !ok || e.Code != code {
		t.Fatalf("got %s, want Error{%s}", describe(m), code)
	}
}

// describe names a message briefly, without its payload.
func describe(m wire.Message) string {
	switch m := m.(type) {
	case nil:
		return "nothing"
	case *wire.Error:
		return fmt.Sprintf("Error{%s, %q}", m.Code, m.Message)
	case *wire.SendResult:
		if m != nil {
			return fmt.Sprintf("%+v", *m)
		}
	}
	return m.Type().String()
}

// dbHolds reports which of the store's files contain needle, after a checkpoint.
func (e *storeEnv) dbHolds(t testing.TB, needle []byte) []string {
	t.Helper()
	if err := e.store.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	var in []string
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(e.dbPath + suffix)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(b, needle) {
			in = append(in, filepath.Base(e.dbPath+suffix))
		}
	}
	return in
}

func (e *storeEnv) stats(t testing.TB) store.Stats {
	t.Helper()
	st, err := e.store.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st
}
