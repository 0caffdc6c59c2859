package linkem

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// sendProbes sends n probes of size bytes from c through p to server, in
// batches, waiting after each batch until every probe has either been lost
// or been received, so that no socket buffer overflows.
func sendProbes(t *testing.T, c *net.UDPConn, p *UDPProxy, server *udpPeer, n, size int, base time.Time) {
	t.Helper()
	start := p.Stats().Up.Packets
	for i := 0; i < n; i++ {
		if _, err := c.Write(probe(i, base, size)); err != nil {
			t.Fatal(err)
		}
		if (i+1)%100 == 0 || i == n-1 {
			want := start + uint64(i+1)
			waitFor(t, "a batch to cross the link", 5*time.Second, func() bool {
				st := p.Stats().Up
				return st.Packets == want && st.Forwarded+st.Lost+st.QueueDrops == want && uint64(server.count()) == st.Forwarded
			})
		}
	}
}

func TestUDPDelayAndJitter(t *testing.T) {
	up := Profile{Name: "up", Delay: 40 * time.Millisecond, Jitter: 10 * time.Millisecond}
	down := Profile{Name: "down", Delay: 20 * time.Millisecond}
	server := newUDPPeer(t, true)
	p, err := NewUDP("127.0.0.1:0", server.conn.LocalAddr().String(), up, down, WithSeed(7))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	client := newUDPPeer(t, false)

	const n = 150
	base := time.Now()
	tick := time.NewTicker(2 * time.Millisecond) // the sender's pace, not a synchronisation
	defer tick.Stop()
	for i := range n {
		if _, err := client.conn.WriteTo(probe(i, base, 100), p.Addr()); err != nil {
			t.Fatal(err)
		}
		<-tick.C
	}
	waitFor(t, "every echo", 5*time.Second, func() bool { return client.count() == n })

	var upDelays, downDelays, rtts []time.Duration
	reordered := 0
	last := -1
	for _, a := range server.arrivals() {
		upDelays = append(upDelays, a.at.Sub(probeSent(a.data, base)))
		if s := probeSeq(a.data); s < last {
			reordered++
		} else {
			last = s
		}
	}
	serverAt := make(map[int]time.Time)
	for _, a := range server.arrivals() {
		serverAt[probeSeq(a.data)] = a.at
	}
	for _, a := range client.arrivals() {
		downDelays = append(downDelays, a.at.Sub(serverAt[probeSeq(a.data)]))
		rtts = append(rtts, a.at.Sub(probeSent(a.data, base)))
	}
	us, ds, rs := summarise(upDelays), summarise(downDelays), summarise(rtts)
	t.Logf("up: min %v p10 %v p25 %v median %v p75 %v p90 %v max %v; %d of %d reordered", us.min, us.p10, us.p25, us.median, us.p75, us.p90, us.max, reordered, n)
	t.Logf("down: min %v median %v max %v; round trip median %v", ds.min, ds.median, ds.max, rs.median)

	// The test's own goroutines add scheduling delay on a busy machine, so
	// the checks use quantiles that a few late packets do not move; only
	// "never early" is checked on every packet.
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	if us.min < 30*time.Millisecond {
		t.Errorf("up: a packet arrived after %v, before the least delay of 30ms", us.min)
	}
	if us.median < ms(38) || us.median > ms(42.5) {
		t.Errorf("up: median one-way delay %v, want 40ms ±2ms", us.median)
	}
	// Uniform on ±10 ms: the middle half spans 10 ms, the outer tenths
	// reach 32 and 48 ms.
	if us.iqr() < ms(7.5) || us.iqr() > ms(12.5) {
		t.Errorf("up: interquartile range of delay %v, want about 10ms", us.iqr())
	}
	if us.p10 > ms(34) || us.p90 < ms(46) || us.p90 > ms(51) {
		t.Errorf("up: 10th to 90th percentile delay %v to %v, want about 32 to 48ms", us.p10, us.p90)
	}
	if reordered == 0 {
		t.Errorf("up: no packet overtook another with 2 ms spacing and ±10 ms jitter")
	}
	if ds.min < 20*time.Millisecond || ds.median > ms(21.5) || ds.iqr() > ms(1.5) {
		t.Errorf("down: delay from %v, median %v, interquartile range %v, want 20ms and no jitter", ds.min, ds.median, ds.iqr())
	}
	if rs.median < ms(57) || rs.median > ms(64) {
		t.Errorf("round trip median %v, want about 60ms", rs.median)
	}
}

