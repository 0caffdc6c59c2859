package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the README's first command in process and checks the story it
// tells: messages read by their recipients, offline delivery, revocation with wipe
// and removal, and no plaintext in anything the exchange wrote.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := demo(ctx, &out, t.TempDir()); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		`Bilal Khan reads from Amina Yusuf: "Bilal, the budget figures are final."`,
		`Amina Yusuf reads from Chen Li: "The security review is on Thursday."`,
		`Chen Li reads from Amina Yusuf: "Thursday is moved to 10:00."`,
		"they read it out and it matches",
		"each SFrame ciphertext it holds no key for",
		"wiped itself",
		"its store exists: false",
		`Bilal Khan reads from Amina Yusuf: "Chen has a new phone coming`,
		"messages sent: 0 found",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
