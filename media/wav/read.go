package wav

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// Limits on what Read accepts.
const (
	// SampleRate is the rate of every sample this package returns or writes.
	SampleRate = 48000
	// MinInputRate and MaxInputRate bound the sample rate of a file Read
	// accepts, in samples per second.
	MinInputRate = 8000
	MaxInputRate = 192000
	// MaxDataSize is the largest data chunk Read accepts, in bytes.
	MaxDataSize = 1 << 30
	// MaxSamples is the most samples Read returns: about 46 minutes.
	MaxSamples = 1 << 27
)

// Errors returned by this package. Callers test for them with errors.Is.
var (
	// ErrMalformed is returned by Read for a file that is not a well-formed
	// RIFF/WAVE file: truncated, with inconsistent sizes, or without its fmt or
	// data chunk.
	ErrMalformed = errors.New("wav: malformed file")
	// ErrUnsupported is returned by Read for a well-formed file in a format
	// this package does not read (an encoding, sample size or rate).
	ErrUnsupported = errors.New("wav: unsupported format")
	// ErrTooLarge is returned by Read for a file over MaxDataSize bytes of data
	// or MaxSamples samples, and by Writer.Write and Write for more audio than a
	// RIFF file can hold.
	ErrTooLarge = errors.New("wav: too large")
	// ErrClosed is returned by the methods of a closed Writer.
	ErrClosed = errors.New("wav: writer closed")
)

// Format codes of the fmt chunk, and of the sub-format of
// WAVE_FORMAT_EXTENSIBLE.
const (
	formatPCM        = 0x0001
	formatFloat      = 0x0003
	formatExtensible = 0xfffe
)

// extensibleGUIDTail is the sub-format GUID of WAVE_FORMAT_EXTENSIBLE after its
// first two bytes, which hold the format code (KSDATAFORMAT_SUBTYPE_PCM and
// _IEEE_FLOAT share it).
var extensibleGUIDTail = []byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71}

// format is what Read takes from the fmt chunk.
type format struct {
	code       uint16 // formatPCM or formatFloat
	channels   int
	rate       int
	blockAlign int
	bits       int
}

// ReadFile reads the WAVE file at path as Read does.
func ReadFile(path string) ([]int16, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("wav: %w", err)
	}
	defer f.Close()
	pcm, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return pcm, nil
}

// Read reads a RIFF/WAVE file from r and returns its audio as mono 16-bit
// samples at 48 kHz. It reads r up to the end of the RIFF chunk and no
// further.
func Read(r io.Reader) ([]int16, error) {
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: reading the RIFF header: %w", ErrMalformed, truncated(err))
	}
	if string(hdr[0:4]) != "RIFF" || string(hdr[8:12]) != "WAVE" {
		return nil, fmt.Errorf("%w: not a RIFF/WAVE file", ErrMalformed)
	}
	remaining := int64(binary.LittleEndian.Uint32(hdr[4:8])) - 4 // bytes of chunks
	if remaining < 0 {
		return nil, fmt.Errorf("%w: RIFF size too small", ErrMalformed)
	}
	var (
		fmtc    *format
		samples []float32
		gotData bool
	)
	for remaining > 0 {
		if remaining < 8 {
			return nil, fmt.Errorf("%w: %d stray bytes at the end of the RIFF chunk", ErrMalformed, remaining)
		}
		var ch [8]byte
		if _, err := io.ReadFull(r, ch[:]); err != nil {
			return nil, fmt.Errorf("%w: reading a chunk header: %w", ErrMalformed, truncated(err))
		}
		remaining -= 8
		id := string(ch[0:4])
		size := int64(binary.LittleEndian.Uint32(ch[4:8]))
		if size > remaining {
			return nil, fmt.Errorf("%w: chunk %q of %d bytes exceeds the RIFF chunk", ErrMalformed, printable(id), size)
		}
		var err error
		switch id {
		case "fmt ":
			if fmtc != nil {
				return nil, fmt.Errorf("%w: two fmt chunks", ErrMalformed)
			}
			fmtc, err = readFormat(r, size)
		case "data":
			if fmtc == nil {
				return nil, fmt.Errorf("%w: data chunk before the fmt chunk", ErrMalformed)
			}
			if gotData {
				return nil, fmt.Errorf("%w: two data chunks", ErrMalformed)
			}
			gotData = true
			samples, err = readData(r, size, fmtc)
		default:
			err = skip(r, size)
		}
		if err != nil {
			return nil, err
		}
		remaining -= size
		if size%2 == 1 && remaining > 0 { // RIFF pads chunks to an even size
			if err := skip(r, 1); err != nil {
				return nil, err
			}
			remaining--
		}
	}
	if fmtc == nil {
		return nil, fmt.Errorf("%w: no fmt chunk", ErrMalformed)
	}
	if !gotData {
		return nil, fmt.Errorf("%w: no data chunk", ErrMalformed)
	}
	return toInt16(resample(samples, fmtc.rate)), nil
}

