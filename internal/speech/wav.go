package speech

import (
	"encoding/binary"
	"errors"
	"math"
)

// ErrWAV is returned by parseWAV for bytes that are not a mono 16-bit PCM WAV
// file.
var ErrWAV = errors.New("speech: not a mono 16-bit PCM WAV file")

// parseWAV decodes a RIFF/WAVE file holding mono 16-bit little-endian PCM, the
// format espeak-ng writes, and returns its samples and sample rate. It
// rejects truncated chunks, a missing or repeated fmt or data chunk, a data
// chunk before fmt, and any other sample format.
func parseWAV(b []byte) (samples []int16, rate int, err error) {
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, 0, ErrWAV
	}
	riff := binary.LittleEndian.Uint32(b[4:8])
	if uint64(riff) != uint64(len(b)-8) {
		return nil, 0, ErrWAV
	}
	var haveFmt, haveData bool
	for p := 12; p < len(b); {
		if len(b)-p < 8 {
			return nil, 0, ErrWAV
		}
		id := string(b[p : p+4])
		size := uint64(binary.LittleEndian.Uint32(b[p+4 : p+8]))
		p += 8
		if size > uint64(len(b)-p) {
			return nil, 0, ErrWAV
		}
		body := b[p : p+int(size)]
		p += int(size)
		if size%2 == 1 && p < len(b) { // chunks are padded to even length
			p++
		}
		switch id {
		case "fmt ":
			if haveFmt || len(body) < 16 {
				return nil, 0, ErrWAV
			}
			haveFmt = true
			format := binary.LittleEndian.Uint16(body[0:2])
			channels := binary.LittleEndian.Uint16(body[2:4])
			r := binary.LittleEndian.Uint32(body[4:8])
			byteRate := binary.LittleEndian.Uint32(body[8:12])
			align := binary.LittleEndian.Uint16(body[12:14])
			depth := binary.LittleEndian.Uint16(body[14:16])
			if format != 1 || channels != 1 || depth != 16 || align != 2 ||
				r < 8000 || r > 192000 || byteRate != 2*r {
				return nil, 0, ErrWAV
			}
			rate = int(r)
		case "data":
			if !haveFmt || haveData || len(body)%2 != 0 {
				return nil, 0, ErrWAV
			}
			haveData = true
			samples = make([]int16, len(body)/2)
			for i := range samples {
				samples[i] = int16(binary.LittleEndian.Uint16(body[2*i:]))
			}
		}
	}
	if !haveData {
		return nil, 0, ErrWAV
	}
	return samples, rate, nil
}

// resample converts x from inRate to outRate by band-limited (windowed-sinc)
// interpolation. The low-pass cutoff is just below the lower of the two
// Nyquist frequencies, so downsampling does not alias. Both rates must be
// positive and reduce, over their greatest common divisor, to an output
// factor of at most 4096 (true of all common audio rates); the kernel is
// precomputed for each of those output phases.
func resample(x []int16, inRate, outRate int) []int16 {
	if inRate == outRate {
		return append([]int16(nil), x...)
	}
	g := gcd(inRate, outRate)
	up, down := outRate/g, inRate/g
	if up > 4096 {
		panic("speech: resampling ratio too fine")
	}
	const halfTaps = 24 // kernel half-width in periods of the cutoff
	cutoff := 0.95      // relative to the input Nyquist frequency
	if down > up {
		cutoff *= float64(up) / float64(down)
	}
	width := float64(halfTaps) / cutoff
	reach := int(math.Ceil(width))
	// kernel[p][j] weighs input sample floor(t)-reach+1+j for an output
	// sample at input time t whose fractional part is p/up.
	kernel := make([][]float64, up)
	for p := range kernel {
		kernel[p] = make([]float64, 2*reach)
		frac := float64(p) / float64(up)
		for j := range kernel[p] {
			d := frac + float64(reach-1-j) // t - k
			if math.Abs(d) >= width {
				continue
			}
			arg := math.Pi * d * cutoff
			s := cutoff
			if arg != 0 {
				s = cutoff * math.Sin(arg) / arg
			}
			// Blackman window over (-width, width).
			w := 0.42 + 0.5*math.Cos(math.Pi*d/width) + 0.08*math.Cos(2*math.Pi*d/width)
			kernel[p][j] = s * w
		}
	}
	n := int(int64(len(x)) * int64(up) / int64(down))
	out := make([]int16, n)
	for i := range out {
		pos := int64(i) * int64(down)
		base := int(pos/int64(up)) - reach + 1
		var sum float64
		for j, w := range kernel[pos%int64(up)] {
			if k := base + j; k >= 0 && k < len(x) {
				sum += float64(x[k]) * w
			}
		}
		out[i] = clip16(sum)
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// clip16 rounds v to the nearest int16, saturating.
func clip16(v float64) int16 {
	v = math.Round(v)
	if v > math.MaxInt16 {
		return math.MaxInt16
	}
	if v < math.MinInt16 {
		return math.MinInt16
	}
	return int16(v)
}
