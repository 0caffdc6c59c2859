package wav

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// spec describes a WAVE file for build.
type spec struct {
	code       uint16 // format code in the fmt chunk
	sub        uint16 // sub-format when code is formatExtensible
	channels   int
	rate       int
	bits       int
	extraChunk bool // a LIST chunk of odd size before the data chunk
}

// build returns a WAVE file with the given frames, each a slice of one value
// in [-1, 1] per channel.
func build(s spec, frames [][]float64) []byte {
	le := binary.LittleEndian
	width := s.bits / 8
	block := s.channels * width
	var data []byte
	for _, fr := range frames {
		for _, v := range fr {
			data = appendSample(data, v, s)
		}
	}
	var fmtc []byte
	fmtc = le.AppendUint16(fmtc, s.code)
	fmtc = le.AppendUint16(fmtc, uint16(s.channels))
	fmtc = le.AppendUint32(fmtc, uint32(s.rate))
	fmtc = le.AppendUint32(fmtc, uint32(s.rate*block))
	fmtc = le.AppendUint16(fmtc, uint16(block))
	fmtc = le.AppendUint16(fmtc, uint16(s.bits))
	if s.code == formatExtensible {
		fmtc = le.AppendUint16(fmtc, 22)
		fmtc = le.AppendUint16(fmtc, uint16(s.bits))
		fmtc = le.AppendUint32(fmtc, 0)
		fmtc = le.AppendUint16(fmtc, s.sub)
		fmtc = append(fmtc, extensibleGUIDTail...)
	}
	body := []byte("WAVE")
	body = appendChunk(body, "fmt ", fmtc)
	if s.extraChunk {
		body = appendChunk(body, "LIST", []byte("INFOxyz"))
	}
	body = appendChunk(body, "data", data)
	return appendChunk(nil, "RIFF", body)
}

func appendChunk(b []byte, id string, data []byte) []byte {
	b = append(b, id...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	if len(data)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

func appendSample(b []byte, v float64, s spec) []byte {
	le := binary.LittleEndian
	code := s.code
	if code == formatExtensible {
		code = s.sub
	}
	if code == formatFloat {
		if s.bits == 32 {
			return le.AppendUint32(b, math.Float32bits(float32(v)))
		}
		return le.AppendUint64(b, math.Float64bits(v))
	}
	switch s.bits {
	case 8:
		return append(b, byte(int(math.Round(v*127))+128))
	case 16:
		return le.AppendUint16(b, uint16(int16(math.Round(v*32767))))
	case 24:
		x := int32(math.Round(v * (1<<23 - 1)))
		return append(b, byte(x), byte(x>>8), byte(x>>16))
	default:
		return le.AppendUint32(b, uint32(int32(math.Round(v*(1<<31-1)))))
	}
}

// sine returns n frames of a sine of freq Hz and amplitude amp at rate,
// the same on every channel.
func sine(n, rate, channels int, freq, amp float64) [][]float64 {
	frames := make([][]float64, n)
	for i := range frames {
		v := amp * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))
		frames[i] = make([]float64, channels)
		for c := range frames[i] {
			frames[i][c] = v
		}
	}
	return frames
}

// goertzel returns the amplitude (relative to full scale) of the component of
// pcm at freq Hz, sampled at SampleRate.
func goertzel(pcm []int16, freq float64) float64 {
	w := 2 * math.Pi * freq / SampleRate
	c := 2 * math.Cos(w)
	var s1, s2 float64
	for _, x := range pcm {
		s0 := float64(x)/32768 + c*s1 - s2
		s2, s1 = s1, s0
	}
	power := s1*s1 + s2*s2 - c*s1*s2
	return 2 * math.Sqrt(power) / float64(len(pcm))
}

func TestRoundTrip(t *testing.T) {
	pcm := []int16{0, 1, -1, 32767, -32768, 1234, -4321}
	var buf bytes.Buffer
	if err := Write(&buf, pcm); err != nil {
		t.Fatal(err)
	}
	got, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !slicesEqual(got, pcm) {
		t.Fatalf("read %v, wrote %v", got, pcm)
	}
}

func slicesEqual(a, b []int16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestWriterFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "call.wav")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	first := []int16{1, 2, 3}
	if err := w.Write(first); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	// A process killed now leaves a file that reads as what was flushed, even
	// with more samples written after the flush.
	if err := w.Write([]int16{4, 5}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatalf("reading a flushed file: %v", err)
	}
	if !slicesEqual(got, first) {
		t.Fatalf("flushed file holds %v, want %v", got, first)
	}
	if err := w.Write([]int16{6}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err = ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int16{1, 2, 3, 4, 5, 6}; !slicesEqual(got, want) {
		t.Fatalf("closed file holds %v, want %v", got, want)
	}
	if err := w.Write([]int16{7}); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
}

