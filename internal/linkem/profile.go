package linkem

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Per-packet header sizes counted against Profile.Rate, since a real link
// carries the headers too.
const (
	// UDPOverhead is the IPv4 (20 B) and UDP (8 B) header of one datagram.
	UDPOverhead = 28
	// TCPOverhead is the IPv4 (20 B) and TCP (20 B) header of one segment.
	TCPOverhead = 40
	// TCPMSS is the segment size assumed when a TCP byte stream is cut into
	// segments: a 1500 B Ethernet MTU less TCPOverhead.
	TCPMSS = 1460
)

// DefaultQueue is the queue used when a Profile has a Rate but no Queue.
const DefaultQueue = 500 * time.Millisecond

// ErrUnknownProfile is returned by Named and NamedLink for a name that is not
// one of Names.
var ErrUnknownProfile = errors.New("linkem: unknown profile")

// Profile describes one direction of an emulated link. The zero Profile is a
// perfect link: no delay, no loss, no rate limit.
type Profile struct {
	// Name labels the profile in logs and test output.
	Name string
	// Rate is the bottleneck rate in bits per second, counting each packet's
	// IPv4 and UDP header (UDPOverhead), or for TCP the header of every
	// TCPMSS-byte segment (TCPOverhead). Zero means unlimited.
	Rate int
	// Delay is the one-way propagation delay.
	Delay time.Duration
	// Jitter is the largest random deviation from Delay: each packet's delay
	// is drawn uniformly from [Delay-Jitter, Delay+Jitter] (floored at zero),
	// so its standard deviation is Jitter/√3.
	Jitter time.Duration
	// Loss is the long-run probability, 0 to 1, that a UDP datagram is lost.
	// A TCP stream loses nothing; instead a segment "lost" with this
	// probability arrives one retransmission timeout late (see TCPProxy).
	Loss float64
	// LossBurst is the mean length, in packets, of a run of consecutive
	// losses. Zero or one means losses are independent (Bernoulli); above one,
	// losses follow a two-state Gilbert model whose bad state drops every
	// packet and lasts LossBurst packets on average, with Loss still the
	// long-run loss rate.
	LossBurst float64
	// InOrder keeps UDP packets in order: a packet is never delivered before
	// one sent ahead of it, as on radio links that deliver in sequence, so
	// jitter shows as bunching rather than reordering. TCP is always in order.
	InOrder bool
	// Queue is the longest a packet may wait for the bottleneck before it is
	// tail-dropped, like a carrier's buffer; zero means DefaultQueue. It is
	// ignored when Rate is zero.
	Queue time.Duration
}

// Validate reports whether p is a usable profile.
func (p Profile) Validate() error {
	switch {
	case p.Rate < 0:
		return fmt.Errorf("linkem: profile %q: negative rate %d", p.Name, p.Rate)
	case p.Delay < 0:
		return fmt.Errorf("linkem: profile %q: negative delay %v", p.Name, p.Delay)
	case p.Jitter < 0:
		return fmt.Errorf("linkem: profile %q: negative jitter %v", p.Name, p.Jitter)
	case p.Queue < 0:
		return fmt.Errorf("linkem: profile %q: negative queue %v", p.Name, p.Queue)
	case math.IsNaN(p.Loss) || p.Loss < 0 || p.Loss > 1:
		return fmt.Errorf("linkem: profile %q: loss %v is not between 0 and 1", p.Name, p.Loss)
	case math.IsNaN(p.LossBurst) || math.IsInf(p.LossBurst, 0) || p.LossBurst < 0:
		return fmt.Errorf("linkem: profile %q: loss burst %v is not a length", p.Name, p.LossBurst)
	}
	return nil
}

// queue returns the queue limit in force.
func (p Profile) queue() time.Duration {
	if p.Queue == 0 {
		return DefaultQueue
	}
	return p.Queue
}

// The named links. Figures are typical of field measurements of each radio
// technology, rounded; they are test conditions, not a claim about any one
// operator.
var named = map[string]struct{ up, down Profile }{
	// clean is a perfect link, the control case.
	"clean": {Profile{Name: "clean"}, Profile{Name: "clean"}},

	// edge is a GSM EGPRS (2.75G) link in poor coverage: about 100 kbit/s
	// each way (EGPRS field throughput is 100-200 kbit/s down, less up),
	// 300 ms round trip (150 ms each way), ±30 ms jitter and 5 % loss. Radio
	// link buffers are deep: a full second of queue before packets drop.
	"edge": {
		Profile{Name: "edge", Rate: 100_000, Delay: 150 * time.Millisecond, Jitter: 30 * time.Millisecond, Loss: 0.05, Queue: time.Second},
		Profile{Name: "edge", Rate: 100_000, Delay: 150 * time.Millisecond, Jitter: 30 * time.Millisecond, Loss: 0.05, Queue: time.Second},
	},

	// 3g is a UMTS Release 99 dedicated channel: the 384 kbit/s downlink
	// and 128 kbit/s uplink bearers, 180 ms round trip (90 ms each way; R99
	// round trips are typically 150-200 ms), ±20 ms jitter and 1 % loss, with
	// half a second of queue.
	"3g": {
		Profile{Name: "3g", Rate: 128_000, Delay: 90 * time.Millisecond, Jitter: 20 * time.Millisecond, Loss: 0.01, Queue: 500 * time.Millisecond},
		Profile{Name: "3g", Rate: 384_000, Delay: 90 * time.Millisecond, Jitter: 20 * time.Millisecond, Loss: 0.01, Queue: 500 * time.Millisecond},
	},

	// lossy is a link with moderate capacity and latency but 10 % loss, like
	// a congested cell or Wi-Fi at the edge of range: 1 Mbit/s each way,
	// 100 ms round trip, ±10 ms jitter, 300 ms of queue.
	"lossy": {
		Profile{Name: "lossy", Rate: 1_000_000, Delay: 50 * time.Millisecond, Jitter: 10 * time.Millisecond, Loss: 0.10, Queue: 300 * time.Millisecond},
		Profile{Name: "lossy", Rate: 1_000_000, Delay: 50 * time.Millisecond, Jitter: 10 * time.Millisecond, Loss: 0.10, Queue: 300 * time.Millisecond},
	},
}

// Names returns the names Named and NamedLink accept.
func Names() []string {
	return []string{"clean", "edge", "3g", "lossy"}
}

// Named returns the downlink (server to client) profile of the named link:
// "clean", "edge", "3g" or "lossy". Only "3g" differs between directions;
// use NamedLink to get both.
func Named(name string) (Profile, error) {
	l, ok := named[name]
	if !ok {
		return Profile{}, fmt.Errorf("%w %q", ErrUnknownProfile, name)
	}
	return l.down, nil
}

// NamedLink returns both directions of the named link, up (client to server)
// and down (server to client), in the order NewUDP and NewTCP take them.
func NamedLink(name string) (up, down Profile, err error) {
	l, ok := named[name]
	if !ok {
		return Profile{}, Profile{}, fmt.Errorf("%w %q", ErrUnknownProfile, name)
	}
	return l.up, l.down, nil
}
