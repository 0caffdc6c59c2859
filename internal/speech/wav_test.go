package speech

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

// wavFile builds a WAV file from raw fmt fields and samples.
func wavFile(format, channels uint16, rate uint32, depth uint16, samples []int16) []byte {
	b := []byte("RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00")
	align := channels * depth / 8
	b = binary.LittleEndian.AppendUint16(b, format)
	b = binary.LittleEndian.AppendUint16(b, channels)
	b = binary.LittleEndian.AppendUint32(b, rate)
	b = binary.LittleEndian.AppendUint32(b, rate*uint32(align))
	b = binary.LittleEndian.AppendUint16(b, align)
	b = binary.LittleEndian.AppendUint16(b, depth)
	b = append(b, "data"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(2*len(samples)))
	for _, s := range samples {
		b = binary.LittleEndian.AppendUint16(b, uint16(s))
	}
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)-8))
	return b
}

func TestParseWAV(t *testing.T) {
	good := wavFile(1, 1, 22050, 16, []int16{1, -2, 32767, -32768})
	x, rate, err := parseWAV(good)
	if err != nil || rate != 22050 || len(x) != 4 || x[1] != -2 || x[3] != -32768 {
		t.Fatalf("parseWAV = %v, %d, %v", x, rate, err)
	}
	bad := map[string][]byte{
		"stereo":        wavFile(1, 2, 22050, 16, nil),
		"8-bit":         wavFile(1, 1, 22050, 8, nil),
		"float":         wavFile(3, 1, 22050, 16, nil),
		"rate 0":        wavFile(1, 1, 0, 16, nil),
		"truncated":     good[:len(good)-1],
		"not riff":      append([]byte("RIFX"), good[4:]...),
		"trailing byte": append(append([]byte(nil), good...), 0),
		"empty":         nil,
	}
	for name, b := range bad {
		if _, _, err := parseWAV(b); !errors.Is(err, ErrWAV) {
			t.Errorf("%s: err = %v, want ErrWAV", name, err)
		}
	}
	for n := range len(good) {
		if _, _, err := parseWAV(good[:n]); err == nil {
			t.Errorf("truncated to %d bytes: accepted", n)
		}
	}
}

// FuzzParseWAV checks that parseWAV never panics and that whatever it accepts
// is consistent with its input.
func FuzzParseWAV(f *testing.F) {
	f.Add(wavFile(1, 1, 22050, 16, []int16{1, 2, 3}))
	f.Add(wavFile(1, 2, 48000, 16, nil))
	f.Add([]byte("RIFF\x04\x00\x00\x00WAVE"))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, rate, err := parseWAV(b)
		if err != nil {
			return
		}
		if rate < 8000 || rate > 192000 || 2*len(x) > len(b) {
			t.Fatalf("accepted rate %d with %d samples from %d bytes", rate, len(x), len(b))
		}
	})
}

// FuzzCompare checks that Compare never panics on arbitrary signals.
func FuzzCompare(f *testing.F) {
	f.Add([]byte{1, 2, 3}, []byte{4, 5}, uint16(1000))
	f.Fuzz(func(t *testing.T, s, h []byte, n uint16) {
		said := make([]int16, frameLen+int(n)%4800)
		heard := make([]int16, 1+int(n)%9600)
		for i := range said {
			if len(s) > 0 {
				said[i] = int16(s[i%len(s)]) << 7 * int16(i%7-3)
			}
		}
		for i := range heard {
			if len(h) > 0 {
				heard[i] = int16(h[i%len(h)]) << 7 * int16(i%5-2)
			}
		}
		r, err := Compare(said, heard)
		if err != nil {
			return
		}
		if r.Dropouts < 0 || r.Dropouts > 1 || r.Correlation < -1.0001 || r.Correlation > 1.0001 || r.ActiveFrames < 1 {
			t.Fatalf("out of range: %v", r)
		}
		if r.MinDelay > r.Delay || r.Delay > r.MaxDelay || r.MaxDelay-r.MinDelay > 400*time.Millisecond {
			t.Fatalf("delay out of range: %v", r)
		}
	})
}
