package jitter

import (
	"encoding/binary"
	"testing"
	"time"

	"mahfooz/media/opus"
)

// FuzzPush feeds a Buffer a script of packets from the network, with
// arbitrary timestamps, bytes and arrival times, interleaved with Next: it
// must never panic, and every well-formed packet must be counted once.
//
// The script is a sequence of records: a byte op, then for a packet a 4-byte
// timestamp, a 1-byte length and the packet; the op's next two bits say how
// the packet came (in the stream, after a silence, as a copy, or in the stream
// with copies on or off, by bit 6).
func FuzzPush(f *testing.F) {
	enc, err := opus.NewEncoder()
	if err != nil {
		f.Fatal(err)
	}
	defer enc.Close()
	if err := enc.SetFEC(true, 10); err != nil {
		f.Fatal(err)
	}
	sig := speechLike(4*960, false)
	var seed []byte
	buf := make([]byte, opus.MaxPacketSize)
	for k := range 4 {
		n, err := enc.Encode(sig[k*960:(k+1)*960], buf)
		if err != nil {
			f.Fatal(err)
		}
		seed = append(seed, 0)
		seed = binary.BigEndian.AppendUint32(seed, uint32(k*960))
		seed = append(seed, byte(min(n, 255)))
		seed = append(seed, buf[:min(n, 255)]...)
		seed = append(seed, 1, 2)
	}
	f.Add(seed)
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0x00, 1, 9 << 3, 0, 0, 0, 0, 0, 1, 9 << 3, 1, 1, 1})
	f.Fuzz(func(t *testing.T, script []byte) {
		dec, err := opus.NewDecoder()
		if err != nil {
			t.Fatal(err)
		}
		defer dec.Close()
		now := time.Unix(1, 0)
		b := New(Config{Now: func() time.Time { return now }}, dec)
		pcm := make([]int16, FrameSamples)
		var valid uint64
		for len(script) > 0 {
			op := script[0]
			script = script[1:]
			switch op % 4 {
			case 0: // a packet
				if len(script) < 5 {
					return
				}
				ts := binary.BigEndian.Uint32(script)
				n := min(int(script[4]), len(script)-5)
				pkt := script[5 : 5+n]
				script = script[5+n:]
				if _, err := opus.PacketSamples(pkt); err == nil {
					valid++
				}
				switch (op >> 2) % 4 {
				case 0:
					b.Push(ts, pkt)
				case 1:
					b.PushResumed(ts, pkt)
				case 2:
					b.PushCopy(ts, pkt)
				case 3:
					b.SetCopies(op&0x40 != 0)
					b.Push(ts, pkt)
				}
			case 1: // the playout clock
				now = now.Add(20 * time.Millisecond)
				b.Next(pcm)
			case 2: // time passes
				now = now.Add(time.Duration(op) * time.Millisecond)
			case 3: // time steps back
				now = now.Add(-time.Duration(op) * time.Millisecond)
			}
		}
		s := b.Stats()
		if s.Received != valid {
			t.Fatalf("Received = %d, %d well-formed packets pushed", s.Received, valid)
		}
		if s.Duplicate+s.Late > s.Received {
			t.Fatalf("%d duplicates and %d late of %d received", s.Duplicate, s.Late, s.Received)
		}
	})
}
