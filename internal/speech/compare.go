package speech

import (
	"errors"
	"fmt"
	"math"
	"math/cmplx"
	"time"
)

// Analysis parameters. Frames are as long as a typical codec frame, so that
// the loss of one packet is visible in at least one analysis frame, and
// overlap by three quarters, so that alignment has 5 ms resolution.
const (
	frameLen  = 960  // 20 ms analysis window
	fftLen    = 1024 // frameLen zero-padded to a power of two
	hop       = 240  // 5 ms between frames
	numBands  = 24   // mel-spaced bands
	lowHz     = 100  // speech range, lower edge
	highHz    = 7000 // speech range, upper edge
	rangeDB   = 50   // levels more than this below said's loudest band are floored
	activeDB  = 30   // frames within this of said's loudest frame are active speech
	dropoutDB = 10   // an active frame heard this much quieter than said is a dropout
)

// Thresholds of [Result.Intelligible]; see its documentation for how they
// were chosen.
const (
	maxLSD         = 8.0 // dB
	minCorrelation = 0.80
	maxDropouts    = 0.05 // fraction of active frames
)

// ErrSilent is returned by [Compare] when said holds no speech to compare.
var ErrSilent = errors.New("speech: said is silent")

// Result is how closely a heard signal matches a said one. It is a plain
// value, safe to copy and share.
type Result struct {
	// Delay is where said starts in heard: the delay at said's first
	// active frame. It is negative if heard starts part-way into said.
	Delay time.Duration
	// MinDelay and MaxDelay are the least and greatest delay over said's
	// active frames. Compare follows a delay that changes during the
	// recording, as a receiver's adaptive jitter buffer changes its playout
	// delay; they equal Delay when it did not change.
	MinDelay, MaxDelay time.Duration
	// LSD is the mean log-spectral distance, in dB, between said and heard
	// over the active frames, after the overall level of heard is matched to
	// said's. Band levels more than 50 dB below said's loudest are floored,
	// so inaudible detail does not count.
	LSD float64
	// Correlation is the Pearson correlation of the said and heard band
	// levels over the active frames, each band's mean removed: 1 when heard
	// follows every spectral change of said, near 0 when it is unrelated.
	Correlation float64
	// Dropouts is the fraction of active frames heard more than 10 dB
	// quieter than said (after level matching): lost audio not concealed.
	Dropouts float64
	// ActiveFrames is the number of 20 ms frames (5 ms apart) of said that
	// hold active speech, within 30 dB of its loudest frame.
	ActiveFrames int
}

// Intelligible reports whether heard is an intelligible rendition of said:
// LSD at most 8 dB, Correlation at least 0.80 and Dropouts at most 5 %.
//
// The thresholds were calibrated by TestCalibration on espeak-ng speech. A
// clean, delayed, scaled or band-limited (8 kHz, and 4 kHz) copy, one with
// white noise at 20 dB SNR, and one with 5 % of its 20 ms frames replaced by
// a faded repeat of the previous frame (packet-loss concealment) all pass:
// LSD at most 2.2 dB, Correlation at least 0.96, Dropouts at most 1.9 %.
// Silence, white noise at speech level, a different sentence and
// time-reversed speech fail every criterion (LSD 14 dB or more, Correlation
// 0.09 or less). The right sentence with 10 % or 20 % of its 20 ms frames
// zeroed (uncorrected loss) keeps a low LSD but fails on Dropouts (7.6 % and
// 14 %); Dropouts grows by about three quarters of the fraction of frames
// lost, so the 5 % threshold fails uncorrected loss of about 7 % or more.
// Opus itself (libopus, VoIP mode) at 6 to 32 kbit/s with 20 to 60 ms frames,
// with up to 10 % loss repaired by in-band FEC or concealment, measured LSD
// at most 4.7 dB, Correlation at least 0.86, Dropouts at most 3 %.
//
// A playout delay that changes during the sentence, as a receiver's adaptive
// jitter buffer changes it, is followed by [Compare]: the sentence with
// three 20 ms steps up (concealment inserted) and two down (a quiet frame
// dropped), also delayed 200 ms in noise at 30 dB SNR, and the sentence
// drifting 60 ms later in 20 ms steps with 5 % of its frames concealed, pass
// with LSD at most 0.6 dB, Correlation at least 0.98, Dropouts at most
// 0.3 %. Following the delay does not hide loss: the same steps or drift
// with 10 % of the frames zeroed still fail on Dropouts (7.8 % and 6.6 %),
// and the sentence whose second half is a different sentence fails every
// criterion (LSD 6.6 dB, Correlation 0.57, Dropouts 15 %). The test logs
// every measured value so that the margins can be reviewed.
func (r Result) Intelligible() bool {
	return r.LSD <= maxLSD && r.Correlation >= minCorrelation && r.Dropouts <= maxDropouts
}

