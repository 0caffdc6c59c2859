package mls

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

// deserializationVector is one case of deserialization.json: a vector length
// header and the length it encodes.
type deserializationVector struct {
	VLBytesHeader hexBytes `json:"vlbytes_header"`
	Length        int      `json:"length"`
}

func TestDeserializationVectors(t *testing.T) {
	cases := loadVectors[deserializationVector](t, "deserialization.json")
	c := vectorCount{name: "deserialization.json"}
	defer c.report(t)
	for _, tc := range cases {
		c.run(t, fmt.Sprintf("%d", tc.Length), func(t *testing.T) {
			s := cryptobyte.String(tc.VLBytesHeader)
			var n int
			if !readVarint(&s, &n) {
				t.Fatalf("header %x does not decode", []byte(tc.VLBytesHeader))
			}
			if !s.Empty() {
				t.Errorf("header %x: %d bytes left after decoding", []byte(tc.VLBytesHeader), len(s))
			}
			if n != tc.Length {
				t.Errorf("header %x decodes to %d, want %d", []byte(tc.VLBytesHeader), n, tc.Length)
			}
			var b cryptobyte.Builder
			writeVarint(&b, tc.Length)
			got, err := b.Bytes()
			if err != nil {
				t.Fatalf("encoding %d: %v", tc.Length, err)
			}
			if !bytes.Equal(got, tc.VLBytesHeader) {
				t.Errorf("%d encodes to %x, want %x", tc.Length, got, []byte(tc.VLBytesHeader))
			}
		})
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCodecVarintRejectsMalformed(t *testing.T) {
	for _, tc := range []struct {
		name, in string
	}{
		{"empty", ""},
		{"2-byte form of 1", "4001"},
		{"2-byte form of 63", "403f"},
		{"4-byte form of 1", "80000001"},
		{"4-byte form of 16383", "80003fff"},
		{"8-byte form of 1", "c000000000000001"},
		{"8-byte form of 2^30", "c000000040000000"},
		{"truncated 2-byte form", "40"},
		{"truncated 4-byte form", "800040"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := cryptobyte.String(mustHex(t, tc.in))
			var n int
			if readVarint(&s, &n) {
				t.Errorf("%s decodes to %d, want an error", tc.in, n)
			}
		})
	}
}

func TestCodecVarintBoundaries(t *testing.T) {
	for _, n := range []int{0, 63, 64, 16383, 16384, maxVarint} {
		var b cryptobyte.Builder
		writeVarint(&b, n)
		enc, err := b.Bytes()
		if err != nil {
			t.Fatalf("encoding %d: %v", n, err)
		}
		s := cryptobyte.String(enc)
		var got int
		if !readVarint(&s, &got) || got != n || !s.Empty() {
			t.Errorf("%d encodes to %x, which decodes to %d", n, enc, got)
		}
	}
	for _, n := range []int{-1, maxVarint + 1} {
		var b cryptobyte.Builder
		writeVarint(&b, n)
		if _, err := b.Bytes(); err == nil {
			t.Errorf("encoding %d: no error", n)
		}
	}
}

// privateMessageHex builds an MLSMessage carrying a PrivateMessage from hex parts,
// so that each malformed case below changes exactly one field.
type privateMessageHex struct {
	version, wireFormat, groupID, epoch, contentType, aad, senderData, ciphertext string
}

func (p privateMessageHex) String() string {
	return p.version + p.wireFormat + p.groupID + p.epoch + p.contentType + p.aad + p.senderData + p.ciphertext
}

// validPrivateMessage is version 1, wire format 2, group_id "abc", epoch 7, content
// type application, empty authenticated_data, encrypted_sender_data "sd", ciphertext "ct".
var validPrivateMessage = privateMessageHex{"0001", "0002", "03616263", "0000000000000007", "01", "00", "027364", "026374"}

func TestCodecUnmarshalMLSMessage(t *testing.T) {
	valid := mustHex(t, validPrivateMessage.String())
	m, err := UnmarshalMLSMessage(valid)
	if err != nil {
		t.Fatalf("valid message: %v", err)
	}
	if m.WireFormat != WireFormatPrivateMessage || string(m.PrivateMessage.GroupID) != "abc" ||
		m.PrivateMessage.Epoch != 7 || string(m.PrivateMessage.Ciphertext) != "ct" {
		t.Fatalf("valid message decodes to %+v", m.PrivateMessage)
	}
	if !bytes.Equal(m.Bytes(), valid) {
		t.Fatalf("valid message re-encodes to %x", m.Bytes())
	}
	with := func(f func(p *privateMessageHex)) string {
		p := validPrivateMessage
		f(&p)
		return p.String()
	}
	for _, tc := range []struct {
		name, in string
	}{
		{"trailing byte", validPrivateMessage.String() + "00"},
		{"trailing bytes", validPrivateMessage.String() + "deadbeef"},
		{"non-minimal group_id length", with(func(p *privateMessageHex) { p.groupID = "4003616263" })},
		{"non-minimal ciphertext length", with(func(p *privateMessageHex) { p.ciphertext = "800000026374" })},
		{"8-byte group_id length", with(func(p *privateMessageHex) { p.groupID = "c000000000000003616263" })},
		{"length past the end", with(func(p *privateMessageHex) { p.ciphertext = "036374" })},
		{"version 0", with(func(p *privateMessageHex) { p.version = "0000" })},
		{"version 2", with(func(p *privateMessageHex) { p.version = "0002" })},
		{"wire format 0", with(func(p *privateMessageHex) { p.wireFormat = "0000" })},
		{"wire format 6", with(func(p *privateMessageHex) { p.wireFormat = "0006" })},
		{"content type 0", with(func(p *privateMessageHex) { p.contentType = "00" })},
		{"content type 4", with(func(p *privateMessageHex) { p.contentType = "04" })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := mustHex(t, tc.in)
			m, err := UnmarshalMLSMessage(in)
			if err == nil {
				t.Fatalf("%x parses as %+v", in, m)
			}
			if !errors.Is(err, ErrDecode) {
				t.Errorf("error %v does not wrap ErrDecode", err)
			}
		})
	}
}

// TestCodecTruncation checks that no strict prefix of a valid encoding parses, nor
// the encoding with a byte appended, for a message of each kind from messages.json
// and the structures carried inside them.
func TestCodecTruncation(t *testing.T) {
	v := loadVectors[messagesVector](t, "messages.json")[0]
	for _, f := range messageFields {
		t.Run(f.name, func(t *testing.T) {
			data := f.get(&v)
			if _, err := f.reencode(data); err != nil {
				t.Fatalf("full encoding does not parse: %v", err)
			}
			for n := range len(data) {
				if _, err := f.reencode(data[:n]); err == nil {
					t.Errorf("prefix of %d of %d bytes parses", n, len(data))
				}
			}
			if _, err := f.reencode(append(bytes.Clone(data), 0)); err == nil {
				t.Errorf("encoding with a trailing zero byte parses")
			}
		})
	}
}
