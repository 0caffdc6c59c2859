package device

import (
	"testing"
)

// BenchmarkContentCodec encodes and decodes one text message's content.
func BenchmarkContentCodec(b *testing.B) {
	c := &content{Type: contentText, SentAt: contentTime, Text: "the convoy leaves at 06:00 from the north gate"}
	b.ReportAllocs()
	for b.Loop() {
		data, err := encodeContent(c)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := decodeContent(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDirectTextRoundTrip sends one text in an established direct
// conversation and has the recipient receive it, through a real exchange on
// 127.0.0.1: MLS encryption, vault transactions on both sides, Send, Deliver, Ack.
func BenchmarkDirectTextRoundTrip(b *testing.B) {
	e := newEnv(b)
	alice, bob := e.enroll("alice"), e.enroll("bob")
	alice.send(ConversationRef{To: "bob"}, "setup")
	bob.sync()
	ctx := ctxT(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := alice.SendText(ctx, ConversationRef{To: "bob"}, "benchmark message"); err != nil {
			b.Fatal(err)
		}
		if err := bob.Sync(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
