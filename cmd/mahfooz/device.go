package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"mahfooz/device"
	"mahfooz/device/safety"
	"mahfooz/device/vault"
)

// The device's commands are top-level nouns and verbs, as an official types them:
// `mahfooz send --to NAME TEXT`. Each opens the device's vault in --home, does its
// one thing (connecting to the exchange when it needs to) and closes it again.
func init() {
	for name, c := range map[string]command{
		"device":    {"enrol this device with a ticket; show who it is", runDeviceCmd},
		"contacts":  {"list the enrolled officials and their devices", runContacts},
		"send":      {"send a message or a file to an official or a group", runSend},
		"group":     {"create a group conversation; add or remove members", runGroup},
		"receive":   {"fetch and print new messages (--follow to keep listening)", runReceive},
		"verify":    {"show the safety number to compare with an official", runVerify},
		"disappear": {"set a conversation's disappearing-message timer", runDisappear},
		"wipe":      {"destroy this device's store and keys", runWipe},
	} {
		commands[name] = c
	}
}

// envHome is where the device commands find the device's directory.
const envHome = "MAHFOOZ_HOME"

// deviceCLI runs the device commands against explicit streams and environment,
// so tests can run them in process.
type deviceCLI struct {
	stdin          *os.File // for the passphrase prompt; nil means no terminal
	stdout, stderr io.Writer
	getenv         func(string) string
	kdf            vault.KDFParams // zero: the vault's default
	// stop ends --follow; nil means SIGINT/SIGTERM.
	stop <-chan struct{}
}

func newDeviceCLI() *deviceCLI {
	return &deviceCLI{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
}

func runDeviceCmd(args []string) error { return newDeviceCLI().device(args) }
func runContacts(args []string) error  { return newDeviceCLI().contacts(args) }
func runSend(args []string) error      { return newDeviceCLI().send(args) }
func runGroup(args []string) error     { return newDeviceCLI().group(args) }
func runReceive(args []string) error   { return newDeviceCLI().receive(args) }
func runVerify(args []string) error    { return newDeviceCLI().verify(args) }
func runDisappear(args []string) error { return newDeviceCLI().disappear(args) }
func runWipe(args []string) error      { return newDeviceCLI().wipe(args) }

// commonFlags are the flags every device command takes.
type commonFlags struct {
	home    *string
	json    *bool
	timeout *time.Duration
}

func (c *deviceCLI) flagSet(name, usage, about string) (*flag.FlagSet, commonFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	cf := commonFlags{
		home:    fs.String("home", c.getenv(envHome), "the device's `directory` (env "+envHome+")"),
		json:    fs.Bool("json", false, "print JSON on stdout"),
		timeout: fs.Duration("timeout", 30*time.Second, "give up on the exchange after this long"),
	}
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: mahfooz %s\n\n%s\n\nflags:\n", usage, about)
		fs.PrintDefaults()
	}
	return fs, cf
}

func needHome(home string) error {
	if home == "" {
		return &hintError{errors.New("no device directory"), "pass --home DIR or set " + envHome}
	}
	return nil
}

// passphrase returns the device store's passphrase (asked twice if confirm is set).
func (c *deviceCLI) passphrase(confirm bool) ([]byte, error) {
	return readPassphrase("", c.stdin, c.stderr, c.getenv, "device passphrase: ", confirm)
}

func (c *deviceCLI) config(home string, p []byte) device.Config {
	return device.Config{Home: home, Passphrase: p, KDF: c.kdf}
}

// open opens the enrolled device in home.
func (c *deviceCLI) open(home string) (*device.Device, error) {
	if err := needHome(home); err != nil {
		return nil, err
	}
	p, err := c.passphrase(false)
	if err != nil {
		return nil, err
	}
	defer clear(p)
	dv, err := device.Open(c.config(home, p))
	switch {
	case errors.Is(err, device.ErrNotEnrolled):
		return nil, &hintError{err, "enrol first: mahfooz device enroll --home " + home + " --exchange HOST:PORT TICKET"}
	case errors.Is(err, device.ErrWrongPassphrase):
		return nil, &hintError{err, "check " + envPassphrase + " or retype the passphrase chosen at enrolment"}
	}
	return dv, err
}