func TestFormats(t *testing.T) {
	frames := sine(4800, SampleRate, 1, 1000, 0.5)
	for _, s := range []spec{
		{code: formatPCM, channels: 1, rate: SampleRate, bits: 8},
		{code: formatPCM, channels: 1, rate: SampleRate, bits: 16, extraChunk: true},
		{code: formatPCM, channels: 1, rate: SampleRate, bits: 24},
		{code: formatPCM, channels: 1, rate: SampleRate, bits: 32},
		{code: formatFloat, channels: 1, rate: SampleRate, bits: 32},
		{code: formatFloat, channels: 1, rate: SampleRate, bits: 64},
		{code: formatExtensible, sub: formatPCM, channels: 1, rate: SampleRate, bits: 24},
		{code: formatExtensible, sub: formatFloat, channels: 1, rate: SampleRate, bits: 32},
	} {
		got, err := Read(bytes.NewReader(build(s, frames)))
		if err != nil {
			t.Errorf("%+v: %v", s, err)
			continue
		}
		if len(got) != len(frames) {
			t.Errorf("%+v: %d samples, want %d", s, len(got), len(frames))
			continue
		}
		tol := 2.0 // 16 bits and more: rounding only
		if s.bits == 8 {
			tol = 300
		}
		for i, fr := range frames {
			if d := math.Abs(float64(got[i]) - fr[0]*32768); d > tol {
				t.Errorf("%+v: sample %d is %d, want %.0f", s, i, got[i], fr[0]*32768)
				break
			}
		}
	}
}

func TestDownmix(t *testing.T) {
	frames := [][]float64{{0.5, -0.5}, {0.25, 0.75}, {-1, -1}, {1, 0}}
	got, err := Read(bytes.NewReader(build(spec{code: formatPCM, channels: 2, rate: SampleRate, bits: 16}, frames)))
	if err != nil {
		t.Fatal(err)
	}
	want := []int16{0, 16383, -32767, 16384}
	for i := range want {
		if d := int(got[i]) - int(want[i]); d < -1 || d > 1 {
			t.Fatalf("downmix gave %v, want %v", got, want)
		}
	}
	// A six-channel file with the tone on one channel only: a sixth of it.
	six := sine(4800, SampleRate, 6, 1000, 0.6)
	for _, fr := range six {
		for c := 1; c < 6; c++ {
			fr[c] = 0
		}
	}
	got, err = Read(bytes.NewReader(build(spec{code: formatPCM, channels: 6, rate: SampleRate, bits: 16}, six)))
	if err != nil {
		t.Fatal(err)
	}
	if a := goertzel(got, 1000); math.Abs(a-0.1) > 0.002 {
		t.Errorf("six-channel downmix: amplitude %.4f, want 0.1", a)
	}
}

func TestResample(t *testing.T) {
	tests := []struct {
		rate  int
		freq  float64
		alias float64 // a frequency where nothing should be, 0 for none
	}{
		{22050, 1000, 22050 - 1000}, // image of the tone
		{22050, 9000, 22050 - 9000},
		{8000, 440, 8000 - 440},
		{16000, 3000, 16000 - 3000},
		{44100, 10000, 44100 - 10000},
		{11025, 2000, 11025 - 2000},
		{96000, 5000, 0},
		{192000, 12000, 0},
		{44101, 1000, 0}, // an awkward ratio
	}
	for _, tt := range tests {
		n := tt.rate // one second
		got, err := Read(bytes.NewReader(build(spec{code: formatPCM, channels: 1, rate: tt.rate, bits: 16}, sine(n, tt.rate, 1, tt.freq, 0.5))))
		if err != nil {
			t.Fatalf("%d Hz: %v", tt.rate, err)
		}
		if want := SampleRate; len(got) != want {
			t.Errorf("%d Hz: %d samples after resampling, want %d", tt.rate, len(got), want)
		}
		mid := got[SampleRate/10 : SampleRate*9/10] // away from the edges
		amp := goertzel(mid, tt.freq)
		if math.Abs(amp-0.5) > 0.01 {
			t.Errorf("%d Hz: tone of %.0f Hz has amplitude %.4f, want 0.5", tt.rate, tt.freq, amp)
		}
		// Everything but the tone: residual power relative to the tone.
		residual := 0.0
		for i, s := range mid {
			ideal := 0.5 * math.Sin(2*math.Pi*tt.freq*float64(i+SampleRate/10)/SampleRate)
			d := float64(s)/32768 - ideal
			residual += d * d
		}
		residualDB := 10 * math.Log10(residual/float64(len(mid))/(0.125))
		if residualDB > -60 {
			t.Errorf("%d Hz, %.0f Hz tone: distortion and aliasing at %.1f dB, want under -60 dB", tt.rate, tt.freq, residualDB)
		}
		if tt.alias > 0 && tt.alias < SampleRate/2 {
			if a := goertzel(mid, tt.alias); a > 0.5e-3 {
				t.Errorf("%d Hz: image at %.0f Hz with amplitude %.5f", tt.rate, tt.alias, a)
			}
		}
		t.Logf("%6d Hz, %5.0f Hz tone: amplitude %.4f, residual %.1f dB", tt.rate, tt.freq, amp, residualDB)
	}
}

