package opus

import (
	"bytes"
	"errors"
	"testing"
)

func TestPacketSamples(t *testing.T) {
	big := bytes.Repeat([]byte{0}, 1276)
	tests := []struct {
		name string
		pkt  []byte
		want int // 0: invalid
	}{
		{"empty", nil, 0},
		{"SILK NB 10 ms, TOC only", []byte{0 << 3}, 480},
		{"SILK WB 20 ms", []byte{9 << 3, 1, 2, 3}, 960},
		{"SILK WB 40 ms", []byte{10 << 3, 1}, 1920},
		{"SILK WB 60 ms", []byte{11 << 3, 1}, 2880},
		{"hybrid SWB 10 ms", []byte{12 << 3}, 480},
		{"hybrid FB 20 ms", []byte{15 << 3}, 960},
		{"CELT 2.5 ms", []byte{16 << 3}, 120},
		{"CELT 20 ms", []byte{31 << 3}, 960},
		{"code 0 frame of 1275 bytes", append([]byte{9 << 3}, big[:1275]...), 960},
		{"code 0 frame of 1276 bytes", append([]byte{9 << 3}, big...), 0},
		{"code 1 two frames", []byte{9<<3 | 1, 1, 2}, 1920},
		{"code 1 odd payload", []byte{9<<3 | 1, 1, 2, 3}, 0},
		{"code 1 empty frames", []byte{9<<3 | 1}, 1920},
		{"code 2 one-byte length", []byte{9<<3 | 2, 2, 1, 2, 3}, 1920},
		{"code 2 length past end", []byte{9<<3 | 2, 4, 1, 2, 3}, 0},
		{"code 2 missing length", []byte{9<<3 | 2}, 0},
		{"code 2 truncated two-byte length", []byte{9<<3 | 2, 252}, 0},
		{"code 2 two-byte length", append([]byte{9<<3 | 2, 252, 0}, big[:252]...), 1920},
		{"code 3 missing count", []byte{9<<3 | 3}, 0},
		{"code 3 zero frames", []byte{9<<3 | 3, 0}, 0},
		{"code 3 CBR 3 frames", []byte{9<<3 | 3, 3, 1, 2, 3}, 2880},
		{"code 3 CBR uneven", []byte{9<<3 | 3, 3, 1, 2}, 0},
		{"code 3 over 120 ms", []byte{11<<3 | 3, 3}, 0},
		{"code 3 120 ms of 60 ms frames", []byte{11<<3 | 3, 2}, 5760},
		{"code 3 48 CELT 2.5 ms frames", []byte{16<<3 | 3, 48}, 5760},
		{"code 3 49 CELT 2.5 ms frames", []byte{16<<3 | 3, 49}, 0},
		{"code 3 padding", []byte{9<<3 | 3, 0x40 | 2, 2, 7, 7, 0, 0}, 1920},
		{"code 3 padding past end", []byte{9<<3 | 3, 0x40 | 2, 3, 0, 0}, 0},
		{"code 3 padding 255 chain", append([]byte{9<<3 | 3, 0x40 | 1, 255, 0}, big[:254]...), 960},
		{"code 3 truncated padding", []byte{9<<3 | 3, 0x40 | 1, 255}, 0},
		{"code 3 VBR", []byte{9<<3 | 3, 0x80 | 3, 1, 2, 9, 8, 8, 7}, 2880},
		{"code 3 VBR lengths past end", []byte{9<<3 | 3, 0x80 | 3, 1, 5, 9}, 0},
		{"code 3 VBR missing length", []byte{9<<3 | 3, 0x80 | 3, 1}, 0},
		{"code 3 VBR last frame too long", append([]byte{9<<3 | 3, 0x80 | 2, 0}, big...), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PacketSamples(tt.pkt)
			lib, libErr := libopusPacketSamples(tt.pkt)
			if tt.want == 0 {
				if !errors.Is(err, ErrInvalidPacket) {
					t.Errorf("PacketSamples = %d, %v; want ErrInvalidPacket", got, err)
				}
				if libErr == nil {
					t.Errorf("libopus accepts it (%d samples)", lib)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("PacketSamples = %d, %v; want %d", got, err, tt.want)
			}
			if libErr != nil || lib != tt.want {
				t.Errorf("libopus: %d, %v; want %d", lib, libErr, tt.want)
			}
		})
	}
}