// withDevice opens the device, runs f with a context bounded by --timeout, and
// closes the device.
func (c *deviceCLI) withDevice(cf commonFlags, f func(ctx context.Context, dv *device.Device) error) error {
	dv, err := c.open(*cf.home)
	if err != nil {
		return err
	}
	defer dv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *cf.timeout)
	defer cancel()
	err = f(ctx, dv)
	if errors.Is(err, device.ErrOffline) {
		return &hintError{err, "is the exchange running and reachable? the message stays queued and goes with the next command that reaches it"}
	}
	return err
}

func (c *deviceCLI) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// ---- device ---------------------------------------------------------------

const deviceUsage = `usage: mahfooz device <verb> [flags]

verbs:
  enroll   enrol this device with a one-time ticket from the authority
  info     show this device's official, role and device ID

Run 'mahfooz device <verb> --help' for a verb's flags.`

func (c *deviceCLI) device(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(c.stderr, deviceUsage)
		if len(args) == 0 {
			return errors.New("device: missing verb")
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "enroll":
		return c.enroll(args[1:])
	case "info":
		return c.info(args[1:])
	}
	return &hintError{fmt.Errorf("device: unknown verb %q", args[0]), "run 'mahfooz device --help' for the list"}
}

func (c *deviceCLI) enroll(args []string) error {
	fs, cf := c.flagSet("device enroll", "device enroll --home DIR --exchange HOST:PORT TICKET",
		"Makes this device's keys, creates its encrypted store in --home (the passphrase comes\nfrom "+envPassphrase+" or a prompt) and redeems the ticket at the exchange.")
	exchangeAddr := fs.String("exchange", "", "the exchange's `address` (host:port)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return &hintError{errors.New("device enroll needs exactly one ticket"), "mahfooz device enroll --exchange HOST:PORT mahfooz-ticket:1:…"}
	}
	if *exchangeAddr == "" {
		return &hintError{errors.New("device enroll needs --exchange"), "the authority's operator gives the exchange's address with the ticket"}
	}
	if err := needHome(*cf.home); err != nil {
		return err
	}
	p, err := c.passphrase(true)
	if err != nil {
		return err
	}
	defer clear(p)
	ctx, cancel := context.WithTimeout(context.Background(), *cf.timeout)
	defer cancel()
	dv, err := device.Enroll(ctx, c.config(*cf.home, p), *exchangeAddr, strings.TrimSpace(pos[0]))
	if errors.Is(err, device.ErrEnrolled) {
		return &hintError{err, "this directory already holds an enrolled device; use another --home"}
	}
	if err != nil {
		return err
	}
	defer dv.Close()
	return c.printIdentity(dv.Self(), *exchangeAddr, *cf.json)
}

func (c *deviceCLI) info(args []string) error {
	fs, cf := c.flagSet("device info", "device info --home DIR [--json]", "Shows who this device belongs to.")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	dv, err := c.open(*cf.home)
	if err != nil {
		return err
	}
	defer dv.Close()
	return c.printIdentity(dv.Self(), "", *cf.json)
}

func (c *deviceCLI) printIdentity(id device.Identity, exchangeAddr string, asJSON bool) error {
	if asJSON {
		return c.printJSON(struct {
			Name     string `json:"name"`
			Role     string `json:"role,omitempty"`
			DeviceID string `json:"device_id"`
			Exchange string `json:"exchange,omitempty"`
		}{id.Name, id.Role, id.DeviceID, exchangeAddr})
	}
	role := ""
	if id.Role != "" {
		role = " (" + id.Role + ")"
	}
	fmt.Fprintf(c.stdout, "%s%s, device %s\n", id.Name, role, id.DeviceID)
	return nil
}

// ---- contacts -------------------------------------------------------------

func (c *deviceCLI) contacts(args []string) error {
	fs, cf := c.flagSet("contacts", "contacts --home DIR [--json]",
		"Lists the officials in the authority's signed directory, refreshed from the exchange.")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	return c.withDevice(cf, func(ctx context.Context, dv *device.Device) error {
		if err := dv.Sync(ctx); err != nil {
			fmt.Fprintf(c.stderr, "mahfooz: warning: showing the directory last fetched: %v\n", err)
		}
		cs, err := dv.Contacts()
		if err != nil {
			return err
		}
		if *cf.json {
			type contact struct {
				Name    string   `json:"name"`
				Role    string   `json:"role,omitempty"`
				Devices []string `json:"devices"`
			}
			out := make([]contact, 0, len(cs))
			for _, x := range cs {
				out = append(out, contact{x.Name, x.Role, x.Devices})
			}
			return c.printJSON(out)
		}
		for _, x := range cs {
			role := ""
			if x.Role != "" {
				role = " (" + x.Role + ")"
			}
			fmt.Fprintf(c.stdout, "%s%s: %d device(s)\n", x.Name, role, len(x.Devices))
		}
		return nil
	})
}

