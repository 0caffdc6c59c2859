package linkem

import (
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Stats counts what crossed a proxy in each direction.
type Stats struct {
	Up   DirStats // client to server
	Down DirStats // server to client
}

// DirStats counts one direction of a proxy, over all its clients.
type DirStats struct {
	// Packets is the datagrams (UDP) or segments (TCP) received from the
	// sender.
	Packets uint64
	// Forwarded is the datagrams or segments delivered to the receiver so far;
	// packets still on the emulated link are not counted yet.
	Forwarded uint64
	// Lost is the UDP datagrams dropped by random loss, or the TCP segments
	// delayed by an emulated retransmission.
	Lost uint64
	// QueueDrops is the UDP datagrams tail-dropped at a full queue.
	QueueDrops uint64
	// Bytes is the payload bytes delivered.
	Bytes uint64
	// WireBytes is the bytes delivered counting each packet's IPv4 and
	// UDP or TCP header, the figure Profile.Rate limits.
	WireBytes uint64
}

// dirStats is the live, atomically updated form of DirStats.
type dirStats struct {
	packets, forwarded, lost, queueDrops, bytes, wireBytes atomic.Uint64
}

func (s *dirStats) snapshot() DirStats {
	return DirStats{
		Packets:    s.packets.Load(),
		Forwarded:  s.forwarded.Load(),
		Lost:       s.lost.Load(),
		QueueDrops: s.queueDrops.Load(),
		Bytes:      s.bytes.Load(),
		WireBytes:  s.wireBytes.Load(),
	}
}

// delivered counts one packet of n payload and wire bytes as delivered.
func (s *dirStats) delivered(n, wire int) {
	s.forwarded.Add(1)
	s.bytes.Add(uint64(n))
	s.wireBytes.Add(uint64(wire))
}

// Option configures a proxy.
type Option func(*options)

type options struct {
	seed   uint64
	logger *slog.Logger
	shared bool
}

func newOptions(opts []Option) options {
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WithSeed seeds the proxy's random loss and jitter; the default seed is 0.
// Each link of the proxy draws from its own stream of that seed, so a client
// that sends the same packets sees the same losses from run to run.
func WithSeed(seed uint64) Option {
	return func(o *options) { o.seed = seed }
}

// WithLogger sets where the proxy logs connection errors; by default it logs
// nothing. It never logs packet contents.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithSharedLink puts all clients of the proxy on one link per direction, so
// they share its rate, queue and loss process, as devices behind one access
// link do. By default each client has a link of its own.
func WithSharedLink() Option {
	return func(o *options) { o.shared = true }
}

// link is the state of one direction of one emulated link. It is safe for
// concurrent use.
type link struct {
	p      Profile
	stats  *dirStats
	tcp    bool
	rto    time.Duration // extra delay of a "lost" TCP segment
	queue  time.Duration
	burstR float64 // Gilbert model: P(bad -> good)
	burstP float64 // Gilbert model: P(good -> bad)

	mu        sync.Mutex
	rng       *rand.Rand
	bad       bool      // Gilbert model state
	busyUntil time.Time // when the bottleneck finishes what is queued
	lastAt    time.Time // delivery time of the latest packet, for in-order links
}

// newLink returns a link with profile p, drawing randomness from stream
// number stream of seed.
func newLink(p Profile, stats *dirStats, tcp bool, seed, stream uint64) *link {
	l := &link{
		p:     p,
		stats: stats,
		tcp:   tcp,
		queue: p.queue(),
		rng:   rand.New(rand.NewPCG(seed, stream)),
	}
	if p.LossBurst > 1 && p.Loss > 0 && p.Loss < 1 {
		l.burstR = 1 / p.LossBurst
		l.burstP = p.Loss * l.burstR / (1 - p.Loss)
	}
	// A lost segment is resent after a retransmission timeout, which Linux
	// bounds below by 200 ms and otherwise sets from the smoothed round
	// trip and its variation; the round trip is taken as twice this
	// direction's delay.
	l.rto = max(200*time.Millisecond, 2*(p.Delay+2*p.Jitter))
	return l
}

// lose draws whether the next packet is lost.
func (l *link) lose() bool {
	switch {
	case l.p.Loss <= 0:
		return false
	case l.p.Loss >= 1:
		return true
	case l.burstR == 0:
		return l.rng.Float64() < l.p.Loss
	}
	if l.bad {
		l.bad = l.rng.Float64() >= l.burstR
	} else {
		l.bad = l.rng.Float64() < l.burstP
	}
	return l.bad
}

// delay draws one packet's propagation delay.
func (l *link) delay() time.Duration {
	d := l.p.Delay
	if j := l.p.Jitter; j > 0 {
		d += time.Duration(l.rng.Int64N(int64(2*j)+1)) - j
	}
	return max(d, 0)
}

// admit passes a packet of wire bytes, arriving at now, through the link. It
// returns when the packet reaches the far end, or ok false if the link drops
// it (UDP loss or a full queue). A TCP segment is never dropped.
func (l *link) admit(now time.Time, wire int) (at time.Time, ok bool) {
	l.stats.packets.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	var extra time.Duration
	if l.lose() {
		l.stats.lost.Add(1)
		if !l.tcp {
			return time.Time{}, false
		}
		extra = l.rto
	}
	dep := now
	if l.p.Rate > 0 {
		start := dep
		if l.busyUntil.After(start) {
			start = l.busyUntil
		}
		if !l.tcp && start.Sub(now) > l.queue {
			l.stats.queueDrops.Add(1)
			return time.Time{}, false
		}
		l.busyUntil = start.Add(txTime(wire, l.p.Rate))
		dep = l.busyUntil
	}
	at = dep.Add(l.delay() + extra)
	if (l.tcp || l.p.InOrder) && at.Before(l.lastAt) {
		at = l.lastAt
	}
	if at.After(l.lastAt) {
		l.lastAt = at
	}
	return at, true
}

// backlog returns how long a packet arriving at now would wait for the
// bottleneck.
func (l *link) backlog(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(l.busyUntil.Sub(now), 0)
}

// lastDelivery returns the delivery time of the latest packet admitted.
func (l *link) lastDelivery() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastAt
}

// txTime is how long wire bytes take to serialise at rate bits per second.
func txTime(wire, rate int) time.Duration {
	return time.Duration(int64(wire) * 8 * int64(time.Second) / int64(rate))
}