// String formats r for logs.
func (r Result) String() string {
	return fmt.Sprintf("delay=%v (%v..%v) lsd=%.2fdB corr=%.3f dropouts=%.1f%% active=%d",
		r.Delay, r.MinDelay, r.MaxDelay, r.LSD, r.Correlation, 100*r.Dropouts, r.ActiveFrames)
}

// Compare measures how well heard reproduces said. Both are mono 48 kHz
// signals; heard may be longer, may start later (or, by less than half of
// said, earlier), and may be scaled. Compare finds the delay by
// cross-correlating band-level envelopes and refines it on the waveform.
// It then follows changes of that delay during the recording, of up to
// 120 ms at a time and 200 ms in all either side, to the nearest 5 ms: the
// path of delays, one per frame, that best matches said's active frames
// with heard's, each change costing as much as about 80 ms of speech
// misaligned by 20 ms, so that the path changes only where the rest of the
// recording is better aligned after the change, never to hide a lost frame
// behind a neighbouring one. Finally it compares 20 ms frames of said's
// active speech with the frames of heard along that path. It returns
// [ErrSilent] if said holds no audible signal. Compare is safe for
// concurrent use.
func Compare(said, heard []int16) (Result, error) {
	if len(said) < frameLen {
		return Result{}, errors.New("speech: said is shorter than one frame")
	}
	if len(heard) == 0 {
		return Result{}, errors.New("speech: heard is empty")
	}
	a := newAnalyzer()
	ns := (len(said)-frameLen)/hop + 1
	es := a.bands(said, 0, ns)

	// Active frames of said.
	frameE := make([]float64, ns)
	var peak float64
	for t := range es {
		for _, e := range es[t] {
			frameE[t] += e
		}
		peak = max(peak, frameE[t])
	}
	if peak == 0 {
		return Result{}, ErrSilent
	}
	var active []int
	for t, e := range frameE {
		if e >= peak*dbToPower(-activeDB) {
			active = append(active, t)
		}
	}

	delay := a.align(said, heard, es)
	// Heard's frames at every offset the delay path may take: grid frame
	// t+maxWander+k is heard at offset k hops from said's frame t.
	grid := a.bands(heard, delay-maxWander*hop, ns+2*maxWander)
	ls := levels(es)
	floor := math.Inf(-1)
	for t := range ls {
		for _, l := range ls[t] {
			floor = max(floor, l)
		}
	}
	floor -= rangeDB
	for t := range ls {
		for b := range numBands {
			ls[t][b] = max(ls[t][b], floor)
		}
	}

	// Follow changes of delay, with heard's level matched to said's at the
	// global alignment, then take heard's frames along the path.
	lg := levels(grid)
	g := levelGain(es, active, func(t int) *[numBands]float64 { return &grid[t+maxWander] })
	for t := range lg {
		for b := range numBands {
			lg[t][b] = max(lg[t][b]+10*math.Log10(g), floor)
		}
	}
	path := track(ls, lg, active)
	eh := make([][numBands]float64, ns)
	for t := range eh {
		eh[t] = grid[t+maxWander+path[t]]
	}

	// Match heard's overall level to said's over the active frames.
	g = levelGain(es, active, func(t int) *[numBands]float64 { return &eh[t] })
	for t := range eh {
		for b := range eh[t] {
			eh[t][b] *= g
		}
	}
	lh := levels(eh)
	for t := range lh {
		for b := range numBands {
			lh[t][b] = max(lh[t][b], floor)
		}
	}

	at := func(t int) time.Duration {
		return time.Duration(delay+path[t]*hop) * time.Second / SampleRate
	}
	r := Result{
		Delay:        at(active[0]),
		MinDelay:     at(active[0]),
		MaxDelay:     at(active[0]),
		ActiveFrames: len(active),
	}
	for _, t := range active {
		r.MinDelay = min(r.MinDelay, at(t))
		r.MaxDelay = max(r.MaxDelay, at(t))
	}
	var meanS, meanH [numBands]float64
	dropouts := 0
	for _, t := range active {
		var d2, hE float64
		for b := range numBands {
			d := ls[t][b] - lh[t][b]
			d2 += d * d
			meanS[b] += ls[t][b]
			meanH[b] += lh[t][b]
			hE += eh[t][b]
		}
		r.LSD += math.Sqrt(d2 / numBands)
		if hE < frameE[t]*dbToPower(-dropoutDB) {
			dropouts++
		}
	}
	n := float64(len(active))
	r.LSD /= n
	r.Dropouts = float64(dropouts) / n
	for b := range numBands {
		meanS[b] /= n
		meanH[b] /= n
	}
	var sxy, sxx, syy float64
	for _, t := range active {
		for b := range numBands {
			x, y := ls[t][b]-meanS[b], lh[t][b]-meanH[b]
			sxy += x * y
			sxx += x * x
			syy += y * y
		}
	}
	if sxx > 0 && syy > 0 {
		r.Correlation = sxy / math.Sqrt(sxx*syy)
	}
	return r, nil
}

