package opus

import "testing"

// BenchmarkEncode20ms encodes one 20 ms frame of speech-like audio at the
// default settings plus FEC per iteration.
func BenchmarkEncode20ms(b *testing.B) {
	e := newEncoder(b)
	if err := e.SetFEC(true, 10); err != nil {
		b.Fatal(err)
	}
	pcm := voice(SampleRate)
	out := make([]byte, MaxPacketSize)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := e.Encode(pcm[i:i+960], out); err != nil {
			b.Fatal(err)
		}
		i = (i + 960) % len(pcm)
	}
}

// BenchmarkDecode20ms decodes one 20 ms packet per iteration.
func BenchmarkDecode20ms(b *testing.B) {
	e := newEncoder(b)
	pkts := encodeAll(b, e, voice(SampleRate), 960)
	d := newDecoder(b)
	pcm := make([]int16, 960)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := d.Decode(pkts[i], pcm); err != nil {
			b.Fatal(err)
		}
		i = (i + 1) % len(pkts)
	}
}
