package speech

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestTrackIgnoresLoss checks that the delay path follows the playout steps
// exactly however much of heard is lost, so that it never moves to hide a
// zeroed frame behind a neighbouring one: such loss stays visible in
// Dropouts and fails.
func TestTrackIgnoresLoss(t *testing.T) {
	said := say(t, sentence)
	stepAt := []float64{0.15, 0.3, 0.45, 0.6, 0.75}
	steps := []int{grow, grow, shrink, grow, shrink}
	for seed := range uint64(4) {
		for _, fraction := range []float64{0.10, 0.20, 0.30} {
			heard := lose(rand.New(rand.NewPCG(seed, 9)), playout(said, stepAt, steps), fraction, false)
			r, err := Compare(said, heard)
			if err != nil {
				t.Fatal(err)
			}
			if r.Delay != 0 || r.MinDelay != 0 || r.MaxDelay != 40*time.Millisecond || r.Intelligible() {
				t.Errorf("seed %d, %.0f%% zeroed: %v intelligible=%v, want delay 0s (0s..40ms), not intelligible",
					seed, 100*fraction, r, r.Intelligible())
			}
		}
	}
}