func TestIsDTX(t *testing.T) {
	for _, tt := range []struct {
		pkt  []byte
		want bool
	}{
		{nil, false},
		{[]byte{9 << 3}, true},
		{[]byte{9 << 3, 0}, true},
		{[]byte{9 << 3, 0, 0}, false},
		{[]byte{9<<3 | 3}, false}, // malformed
		{[]byte{9<<3 | 1, 0}, false},
	} {
		if got := IsDTX(tt.pkt); got != tt.want {
			t.Errorf("IsDTX(%x) = %v, want %v", tt.pkt, got, tt.want)
		}
	}
}

// FuzzPacketSamples checks that PacketSamples never panics, agrees with
// libopus's own parser on which packets are valid and how long they are, and
// that IsDTX only accepts packets PacketSamples accepts.
func FuzzPacketSamples(f *testing.F) {
	for _, s := range [][]byte{
		{9 << 3}, {9<<3 | 1, 1, 2}, {9<<3 | 2, 252, 0}, {9<<3 | 3, 0xc3, 255, 1, 2, 3},
		{16<<3 | 3, 48}, {11<<3 | 3, 0x80 | 2, 1, 9, 9},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		n, err := PacketSamples(pkt)
		lib, libErr := libopusPacketSamples(pkt)
		if (err == nil) != (libErr == nil) {
			t.Fatalf("PacketSamples: %d, %v; libopus: %d, %v", n, err, lib, libErr)
		}
		if err == nil && n != lib {
			t.Fatalf("PacketSamples = %d, libopus %d", n, lib)
		}
		if err != nil && !errors.Is(err, ErrInvalidPacket) {
			t.Fatalf("error %v does not wrap ErrInvalidPacket", err)
		}
		if err == nil && (n <= 0 || n > MaxFrameSamples || n%120 != 0) {
			t.Fatalf("PacketSamples = %d", n)
		}
		if IsDTX(pkt) && err != nil {
			t.Fatal("IsDTX accepts a malformed packet")
		}
		if HasFEC(pkt) && err != nil {
			t.Fatal("HasFEC accepts a malformed packet")
		}
	})
}

// FuzzDecode feeds arbitrary bytes to a Decoder, as packets and as FEC data, and
// checks it never crashes and decodes exactly what PacketSamples promises.
func FuzzDecode(f *testing.F) {
	e, err := NewEncoder()
	if err != nil {
		f.Fatal(err)
	}
	defer e.Close()
	buf := make([]byte, MaxPacketSize)
	sig := voice(2880)
	for _, frame := range []int{480, 960, 1920, 2880} {
		n, err := e.Encode(sig[:frame], buf)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte(nil), buf[:n]...))
	}
	f.Add([]byte{16<<3 | 3, 0xc0 | 48, 255, 0})
	d, err := NewDecoder()
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close()
	pcm := make([]int16, MaxFrameSamples)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		want, perr := PacketSamples(pkt)
		n, err := d.Decode(pkt, pcm)
		if perr != nil {
			if !errors.Is(err, ErrInvalidPacket) {
				t.Fatalf("Decode of a malformed packet: %d, %v", n, err)
			}
			return
		}
		if err != nil {
			// libopus may still refuse a well-framed packet whose content it
			// cannot use; it must say so with ErrInvalidPacket.
			if !errors.Is(err, ErrInvalidPacket) {
				t.Fatalf("Decode: %v", err)
			}
		} else if n != want {
			t.Fatalf("Decode = %d samples, PacketSamples %d", n, want)
		}
		if _, err := d.DecodeFEC(pkt, pcm[:960]); err != nil && !errors.Is(err, ErrInvalidPacket) {
			t.Fatalf("DecodeFEC: %v", err)
		}
	})
}