func TestUDPInOrderDoesNotReorder(t *testing.T) {
	up := Profile{Delay: 20 * time.Millisecond, Jitter: 10 * time.Millisecond, InOrder: true}
	server := newUDPPeer(t, false)
	p, err := NewUDP("127.0.0.1:0", server.conn.LocalAddr().String(), up, Profile{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dialUDP(t, p.Addr())
	base := time.Now()
	const n = 100
	tick := time.NewTicker(2 * time.Millisecond) // the sender's pace, not a synchronisation
	defer tick.Stop()
	for i := range n {
		if _, err := c.Write(probe(i, base, 50)); err != nil {
			t.Fatal(err)
		}
		<-tick.C
	}
	waitFor(t, "every packet", 5*time.Second, func() bool { return server.count() == n })
	var ds []time.Duration
	for i, a := range server.arrivals() {
		if s := probeSeq(a.data); s != i {
			t.Fatalf("packet %d arrived in position %d", s, i)
		}
		ds = append(ds, a.at.Sub(probeSent(a.data, base)))
	}
	// Holding a packet behind the one before raises the delays towards the
	// top of 10-30 ms, but none is early.
	s := summarise(ds)
	t.Logf("in-order delays: min %v median %v max %v", s.min, s.median, s.max)
	if s.min < 10*time.Millisecond || s.median > 31*time.Millisecond {
		t.Errorf("in-order delays from %v, median %v, want within 10-30ms", s.min, s.median)
	}
}

// lossPattern sends n probes through a proxy with profile up and returns
// which sequence numbers were lost, checking the proxy's counters agree.
func lossPattern(t *testing.T, up Profile, seed uint64, n int) []bool {
	t.Helper()
	server := newUDPPeer(t, false)
	p, err := NewUDP("127.0.0.1:0", server.conn.LocalAddr().String(), up, Profile{}, WithSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dialUDP(t, p.Addr())
	sendProbes(t, c, p, server, n, 20, time.Now())
	st := p.Stats().Up
	if st.Packets != n64(n) || st.Forwarded+st.Lost != st.Packets || st.QueueDrops != 0 {
		t.Errorf("stats %+v for %d packets sent", st, n)
	}
	if st.WireBytes != st.Forwarded*(20+UDPOverhead) || st.Bytes != st.Forwarded*20 {
		t.Errorf("stats count %d payload and %d wire bytes for %d packets of 20 bytes", st.Bytes, st.WireBytes, st.Forwarded)
	}
	lost := make([]bool, n)
	for i := range lost {
		lost[i] = true
	}
	for _, a := range server.arrivals() {
		lost[probeSeq(a.data)] = false
	}
	return lost
}

func n64(n int) uint64 { return uint64(n) }

// lossFigures returns the loss rate and mean burst length of a pattern.
func lossFigures(lost []bool) (rate, burst float64) {
	losses, bursts := 0, 0
	for i, l := range lost {
		if l {
			losses++
			if i == 0 || !lost[i-1] {
				bursts++
			}
		}
	}
	if bursts == 0 {
		return 0, 0
	}
	return float64(losses) / float64(len(lost)), float64(losses) / float64(bursts)
}

func TestUDPLoss(t *testing.T) {
	t.Run("independent", func(t *testing.T) {
		const n = 3000
		a := lossPattern(t, Profile{Loss: 0.1}, 1, n)
		rate, burst := lossFigures(a)
		t.Logf("loss %.4f, mean burst %.2f packets", rate, burst)
		// σ = √(0.1·0.9/3000) ≈ 0.0055; allow 3.5σ.
		if rate < 0.08 || rate > 0.12 {
			t.Errorf("loss rate %.4f, want 0.10 ±0.02", rate)
		}
		// Independent losses at 10 % come in runs of 1/(1-0.1) ≈ 1.11.
		if burst > 1.3 {
			t.Errorf("mean loss burst %.2f packets, want about 1.1 for independent loss", burst)
		}

		same := lossPattern(t, Profile{Loss: 0.1}, 1, n)
		other := lossPattern(t, Profile{Loss: 0.1}, 2, n)
		diff := 0
		for i := range a {
			if a[i] != same[i] {
				t.Fatalf("same seed: packet %d lost in one run only", i)
			}
			if a[i] != other[i] {
				diff++
			}
		}
		if diff == 0 {
			t.Errorf("seeds 1 and 2 lost the same packets")
		}
	})
	t.Run("bursty", func(t *testing.T) {
		const n = 6000
		rate, burst := lossFigures(lossPattern(t, Profile{Loss: 0.1, LossBurst: 5}, 1, n))
		t.Logf("loss %.4f, mean burst %.2f packets", rate, burst)
		// Bursts inflate the variance about eightfold: σ ≈ 0.011.
		if rate < 0.065 || rate > 0.135 {
			t.Errorf("loss rate %.4f, want 0.10 ±0.035", rate)
		}
		if burst < 3.8 || burst > 6.5 {
			t.Errorf("mean loss burst %.2f packets, want about 5", burst)
		}
	})
	t.Run("total", func(t *testing.T) {
		if rate, _ := lossFigures(lossPattern(t, Profile{Loss: 1}, 1, 100)); rate != 1 {
			t.Errorf("loss 1 let %.0f%% through", 100*(1-rate))
		}
	})
}

// burst sends n datagrams of size bytes back to back from each client and
// returns the arrivals at the server, with probe times relative to base.
func burst(t *testing.T, p *UDPProxy, server *udpPeer, base time.Time, clients, n, size int) []arrival {
	t.Helper()
	var cs []*net.UDPConn
	for range clients {
		cs = append(cs, dialUDP(t, p.Addr()))
	}
	for i := range n {
		for _, c := range cs {
			if _, err := c.Write(probe(i, base, size)); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := uint64(clients * n)
	waitFor(t, "the burst to cross the link", 5*time.Second, func() bool {
		st := p.Stats().Up
		return st.Packets == want && st.Forwarded+st.QueueDrops == want && uint64(server.count()) == st.Forwarded
	})
	return server.arrivals()
}

func TestUDPRateLimitAndQueue(t *testing.T) {
	// 1222 B of payload is 1250 B on the wire: 10 ms at 1 Mbit/s.
	const size = 1222
	up := Profile{Rate: 1_000_000, Queue: 100 * time.Millisecond, Delay: 5 * time.Millisecond}
	t.Run("one client", func(t *testing.T) {
		server := newUDPPeer(t, false)
		p, err := NewUDP("127.0.0.1:0", server.conn.LocalAddr().String(), up, Profile{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		base := time.Now()
		got := burst(t, p, server, base, 1, 40, size)
		st := p.Stats().Up
		t.Logf("%d of 40 through, stats %+v", len(got), st)
		// The link takes the packet it is sending plus 100 ms of queue (10
		// packets), and a few more drain while the proxy reads the burst.
		if len(got) < 11 || len(got) > 15 {
			t.Errorf("%d of a 40-packet burst got through a 100 ms queue, want 11 and a few", len(got))
		}
		if int(st.QueueDrops) != 40-len(got) {
			t.Errorf("stats count %d queue drops, %d packets were lost", st.QueueDrops, 40-len(got))
		}
		// At 1 Mbit/s the 1250-byte packets leave 10 ms apart.
		var gaps []time.Duration
		for i := 1; i < len(got); i++ {
			gaps = append(gaps, got[i].at.Sub(got[i-1].at))
		}
		gs := summarise(gaps)
		t.Logf("gaps between arrivals: median %v, from %v to %v", gs.median, gs.min, gs.max)
		if gs.median < 9500*time.Microsecond || gs.median > 10500*time.Microsecond {
			t.Errorf("median gap between packets %v, want 10ms (1 Mbit/s)", gs.median)
		}
		// The link is never faster than its rate, and what gets through
		// waits no longer than the queue allows.
		first, last := got[0], got[len(got)-1]
		want := time.Duration(len(got)-1) * 10 * time.Millisecond
		if d := last.at.Sub(probeSent(first.data, base)); d < want {
			t.Errorf("%d packets arrived within %v of sending, faster than 1 Mbit/s allows (%v)", len(got), d, want)
		}
		if d := last.at.Sub(probeSent(last.data, base)); d > up.Queue+10*time.Millisecond+up.Delay+20*time.Millisecond {
			t.Errorf("last packet took %v to arrive, want at most the 100ms queue, its 10ms transmission and the 5ms delay", d)
		}
	})
	t.Run("own links", func(t *testing.T) {
		server := newUDPPeer(t, false)
		p, err := NewUDP("127.0.0.1:0", server.conn.LocalAddr().String(), up, Profile{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		got := burst(t, p, server, time.Now(), 2, 30, size)
		if len(got) < 22 || len(got) > 30 {
			t.Errorf("%d of 2×30 packets through two links of 11-packet queues, want 22 to 27", len(got))
		}
	})
	t.Run("shared link", func(t *testing.T) {
		server := newUDPPeer(t, false)
		p, err := NewUDP("127.0.0.1:0", server.conn.LocalAddr().String(), up, Profile{}, WithSharedLink())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		got := burst(t, p, server, time.Now(), 2, 30, size)
		if len(got) < 11 || len(got) > 15 {
			t.Errorf("%d of 2×30 packets through one shared 11-packet queue, want 11 to 14", len(got))
		}
	})
}

func TestUDPClientsGetOwnUpstreamAddress(t *testing.T) {
	server := newUDPPeer(t, true)
	p, err := NewUDP("127.0.0.1:0", server.conn.LocalAddr().String(), Profile{Delay: time.Millisecond}, Profile{Delay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, b := newUDPPeer(t, false), newUDPPeer(t, false)
	for range 3 {
		a.conn.WriteTo([]byte("from a"), p.Addr())
		b.conn.WriteTo([]byte("from b"), p.Addr())
	}
	waitFor(t, "echoes", 5*time.Second, func() bool { return a.count() == 3 && b.count() == 3 })
	for _, x := range a.arrivals() {
		if string(x.data) != "from a" {
			t.Errorf("client a got %q", x.data)
		}
	}
	for _, x := range b.arrivals() {
		if string(x.data) != "from b" {
			t.Errorf("client b got %q", x.data)
		}
	}
	srcs := map[string]map[string]bool{}
	for _, x := range server.arrivals() {
		if srcs[string(x.data)] == nil {
			srcs[string(x.data)] = map[string]bool{}
		}
		srcs[string(x.data)][x.from.String()] = true
	}
	if len(srcs["from a"]) != 1 || len(srcs["from b"]) != 1 {
		t.Fatalf("server saw sources %v, want one per client", srcs)
	}
	for sa := range srcs["from a"] {
		if srcs["from b"][sa] {
			t.Errorf("both clients reached the server from %s", sa)
		}
		if sa == p.Addr().String() || sa == a.conn.LocalAddr().String() {
			t.Errorf("server saw client a as %s", sa)
		}
	}
}

func TestUDPCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	server := newUDPPeer(t, true)
	p, err := NewUDP("127.0.0.1:0", server.conn.LocalAddr().String(), Profile{}, Profile{Delay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	clients := []*udpPeer{newUDPPeer(t, false), newUDPPeer(t, false)}
	for _, c := range clients {
		c.conn.WriteTo([]byte("hello"), p.Addr())
	}
	// The echoes are now held on the down link for an hour.
	waitFor(t, "both echoes on the link", 5*time.Second, func() bool { return p.Stats().Down.Packets == 2 })
	done := make(chan error)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with packets in flight")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if st := p.Stats(); st.Down.Forwarded != 0 {
		t.Errorf("%d packets delivered after Close", st.Down.Forwarded)
	}
	server.close()
	for _, c := range clients {
		c.close()
	}
	goroutinesSettle(t, before)
}

func TestProfileValidation(t *testing.T) {
	bad := []Profile{
		{Rate: -1},
		{Delay: -time.Millisecond},
		{Jitter: -time.Millisecond},
		{Queue: -time.Millisecond},
		{Loss: -0.1},
		{Loss: 1.5},
		{LossBurst: -1},
	}
	for _, p := range bad {
		if _, err := NewUDP("127.0.0.1:0", "127.0.0.1:9", p, Profile{}); err == nil {
			t.Errorf("NewUDP accepted %+v", p)
		}
		if _, err := NewTCP("127.0.0.1:0", "127.0.0.1:9", Profile{}, p); err == nil {
			t.Errorf("NewTCP accepted %+v", p)
		}
	}
}

// BenchmarkUDPForward measures the proxy's cost per datagram on a perfect
// link: one 200-byte datagram at a time, client to server.
func BenchmarkUDPForward(b *testing.B) {
	server := newUDPPeer(b, false)
	p, err := NewUDP("127.0.0.1:0", server.conn.LocalAddr().String(), Profile{}, Profile{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	c := dialUDP(b, p.Addr())
	msg := make([]byte, 200)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		want := i + 1
		for server.count() < want {
			runtime.Gosched()
		}
	}
}