// ---- send -----------------------------------------------------------------

// conversationFlags adds --to and --group.
func conversationFlags(fs *flag.FlagSet) func() (device.ConversationRef, error) {
	to := fs.String("to", "", "the official `name` of a one-to-one conversation")
	group := fs.String("group", "", "the `name` of a group conversation")
	return func() (device.ConversationRef, error) {
		switch {
		case *to != "" && *group != "":
			return device.ConversationRef{}, errors.New("give --to or --group, not both")
		case *to != "":
			return device.ConversationRef{To: *to}, nil
		case *group != "":
			return device.ConversationRef{Group: *group}, nil
		}
		return device.ConversationRef{}, &hintError{errors.New("no conversation given"), "--to NAME for one official, --group NAME for a group"}
	}
}

func (c *deviceCLI) send(args []string) error {
	fs, cf := c.flagSet("send", "send (--to NAME | --group NAME) (TEXT | --file PATH) [--home DIR] [--json]",
		"Encrypts a message (or a file) for every device in the conversation and hands it to the\nexchange; it returns once the exchange has stored it for every recipient.")
	conv := conversationFlags(fs)
	file := fs.String("file", "", "send the file at `path` instead of text")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	ref, err := conv()
	if err != nil {
		return err
	}
	text := strings.Join(pos, " ")
	switch {
	case *file != "" && text != "":
		return errors.New("give TEXT or --file, not both")
	case *file == "" && text == "":
		return &hintError{errors.New("nothing to send"), "mahfooz send --to NAME 'the text'"}
	}
	return c.withDevice(cf, func(ctx context.Context, dv *device.Device) error {
		var m device.Message
		var err error
		if *file != "" {
			m, err = dv.SendFile(ctx, ref, *file)
		} else {
			m, err = dv.SendText(ctx, ref, text)
		}
		if err != nil {
			return err
		}
		if *cf.json {
			return c.printJSON(jsonMessage(m, conversationNames(dv)[m.ConversationID], ""))
		}
		fmt.Fprintf(c.stderr, "sent (%s)\n", m.Status)
		return nil
	})
}

// ---- group ----------------------------------------------------------------

const groupUsage = `usage: mahfooz group <verb> NAME [flags]

verbs:
  create   create a group conversation: mahfooz group create NAME --members A,B
  add      add officials (all their devices): mahfooz group add NAME --members C
  remove   remove officials: mahfooz group remove NAME --members C
  list     list this device's conversations

Every member sees every change to the group as a message in it.`

func (c *deviceCLI) group(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(c.stderr, groupUsage)
		if len(args) == 0 {
			return errors.New("group: missing verb")
		}
		return flag.ErrHelp
	}
	verb := args[0]
	if verb == "list" {
		return c.groupList(args[1:])
	}
	if verb != "create" && verb != "add" && verb != "remove" {
		return &hintError{fmt.Errorf("group: unknown verb %q", verb), "run 'mahfooz group --help' for the list"}
	}
	fs, cf := c.flagSet("group "+verb, "group "+verb+" NAME --members A,B [--home DIR] [--json]", "Changes who is in a group conversation.")
	members := fs.String("members", "", "comma-separated official `names`")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return &hintError{fmt.Errorf("group %s needs exactly one group name", verb), "quote a name with spaces: mahfooz group " + verb + " 'Cabinet' --members A,B"}
	}
	names := splitNames(*members)
	if len(names) == 0 && verb != "create" {
		return &hintError{fmt.Errorf("group %s needs --members", verb), "--members 'Amina Yusuf,Bilal Khan'"}
	}
	return c.withDevice(cf, func(ctx context.Context, dv *device.Device) error {
		switch verb {
		case "create":
			conv, err := dv.CreateGroup(ctx, pos[0], names)
			if err != nil {
				return err
			}
			if *cf.json {
				return c.printJSON(jsonConversation(conv))
			}
			fmt.Fprintf(c.stderr, "group %q created with %d official(s)\n", conv.Name, len(conv.Members))
			return nil
		case "add":
			err = dv.AddMembers(ctx, pos[0], names)
		default:
			err = dv.RemoveMembers(ctx, pos[0], names)
		}
		if err != nil {
			return err
		}
		if *cf.json {
			return c.printJSON(struct {
				Group   string   `json:"group"`
				Verb    string   `json:"verb"`
				Members []string `json:"members"`
			}{pos[0], verb, names})
		}
		return nil
	})
}