// analyzer holds the tables for band analysis. It is not safe for concurrent
// use: Compare makes one per call.
type analyzer struct {
	fft    *fft
	window []float64
	// filters[b] are the weights of FFT bins lo[b].. for mel band b.
	filters [numBands][]float64
	lo      [numBands]int
	buf     []complex128
}

func newAnalyzer() *analyzer {
	a := &analyzer{fft: newFFT(fftLen), window: make([]float64, frameLen), buf: make([]complex128, fftLen)}
	for i := range a.window {
		a.window[i] = 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(frameLen))
	}
	mel := func(f float64) float64 { return 2595 * math.Log10(1+f/700) }
	hz := func(m float64) float64 { return 700 * (math.Pow(10, m/2595) - 1) }
	var edges [numBands + 2]float64
	for i := range edges {
		edges[i] = hz(mel(lowHz) + (mel(highHz)-mel(lowHz))*float64(i)/(numBands+1))
	}
	binHz := float64(SampleRate) / fftLen
	for b := range numBands {
		l, c, h := edges[b], edges[b+1], edges[b+2]
		a.lo[b] = int(math.Ceil(l / binHz))
		for k := a.lo[b]; float64(k)*binHz < h; k++ {
			f := float64(k) * binHz
			w := (f - l) / (c - l)
			if f > c {
				w = (h - f) / (h - c)
			}
			a.filters[b] = append(a.filters[b], max(w, 0))
		}
		// Normalise so that each band measures mean power per bin, and a
		// narrow low band is not quieter than a wide high one.
		var sum float64
		for _, w := range a.filters[b] {
			sum += w
		}
		if sum == 0 { // a band narrower than one bin: take the nearest bin
			a.lo[b] = int(math.Round(c / binHz))
			a.filters[b] = []float64{1}
			continue
		}
		for i := range a.filters[b] {
			a.filters[b][i] /= sum
		}
	}
	return a
}

// bands returns the band powers of n frames of x, frame t starting at sample
// start + t*hop; samples outside x count as silence.
func (a *analyzer) bands(x []int16, start, n int) [][numBands]float64 {
	out := make([][numBands]float64, n)
	for t := range out {
		s := start + t*hop
		if s+frameLen <= 0 || s >= len(x) {
			continue
		}
		clear(a.buf)
		for i := range frameLen {
			if j := s + i; j >= 0 && j < len(x) {
				a.buf[i] = complex(float64(x[j])/32768*a.window[i], 0)
			}
		}
		a.fft.transform(a.buf)
		for b := range numBands {
			var p float64
			for i, w := range a.filters[b] {
				v := a.buf[a.lo[b]+i]
				p += w * (real(v)*real(v) + imag(v)*imag(v))
			}
			out[t][b] = p
		}
	}
	return out
}

