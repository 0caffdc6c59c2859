package device

import (
	"bytes"
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mahfooz/authority"
	"mahfooz/device/vault"
	"mahfooz/exchange"
	"mahfooz/exchange/relay"
	"mahfooz/exchange/store/sqlite"
	"mahfooz/mls"
	"mahfooz/wire"

	"github.com/pion/rtp"
)

// testClock is the wall clock plus an offset a test can move forward, shared by
// the authority, the exchange and the devices.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// logBuffer collects every log line of a test, to check none carries content.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testEnv is an authority and an exchange serving on 127.0.0.1.
type testEnv struct {
	t     testing.TB
	clock *testClock
	auth  *authority.Authority
	srv   *exchange.Server
	addr  string
	logs  *logBuffer
	relay *relay.Relay
	tap   *tapped
}

// tapped records every media packet the relay forwards.
type tapped struct {
	mu      sync.Mutex
	packets []tappedPacket
}

type tappedPacket struct {
	call    wire.CallID
	from    wire.DeviceID
	ts      uint32
	payload []byte
}

func (tp *tapped) all() []tappedPacket {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return slices.Clone(tp.packets)
}

const testPassphrase = "correct horse battery staple"

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	e := &testEnv{t: t, clock: &testClock{}, logs: new(logBuffer)}
	a, err := authority.Init(filepath.Join(t.TempDir(), "authority"), []byte("authority passphrase"),
		authority.Options{Now: e.clock.Now, KDF: authority.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	e.auth = a
	cert, err := a.IssueServerCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "exchange.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.tap = new(tapped)
	e.relay, err = relay.New(relay.Config{
		Conn:   udp,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Tap: func(call wire.CallID, from wire.DeviceID, p *rtp.Packet) {
			e.tap.mu.Lock()
			e.tap.packets = append(e.tap.packets, tappedPacket{call, from, p.Timestamp, slices.Clone(p.Payload)})
			e.tap.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.relay.Close() })
	e.srv, err = exchange.NewServer(exchange.Config{
		Media:           e.relay,
		Registry:        a.Registry,
		Authority:       a,
		ServerCert:      cert,
		Store:           st,
		Logger:          slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:             e.clock.Now,
		EnrollRateLimit: exchange.Rate{Events: 1000, Per: time.Minute},
		DeviceRateLimit: exchange.Rate{Events: 100000, Per: time.Minute},
		RevocationPoll:  50 * time.Millisecond,
		ExpirySweep:     100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		e.srv.Close()
		<-served
		st.Close()
	})
	return e
}

// testDevice is one enrolled device of an official.
type testDevice struct {
	*Device
	env  *testEnv
	name string
	cfg  Config
}

func (e *testEnv) config(home string) Config {
	return Config{
		Home:       home,
		Passphrase: []byte(testPassphrase),
		KDF:        vault.TestKDF(),
		Now:        e.clock.Now,
		Logger:     slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// enroll enrols a new device for name with a fresh ticket.
func (e *testEnv) enroll(name string) *testDevice {
	e.t.Helper()
	ticket, err := e.auth.Enroll(name, "", 0)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := e.config(filepath.Join(e.t.TempDir(), name))
	dv, err := Enroll(ctxT(e.t), cfg, e.addr, ticket.Text())
	if err != nil {
		e.t.Fatalf("enrolling %s: %v", name, err)
	}
	td := &testDevice{Device: dv, env: e, name: name, cfg: cfg}
	e.t.Cleanup(func() { td.Close() })
	return td
}

// reopen closes the device and opens its vault again.
func (d *testDevice) reopen() {
	d.env.t.Helper()
	d.Close()
	dv, err := Open(d.cfg)
	if err != nil {
		d.env.t.Fatalf("reopening %s: %v", d.name, err)
	}
	d.Device = dv
	d.env.t.Cleanup(func() { dv.Close() })
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (d *testDevice) sync() {
	d.env.t.Helper()
	if err := d.Sync(ctxT(d.env.t)); err != nil {
		d.env.t.Fatalf("%s: Sync: %v", d.name, err)
	}
}

func (d *testDevice) send(to ConversationRef, text string) Message {
	d.env.t.Helper()
	m, err := d.SendText(ctxT(d.env.t), to, text)
	if err != nil {
		d.env.t.Fatalf("%s: SendText: %v", d.name, err)
	}
	if m.Status != StatusSent {
		d.env.t.Fatalf("%s: message status %s, want sent", d.name, m.Status)
	}
	return m
}

// texts returns the text messages of a conversation as "from: text".
func (d *testDevice) texts(ref ConversationRef) []string {
	d.env.t.Helper()
	ms, err := d.Messages(ref)
	if err != nil {
		d.env.t.Fatalf("%s: Messages: %v", d.name, err)
	}
	var out []string
	for _, m := range ms {
		if m.Kind == MessageText {
			out = append(out, m.From.Name+": "+m.Text)
		}
	}
	return out
}

// textsNoFail is texts for polling: nil while the conversation is not there.
func (d *testDevice) textsNoFail(ref ConversationRef) []string {
	ms, err := d.Messages(ref)
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range ms {
		if m.Kind == MessageText {
			out = append(out, m.From.Name+": "+m.Text)
		}
	}
	return out
}

// notes returns the roster messages of a conversation.
func (d *testDevice) notes(ref ConversationRef) []string {
	d.env.t.Helper()
	ms, err := d.Messages(ref)
	if err != nil {
		d.env.t.Fatalf("%s: Messages: %v", d.name, err)
	}
	var out []string
	for _, m := range ms {
		if m.Kind == MessageRoster {
			out = append(out, m.Text)
		}
	}
	return out
}

// setHooks installs test hooks under the device's lock.
func (d *testDevice) setHooks(send func(*wire.Send), ack func() bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.testSend, d.testAck = send, ack
}

// group returns the MLS state of a group as stored.
func (d *testDevice) group(gid []byte) *mls.Group {
	d.env.t.Helper()
	var g *mls.Group
	err := d.v.View(func(tx *vault.Tx) (err error) { g, err = d.loadGroup(tx, gid); return err })
	if err != nil {
		d.env.t.Fatalf("%s: group state: %v", d.name, err)
	}
	return g
}

// groupIDs returns the IDs of a conversation's groups.
func (d *testDevice) groupIDs(ref ConversationRef) [][]byte {
	d.env.t.Helper()
	var recs []*groupRec
	err := d.v.View(func(tx *vault.Tx) (err error) { recs, err = d.resolve(tx, ref); return err })
	if err != nil {
		d.env.t.Fatalf("%s: resolve: %v", d.name, err)
	}
	var out [][]byte
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

// rosterDevices lists the device IDs in a group's MLS state, sorted.
func rosterDevices(g *mls.Group) []string {
	var out []string
	for _, m := range rosterOf(g) {
		out = append(out, authority.DeviceID(m.Device).String())
	}
	slices.Sort(out)
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gate holds the first commit of each of n devices until all n have built theirs.
type gate struct {
	arrived sync.WaitGroup
}

func newGate(n int) *gate {
	g := &gate{}
	g.arrived.Add(n)
	return g
}

// commit returns a send hook for one device.
func (g *gate) commit() func(*wire.Send) {
	var once sync.Once
	return func(s *wire.Send) {
		if !s.IsCommit {
			return
		}
		once.Do(func() {
			g.arrived.Done()
			done := make(chan struct{})
			go func() { g.arrived.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
			}
		})
	}
}

func equalStrings(a, b []string) bool { return slices.Equal(a, b) }

func containsSubstring(list []string, sub string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.Contains(s, sub) })
}

// checkNoPlaintext fails if any log line carries one of the texts.
func (e *testEnv) checkNoPlaintext(texts ...string) {
	e.t.Helper()
	logs := e.logs.String()
	for _, s := range texts {
		if strings.Contains(logs, s) {
			e.t.Errorf("the logs contain message content %q", s)
		}
	}
}

func deviceID(d *testDevice) wire.DeviceID { return wire.DeviceID(d.self.ID) }

func parseCert(der []byte) (*x509.Certificate, error) { return x509.ParseCertificate(der) }
