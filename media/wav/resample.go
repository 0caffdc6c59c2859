package wav

import (
	"math"
	"sync"
)

// The resampling filter: a sinc low-pass windowed by a Kaiser window, tabulated
// once and read with linear interpolation (after J. O. Smith, "Digital Audio
// Resampling"). With 32 zero crossings either side and β = 9 the stopband is
// about 90 dB down; the cutoff sits at 95% of the lower Nyquist frequency so
// that the transition band ends near it.
const (
	filterZeroCrossings = 32
	filterResolution    = 256 // table entries per zero crossing
	filterBeta          = 9.0
	filterCutoff        = 0.95
)

var filterTable = sync.OnceValue(func() []float64 {
	n := filterZeroCrossings * filterResolution
	t := make([]float64, n+2) // one spare entry for the interpolation
	i0beta := besselI0(filterBeta)
	for i := 0; i <= n; i++ {
		u := float64(i) / filterResolution // in zero crossings
		sinc := 1.0
		if i > 0 {
			sinc = math.Sin(math.Pi*u) / (math.Pi * u)
		}
		r := u / filterZeroCrossings
		t[i] = sinc * besselI0(filterBeta*math.Sqrt(max(0, 1-r*r))) / i0beta
	}
	return t
})

// besselI0 is the modified Bessel function of the first kind of order 0, by its
// power series.
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; k < 100; k++ {
		term *= (x / 2) / float64(k)
		sum += term * term
		if term*term < sum*1e-17 {
			break
		}
	}
	return sum
}

// resample converts in, sampled at rate, to SampleRate.
func resample(in []float32, rate int) []float32 {
	if rate == SampleRate || len(in) == 0 {
		return in
	}
	table := filterTable()
	// fc is the cutoff in cycles per input sample; the kernel h(x) =
	// 2·fc·sinc(2·fc·x)·w(x) spans filterZeroCrossings zero crossings of
	// sinc(2·fc·x) either side.
	fc := filterCutoff * 0.5 * float64(min(rate, SampleRate)) / float64(rate)
	gain := 2 * fc
	half := filterZeroCrossings / (2 * fc) // half-length, in input samples
	step := 2 * fc * filterResolution      // table entries per input sample
	outLen := int(int64(len(in)) * SampleRate / int64(rate))
	out := make([]float32, outLen)
	for n := range out {
		t := float64(n) * float64(rate) / SampleRate // position in input samples
		lo := max(0, int(math.Ceil(t-half)))
		hi := min(len(in)-1, int(math.Floor(t+half)))
		var acc float64
		for k := lo; k <= hi; k++ {
			pos := math.Abs(t-float64(k)) * step
			i := int(pos)
			if i >= len(table)-2 {
				continue
			}
			frac := pos - float64(i)
			h := table[i] + frac*(table[i+1]-table[i])
			acc += float64(in[k]) * h
		}
		out[n] = float32(acc * gain)
	}
	return out
}
