package device

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

var contentTime = time.UnixMilli(1_760_000_000_000).UTC()

func sampleContents() []*content {
	return []*content{
		{Type: contentText, SentAt: contentTime, Text: "meeting moved to 14:00"},
		{Type: contentText, SentAt: contentTime, ExpiresAt: contentTime.Add(time.Hour), Text: "سلام"},
		{Type: contentFile, SentAt: contentTime, File: &fileRef{BlobID: [16]byte{1}, Key: [32]byte{2}, Size: 1234,
			SHA256: [32]byte{3}, Name: "report.pdf", MediaType: "application/pdf"}},
		{Type: contentFile, SentAt: contentTime, File: &fileRef{Size: 0, Name: "empty"}},
		{Type: contentTimer, SentAt: contentTime, Timer: 30 * time.Second},
		{Type: contentTimer, SentAt: contentTime},
		{Type: contentConversation, SentAt: contentTime, Info: &convInfo{Kind: kindDirect, Officials: []string{"alice", "bob"}}},
		{Type: contentConversation, SentAt: contentTime, Info: &convInfo{Kind: kindGroup, Name: "crisis cell", Timer: time.Hour}},
		{Type: contentCall, SentAt: contentTime, Call: &callSignal{ID: [16]byte{9}, Signal: signalRing, Profile: "good"}},
		{Type: contentCall, SentAt: contentTime, Call: &callSignal{ID: [16]byte{9}, Signal: signalHangup}},
		{Type: contentCall, SentAt: contentTime, Call: &callSignal{ID: [16]byte{9}, Signal: signalMedia, Profile: "poor"}},
	}
}

func TestContentRoundTrip(t *testing.T) {
	for _, c := range sampleContents() {
		data, err := encodeContent(c)
		if err != nil {
			t.Fatalf("encode %+v: %v", c, err)
		}
		got, err := decodeContent(data)
		if err != nil {
			t.Fatalf("decode type %d: %v", c.Type, err)
		}
		again, err := encodeContent(got)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("type %d does not re-encode to the same bytes", c.Type)
		}
		if got.Text != c.Text || got.Timer != c.Timer || !got.SentAt.Equal(c.SentAt) || !got.ExpiresAt.Equal(c.ExpiresAt) {
			t.Fatalf("type %d: decoded %+v, want %+v", c.Type, got, c)
		}
		if c.Call != nil && *got.Call != *c.Call {
			t.Fatalf("call: decoded %+v, want %+v", got.Call, c.Call)
		}
		if c.File != nil && *got.File != *c.File {
			t.Fatalf("file: decoded %+v, want %+v", got.File, c.File)
		}
		// No truncation of a valid encoding decodes, and no extension does.
		for i := range data {
			if _, err := decodeContent(data[:i]); err == nil {
				t.Fatalf("type %d: truncation to %d bytes decodes", c.Type, i)
			}
		}
		if _, err := decodeContent(append(data, 0)); err == nil {
			t.Fatalf("type %d: trailing byte accepted", c.Type)
		}
	}
}

func TestContentRefusesWhatTheFormatForbids(t *testing.T) {
	bad := []*content{
		{Type: contentCall, SentAt: contentTime, Call: &callSignal{Signal: 0}},
		{Type: contentCall, SentAt: contentTime, Call: &callSignal{Signal: signalMedia + 1}},
		{Type: contentCall, SentAt: contentTime, Call: &callSignal{Signal: signalMedia}},
		{Type: contentCall, SentAt: contentTime, Call: &callSignal{Signal: signalHangup, Profile: "good"}},
		{Type: contentCall, SentAt: contentTime, Call: &callSignal{Signal: signalRing, Profile: "Good!"}},
		{Type: contentCall, SentAt: contentTime},
		{Type: contentText, SentAt: contentTime, Text: ""},
		{Type: contentText, SentAt: contentTime, Text: "\xff\xfe"},
		{Type: contentText, SentAt: contentTime, Text: strings.Repeat("a", maxTextSize+1)},
		{Type: contentText, SentAt: contentTime, ExpiresAt: contentTime.Add(-time.Second), Text: "x"},
		{Type: contentFile, SentAt: contentTime, File: &fileRef{Name: "../etc/passwd"}},
		{Type: contentFile, SentAt: contentTime, File: &fileRef{Name: ".."}},
		{Type: contentFile, SentAt: contentTime, File: &fileRef{Name: "a\nb"}},
		{Type: contentFile, SentAt: contentTime, File: &fileRef{Name: "x", MediaType: "nonsense"}},
		{Type: contentFile, SentAt: contentTime, File: &fileRef{Name: "x", Size: -1}},
		{Type: contentTimer, SentAt: contentTime, Timer: 1500 * time.Millisecond},
		{Type: contentTimer, SentAt: contentTime, Timer: -time.Second},
		{Type: contentConversation, SentAt: contentTime, Info: &convInfo{Kind: kindDirect, Officials: []string{"bob", "alice"}}},
		{Type: contentConversation, SentAt: contentTime, Info: &convInfo{Kind: kindDirect, Officials: []string{"alice", "alice"}}},
		{Type: contentConversation, SentAt: contentTime, Info: &convInfo{Kind: kindDirect, Name: "x", Officials: []string{"a", "b"}}},
		{Type: contentConversation, SentAt: contentTime, Info: &convInfo{Kind: kindGroup, Name: ""}},
		{Type: contentConversation, SentAt: contentTime, Info: &convInfo{Kind: 3, Name: "x"}},
		{Type: 9, SentAt: contentTime},
	}
	for i, c := range bad {
		if _, err := encodeContent(c); err == nil {
			t.Errorf("case %d: encoded %+v", i, c)
		}
	}
	good, err := encodeContent(sampleContents()[0])
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func([]byte){
		"version":      func(b []byte) { b[0] = 2 },
		"type":         func(b []byte) { b[1] = 0 },
		"sent_at zero": func(b []byte) { copy(b[2:10], make([]byte, 8)) },
		"sent_at sign": func(b []byte) { b[2] = 0x80 },
		"length":       func(b []byte) { b[21]++ },
	} {
		b := bytes.Clone(good)
		mutate(b)
		if _, err := decodeContent(b); err == nil {
			t.Errorf("%s: mutated content decodes", name)
		}
	}
}

func FuzzDecodeContent(f *testing.F) {
	for _, c := range sampleContents() {
		data, err := encodeContent(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeContent(data)
		if err != nil {
			return
		}
		again, err := encodeContent(c)
		if err != nil {
			t.Fatalf("decoded content does not encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("decoded content re-encodes differently")
		}
	})
}
