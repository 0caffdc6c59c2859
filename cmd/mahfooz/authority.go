package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"mahfooz/authority"
)

func init() {
	commands["authority"] = command{
		summary: "run the root of trust: init, enroll, revoke, list",
		run:     runAuthority,
	}
}

// Environment variables the authority commands read.
const (
	envAuthorityDir = "MAHFOOZ_AUTHORITY"
	envPassphrase   = "MAHFOOZ_PASSPHRASE"
)

const authorityUsage = `usage: mahfooz authority <verb> [flags]

verbs:
  init     create the root key and the authority's state
  enroll   issue a one-time enrolment ticket for an official
  revoke   revoke a device at once
  list     list devices, their state, last seen and certificate expiry

All verbs take --dir DIR (default $MAHFOOZ_AUTHORITY). The passphrase of the root
key comes from $MAHFOOZ_PASSPHRASE, or else is asked for on the terminal.
Run 'mahfooz authority <verb> --help' for a verb's flags.`

// authorityCLI runs the authority commands against explicit streams and
// environment, so tests can run them in process.
type authorityCLI struct {
	stdin          *os.File // for the passphrase prompt; nil means no terminal
	stdout, stderr io.Writer
	getenv         func(string) string
	kdf            authority.KDFParams // zero: the library's default
}

func runAuthority(args []string) error {
	c := &authorityCLI{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	return c.run(args)
}

func (c *authorityCLI) run(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(c.stderr, authorityUsage)
		if len(args) == 0 {
			return errors.New("authority: missing verb")
		}
		return flag.ErrHelp
	}
	verbs := map[string]func([]string) error{
		"init":   c.init,
		"enroll": c.enroll,
		"revoke": c.revoke,
		"list":   c.list,
	}
	f, ok := verbs[args[0]]
	if !ok {
		return &hintError{fmt.Errorf("authority: unknown verb %q", args[0]), "run 'mahfooz authority --help' for the list"}
	}
	return f(args[1:])
}

func (c *authorityCLI) flagSet(verb, usage string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("authority "+verb, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	dir := fs.String("dir", c.getenv(envAuthorityDir), "authority state `directory` (env "+envAuthorityDir+")")
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: mahfooz authority %s\n\nflags:\n", usage)
		fs.PrintDefaults()
	}
	return fs, dir
}

func authorityNeedDir(dir string) error {
	if dir == "" {
		return &hintError{errors.New("authority: no state directory"), "pass --dir DIR or set " + envAuthorityDir}
	}
	return nil
}

func (c *authorityCLI) options() authority.Options {
	return authority.Options{
		Rand:   rand.Reader,
		Now:    time.Now,
		Logger: slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		KDF:    c.kdf,
	}
}

// passphrase returns the root key's passphrase (asked twice if confirm is set).
func (c *authorityCLI) passphrase(confirm bool) ([]byte, error) {
	return readPassphrase("authority: ", c.stdin, c.stderr, c.getenv, "root key passphrase: ", confirm)
}

func (c *authorityCLI) open(dir string) (*authority.Authority, error) {
	if err := authorityNeedDir(dir); err != nil {
		return nil, err
	}
	p, err := c.passphrase(false)
	if err != nil {
		return nil, err
	}
	defer clear(p)
	a, err := authority.Open(dir, p, c.options())
	if errors.Is(err, authority.ErrWrongPassphrase) {
		return nil, &hintError{err, "check " + envPassphrase + " or retype the passphrase chosen at 'mahfooz authority init'"}
	}
	return a, err
}

func (c *authorityCLI) init(args []string) error {
	fs, dir := c.flagSet("init", "init --dir DIR [--name NAME]")
	name := fs.String("name", authority.DefaultRootName, "root certificate common `name`")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := authorityNeedDir(*dir); err != nil {
		return err
	}
	p, err := c.passphrase(true)
	if err != nil {
		return err
	}
	defer clear(p)
	opts := c.options()
	opts.RootName = *name
	a, err := authority.Init(*dir, p, opts)
	if errors.Is(err, authority.ErrExists) {
		return &hintError{err, "choose another --dir; an authority's root key is never replaced in place"}
	}
	if err != nil {
		return err
	}
	defer a.Close()
	fmt.Fprintf(c.stderr, "authority created in %s; keep the passphrase safe: without it no device can be enrolled\n", *dir)
	fmt.Fprintf(c.stdout, "root fingerprint: %s\n", a.Fingerprint())
	return nil
}