// readFormat reads and checks a fmt chunk of size bytes.
func readFormat(r io.Reader, size int64) (*format, error) {
	if size < 16 || size > 1024 {
		return nil, fmt.Errorf("%w: fmt chunk of %d bytes", ErrMalformed, size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: reading the fmt chunk: %w", ErrMalformed, truncated(err))
	}
	le := binary.LittleEndian
	f := &format{
		code:       le.Uint16(b[0:2]),
		channels:   int(le.Uint16(b[2:4])),
		rate:       int(le.Uint32(b[4:8])),
		blockAlign: int(le.Uint16(b[12:14])),
		bits:       int(le.Uint16(b[14:16])),
	}
	byteRate := int64(le.Uint32(b[8:12]))
	if f.code == formatExtensible {
		if size < 40 || le.Uint16(b[16:18]) < 22 {
			return nil, fmt.Errorf("%w: WAVE_FORMAT_EXTENSIBLE fmt chunk too short", ErrMalformed)
		}
		if valid := int(le.Uint16(b[18:20])); valid > f.bits {
			return nil, fmt.Errorf("%w: %d valid bits in %d-bit samples", ErrMalformed, valid, f.bits)
		}
		if !bytes.Equal(b[26:40], extensibleGUIDTail) {
			return nil, fmt.Errorf("%w: unknown WAVE_FORMAT_EXTENSIBLE sub-format", ErrUnsupported)
		}
		f.code = le.Uint16(b[24:26])
	}
	switch {
	case f.code == formatPCM && (f.bits == 8 || f.bits == 16 || f.bits == 24 || f.bits == 32):
	case f.code == formatFloat && (f.bits == 32 || f.bits == 64):
	default:
		return nil, fmt.Errorf("%w: format %#04x with %d-bit samples", ErrUnsupported, f.code, f.bits)
	}
	if f.channels < 1 {
		return nil, fmt.Errorf("%w: no channels", ErrMalformed)
	}
	if f.blockAlign != f.channels*f.bits/8 {
		return nil, fmt.Errorf("%w: block align %d for %d channels of %d bits", ErrMalformed, f.blockAlign, f.channels, f.bits)
	}
	if f.rate < MinInputRate || f.rate > MaxInputRate {
		return nil, fmt.Errorf("%w: sample rate %d Hz outside %d..%d", ErrUnsupported, f.rate, MinInputRate, MaxInputRate)
	}
	if byteRate != int64(f.rate)*int64(f.blockAlign) {
		return nil, fmt.Errorf("%w: byte rate %d for %d Hz and %d-byte blocks", ErrMalformed, byteRate, f.rate, f.blockAlign)
	}
	return f, nil
}

// readData reads a data chunk of size bytes in format f, averaging the
// channels, and returns the samples scaled to [-1, 1].
func readData(r io.Reader, size int64, f *format) ([]float32, error) {
	if size > MaxDataSize {
		return nil, fmt.Errorf("%w: data chunk of %d bytes, limit %d", ErrTooLarge, size, MaxDataSize)
	}
	if size%int64(f.blockAlign) != 0 {
		return nil, fmt.Errorf("%w: data chunk of %d bytes is not a whole number of %d-byte blocks", ErrMalformed, size, f.blockAlign)
	}
	frames := size / int64(f.blockAlign)
	if frames*SampleRate/int64(f.rate) > MaxSamples {
		return nil, fmt.Errorf("%w: %d samples at %d Hz, limit %d at %d Hz", ErrTooLarge, frames, f.rate, MaxSamples, SampleRate)
	}
	// Read in pieces and let the slice grow with what actually arrives, so
	// a lying header cannot make Read allocate for data that is not there.
	const piece = 1 << 16
	buf := make([]byte, max(piece/f.blockAlign, 1)*f.blockAlign)
	out := make([]float32, 0, min(frames, piece))
	width := f.bits / 8
	scale := 1 / float64(f.channels)
	for frames > 0 {
		n := min(int64(len(buf)/f.blockAlign), frames)
		b := buf[:n*int64(f.blockAlign)]
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("%w: reading the data chunk: %w", ErrMalformed, truncated(err))
		}
		for len(b) > 0 {
			var sum float64
			for c := range f.channels {
				sum += sampleValue(b[c*width:(c+1)*width], f.code)
			}
			out = append(out, float32(sum*scale))
			b = b[f.blockAlign:]
		}
		frames -= n
	}
	return out, nil
}

// sampleValue decodes one little-endian sample of len(b) bytes to [-1, 1].
func sampleValue(b []byte, code uint16) float64 {
	le := binary.LittleEndian
	if code == formatFloat {
		var v float64
		if len(b) == 4 {
			v = float64(math.Float32frombits(le.Uint32(b)))
		} else {
			v = math.Float64frombits(le.Uint64(b))
		}
		if math.IsNaN(v) {
			return 0
		}
		return max(-1, min(1, v))
	}
	switch len(b) {
	case 1:
		return (float64(b[0]) - 128) / 128 // 8-bit PCM is unsigned
	case 2:
		return float64(int16(le.Uint16(b))) / (1 << 15)
	case 3:
		return float64(int32(uint32(b[0])<<8|uint32(b[1])<<16|uint32(b[2])<<24)>>8) / (1 << 23)
	default:
		return float64(int32(le.Uint32(b))) / (1 << 31)
	}
}

// toInt16 converts samples in [-1, 1] to 16-bit ones, rounding and
// saturating.
func toInt16(in []float32) []int16 {
	out := make([]int16, len(in))
	for i, v := range in {
		out[i] = int16(max(-32768, min(32767, math.Round(float64(v)*32768))))
	}
	return out
}

// skip discards n bytes of r.
func skip(r io.Reader, n int64) error {
	if _, err := io.CopyN(io.Discard, r, n); err != nil {
		return fmt.Errorf("%w: skipping a chunk: %w", ErrMalformed, truncated(err))
	}
	return nil
}

// truncated turns the end of the input into io.ErrUnexpectedEOF: inside a
// RIFF chunk, an end is always premature.
func truncated(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// printable returns a chunk ID fit for an error message.
func printable(id string) string {
	b := []byte(id)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}