// TestResampleAntiAlias checks that a tone above 24 kHz in a 96 kHz file does
// not fold back into the audible band.
func TestResampleAntiAlias(t *testing.T) {
	for _, f := range []float64{26000, 30000, 40000} {
		got, err := Read(bytes.NewReader(build(spec{code: formatPCM, channels: 1, rate: 96000, bits: 16}, sine(96000, 96000, 1, f, 0.5))))
		if err != nil {
			t.Fatal(err)
		}
		mid := got[SampleRate/10 : SampleRate*9/10]
		alias := 96000 - f
		if alias > SampleRate/2 {
			alias = SampleRate - alias
		}
		if a := goertzel(mid, alias); a > 0.5e-3 {
			t.Errorf("%.0f Hz in a 96 kHz file aliases to %.0f Hz with amplitude %.5f", f, alias, a)
		}
		var p float64
		for _, s := range mid {
			p += float64(s) * float64(s)
		}
		if rms := math.Sqrt(p/float64(len(mid))) / 32768; rms > 1e-3 {
			t.Errorf("%.0f Hz in a 96 kHz file leaves %.5f RMS", f, rms)
		}
	}
}

func TestMalformed(t *testing.T) {
	good := build(spec{code: formatPCM, channels: 1, rate: 16000, bits: 16}, sine(100, 16000, 1, 440, 0.5))
	le := binary.LittleEndian
	patch := func(off int, v uint32) []byte {
		b := bytes.Clone(good)
		le.PutUint32(b[off:], v)
		return b
	}
	patch16 := func(off int, v uint16) []byte {
		b := bytes.Clone(good)
		le.PutUint16(b[off:], v)
		return b
	}
	// good: RIFF(0) size(4) WAVE(8) "fmt "(12) 16(16) fmt(20..36) "data"(36) size(40) samples(44)
	noFmt := append([]byte(nil), good[:12]...)
	noFmt = appendChunk(noFmt, "data", good[44:])
	le.PutUint32(noFmt[4:], uint32(len(noFmt)-8))
	noData := append([]byte(nil), good[:36]...)
	le.PutUint32(noData[4:], uint32(len(noData)-8))
	twoFmt := append([]byte(nil), good[:36]...)
	twoFmt = append(twoFmt, good[12:]...)
	le.PutUint32(twoFmt[4:], uint32(len(twoFmt)-8))
	tests := []struct {
		name string
		file []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"not RIFF", append([]byte("RIFX"), good[4:]...), ErrMalformed},
		{"not WAVE", append(append(bytes.Clone(good[:8]), "AVI "...), good[12:]...), ErrMalformed},
		{"truncated data", good[:len(good)-1], ErrMalformed},
		{"truncated fmt", good[:30], ErrMalformed},
		{"RIFF size larger than file", patch(4, uint32(len(good))), ErrMalformed},
		{"RIFF size too small", patch(4, 2), ErrMalformed},
		{"chunk past RIFF end", patch(40, 1000), ErrMalformed},
		{"huge data size", patch(40, 0xfffffff0), ErrMalformed},
		{"huge sizes, little data", func() []byte { b := patch(40, 0x7ffffff0); le.PutUint32(b[4:], 0xfffffff0); return b }(), ErrTooLarge},
		{"data size not whole blocks", func() []byte { b := patch(40, 199); le.PutUint32(b[4:], uint32(len(good)-8-1)); return b[:len(b)-1] }(), ErrMalformed},
		{"no fmt", noFmt, ErrMalformed},
		{"no data", noData, ErrMalformed},
		{"two fmt", twoFmt, ErrMalformed},
		{"fmt too short", patch(16, 14), ErrMalformed},
		{"ADPCM", patch16(20, 2), ErrUnsupported},
		{"12-bit", patch16(34, 12), ErrUnsupported},
		{"zero channels", patch16(22, 0), ErrMalformed},
		{"wrong block align", patch16(32, 4), ErrMalformed},
		{"wrong byte rate", patch(28, 12345), ErrMalformed},
		{"rate too low", func() []byte { b := patch(24, 4000); le.PutUint32(b[28:], 8000); return b }(), ErrUnsupported},
		{"rate too high", func() []byte { b := patch(24, 384000); le.PutUint32(b[28:], 768000); return b }(), ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pcm, err := Read(bytes.NewReader(tt.file))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Read = %d samples, %v; want %v", len(pcm), err, tt.want)
			}
		})
	}
	if _, err := Read(bytes.NewReader(good)); err != nil {
		t.Fatalf("the unmodified file: %v", err)
	}
}