func (c *authorityCLI) enroll(args []string) error {
	fs, dir := c.flagSet("enroll", "enroll --dir DIR --name NAME [--role ROLE] [--ttl 24h] [--qr-png FILE] [--json]")
	name := fs.String("name", "", "the official's `name` (certificate common name)")
	role := fs.String("role", "", "the official's `role` (certificate organizational unit)")
	ttl := fs.Duration("ttl", authority.DefaultTicketTTL, "ticket lifetime")
	png := fs.String("qr-png", "", "also write the ticket as a QR code PNG to `file`")
	asJSON := fs.Bool("json", false, "print a JSON object with a ticket field")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *name == "" {
		return &hintError{errors.New("authority: enroll needs --name"), "mahfooz authority enroll --name 'Amina Yusuf' --role 'Deputy Minister'"}
	}
	a, err := c.open(*dir)
	if err != nil {
		return err
	}
	defer a.Close()
	t, err := a.Enroll(*name, *role, *ttl)
	if err != nil {
		return err
	}
	text := t.Text()
	if *png != "" {
		img, err := authority.TicketQRPNG(text, 512)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*png, img, 0o600); err != nil {
			return fmt.Errorf("authority: writing QR code: %w", err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Ticket          string    `json:"ticket"`
			Name            string    `json:"name"`
			Role            string    `json:"role"`
			Expires         time.Time `json:"expires"`
			RootFingerprint string    `json:"root_fingerprint"`
		}{text, t.Name, t.Role, t.Expires, t.Root.String()})
	}
	qr, err := authority.TicketQRTerminal(text)
	if err != nil {
		return err
	}
	fmt.Fprint(c.stderr, qr)
	who := t.Name
	if t.Role != "" {
		who += " (" + t.Role + ")"
	}
	fmt.Fprintf(c.stderr, "one-time ticket for %s, valid until %s\n", who, t.Expires.Local().Format(time.DateTime))
	fmt.Fprintln(c.stdout, text)
	return nil
}

func (c *authorityCLI) revoke(args []string) error {
	fs, dir := c.flagSet("revoke", "revoke --dir DIR DEVICE")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return &hintError{errors.New("authority: revoke needs one device ID"), "'mahfooz authority list' shows the device IDs"}
	}
	id, err := authority.ParseDeviceID(strings.TrimSpace(pos[0]))
	if err != nil {
		return &hintError{err, "'mahfooz authority list' shows the device IDs"}
	}
	a, err := c.open(*dir)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Revoke(id); err != nil {
		if errors.Is(err, authority.ErrDeviceUnknown) {
			return &hintError{err, "'mahfooz authority list' shows the device IDs"}
		}
		return err
	}
	fmt.Fprintf(c.stdout, "revoked %s\n", id)
	return nil
}

func (c *authorityCLI) list(args []string) error {
	fs, dir := c.flagSet("list", "list --dir DIR [--json]")
	asJSON := fs.Bool("json", false, "print a JSON array")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := authorityNeedDir(*dir); err != nil {
		return err
	}
	r, err := authority.OpenPublic(*dir, c.options())
	if err != nil {
		return err
	}
	defer r.Close()
	devs, err := r.List()
	if err != nil {
		return err
	}
	if *asJSON {
		type jsonDevice struct {
			Device    string     `json:"device"`
			Name      string     `json:"name"`
			Role      string     `json:"role"`
			State     string     `json:"state"`
			Enrolled  time.Time  `json:"enrolled"`
			Expires   time.Time  `json:"expires"`
			LastSeen  *time.Time `json:"last_seen"`
			RevokedAt *time.Time `json:"revoked_at"`
		}
		opt := func(t time.Time) *time.Time {
			if t.IsZero() {
				return nil
			}
			return &t
		}
		out := []jsonDevice{}
		for _, d := range devs {
			out = append(out, jsonDevice{d.ID.String(), d.Name, d.Role, string(d.State), d.Enrolled, d.Expires, opt(d.LastSeen), opt(d.RevokedAt)})
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if len(devs) == 0 {
		fmt.Fprintln(c.stderr, "no devices enrolled")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tNAME\tROLE\tSTATE\tEXPIRES\tLAST SEEN")
	when := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format(time.DateTime)
	}
	for _, d := range devs {
		role := d.Role
		if role == "" {
			role = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Name, role, d.State, when(d.Expires), when(d.LastSeen))
	}
	return tw.Flush()
}
