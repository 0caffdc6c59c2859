package authority

import (
	"errors"
	"strings"
	"testing"
)

func TestParseTicket(t *testing.T) {
	good := Ticket{}
	for i := range good.Root {
		good.Root[i] = byte(i)
	}
	for i := range good.Secret {
		good.Secret[i] = byte(0xA0 + i)
	}
	text := good.Text()
	if !strings.HasPrefix(text, "mahfooz-ticket:1:") || len(text) != len("mahfooz-ticket:1:")+26+1+32 {
		t.Fatalf("text %q", text)
	}
	got, err := ParseTicket(text)
	if err != nil || got.Root != good.Root || got.Secret != good.Secret {
		t.Fatalf("ParseTicket = %v, %v", got, err)
	}
	fp, secret := text[17:43], text[44:]
	// 16 bytes fill 26 base32 characters with 2 bits to spare, which must be zero.
	for name, s := range map[string]string{
		"empty":             "",
		"prefix only":       "mahfooz-ticket:1:",
		"version 2":         "mahfooz-ticket:2:" + fp + ":" + secret,
		"lower case":        strings.ToLower(text),
		"leading space":     " " + text,
		"trailing newline":  text + "\n",
		"padded":            "mahfooz-ticket:1:" + fp + "======:" + secret,
		"short secret":      text[:len(text)-1],
		"long secret":       text + "A",
		"extra field":       text + ":A",
		"bad alphabet":      "mahfooz-ticket:1:" + fp + ":" + strings.Repeat("1", 32),
		"non-canonical fp":  "mahfooz-ticket:1:" + fp[:25] + "Z:" + secret,
		"missing separator": "mahfooz-ticket:1:" + fp + secret,
	} {
		if _, err := ParseTicket(s); !errors.Is(err, ErrTicketMalformed) {
			t.Errorf("%s: ParseTicket(%q) = %v, want ErrTicketMalformed", name, s, err)
		}
	}
	if strings.Contains(got.String(), secret) {
		t.Error("String reveals the secret")
	}
}

func FuzzParseTicket(f *testing.F) {
	var tk Ticket
	for i := range tk.Secret {
		tk.Secret[i] = byte(i * 7)
	}
	f.Add(tk.Text())
	f.Add("mahfooz-ticket:1:")
	f.Add("mahfooz-ticket:1:AAAAAAAAAAAAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("mahfooz-ticket:1:AAAAAAAAAAAAAAAAAAAAAAAAAB:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		tk, err := ParseTicket(s)
		if err != nil {
			if !errors.Is(err, ErrTicketMalformed) {
				t.Fatalf("error %v is not ErrTicketMalformed", err)
			}
			return
		}
		// Whatever parses is the canonical encoding of what it parsed to.
		if tk.Text() != s {
			t.Fatalf("ParseTicket(%q).Text() = %q", s, tk.Text())
		}
	})
}

func TestParseDeviceID(t *testing.T) {
	var id DeviceID
	for i := range id {
		id[i] = byte(0xf0 + i)
	}
	got, err := ParseDeviceID(id.String())
	if err != nil || got != id {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for _, s := range []string{"", strings.ToUpper(id.String()), id.String()[:30], id.String() + "00", strings.Repeat("g", 32)} {
		if _, err := ParseDeviceID(s); err == nil {
			t.Errorf("ParseDeviceID(%q) accepted", s)
		}
	}
}