func splitNames(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

func (c *deviceCLI) groupList(args []string) error {
	fs, cf := c.flagSet("group list", "group list [--home DIR] [--json]", "Lists this device's conversations.")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	return c.withDevice(cf, func(ctx context.Context, dv *device.Device) error {
		if err := dv.Sync(ctx); err != nil {
			fmt.Fprintf(c.stderr, "mahfooz: warning: not synchronised with the exchange: %v\n", err)
		}
		convs, err := dv.Conversations()
		if err != nil {
			return err
		}
		if *cf.json {
			out := make([]any, 0, len(convs))
			for _, cv := range convs {
				out = append(out, jsonConversation(cv))
			}
			return c.printJSON(out)
		}
		for _, cv := range convs {
			fmt.Fprintf(c.stdout, "%s %q: %d official(s)", cv.Kind, cv.Name, len(cv.Members))
			if cv.Disappearing > 0 {
				fmt.Fprintf(c.stdout, ", messages disappear after %v", cv.Disappearing)
			}
			if !cv.Active {
				fmt.Fprint(c.stdout, " (no longer a member)")
			}
			fmt.Fprintln(c.stdout)
		}
		return nil
	})
}

// ---- receive --------------------------------------------------------------

func (c *deviceCLI) receive(args []string) error {
	fs, cf := c.flagSet("receive", "receive [--follow] [--save DIR] [--home DIR] [--json]",
		"Fetches what the exchange holds for this device and prints every message not printed\nbefore, oldest first; with --follow it stays connected and prints messages as they come.")
	follow := fs.Bool("follow", false, "stay connected and print new messages until interrupted")
	save := fs.String("save", "", "download received files into `directory`")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	dv, err := c.open(*cf.home)
	if err != nil {
		return err
	}
	defer dv.Close()
	print := func(ctx context.Context) error {
		ms, err := dv.Unread()
		if err != nil {
			return err
		}
		names := conversationNames(dv)
		for _, m := range ms {
			saved := ""
			if m.Kind == device.MessageFile && *save != "" {
				saved, err = c.saveFile(ctx, dv, m, *save)
				if err != nil {
					fmt.Fprintf(c.stderr, "mahfooz: warning: file %q not saved: %v\n", m.File.Name, err)
				}
			}
			if *cf.json {
				if err := c.printJSON(jsonMessage(m, names[m.ConversationID], saved)); err != nil {
					return err
				}
			} else {
				c.printMessage(m, names[m.ConversationID], saved)
			}
		}
		ids := make([]string, len(ms))
		for i, m := range ms {
			ids[i] = m.ID
		}
		return dv.MarkRead(ids...)
	}

	if !*follow {
		ctx, cancel := context.WithTimeout(context.Background(), *cf.timeout)
		defer cancel()
		if err := dv.Sync(ctx); err != nil {
			if errors.Is(err, device.ErrWiped) {
				return err
			}
			fmt.Fprintf(c.stderr, "mahfooz: warning: not synchronised with the exchange: %v\n", err)
		}
		return print(ctx)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, stopSignals := c.stopChannel(ctx)
	defer stopSignals()
	events, unsubscribe := dv.Subscribe()
	defer unsubscribe()
	ran := make(chan error, 1)
	go func() { ran <- dv.Run(ctx) }()
	if err := print(ctx); err != nil {
		return err
	}
	for {
		select {
		case <-stop:
			cancel()
			<-ran
			return nil
		case err := <-ran:
			if errors.Is(err, device.ErrWiped) {
				fmt.Fprintln(c.stderr, "mahfooz: this device was revoked by the authority and has wiped its store")
			}
			return err
		case e, ok := <-events:
			if !ok {
				return <-ran
			}
			if e.Kind == device.EventMessage {
				if err := print(ctx); err != nil {
					return err
				}
			}
		}
	}
}

// stopChannel returns c.stop, or, when that is nil, a channel closed by SIGINT
// or SIGTERM until ctx ends; the function returned stops listening for them.
func (c *deviceCLI) stopChannel(ctx context.Context) (<-chan struct{}, func()) {
	if c.stop != nil {
		return c.stop, func() {}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	ch := make(chan struct{})
	go func() {
		select {
		case <-sig:
			close(ch)
		case <-ctx.Done():
		}
	}()
	return ch, func() { signal.Stop(sig) }
}

func (c *deviceCLI) saveFile(ctx context.Context, dv *device.Device, m device.Message, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	name := filepath.Base(m.File.Name)
	if name == "." || name == ".." || name == string(filepath.Separator) || name == "" {
		name = "file"
	}
	dst := filepath.Join(dir, name)
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
			break
		}
		dst = filepath.Join(dir, fmt.Sprintf("%d-%s", i, name))
	}
	return dst, dv.SaveFile(ctx, m, dst)
}

// conversationNames maps conversation IDs to what the user calls them: the other
// official, or the group's name.
func conversationNames(dv *device.Device) map[string]string {
	names := make(map[string]string)
	convs, _ := dv.Conversations()
	for _, cv := range convs {
		names[cv.ID] = cv.Name
	}
	return names
}

func (c *deviceCLI) printMessage(m device.Message, conv, saved string) {
	when := m.SentAt.Local().Format("2006-01-02 15:04")
	from := m.From.Name
	if m.Outgoing {
		from = "me"
	}
	where := conv
	if where == "" {
		where = m.ConversationID
	}
	switch m.Kind {
	case device.MessageText:
		fmt.Fprintf(c.stdout, "[%s] %s, in %s: %s\n", when, from, where, m.Text)
	case device.MessageFile:
		at := ""
		if saved != "" {
			at = ", saved to " + saved
		}
		fmt.Fprintf(c.stdout, "[%s] %s, in %s: file %q (%d bytes%s)\n", when, from, where, m.File.Name, m.File.Size, at)
	default:
		fmt.Fprintf(c.stdout, "[%s] in %s: * %s\n", when, where, m.Text)
	}
}

// jsonMessage is the documented --json form of a message (docs/cli.md).
func jsonMessage(m device.Message, convName, saved string) any {
	type file struct {
		Name      string `json:"name"`
		MediaType string `json:"media_type,omitempty"`
		Size      int64  `json:"size"`
		SHA256    string `json:"sha256"`
		SavedTo   string `json:"saved_to,omitempty"`
	}
	type message struct {
		ID           string     `json:"id"`
		Kind         string     `json:"kind"`
		Conversation string     `json:"conversation"`
		ConvName     string     `json:"conversation_name,omitempty"`
		From         string     `json:"from"`
		FromDevice   string     `json:"from_device,omitempty"`
		Outgoing     bool       `json:"outgoing,omitempty"`
		Text         string     `json:"text,omitempty"`
		File         *file      `json:"file,omitempty"`
		TimerSeconds *int64     `json:"timer_seconds,omitempty"`
		SentAt       time.Time  `json:"sent_at"`
		ExpiresAt    *time.Time `json:"expires_at,omitempty"`
		Status       string     `json:"status"`
	}
	out := message{
		ID: m.ID, Kind: string(m.Kind), Conversation: m.ConversationID, ConvName: convName,
		From: m.From.Name, FromDevice: m.From.DeviceID, Outgoing: m.Outgoing,
		Text: m.Text, SentAt: m.SentAt.UTC(), Status: string(m.Status),
	}
	if m.File != nil {
		out.File = &file{m.File.Name, m.File.MediaType, m.File.Size, m.File.SHA256, saved}
	}
	if m.Kind == device.MessageTimer {
		s := int64(m.Timer / time.Second)
		out.TimerSeconds = &s
	}
	if !m.ExpiresAt.IsZero() {
		e := m.ExpiresAt.UTC()
		out.ExpiresAt = &e
	}
	return out
}

func jsonConversation(cv device.Conversation) any {
	type member struct {
		Name    string   `json:"name"`
		Devices []string `json:"devices"`
	}
	out := struct {
		ID           string   `json:"id"`
		Kind         string   `json:"kind"`
		Name         string   `json:"name"`
		Members      []member `json:"members"`
		TimerSeconds int64    `json:"timer_seconds"`
		Active       bool     `json:"active"`
	}{ID: cv.ID, Kind: string(cv.Kind), Name: cv.Name, TimerSeconds: int64(cv.Disappearing / time.Second), Active: cv.Active}
	for _, m := range cv.Members {
		out.Members = append(out.Members, member{m.Name, m.Devices})
	}
	return out
}

// ---- verify ---------------------------------------------------------------

func (c *deviceCLI) verify(args []string) error {
	fs, cf := c.flagSet("verify", "verify NAME [--qr-png FILE] [--home DIR] [--json]",
		"Prints the safety number of this device's official and NAME, as digits and as a QR code.\nCompare it with NAME's device in person or by a call you trust: if it matches, no one\nsits between you. It changes when either of you gains or loses a device.")
	png := fs.String("qr-png", "", "also write the QR code as a PNG to `file`")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return &hintError{errors.New("verify needs one official's name"), "mahfooz verify 'Amina Yusuf'"}
	}
	return c.withDevice(cf, func(ctx context.Context, dv *device.Device) error {
		if err := dv.Sync(ctx); err != nil {
			fmt.Fprintf(c.stderr, "mahfooz: warning: using the directory last fetched: %v\n", err)
		}
		n, err := dv.SafetyNumber(pos[0])
		if err != nil {
			return err
		}
		if *png != "" {
			img, err := safety.QRPNG(n, 512)
			if err != nil {
				return err
			}
			if err := os.WriteFile(*png, img, 0o600); err != nil {
				return err
			}
		}
		if *cf.json {
			return c.printJSON(struct {
				Name         string `json:"name"`
				SafetyNumber string `json:"safety_number"`
			}{pos[0], n})
		}
		qr, err := safety.QRTerminal(n)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "safety number with %s:\n\n%s\n\n%s", pos[0], safety.Format(n), qr)
		return nil
	})
}

