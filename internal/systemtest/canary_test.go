package systemtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mahfooz/device"
)

// canary returns a string that appears nowhere by chance.
func canary(t *testing.T, what string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return "canary-" + what + "-" + hex.EncodeToString(b)
}

// filesUnder returns every regular file under dir.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNoPlaintextAtExchange sends text, a group name, a file and a reply, each
// carrying a unique canary, through an exchange running as its own process; then it
// scans every file the exchange wrote (its database with its write-ahead log, and
// its log output) and the devices' own encrypted stores for each canary. None may
// appear: the exchange holds only ciphertext, and a device's store is encrypted at
// rest. The canaries are found by the recipients, so the scan is not vacuous.
func TestNoPlaintextAtExchange(t *testing.T) {
	s := newSystem(t)
	amina, bilal, chen := s.enrol("Amina"), s.enrol("Bilal"), s.enrol("Chen")
	ctx := testContext(t, 2*time.Minute)

	direct := canary(t, "direct")
	groupName := canary(t, "group")
	inGroup := canary(t, "in-group")
	reply := canary(t, "reply")
	fileText := canary(t, "file")
	fileName := canary(t, "filename") + ".txt"
	canaries := []string{direct, groupName, inGroup, reply, fileText, fileName}

	if _, err := amina.device().SendText(ctx, device.ConversationRef{To: "Bilal"}, direct); err != nil {
		t.Fatal(err)
	}
	if _, err := amina.device().CreateGroup(ctx, groupName, []string{"Bilal", "Chen"}); err != nil {
		t.Fatal(err)
	}
	g := device.ConversationRef{Group: groupName}
	if _, err := amina.device().SendText(ctx, g, inGroup); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), fileName)
	if err := os.WriteFile(path, []byte(strings.Repeat(fileText+"\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := amina.device().SendFile(ctx, g, path); err != nil {
		t.Fatal(err)
	}
	if err := bilal.device().Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := bilal.device().SendText(ctx, device.ConversationRef{To: "Amina"}, reply); err != nil {
		t.Fatal(err)
	}

	// The recipients read everything, so the canaries did travel.
	if got := bilal.texts(device.ConversationRef{To: "Amina"}); !slices.Contains(got, direct) {
		t.Fatalf("Bilal did not receive the direct message: %q", got)
	}
	if err := chen.device().Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := chen.texts(g); !slices.Contains(got, inGroup) {
		t.Fatalf("Chen did not receive the group message: %q", got)
	}
	ms, err := chen.device().Messages(g)
	if err != nil {
		t.Fatal(err)
	}
	var saved bool
	for _, m := range ms {
		if m.Kind == device.MessageFile {
			dst := filepath.Join(t.TempDir(), "saved")
			if err := chen.device().SaveFile(ctx, m, dst); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(dst)
			saved = bytes.Contains(b, []byte(fileText))
		}
	}
	if !saved {
		t.Fatal("Chen could not save the file")
	}
	if err := amina.device().Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := amina.texts(device.ConversationRef{To: "Bilal"}); !slices.Contains(got, reply) {
		t.Fatalf("Amina did not receive the reply: %q", got)
	}

	// Stop everything, so that every file is complete, then scan.
	for _, m := range []*member{amina, bilal, chen} {
		m.close()
	}
	s.stop()
	var scanned []string
	for _, dir := range []string{s.home, s.authorityDir, amina.cfg.Home, bilal.cfg.Home, chen.cfg.Home} {
		scanned = append(scanned, filesUnder(t, dir)...)
	}
	scanned = append(scanned, s.logPath)
	var total int64
	for _, f := range scanned {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		total += int64(len(b))
		for _, c := range canaries {
			if bytes.Contains(b, []byte(c)) {
				t.Errorf("%s holds the plaintext canary %q", f, c)
			}
		}
	}
	if len(scanned) < 4 || total == 0 {
		t.Fatalf("scanned only %d files (%d bytes)", len(scanned), total)
	}
	t.Logf("scanned %d files, %d bytes: no canary found", len(scanned), total)
}
