package speech

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

const (
	sentence      = "Please call the minister's office before noon tomorrow, and bring the signed report."
	otherSentence = "The quick brown fox jumps over the lazy dog near the river bank."
	chunk         = SampleRate / 50 // one 20 ms codec frame
)

// say renders text with espeak-ng. A missing espeak-ng fails the test: the
// calibration is the point of this package and must not silently pass.
func say(t *testing.T, text string) []int16 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	x, err := Say(ctx, text)
	if errors.Is(err, ErrNoEspeak) {
		t.Fatalf("%v: these tests need it (apt-get install -y espeak-ng)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func scale(x []int16, g float64) []int16 {
	out := make([]int16, len(x))
	for i, v := range x {
		out[i] = clip16(float64(v) * g)
	}
	return out
}

// speechPower is the mean power of x over its 20 ms chunks within 30 dB of
// the loudest, that is over active speech.
func speechPower(x []int16) float64 {
	var powers []float64
	for s := 0; s+chunk <= len(x); s += chunk {
		var p float64
		for _, v := range x[s : s+chunk] {
			p += float64(v) * float64(v)
		}
		powers = append(powers, p/chunk)
	}
	top := slices.Max(powers)
	var sum float64
	n := 0
	for _, p := range powers {
		if p >= top/1000 {
			sum += p
			n++
		}
	}
	return sum / float64(n)
}

// activeChunks returns the indices of x's 20 ms chunks within 30 dB of the
// loudest: the frames a sender with discontinuous transmission would send.
func activeChunks(x []int16) []int {
	var powers []float64
	for s := 0; s+chunk <= len(x); s += chunk {
		var p float64
		for _, v := range x[s : s+chunk] {
			p += float64(v) * float64(v)
		}
		powers = append(powers, p)
	}
	top := slices.Max(powers)
	var idx []int
	for i, p := range powers {
		if p >= top/1000 {
			idx = append(idx, i)
		}
	}
	return idx
}

func noise(rng *rand.Rand, n int, power float64) []int16 {
	out := make([]int16, n)
	sd := math.Sqrt(power)
	for i := range out {
		out[i] = clip16(rng.NormFloat64() * sd)
	}
	return out
}

func addNoise(rng *rand.Rand, x []int16, snrDB float64) []int16 {
	nz := noise(rng, len(x), speechPower(x)/math.Pow(10, snrDB/10))
	out := make([]int16, len(x))
	for i := range x {
		out[i] = clip16(float64(x[i]) + float64(nz[i]))
	}
	return out
}

// lose picks fraction of x's active 20 ms chunks at random and replaces each
// with silence or, when conceal is set, with the previous chunk of the output
// faded from 0.8 to 0.4, as a simple packet-loss concealment would.
func lose(rng *rand.Rand, x []int16, fraction float64, conceal bool) []int16 {
	out := slices.Clone(x)
	act := activeChunks(x)
	n := int(math.Round(fraction * float64(len(act))))
	lost := map[int]bool{}
	for _, i := range rng.Perm(len(act))[:n] {
		lost[act[i]] = true
	}
	for c := 0; (c+1)*chunk <= len(x); c++ {
		if !lost[c] {
			continue
		}
		s := c * chunk
		for i := range chunk {
			v := 0.0
			if conceal && s >= chunk {
				g := 0.8 - 0.4*float64(i)/chunk
				v = float64(out[s-chunk+i]) * g
			}
			out[s+i] = clip16(v)
		}
	}
	return out
}

// A playout step, as an adaptive jitter buffer makes one mid-sentence.
const (
	grow   = +1 // 20 ms of concealment played without moving on
	shrink = -1 // a quiet 20 ms frame dropped
)

// playout applies playout-delay steps to x: steps[i] happens at fraction
// at[i] of x's length. A grow step inserts, at that 20 ms chunk boundary, a
// repeat of the previous 20 ms faded from 0.8 to 0.4, delaying everything
// after it by 20 ms; a shrink step drops the quietest 20 ms chunk among the
// next ten (200 ms), advancing everything after it by 20 ms.
func playout(x []int16, at []float64, steps []int) []int16 {
	nc := len(x) / chunk
	insert, drop := map[int]bool{}, map[int]bool{}
	for i, f := range at {
		c := int(f * float64(nc))
		if steps[i] == grow {
			insert[c] = true
			continue
		}
		quietest, qp := c, math.Inf(1)
		for q := c; q < min(c+10, nc); q++ {
			var p float64
			for _, v := range x[q*chunk : (q+1)*chunk] {
				p += float64(v) * float64(v)
			}
			if p < qp && !insert[q] && !drop[q] {
				quietest, qp = q, p
			}
		}
		drop[quietest] = true
	}
	var out []int16
	for c := range nc {
		if insert[c] && len(out) >= chunk {
			prev := out[len(out)-chunk:]
			for i := range chunk {
				out = append(out, clip16(float64(prev[i])*(0.8-0.4*float64(i)/chunk)))
			}
		}
		if !drop[c] {
			out = append(out, x[c*chunk:(c+1)*chunk]...)
		}
	}
	return append(out, x[nc*chunk:]...)
}

func pad(before time.Duration, x []int16, after time.Duration) []int16 {
	b := int(before * SampleRate / time.Second)
	a := int(after * SampleRate / time.Second)
	return slices.Concat(make([]int16, b), x, make([]int16, a))
}

// TestCalibration is the calibration of Result.Intelligible: every case that
// a listener would call a good or a moderately impaired but concealed call
// passes, and every case where the words are gone fails. Every measured value
// is logged so that the margins can be reviewed.
func TestCalibration(t *testing.T) {
	said := say(t, sentence)
	other := say(t, otherSentence)
	rng := rand.New(rand.NewPCG(1, 2))
	reversed := slices.Clone(said)
	slices.Reverse(reversed)
	// Three grow steps and two shrink steps: the delay goes 0, 20, 40, 20,
	// 40, 20 ms.
	stepAt := []float64{0.15, 0.3, 0.45, 0.6, 0.75}
	steps := []int{grow, grow, shrink, grow, shrink}
	// The delay drifting up by 60 ms in three 20 ms steps.
	driftAt := []float64{0.25, 0.5, 0.75}
	drift := []int{grow, grow, grow}
	// The cases below draw from their own generator, so that adding them
	// does not change the cases above.
	rng2 := rand.New(rand.NewPCG(7, 8))
	half := len(said) / 2
	spliced := slices.Concat(said[:half], other[:min(len(other), len(said)-half)])

	cases := []struct {
		name  string
		heard []int16
		pass  bool
		// aligned is set when heard is said, delayed by wantDelay at its
		// start and by up to spread more later on: the delays are checked.
		aligned           bool
		wantDelay, spread time.Duration
	}{
		{"pass/identical", said, true, true, 0, 0},
		{"pass/delayed_150ms_scaled_0.5", pad(150*time.Millisecond, scale(said, 0.5), time.Second), true, true, 150 * time.Millisecond, 0},
		{"pass/delayed_2.5s_in_noise_40dB", addNoise(rng, pad(2500*time.Millisecond, said, 2*time.Second), 40), true, true, 2500 * time.Millisecond, 0},
		{"pass/band_limited_8kHz", resample(resample(said, SampleRate, 16000), 16000, SampleRate), true, true, 0, 0},
		{"pass/band_limited_4kHz_narrowband", resample(resample(said, SampleRate, 8000), 8000, SampleRate), true, true, 0, 0},
		{"pass/noise_20dB_SNR", addNoise(rng, said, 20), true, true, 0, 0},
		{"pass/concealed_5pct_of_20ms_frames", lose(rng, said, 0.05, true), true, true, 0, 0},
		{"pass/concealed_5pct_noise_20dB_delayed_300ms", pad(300*time.Millisecond, addNoise(rng, lose(rng, said, 0.05, true), 20), 0), true, true, 300 * time.Millisecond, 0},

		{"pass/delay_steps_3_up_2_down", playout(said, stepAt, steps), true, true, 0, 40 * time.Millisecond},
		{"pass/delay_steps_delayed_200ms_noise_30dB", pad(200*time.Millisecond, addNoise(rng2, playout(said, stepAt, steps), 30), 0), true, true, 200 * time.Millisecond, 40 * time.Millisecond},
		{"pass/delay_drift_60ms_concealed_5pct", lose(rng2, playout(said, driftAt, drift), 0.05, true), true, true, 0, 60 * time.Millisecond},

		{"fail/silence", make([]int16, len(said)+SampleRate), false, false, 0, 0},
		{"fail/white_noise_at_speech_level", noise(rng, len(said), speechPower(said)), false, false, 0, 0},
		{"fail/different_sentence", other, false, false, 0, 0},
		{"fail/zeroed_10pct_of_20ms_frames", lose(rng, said, 0.10, false), false, true, 0, 0},
		{"fail/zeroed_20pct_of_20ms_frames", lose(rng, said, 0.20, false), false, true, 0, 0},
		{"fail/time_reversed", reversed, false, false, 0, 0},
		{"fail/zeroed_10pct_and_delay_steps", lose(rng2, playout(said, stepAt, steps), 0.10, false), false, true, 0, 40 * time.Millisecond},
		{"fail/zeroed_10pct_and_delay_drift_60ms", lose(rng2, playout(said, driftAt, drift), 0.10, false), false, true, 0, 60 * time.Millisecond},
		{"fail/spliced_second_half_different_sentence", spliced, false, false, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Compare(said, c.heard)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %v intelligible=%v", c.name, r, r.Intelligible())
			if r.Intelligible() != c.pass {
				t.Fatalf("Intelligible() = %v, want %v (%v)", r.Intelligible(), c.pass, r)
			}
			if c.aligned {
				near := func(got, want time.Duration) bool {
					return got-want >= -time.Millisecond && got-want <= time.Millisecond
				}
				if !near(r.Delay, c.wantDelay) || !near(r.MinDelay, c.wantDelay) || !near(r.MaxDelay, c.wantDelay+c.spread) {
					t.Errorf("delay %v (%v..%v), want %v (%v..%v)", r.Delay, r.MinDelay, r.MaxDelay,
						c.wantDelay, c.wantDelay, c.wantDelay+c.spread)
				}
			}
		})
	}
}