// TestHugeHeaderAllocates checks that a header claiming the largest data chunk
// allowed does not make Read allocate for it before the data arrives.
func TestHugeHeaderAllocates(t *testing.T) {
	b := build(spec{code: formatPCM, channels: 1, rate: SampleRate, bits: 16}, nil)
	binary.LittleEndian.PutUint32(b[4:], 0xfffffff0)
	binary.LittleEndian.PutUint32(b[40:], MaxSamples*2)
	b = append(b, make([]byte, 1000)...)
	var ms1, ms2 runtimeMem
	ms1.read()
	if _, err := Read(bytes.NewReader(b)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Read of a truncated huge file: %v", err)
	}
	ms2.read()
	if grown := ms2.total - ms1.total; grown > 8<<20 {
		t.Errorf("Read allocated %d bytes for a 1 KB file", grown)
	}
}

func TestEspeak(t *testing.T) {
	espeak, err := exec.LookPath("espeak-ng")
	if err != nil {
		t.Fatal("espeak-ng is not installed (test.sh installs it)")
	}
	path := filepath.Join(t.TempDir(), "speech.wav")
	if out, err := exec.Command(espeak, "-w", path, "The exchange relays audio it cannot decrypt.").CombinedOutput(); err != nil {
		t.Fatalf("espeak-ng: %v: %s", err, out)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	pcm, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// espeak-ng writes 16-bit mono at 22050 Hz.
	wantLen := int((info.Size() - headerSize) / 2 * SampleRate / 22050)
	if d := len(pcm) - wantLen; d < -2 || d > 2 {
		t.Errorf("read %d samples, want about %d", len(pcm), wantLen)
	}
	var peak int16
	for _, s := range pcm {
		peak = max(peak, s, -s)
	}
	if peak < 3000 {
		t.Errorf("speech peaks at %d", peak)
	}
}

// FuzzRead checks that Read never panics on any input, that it fails only
// with this package's errors, and that what it accepts has sane output.
func FuzzRead(f *testing.F) {
	f.Add(build(spec{code: formatPCM, channels: 2, rate: 22050, bits: 16, extraChunk: true}, sine(50, 22050, 2, 440, 0.5)))
	f.Add(build(spec{code: formatExtensible, sub: formatFloat, channels: 1, rate: 8000, bits: 32}, sine(20, 8000, 1, 440, 0.5)))
	f.Add(build(spec{code: formatPCM, channels: 3, rate: 48000, bits: 24}, sine(20, 48000, 3, 440, 0.5)))
	f.Add(build(spec{code: formatPCM, channels: 1, rate: 192000, bits: 8}, sine(40, 192000, 1, 440, 0.5)))
	f.Fuzz(func(t *testing.T, b []byte) {
		pcm, err := Read(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if len(pcm) > len(b)*SampleRate/MinInputRate {
			t.Fatalf("%d samples from %d bytes", len(pcm), len(b))
		}
		// What Write writes, Read reads back unchanged.
		var buf bytes.Buffer
		if err := Write(&buf, pcm); err != nil {
			t.Fatal(err)
		}
		again, err := Read(&buf)
		if err != nil || !slicesEqual(again, pcm) {
			t.Fatalf("re-reading: %v", err)
		}
	})
}
