package call

import (
	"bytes"
	"testing"

	"mahfooz/media/opus"
)

func encodedPackets(t *testing.T, n int) [][]byte {
	t.Helper()
	enc, err := opus.NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	var out [][]byte
	pcm := make([]int16, 2880)
	for i := range n {
		for j := range pcm {
			pcm[j] = int16((i*2880 + j) % 200 * 50)
		}
		buf := make([]byte, 400)
		k, err := enc.Encode(pcm, buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:k])
	}
	return out
}

func TestPayloadRoundTrip(t *testing.T) {
	pk := encodedPackets(t, 2)
	for _, c := range []struct {
		name     string
		previous []byte
		resumes  bool
	}{{"single", nil, false}, {"redundant", pk[0], false}, {"resumes", nil, true}, {"redundant, resumes", pk[0], true}} {
		p := appendPayload(nil, pk[1], c.previous, c.resumes)
		m, err := ParsePayload(p)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !bytes.Equal(m.Packet, pk[1]) || !bytes.Equal(m.Previous, c.previous) || m.Resumes != c.resumes {
			t.Fatalf("%s: payload does not round-trip", c.name)
		}
		if c.previous != nil && m.PreviousSamples != 2880 {
			t.Fatalf("%s: previous packet of %d samples, want 2880", c.name, m.PreviousSamples)
		}
		for i := range p {
			if _, err := ParsePayload(p[:i]); err == nil && i < 2 {
				t.Fatalf("%s: truncation to %d bytes parses", c.name, i)
			}
		}
	}
	for _, bad := range [][]byte{{}, {0}, {4, 0xf8}, {0x80, 0xf8}, {1, 0, 0xf8}, {1, 9, 0xf8}, {3, 9, 0xf8}} {
		if _, err := ParsePayload(bad); err == nil {
			t.Errorf("payload % x parses", bad)
		}
	}
}

func FuzzMediaPayload(f *testing.F) {
	f.Add([]byte{0, 0xf8, 0xff, 0xfe})
	f.Add([]byte{1, 2, 0xf8, 0xff, 0xf8, 0xfe})
	f.Add([]byte{2, 0xf8, 0xff, 0xfe})
	f.Fuzz(func(t *testing.T, p []byte) {
		m, err := ParsePayload(p)
		if err != nil {
			return
		}
		// What parses re-encodes to the same bytes.
		if again := appendPayload(nil, m.Packet, m.Previous, m.Resumes); !bytes.Equal(again, p) {
			t.Fatalf("payload % x re-encodes to % x", p, again)
		}
	})
}