// ---- disappear ------------------------------------------------------------

func (c *deviceCLI) disappear(args []string) error {
	fs, cf := c.flagSet("disappear", "disappear (--to NAME | --group NAME) DURATION [--home DIR] [--json]",
		"Sets how long messages in the conversation live, on every member's device, from when\nthey are sent (e.g. 30s, 10m, 24h, 168h); 0 or off turns it off. Everyone sees the change.")
	conv := conversationFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	ref, err := conv()
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return &hintError{errors.New("disappear needs one duration"), "mahfooz disappear --to NAME 24h"}
	}
	d := time.Duration(0)
	if pos[0] != "off" {
		if d, err = time.ParseDuration(pos[0]); err != nil || d < 0 {
			return &hintError{fmt.Errorf("disappear: %q is not a duration", pos[0]), "use Go durations: 30s, 10m, 24h; or off"}
		}
	}
	return c.withDevice(cf, func(ctx context.Context, dv *device.Device) error {
		if err := dv.SetDisappearing(ctx, ref, d); err != nil {
			return err
		}
		if *cf.json {
			return c.printJSON(struct {
				TimerSeconds int64 `json:"timer_seconds"`
			}{int64(d / time.Second)})
		}
		return nil
	})
}

// ---- wipe -----------------------------------------------------------------

func (c *deviceCLI) wipe(args []string) error {
	fs, cf := c.flagSet("wipe", "wipe --yes [--home DIR] [--json]",
		"Destroys this device's keys and encrypted store at once. There is no undo and no copy:\nthe device must be enrolled again with a new ticket.")
	yes := fs.Bool("yes", false, "confirm: destroy the store")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if !*yes {
		return &hintError{errors.New("wipe needs --yes"), "this destroys every message and key on the device; run again with --yes"}
	}
	if err := needHome(*cf.home); err != nil {
		return err
	}
	if err := device.WipeHome(*cf.home); err != nil {
		return err
	}
	if *cf.json {
		return c.printJSON(struct {
			Wiped bool `json:"wiped"`
		}{true})
	}
	fmt.Fprintln(c.stderr, "device store destroyed")
	return nil
}
