package authority

import (
	"testing"
)

func TestDirectorySequence(t *testing.T) {
	a, _, dir := newTestAuthority(t)
	other, err := OpenPublic(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	seq := func(r *Registry) uint64 {
		t.Helper()
		v, err := r.DirectorySequence()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	last := seq(a.Registry)
	if last != 0 {
		t.Fatalf("new authority at sequence %d, want 0", last)
	}
	// step checks that a change moved the sequence forward, as seen by this handle
	// and by another one on the same state, and that the directory carries it.
	step := func(what string, wantChange bool) {
		t.Helper()
		now := seq(a.Registry)
		if got := seq(other); got != now {
			t.Errorf("%s: other handle sees %d, this one %d", what, got, now)
		}
		if changed := now != last; changed != wantChange {
			t.Errorf("%s: sequence %d -> %d, want changed=%v", what, last, now, wantChange)
		}
		if now < last {
			t.Errorf("%s: sequence went back from %d to %d", what, last, now)
		}
		d, err := a.Directory()
		if err != nil {
			t.Fatal(err)
		}
		if d.Sequence != now {
			t.Errorf("%s: directory sequence %d, DirectorySequence %d", what, d.Sequence, now)
		}
		last = now
	}

	if _, err := a.Enroll("Amina", "", 0); err != nil {
		t.Fatal(err)
	}
	step("issuing a ticket", false)
	k, is := enrol(t, a, "Bilal", "")
	step("enrolment", true)
	if _, err := a.Renew(is.DeviceID, makeCSR(t, k)); err != nil {
		t.Fatal(err)
	}
	step("renewal", true)
	if err := a.Revoke(is.DeviceID); err != nil {
		t.Fatal(err)
	}
	step("revocation", true)
	if err := a.Revoke(is.DeviceID); err != nil {
		t.Fatal(err)
	}
	step("revoking again", false)
}
