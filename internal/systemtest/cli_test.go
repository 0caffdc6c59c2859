package systemtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// cliDevice runs device commands against one home directory.
type cliDevice struct {
	t    *testing.T
	home string
}

func (d cliDevice) run(args ...string) (string, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "MAHFOOZ_PASSPHRASE=device passphrase", "MAHFOOZ_HOME="+d.home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), &cliError{err, stderr.String()}
	}
	return stdout.String(), nil
}

type cliError struct {
	err    error
	stderr string
}

func (e *cliError) Error() string { return e.err.Error() + ": " + e.stderr }

func (d cliDevice) must(args ...string) string {
	d.t.Helper()
	out, err := d.run(args...)
	if err != nil {
		d.t.Fatalf("mahfooz %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// received is the documented shape of `receive --json` lines (docs/cli.md).
type received struct {
	ID           string    `json:"id"`
	Kind         string    `json:"kind"`
	Conversation string    `json:"conversation"`
	From         string    `json:"from"`
	Text         string    `json:"text"`
	SentAt       time.Time `json:"sent_at"`
	Outgoing     bool      `json:"outgoing"`
	File         *struct {
		Name    string `json:"name"`
		Size    int64  `json:"size"`
		SavedTo string `json:"saved_to"`
	} `json:"file"`
}

func (d cliDevice) receive(args ...string) []received {
	d.t.Helper()
	out := d.must(append([]string{"receive", "--json"}, args...)...)
	var got []received
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r received
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			d.t.Fatalf("receive --json line %q: %v", sc.Text(), err)
		}
		if r.Conversation == "" || r.SentAt.IsZero() || r.ID == "" || (r.From == "" && (r.Kind == "text" || r.Kind == "file")) {
			d.t.Errorf("receive --json line lacks a documented field: %s", sc.Text())
		}
		got = append(got, r)
	}
	return got
}

// texts keeps the text messages others sent.
func texts(rs []received) []string {
	var out []string
	for _, r := range rs {
		if r.Kind == "text" && !r.Outgoing {
			out = append(out, r.From+": "+r.Text)
		}
	}
	return out
}

// TestCLIContract drives the documented command line the way a script does:
// a ticket from `authority enroll --json` enrols a device, and `receive --json`
// prints each message once with the documented fields.
func TestCLIContract(t *testing.T) {
	s := newSystem(t)
	dir := t.TempDir()
	amina := cliDevice{t, filepath.Join(dir, "amina")}
	bilal := cliDevice{t, filepath.Join(dir, "bilal")}
	chen := cliDevice{t, filepath.Join(dir, "chen")}
	for _, d := range []struct {
		dev  cliDevice
		name string
	}{{amina, "Amina"}, {bilal, "Bilal"}, {chen, "Chen"}} {
		out := d.dev.must("device", "enroll", "--exchange", s.addr, "--json", s.ticket(d.name))
		var id struct {
			Name     string `json:"name"`
			DeviceID string `json:"device_id"`
		}
		if err := json.Unmarshal([]byte(out), &id); err != nil || id.Name != d.name || len(id.DeviceID) != 32 {
			t.Fatalf("device enroll --json: %q, %v", out, err)
		}
	}

	var contacts []struct {
		Name    string   `json:"name"`
		Devices []string `json:"devices"`
	}
	if err := json.Unmarshal([]byte(amina.must("contacts", "--json")), &contacts); err != nil || len(contacts) != 3 {
		t.Fatalf("contacts --json: %+v, %v", contacts, err)
	}

	// One to one, exactly once.
	amina.must("send", "--to", "Bilal", "the figures are final")
	got := bilal.receive()
	if want := []string{"Amina: the figures are final"}; !slices.Equal(texts(got), want) {
		t.Fatalf("Bilal received %q, want %q", texts(got), want)
	}
	if again := texts(bilal.receive()); len(again) != 0 {
		t.Fatalf("a second receive printed %q again", again)
	}

	// A group, a file, and the roster shown to its members.
	amina.must("group", "create", "Cabinet", "--members", "Bilal,Chen")
	amina.must("send", "--group", "Cabinet", "meeting at ten")
	file := filepath.Join(dir, "minutes.txt")
	if err := os.WriteFile(file, []byte("minutes of the meeting\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	amina.must("send", "--group", "Cabinet", "--file", file)
	saveDir := filepath.Join(dir, "chen-files")
	got = chen.receive("--save", saveDir)
	if want := []string{"Amina: meeting at ten"}; !slices.Equal(texts(got), want) {
		t.Fatalf("Chen received %q, want %q", texts(got), want)
	}
	var roster, files int
	for _, r := range got {
		switch r.Kind {
		case "roster":
			roster++
		case "file":
			files++
			if r.File == nil || r.File.Name != "minutes.txt" || r.File.SavedTo == "" {
				t.Fatalf("file message %+v", r.File)
			}
			b, err := os.ReadFile(r.File.SavedTo)
			if err != nil || string(b) != "minutes of the meeting\n" {
				t.Fatalf("saved file: %q, %v", b, err)
			}
		}
	}
	if roster == 0 || files != 1 {
		t.Fatalf("Chen saw %d roster messages and %d files, want ≥ 1 and 1", roster, files)
	}

	// Both sides compute the same safety number.
	var sa, sb struct {
		SafetyNumber string `json:"safety_number"`
	}
	json.Unmarshal([]byte(amina.must("verify", "Bilal", "--json")), &sa)
	json.Unmarshal([]byte(bilal.must("verify", "Amina", "--json")), &sb)
	if len(sa.SafetyNumber) != 60 || sa.SafetyNumber != sb.SafetyNumber {
		t.Fatalf("safety numbers %q and %q", sa.SafetyNumber, sb.SafetyNumber)
	}

	// The disappearing timer is announced to the other side.
	amina.must("disappear", "--to", "Bilal", "1h")
	var timer bool
	for _, r := range bilal.receive() {
		timer = timer || r.Kind == "timer"
	}
	if !timer {
		t.Error("Bilal was not shown the new disappearing timer")
	}

	// Wipe needs no passphrase and leaves nothing to open.
	if _, err := chen.run("wipe"); err == nil {
		t.Fatal("wipe without --yes went ahead")
	}
	chen.must("wipe", "--yes")
	if _, err := chen.run("device", "info"); err == nil || !strings.Contains(err.Error(), "hint:") {
		t.Fatalf("device info after wipe: %v", err)
	}
}
