package main

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mahfooz/authority"
	"mahfooz/mls"
)

// authorityRun runs `mahfooz authority ARGS` in process and returns its stdout and stderr.
func authorityRun(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	c := &authorityCLI{
		stdout: &out, stderr: &errb, getenv: os.Getenv,
		kdf: authority.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1},
	}
	err := c.run(args)
	return out.String(), errb.String(), err
}

func TestAuthorityCLI(t *testing.T) {
	const pass = "cli test passphrase"
	dir := filepath.Join(t.TempDir(), "auth")
	t.Setenv(envPassphrase, pass)
	t.Setenv(envAuthorityDir, "")

	out, _, err := authorityRun(t, "init", "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "root fingerprint: ") {
		t.Errorf("init stdout %q", out)
	}
	if _, _, err := authorityRun(t, "init", "--dir", dir); !errors.Is(err, authority.ErrExists) {
		t.Errorf("second init: %v", err)
	}

	// --dir comes from the environment when not given.
	t.Setenv(envAuthorityDir, dir)
	png := filepath.Join(t.TempDir(), "ticket.png")
	out, _, err = authorityRun(t, "enroll", "--name", "Amina Yusuf", "--role", "Minister", "--qr-png", png, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Ticket string `json:"ticket"`
		Name   string `json:"name"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("enroll --json: %v\n%s", err, out)
	}
	if _, err := authority.ParseTicket(res.Ticket); err != nil || res.Name != "Amina Yusuf" {
		t.Errorf("enroll --json ticket %q name %q: %v", res.Ticket, res.Name, err)
	}
	if b, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("--qr-png: %v", err)
	}

	out, errOut, err := authorityRun(t, "enroll", "--name", "Bilal")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := authority.ParseTicket(strings.TrimSpace(out)); err != nil {
		t.Errorf("enroll stdout is not just the ticket: %q", out)
	}
	if !strings.Contains(errOut, "▀") || !strings.Contains(errOut, "Bilal") {
		t.Errorf("enroll stderr lacks the QR code or the name:\n%s", errOut)
	}

	// A device redeems the first ticket.
	a, err := authority.Open(dir, []byte(pass), authority.Options{})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := mls.GenerateSignatureKey(mls.DefaultCipherSuite, rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k.Signer())
	is, err := a.Redeem(res.Ticket, csr)
	a.Close()
	if err != nil {
		t.Fatal(err)
	}

	out, _, err = authorityRun(t, "list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, is.DeviceID.String()) || !strings.Contains(out, "active") || !strings.Contains(out, "Amina Yusuf") {
		t.Errorf("list:\n%s", out)
	}

	// Flags may follow the device ID.
	out, _, err = authorityRun(t, "revoke", is.DeviceID.String(), "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "revoked "+is.DeviceID.String() {
		t.Errorf("revoke stdout %q", out)
	}
	out, _, err = authorityRun(t, "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var devs []struct {
		Device, State string
	}
	if err := json.Unmarshal([]byte(out), &devs); err != nil || len(devs) != 1 || devs[0].Device != is.DeviceID.String() || devs[0].State != "revoked" {
		t.Errorf("list --json after revoke: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"wrong passphrase", "not it", []string{"enroll", "--name", "X"}, "hint: check " + envPassphrase},
		{"unknown device", pass, []string{"revoke", strings.Repeat("ab", 16)}, "hint:"},
		{"malformed device", pass, []string{"revoke", "xyz"}, "hint:"},
		{"no name", pass, []string{"enroll"}, "needs --name"},
		{"unknown verb", pass, []string{"frobnicate"}, "hint:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envPassphrase, tc.env)
			out, _, err := authorityRun(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.env) || strings.Contains(out, tc.env) {
				t.Error("output contains the passphrase")
			}
		})
	}
	t.Run("no passphrase", func(t *testing.T) {
		t.Setenv(envPassphrase, "")
		if _, _, err := authorityRun(t, "enroll", "--name", "X"); err == nil || !strings.Contains(err.Error(), "hint: set "+envPassphrase) {
			t.Errorf("error %v", err)
		}
	})
	t.Run("no dir", func(t *testing.T) {
		t.Setenv(envAuthorityDir, "")
		if _, _, err := authorityRun(t, "list"); err == nil || !strings.Contains(err.Error(), envAuthorityDir) {
			t.Errorf("error %v", err)
		}
	})
}
