package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mahfooz/authority"
	"mahfooz/device"
	"mahfooz/device/vault"
	"mahfooz/exchange"
	"mahfooz/exchange/relay"
	"mahfooz/exchange/store/sqlite"
	"mahfooz/wire"

	"github.com/pion/rtp"
)

func init() {
	commands["demo"] = command{
		summary: "run the whole system on its embedded defaults and show what happens",
		run:     runDemo,
	}
}

func runDemo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	keep := fs.Bool("keep", false, "keep the temporary directory and print its path")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, `usage: mahfooz demo [--keep]

Starts an authority and an exchange (embedded store) in a temporary directory,
enrols three officials' devices, holds a one-to-one and a group conversation,
takes one device offline and back, revokes one, and prints what happened and
what the exchange stored. Everything runs on 127.0.0.1 and is deleted at the end.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "mahfooz-demo-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Fprintf(os.Stderr, "demo: state kept in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return demo(ctx, os.Stdout, dir)
}

// demoOfficial is one official's device in the demo.
type demoOfficial struct {
	name, role string
	cfg        device.Config
	dv         *device.Device
	cancel     context.CancelFunc
	ran        chan error
}

// lockedBuffer collects output written from several goroutines, such as the
// exchange's log lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { return string(l.bytes()) }

func (l *lockedBuffer) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// demoRun is the demo's state, so that its steps read as a story.
type demoRun struct {
	out   io.Writer
	dir   string
	a     *authority.Authority
	srv   *exchange.Server
	relay *relay.Relay
	st    *sqlite.Store
	logs  lockedBuffer // the exchange's log, scanned at the end
	addr  string
	said  []string // every plaintext sent, to look for in the exchange's files
	step  int

	relayed, relayedBytes atomic.Int64 // media packets the relay forwarded
	amina                 *demoOfficial
	bilal                 *demoOfficial
	chen                  *demoOfficial
	direct                device.ConversationRef
	group                 device.ConversationRef
}

func (r *demoRun) section(title string) {
	r.step++
	fmt.Fprintf(r.out, "\n%d. %s\n", r.step, title)
}

func (r *demoRun) printf(format string, args ...any) {
	fmt.Fprintf(r.out, "   "+format+"\n", args...)
}

// demo runs the story in dir and prints it to out.
func demo(ctx context.Context, out io.Writer, dir string) error {
	r := &demoRun{out: out, dir: dir}
	defer r.close()
	for _, step := range []func(context.Context) error{
		r.start, r.enrol, r.talkDirect, r.talkGroup, r.call, r.offline, r.revoke, r.inspect,
	} {
		if err := step(ctx); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	return nil
}

func (r *demoRun) close() {
	for _, o := range []*demoOfficial{r.amina, r.bilal, r.chen} {
		if o != nil {
			o.stop()
			if o.dv != nil {
				o.dv.Close()
			}
		}
	}
	if r.srv != nil {
		r.srv.Close()
	}
	if r.relay != nil {
		r.relay.Close()
	}
	if r.st != nil {
		r.st.Close()
	}
	if r.a != nil {
		r.a.Close()
	}
}

func (r *demoRun) start(ctx context.Context) error {
	r.section("The authority and the exchange")
	var err error
	r.a, err = authority.Init(filepath.Join(r.dir, "authority"), []byte("demo authority passphrase"), authority.Options{})
	if err != nil {
		return err
	}
	r.printf("authority created; root fingerprint %s", r.a.Fingerprint())
	cert, err := r.a.IssueServerCertificate("127.0.0.1", "localhost")
	if err != nil {
		return err
	}
	home := filepath.Join(r.dir, "exchange")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	r.st, err = sqlite.Open(filepath.Join(home, sqlite.FileName), sqlite.Options{})
	if err != nil {
		return err
	}
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	r.relay, err = relay.New(relay.Config{
		Conn:   udp,
		Logger: slog.New(slog.NewTextHandler(&r.logs, nil)),
		Tap: func(_ wire.CallID, _ wire.DeviceID, p *rtp.Packet) {
			r.relayed.Add(1)
			r.relayedBytes.Add(int64(len(p.Payload)))
		},
	})
	if err != nil {
		return err
	}
	r.srv, err = exchange.NewServer(exchange.Config{
		Registry:   r.a.Registry,
		Authority:  r.a,
		ServerCert: cert,
		Store:      r.st,
		Media:      r.relay,
		Logger:     slog.New(slog.NewTextHandler(&r.logs, nil)),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	r.addr = ln.Addr().String()
	go r.srv.Serve(ln)
	r.printf("exchange listening on %s: TLS 1.3 with X25519MLKEM768, device certificates only", r.addr)
	r.printf("its store is one SQLite file: %s", filepath.Join(home, sqlite.FileName))
	r.printf("its call relay takes media on udp %s, from admitted devices only", r.relay.Addr())
	return nil
}

func (r *demoRun) enrol(ctx context.Context) error {
	r.section("Enrolment: a one-time ticket each; keys are made on the device and never leave it")
	var err error
	if r.amina, err = r.enrolOne(ctx, "Amina Yusuf", "Minister"); err != nil {
		return err
	}
	if r.bilal, err = r.enrolOne(ctx, "Bilal Khan", "Permanent Secretary"); err != nil {
		return err
	}
	if r.chen, err = r.enrolOne(ctx, "Chen Li", "Adviser"); err != nil {
		return err
	}
	r.direct = device.ConversationRef{To: r.bilal.name}
	r.group = device.ConversationRef{Group: "Cabinet"}
	return nil
}

func (r *demoRun) enrolOne(ctx context.Context, name, role string) (*demoOfficial, error) {
	t, err := r.a.Enroll(name, role, time.Hour)
	if err != nil {
		return nil, err
	}
	o := &demoOfficial{name: name, role: role, cfg: device.Config{
		Home:       filepath.Join(r.dir, "devices", strings.Fields(name)[0]),
		Passphrase: []byte("passphrase of " + name),
		KDF:        vault.DefaultKDF(),
	}}
	if o.dv, err = device.Enroll(ctx, o.cfg, r.addr, t.Text()); err != nil {
		return nil, fmt.Errorf("enrolling %s: %w", name, err)
	}
	r.printf("%-12s (%s): device %s…, store encrypted with Argon2id", name, role, o.dv.Self().DeviceID[:12])
	return o, nil
}

// send sends text and remembers it for the scan of the exchange's files.
func (r *demoRun) send(ctx context.Context, from *demoOfficial, to device.ConversationRef, text string) error {
	r.said = append(r.said, text)
	m, err := from.dv.SendText(ctx, to, text)
	if err != nil {
		return fmt.Errorf("%s sending: %w", from.name, err)
	}
	r.printf("%s wrote %q (%s)", from.name, text, m.Status)
	return nil
}

// show syncs a device and prints the messages of a conversation it has not shown.
func (r *demoRun) show(ctx context.Context, o *demoOfficial, seen map[string]bool) error {
	if err := o.dv.Sync(ctx); err != nil {
		return fmt.Errorf("%s syncing: %w", o.name, err)
	}
	ms, err := o.dv.Unread()
	if err != nil {
		return err
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
		if m.Outgoing && m.Kind == device.MessageText {
			continue
		}
		switch m.Kind {
		case device.MessageText:
			r.printf("  %s reads from %s: %q", o.name, m.From.Name, m.Text)
		default:
			r.printf("  %s sees: %s", o.name, m.Text)
		}
	}
	return o.dv.MarkRead(ids...)
}

func (r *demoRun) talkDirect(ctx context.Context) error {
	r.section("One to one (an MLS group of two on the post-quantum suite)")
	if err := r.send(ctx, r.amina, r.direct, "Bilal, the budget figures are final."); err != nil {
		return err
	}
	if err := r.show(ctx, r.bilal, nil); err != nil {
		return err
	}
	if err := r.send(ctx, r.bilal, device.ConversationRef{To: r.amina.name}, "Received. I will brief the committee."); err != nil {
		return err
	}
	return r.show(ctx, r.amina, nil)
}

func (r *demoRun) talkGroup(ctx context.Context) error {
	r.section("A group: every member sees every change of who is in it")
	if _, err := r.amina.dv.CreateGroup(ctx, "Cabinet", []string{r.bilal.name, r.chen.name}); err != nil {
		return err
	}
	r.printf("Amina created the group %q with Bilal and Chen", "Cabinet")
	for _, o := range []*demoOfficial{r.bilal, r.chen} {
		if err := r.show(ctx, o, nil); err != nil {
			return err
		}
	}
	if err := r.send(ctx, r.chen, r.group, "The security review is on Thursday."); err != nil {
		return err
	}
	for _, o := range []*demoOfficial{r.amina, r.bilal} {
		if err := r.show(ctx, o, nil); err != nil {
			return err
		}
	}
	return nil
}

func (r *demoRun) offline(ctx context.Context) error {
	r.section("Offline delivery: the exchange holds ciphertext until the device acknowledges it")
	r.chen.dv.Close()
	r.chen.dv = nil
	r.printf("Chen's device goes offline")
	if err := r.send(ctx, r.amina, r.group, "Thursday is moved to 10:00."); err != nil {
		return err
	}
	if err := r.send(ctx, r.bilal, r.group, "Noted, the room is booked."); err != nil {
		return err
	}
	if s, err := r.st.Stats(ctx); err == nil {
		r.printf("the exchange now holds %d undelivered mailbox entries (ciphertext)", s.MailboxEntries)
	}
	var err error
	if r.chen.dv, err = device.Open(r.chen.cfg); err != nil {
		return err
	}
	r.printf("Chen's device comes back (its store opened with the passphrase)")
	if err := r.show(ctx, r.chen, nil); err != nil {
		return err
	}
	if s, err := r.st.Stats(ctx); err == nil {
		r.printf("after Chen acknowledged: %d undelivered mailbox entries", s.MailboxEntries)
	}
	return r.show(ctx, r.amina, nil)
}

func (o *demoOfficial) run() {
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel, o.ran = cancel, make(chan error, 1)
	dv := o.dv
	go func() { o.ran <- dv.Run(ctx) }()
}

func (o *demoOfficial) stop() {
	if o.cancel != nil {
		o.cancel()
		<-o.ran
		o.cancel = nil
	}
}

func (r *demoRun) revoke(ctx context.Context) error {
	r.section("Revocation: Chen's device is reported lost")
	events, unsubscribe := r.chen.dv.Subscribe()
	defer unsubscribe()
	r.chen.run()
	for _, o := range []*demoOfficial{r.amina, r.bilal} {
		o.run()
	}
	// Wait until Chen's device is connected, so that it hears of its revocation.
	for connected := false; !connected; {
		select {
		case e := <-events:
			connected = e.Kind == device.EventConnection && e.Connected
		case <-ctx.Done():
			return errors.New("Chen's device did not connect")
		}
	}
	id := mustDeviceID(r.chen.dv.Self().DeviceID)
	start := time.Now()
	if err := r.srv.Revoke(id); err != nil {
		return err
	}
	r.printf("the authority revoked device %s…", id.String()[:12])
	select {
	case err := <-r.chen.ran:
		r.chen.cancel = nil
		if !errors.Is(err, device.ErrWiped) {
			return fmt.Errorf("Chen's device: %v, want it wiped", err)
		}
	case <-ctx.Done():
		return errors.New("Chen's device was not cut off")
	}
	r.printf("Chen's device was cut off and wiped itself %v after the revocation; its store exists: %v",
		time.Since(start).Round(time.Millisecond), vault.Exists(r.chen.cfg.Home))
	r.chen.dv = nil
	// The others learn of it from the signed directory and remove the device from
	// every group they share with it; one of their Remove commits wins.
	for !r.removed(r.amina) || !r.removed(r.bilal) {
		if ctx.Err() != nil {
			return errors.New("the revoked device was not removed from the group")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, o := range []*demoOfficial{r.amina, r.bilal} {
		o.stop()
	}
	for _, o := range []*demoOfficial{r.amina, r.bilal} {
		if err := r.show(ctx, o, nil); err != nil {
			return err
		}
	}
	if err := r.send(ctx, r.amina, r.group, "Chen has a new phone coming; until then, do not use the old one."); err != nil {
		return err
	}
	return r.show(ctx, r.bilal, nil)
}

// removed reports whether o's view of the group no longer has Chen.
func (r *demoRun) removed(o *demoOfficial) bool {
	convs, err := o.dv.Conversations()
	if err != nil {
		return false
	}
	for _, c := range convs {
		if c.Name != "Cabinet" {
			continue
		}
		for _, m := range c.Members {
			if m.Name == r.chen.name {
				return false
			}
		}
		return true
	}
	return false
}

func mustDeviceID(s string) authority.DeviceID {
	id, err := authority.ParseDeviceID(s)
	if err != nil {
		panic(err)
	}
	return id
}

func (r *demoRun) inspect(ctx context.Context) error {
	r.section("What the exchange kept")
	s, err := r.st.Stats(ctx)
	if err != nil {
		return err
	}
	r.printf("messages in flight: %d; mailbox entries: %d; attachments: %d; groups sequenced: %d; KeyPackages: %d",
		s.Messages, s.MailboxEntries, s.Blobs, s.Groups, s.KeyPackages)
	var files []string
	var total int64
	found := 0
	filepath.WalkDir(filepath.Join(r.dir, "exchange"), func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	blobs := [][]byte{r.logs.bytes()}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		total += int64(len(b))
		blobs = append(blobs, b)
	}
	for _, text := range r.said {
		for _, b := range blobs {
			if bytes.Contains(b, []byte(text)) {
				found++
				r.printf("PLAINTEXT FOUND: %q", text)
			}
		}
	}
	r.printf("searched its %d files (%d bytes) and its log for the %d messages sent: %d found",
		len(files), total, len(r.said), found)
	if found > 0 {
		return errors.New("the exchange holds plaintext")
	}
	r.printf("it holds routing metadata and MLS ciphertext only, and deletes each message once acknowledged")
	return nil
}
