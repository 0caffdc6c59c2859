package exchange

import (
	"net/netip"
	"sync"
	"time"
)

// Rate is a number of events allowed per period, with bursts of up to Events.
type Rate struct {
	Events int
	Per    time.Duration
}

func (r Rate) valid() bool { return r.Events > 0 && r.Per > 0 }

// limiter is a token bucket per key: a source address for enrolment (see
// limiterKey), a device for requests. It is safe for concurrent use.
type limiter[K comparable] struct {
	rate Rate
	now  func() time.Time

	mu        sync.Mutex
	buckets   map[K]*bucket // guarded by mu
	lastPrune time.Time     // guarded by mu
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter[K comparable](r Rate, now func() time.Time) *limiter[K] {
	return &limiter[K]{rate: r, now: now, buckets: make(map[K]*bucket)}
}

// limiterKey is the source an enrolment attempt counts against: an IPv4 address,
// or the /64 of an IPv6 address (one host usually holds a whole /64).
func limiterKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// allow takes one token from key's bucket, reporting whether there was one.
func (l *limiter[K]) allow(key K) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastPrune) > l.rate.Per {
		// A bucket untouched for a whole period is full again: forgetting it changes
		// nothing, and keeps the map as small as the recent sources.
		for k, b := range l.buckets {
			if now.Sub(b.last) > l.rate.Per {
				delete(l.buckets, k)
			}
		}
		l.lastPrune = now
	}
	burst := float64(l.rate.Events)
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: burst, last: now}
		l.buckets[key] = b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(burst, b.tokens+burst*elapsed.Seconds()/l.rate.Per.Seconds())
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
