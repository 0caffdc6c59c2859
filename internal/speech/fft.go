package speech

import (
	"math"
	"math/bits"
	"math/cmplx"
)

// fft is a radix-2 decimation-in-time FFT of one fixed power-of-two size. Its
// twiddle factors and bit-reversal table are computed once; transform keeps
// no other state, so an fft is safe for concurrent use.
type fft struct {
	n       int
	twiddle []complex128 // exp(-2πik/n), k < n/2
	rev     []int
}

func newFFT(n int) *fft {
	if n < 2 || n&(n-1) != 0 {
		panic("speech: fft size is not a power of two")
	}
	f := &fft{n: n, twiddle: make([]complex128, n/2), rev: make([]int, n)}
	for k := range f.twiddle {
		f.twiddle[k] = cmplx.Exp(complex(0, -2*math.Pi*float64(k)/float64(n)))
	}
	shift := 64 - bits.Len(uint(n-1))
	for i := range f.rev {
		f.rev[i] = int(bits.Reverse64(uint64(i)) >> shift)
	}
	return f
}

// transform replaces x (of length n) by its discrete Fourier transform.
func (f *fft) transform(x []complex128) {
	for i, j := range f.rev {
		if i < j {
			x[i], x[j] = x[j], x[i]
		}
	}
	for size := 2; size <= f.n; size <<= 1 {
		half, step := size/2, f.n/size
		for start := 0; start < f.n; start += size {
			for k := range half {
				w := f.twiddle[k*step] * x[start+k+half]
				x[start+k+half] = x[start+k] - w
				x[start+k] += w
			}
		}
	}
}