// align returns the sample offset of said in heard. It first finds the frame
// offset whose heard band levels best follow said's (said's levels with each
// band's mean removed, heard's above its own floor, so that a constant
// background in heard does not bias the choice), then refines it to the
// sample on the waveform within one hop either side, if the waveforms
// correlate there.
func (a *analyzer) align(said, heard []int16, es [][numBands]float64) int {
	ns := len(es)
	nh := max((len(heard)-frameLen)/hop+1, 1)
	eh := a.bands(heard, 0, nh)
	zs := aboveFloor(levels(es))
	var mean [numBands]float64
	for t := range zs {
		for b := range numBands {
			mean[b] += zs[t][b] / float64(ns)
		}
	}
	for t := range zs {
		for b := range numBands {
			zs[t][b] -= mean[b]
		}
	}
	ch := aboveFloor(levels(eh))

	// score[k] = Σ_t Σ_b zs[t][b]·ch[t+k][b], for every lag k at once:
	// summed over bands in the frequency domain, then one inverse transform.
	// n ≥ ns+nh, so negative lags (at n+k) do not wrap onto positive ones.
	n := 1
	for n < ns+nh {
		n <<= 1
	}
	f := newFFT(n)
	sum := make([]complex128, n)
	xs, xh := make([]complex128, n), make([]complex128, n)
	for b := range numBands {
		clear(xs)
		clear(xh)
		for t := range zs {
			xs[t] = complex(zs[t][b], 0)
		}
		for t := range ch {
			xh[t] = complex(ch[t][b], 0)
		}
		f.transform(xs)
		f.transform(xh)
		for i := range sum {
			sum[i] += cmplx.Conj(xs[i]) * xh[i]
		}
	}
	for i := range sum { // inverse transform by conjugation
		sum[i] = cmplx.Conj(sum[i])
	}
	f.transform(sum)
	best, bestK := math.Inf(-1), 0
	for k := -ns / 2; k < nh; k++ {
		if v := real(sum[(k+n)%n]); v > best {
			best, bestK = v, k
		}
	}
	coarse := bestK * hop

	// Refine on the waveform of said's loudest second, within a little more
	// than half a hop either side: the coarse offset is within half a hop.
	seg := min(len(said), SampleRate)
	segStart, segE := 0, 0.0
	for i := range seg {
		segE += float64(said[i]) * float64(said[i])
	}
	for i, e := seg, segE; i < len(said); i++ {
		e += float64(said[i])*float64(said[i]) - float64(said[i-seg])*float64(said[i-seg])
		if e > segE {
			segStart, segE = i-seg+1, e
		}
	}
	if segE == 0 {
		return coarse
	}
	x := said[segStart : segStart+seg]
	var xx float64
	for _, v := range x {
		xx += float64(v) * float64(v)
	}
	bestC, fine := 0.0, coarse
	for d := coarse - hop*5/8; d <= coarse+hop*5/8; d++ {
		var xy, yy float64
		for i, v := range x {
			if j := segStart + i + d; j >= 0 && j < len(heard) {
				h := float64(heard[j])
				xy += float64(v) * h
				yy += h * h
			}
		}
		if yy == 0 {
			continue
		}
		if c := math.Abs(xy) / math.Sqrt(xx*yy); c > bestC {
			bestC, fine = c, d
		}
	}
	if bestC >= 0.5 {
		return fine
	}
	return coarse
}

// levelGain returns the power gain that matches the band powers of heard,
// whose frame matching said's frame t is heard(t), to those of said es over
// said's active frames; 1 if heard is silent there.
func levelGain(es [][numBands]float64, active []int, heard func(t int) *[numBands]float64) float64 {
	var sumS, sumH float64
	for _, t := range active {
		h := heard(t)
		for b := range numBands {
			sumS += es[t][b]
			sumH += h[b]
		}
	}
	if sumH == 0 {
		return 1
	}
	return sumS / sumH
}

// levels converts band powers to dB.
func levels(e [][numBands]float64) [][numBands]float64 {
	l := make([][numBands]float64, len(e))
	for t := range e {
		for b, p := range e[t] {
			l[t][b] = 10 * math.Log10(p+1e-20)
		}
	}
	return l
}

// aboveFloor returns, for levels l, how far each lies above the floor rangeDB
// below the loudest, and 0 for those below it.
func aboveFloor(l [][numBands]float64) [][numBands]float64 {
	top := math.Inf(-1)
	for t := range l {
		for _, v := range l[t] {
			top = max(top, v)
		}
	}
	out := make([][numBands]float64, len(l))
	for t := range l {
		for b, v := range l[t] {
			out[t][b] = max(v-(top-rangeDB), 0)
		}
	}
	return out
}

func dbToPower(db float64) float64 { return math.Pow(10, db/10) }
