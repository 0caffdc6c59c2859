package device

import (
	"testing"
	"time"

	"mahfooz/device/call"
)

func TestAdaptStepsDownAtOnceAndUpSlowly(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	stats := func(played, lost, redundant uint64, jitter time.Duration) call.MediaStats {
		return call.MediaStats{Played: played, Lost: lost, RecoveredRedundant: redundant, Jitter: jitter}
	}
	for _, c := range []struct {
		name string
		cur  call.MediaStats
		mine call.Profile
		want call.Profile
	}{
		{"clean", stats(100, 0, 0, time.Millisecond), call.ProfileGood, call.ProfileGood},
		{"one glitch is not a poor link", stats(100, 1, 0, time.Millisecond), call.ProfileGood, call.ProfileGood},
		{"3 % loss", stats(97, 3, 0, time.Millisecond), call.ProfileGood, call.ProfileFair},
		{"10 % loss calls for copies, not a narrower codec", stats(90, 10, 0, time.Millisecond), call.ProfileGood, call.ProfileFair},
		{"jitter of 70 ms", stats(100, 0, 0, 70*time.Millisecond), call.ProfileGood, call.ProfilePoor},
		{"jitter of 40 ms", stats(100, 0, 0, 40*time.Millisecond), call.ProfileGood, call.ProfileFair},
		{"too little audio to judge", stats(10, 5, 0, time.Millisecond), call.ProfileGood, call.ProfileGood},
		{"loss the repetition hid still counts", stats(100, 0, 9, time.Millisecond), call.ProfileFair, call.ProfileFair},
		{"loss the repetition hid, on poor", stats(100, 0, 9, time.Millisecond), call.ProfilePoor, call.ProfilePoor},
	} {
		t.Run(c.name, func(t *testing.T) {
			var since time.Time
			if got := adapt(call.MediaStats{}, c.cur, c.mine, &since, t0); got.Name != c.want.Name {
				t.Errorf("adapt = %s, want %s", got.Name, c.want.Name)
			}
		})
	}
	// Back up one step only after upgradeAfter of good audio.
	var since time.Time
	prev, mine := call.MediaStats{}, call.ProfilePoor
	for i := range 10 {
		now := t0.Add(time.Duration(i) * qualityInterval)
		cur := call.MediaStats{Played: prev.Played + 100}
		mine = adapt(prev, cur, mine, &since, now)
		prev = cur
		elapsed := time.Duration(i) * qualityInterval
		if elapsed < upgradeAfter && mine.Name != "poor" {
			t.Fatalf("stepped up to %s after %v of good audio", mine.Name, elapsed)
		}
	}
	if mine.Name != "fair" {
		t.Fatalf("after %v of good audio the profile is %s, want fair", 9*qualityInterval, mine.Name)
	}
}

// TestRoundTripsFloor checks that the bearer is judged by the least of the
// last round trips: one inflated by a retransmission on a lossy link does not
// make it a 2G bearer, and a move to one shows once every recent round trip
// is that slow.
func TestRoundTripsFloor(t *testing.T) {
	var r roundTrips
	if f := r.floor(); f.Name != "good" {
		t.Fatalf("floor with no round trip measured = %s, want good", f.Name)
	}
	r.add(0) // not measured
	r.add(420 * time.Millisecond)
	if f := r.floor(); f.Name != "poor" {
		t.Fatalf("floor after one 420 ms round trip = %s, want poor", f.Name)
	}
	r.add(100 * time.Millisecond)
	r.add(330 * time.Millisecond)
	if f := r.floor(); f.Name != "good" {
		t.Fatalf("floor with a 100 ms round trip among the last = %s, want good", f.Name)
	}
	for range 5 {
		r.add(310 * time.Millisecond)
	}
	if f := r.floor(); f.Name != "poor" {
		t.Fatalf("floor after five round trips of 310 ms = %s, want poor", f.Name)
	}
}