func TestSay(t *testing.T) {
	x := say(t, "one two three")
	// espeak-ng speaks three words in well under two seconds, and more than
	// a third of a second.
	if d := time.Duration(len(x)) * time.Second / SampleRate; d < 300*time.Millisecond || d > 3*time.Second {
		t.Fatalf("duration %v", d)
	}
	if speechPower(x) < 1e4 { // about -35 dBFS
		t.Fatalf("speech power %.0f: too quiet", speechPower(x))
	}
	if _, err := Say(context.Background(), "  "); err == nil {
		t.Fatal("empty text accepted")
	}
}

func TestCompareErrors(t *testing.T) {
	if _, err := Compare(make([]int16, 2*SampleRate), make([]int16, SampleRate)); !errors.Is(err, ErrSilent) {
		t.Errorf("silent said: err = %v, want ErrSilent", err)
	}
	if _, err := Compare(make([]int16, 10), make([]int16, SampleRate)); err == nil {
		t.Error("said shorter than a frame accepted")
	}
	if _, err := Compare(make([]int16, SampleRate), nil); err == nil {
		t.Error("empty heard accepted")
	}
}

// TestResample checks that a 1 kHz tone resampled from espeak-ng's 22050 Hz
// to 48 kHz is the same tone, and that content above the new Nyquist
// frequency is removed when downsampling.
func TestResample(t *testing.T) {
	tone := func(rate int, hz float64, n int) []int16 {
		x := make([]int16, n)
		for i := range x {
			x[i] = clip16(10000 * math.Sin(2*math.Pi*hz*float64(i)/float64(rate)))
		}
		return x
	}
	in := tone(22050, 1000, 22050)
	out := resample(in, 22050, SampleRate)
	if len(out) != SampleRate {
		t.Fatalf("len %d, want %d", len(out), SampleRate)
	}
	want := tone(SampleRate, 1000, SampleRate)
	var maxErr float64
	for i := 2000; i < len(out)-2000; i++ { // away from the edges
		maxErr = max(maxErr, math.Abs(float64(out[i])-float64(want[i])))
	}
	if maxErr > 50 { // -46 dB relative to the tone's amplitude
		t.Errorf("max error %.0f", maxErr)
	}
	high := resample(tone(SampleRate, 12000, SampleRate), SampleRate, 16000)
	var peak float64
	for _, v := range high[1000 : len(high)-1000] {
		peak = max(peak, math.Abs(float64(v)))
	}
	if peak > 100 {
		t.Errorf("12 kHz tone leaks through to 16 kHz with amplitude %.0f", peak)
	}
}

func TestFFT(t *testing.T) {
	const n = 64
	rng := rand.New(rand.NewPCG(3, 4))
	x := make([]complex128, n)
	for i := range x {
		x[i] = complex(rng.NormFloat64(), rng.NormFloat64())
	}
	got := slices.Clone(x)
	newFFT(n).transform(got)
	for k := range n {
		var want complex128
		for j := range n {
			a := -2 * math.Pi * float64(j*k) / n
			want += x[j] * complex(math.Cos(a), math.Sin(a))
		}
		if d := got[k] - want; math.Hypot(real(d), imag(d)) > 1e-9 {
			t.Fatalf("bin %d: %v, want %v", k, got[k], want)
		}
	}
}
