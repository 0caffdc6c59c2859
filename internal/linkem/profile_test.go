package linkem

import (
	"errors"
	"testing"
	"time"
)

func TestNamedProfiles(t *testing.T) {
	for _, name := range Names() {
		up, down, err := NamedLink(name)
		if err != nil {
			t.Fatalf("NamedLink(%q): %v", name, err)
		}
		p, err := Named(name)
		if err != nil {
			t.Fatalf("Named(%q): %v", name, err)
		}
		if p != down {
			t.Errorf("Named(%q) is not the downlink of NamedLink", name)
		}
		for _, q := range []Profile{up, down} {
			if err := q.Validate(); err != nil {
				t.Error(err)
			}
			if q.Name != name {
				t.Errorf("profile %q is named %q", name, q.Name)
			}
		}
	}
	// The figures the rest of the project's tests rely on.
	checks := []struct {
		name             string
		rtt              time.Duration
		upRate, downRate int
		loss             float64
	}{
		{"clean", 0, 0, 0, 0},
		{"edge", 300 * time.Millisecond, 100_000, 100_000, 0.05},
		{"3g", 180 * time.Millisecond, 128_000, 384_000, 0.01},
		{"lossy", 100 * time.Millisecond, 1_000_000, 1_000_000, 0.10},
	}
	for _, c := range checks {
		up, down, _ := NamedLink(c.name)
		if rtt := up.Delay + down.Delay; rtt != c.rtt {
			t.Errorf("%s: round trip %v, want %v", c.name, rtt, c.rtt)
		}
		if up.Rate != c.upRate || down.Rate != c.downRate {
			t.Errorf("%s: rates %d up, %d down, want %d and %d", c.name, up.Rate, down.Rate, c.upRate, c.downRate)
		}
		if up.Loss != c.loss || down.Loss != c.loss {
			t.Errorf("%s: loss %v up, %v down, want %v", c.name, up.Loss, down.Loss, c.loss)
		}
	}
	if _, err := Named("gprs"); !errors.Is(err, ErrUnknownProfile) {
		t.Errorf("Named(gprs): %v, want ErrUnknownProfile", err)
	}
	if _, _, err := NamedLink(""); !errors.Is(err, ErrUnknownProfile) {
		t.Errorf("NamedLink(\"\"): %v, want ErrUnknownProfile", err)
	}
}

// TestEdgeVoiceTraffic sends voice-like traffic, a small packet every 10 ms,
// over the "edge" link and back, and checks what a caller would notice: a
// round trip of about 300 ms (plus the time to send at 100 kbit/s) and about a tenth of round trips lost.
func TestEdgeVoiceTraffic(t *testing.T) {
	up, down, err := NamedLink("edge")
	if err != nil {
		t.Fatal(err)
	}
	server := newUDPPeer(t, true)
	p, err := NewUDP("127.0.0.1:0", server.conn.LocalAddr().String(), up, down, WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	client := newUDPPeer(t, false)
	const n = 60
	base := time.Now()
	tick := time.NewTicker(10 * time.Millisecond) // the sender's pace, not a synchronisation
	defer tick.Stop()
	for i := range n {
		// 60 B every 10 ms is 70 kbit/s on the wire, within edge's 100.
		if _, err := client.conn.WriteTo(probe(i, base, 60), p.Addr()); err != nil {
			t.Fatal(err)
		}
		<-tick.C
	}
	waitFor(t, "the link to go quiet", 5*time.Second, func() bool {
		st := p.Stats()
		return st.Up.Packets == n && st.Up.Forwarded+st.Up.Lost == n &&
			st.Down.Packets == st.Up.Forwarded && st.Down.Forwarded+st.Down.Lost == st.Down.Packets &&
			uint64(client.count()) == st.Down.Forwarded
	})
	var rtts []time.Duration
	for _, a := range client.arrivals() {
		rtts = append(rtts, a.at.Sub(probeSent(a.data, base)))
	}
	s := summarise(rtts)
	st := p.Stats()
	t.Logf("%d of %d round trips, min %v median %v max %v; stats %+v", s.n, n, s.min, s.median, s.max, st)
	// Each 88-byte packet also takes 7 ms to send at 100 kbit/s, each way.
	if s.min < 254*time.Millisecond || s.median < 298*time.Millisecond || s.median > 332*time.Millisecond {
		t.Errorf("round trips from %v, median %v, want 314ms ±60ms", s.min, s.median)
	}
	// 1-0.95² ≈ 9.75 % of round trips lost: 5.9 of 60 expected.
	if lost := n - s.n; lost < 1 || lost > 15 {
		t.Errorf("%d of %d round trips lost, want about 6", lost, n)
	}
	if st.Up.QueueDrops+st.Down.QueueDrops != 0 {
		t.Errorf("queue drops at 70 kbit/s on a 100 kbit/s link: %+v", st)
	}
}
