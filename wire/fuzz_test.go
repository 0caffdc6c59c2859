package wire

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
)

// knownTypes lists the message types in number order, so a fuzz input can pick one.
func knownTypes() []MessageType {
	var ts []MessageType
	for t := range types {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

// checkReencodes fails unless m encodes back to exactly body.
func checkReencodes(t *testing.T, m Message, body []byte) {
	t.Helper()
	again, err := Marshal(m)
	if err != nil {
		t.Fatalf("%s decoded but does not encode: %v", m.Type(), err)
	}
	if !bytes.Equal(again, body) {
		t.Fatalf("%s re-encodes differently:\n in  %x\n out %x", m.Type(), body, again)
	}
}

// FuzzDecodeMessage runs every body decoder: the first input picks the decoder, the
// second is the body. Whatever decodes must re-encode to the same bytes.
func FuzzDecodeMessage(f *testing.F) {
	ts := knownTypes()
	for _, m := range examples() {
		body, err := Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(slices.Index(ts, m.Type())), body)
	}
	f.Fuzz(func(t *testing.T, pick uint8, body []byte) {
		typ := ts[int(pick)%len(ts)]
		m, err := Unmarshal(typ, body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		checkReencodes(t, m, body)
	})
}

// FuzzReadFrame reads frames from an arbitrary stream until it ends or goes out of
// step. Every frame that decodes re-encodes to the same bytes, header included.
func FuzzReadFrame(f *testing.F) {
	var all []byte
	for _, m := range examples() {
		frame, err := AppendFrame(nil, 3, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame)
		all = append(all, frame...)
	}
	f.Add(all)
	f.Add(cat(header(9, 999, 3), []byte{1, 2, 3}))
	f.Add(header(5, TypePing, 1))
	f.Fuzz(func(t *testing.T, stream []byte) {
		c := readConn(stream)
		for {
			fr, err := c.ReadFrame()
			switch {
			case errors.Is(err, ErrUnknownMessageType):
				continue
			case err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, ErrMalformed), errors.Is(err, ErrFrameTooLarge):
				return
			case err != nil:
				t.Fatalf("unexpected error %v", err)
			}
			m, err := Decode(fr)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("decode error does not wrap ErrMalformed: %v", err)
				}
				continue
			}
			checkReencodes(t, m, fr.Body)
			frame, err := AppendFrame(nil, fr.RequestID, m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(stream, frame) {
				t.Fatalf("%s frame re-encodes to bytes not in the input", m.Type())
			}
		}
	})
}

// FuzzParseMLSHeader checks the exchange's one look into MLS payloads never panics and
// never reads a header out of bytes that are not there.
func FuzzParseMLSHeader(f *testing.F) {
	for _, p := range mlsPayloads(f) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		h, err := ParseMLSHeader(payload)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if h.WireFormat < WireFormatPublicMessage || h.WireFormat > WireFormatKeyPackage {
			t.Fatalf("accepted wire format %d", h.WireFormat)
		}
		if (h.WireFormat <= WireFormatPrivateMessage) != (len(h.GroupID) > 0) {
			t.Fatalf("group ID %x for wire format %d", h.GroupID, h.WireFormat)
		}
	})
}

func BenchmarkSend1KB(b *testing.B) {
	m := &Send{
		MessageID:  id16(1),
		GroupID:    GroupID(bytes.Repeat([]byte{7}, 32)),
		Epoch:      12,
		Recipients: []DeviceID{id16(1), id16(2), id16(3)},
		TTLSeconds: 604800,
		Payload:    bytes.Repeat([]byte{0xA5}, 1024),
	}
	b.ReportAllocs()
	for b.Loop() {
		frame, err := AppendFrame(nil, 1, m)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Unmarshal(TypeSend, frame[headerSize:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConnSend1KB measures a 1 KB Send written by one Conn and read by another,
// through memory.
func BenchmarkConnSend1KB(b *testing.B) {
	m := &Send{MessageID: id16(1), GroupID: GroupID(bytes.Repeat([]byte{7}, 32)), Epoch: 12,
		Recipients: []DeviceID{id16(1), id16(2), id16(3)}, Payload: bytes.Repeat([]byte{0xA5}, 1024)}
	var buf bytes.Buffer
	c := NewConn(&rw{r: &buf, w: &buf})
	b.ReportAllocs()
	for b.Loop() {
		if err := c.WriteMessage(1, m); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
}
