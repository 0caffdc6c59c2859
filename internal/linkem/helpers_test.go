package linkem

import (
	"encoding/binary"
	"errors"
	"math"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// arrival is one datagram received by a udpPeer.
type arrival struct {
	data []byte
	from net.Addr
	at   time.Time
}

// udpPeer is a UDP socket on 127.0.0.1 that records every datagram it
// receives and, if echo is set, sends it back to its sender.
type udpPeer struct {
	conn *net.UDPConn
	echo bool
	done chan struct{}

	mu  sync.Mutex
	got []arrival
}

func newUDPPeer(t testing.TB, echo bool) *udpPeer {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &udpPeer{conn: conn, echo: echo, done: make(chan struct{})}
	go p.run()
	t.Cleanup(p.close)
	return p
}

func (p *udpPeer) run() {
	defer close(p.done)
	buf := make([]byte, 65535)
	for {
		n, from, err := p.conn.ReadFrom(buf)
		now := time.Now()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		b := append([]byte(nil), buf[:n]...)
		p.mu.Lock()
		p.got = append(p.got, arrival{data: b, from: from, at: now})
		p.mu.Unlock()
		if p.echo {
			p.conn.WriteTo(b, from)
		}
	}
}

func (p *udpPeer) close() {
	p.conn.Close()
	<-p.done
}

func (p *udpPeer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got)
}

func (p *udpPeer) arrivals() []arrival {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

// dialUDP returns a client socket connected to addr.
func dialUDP(t testing.TB, addr net.Addr) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, addr.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// probe is a test datagram: a sequence number and the time it was sent, as
// an offset from base, padded to size bytes.
func probe(seq int, base time.Time, size int) []byte {
	b := make([]byte, max(size, 16))
	binary.BigEndian.PutUint64(b, uint64(seq))
	binary.BigEndian.PutUint64(b[8:], uint64(time.Since(base)))
	return b
}

func probeSeq(b []byte) int { return int(binary.BigEndian.Uint64(b)) }

func probeSent(b []byte, base time.Time) time.Time {
	return base.Add(time.Duration(binary.BigEndian.Uint64(b[8:])))
}

// summary is the distribution of a set of delays.
type summary struct {
	n                int
	min, max, mean   time.Duration
	p10, p25, median time.Duration
	p75, p90, stdv   time.Duration
}

// iqr is the interquartile range, a spread measure that a few packets
// delayed by a busy machine do not move.
func (s summary) iqr() time.Duration { return s.p75 - s.p25 }

func summarise(ds []time.Duration) summary {
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum, sq float64
	for _, d := range s {
		sum += float64(d)
	}
	mean := sum / float64(len(s))
	for _, d := range s {
		sq += (float64(d) - mean) * (float64(d) - mean)
	}
	stdv := 0.0
	if len(s) > 1 {
		stdv = sq / float64(len(s)-1)
	}
	return summary{
		n:      len(s),
		min:    s[0],
		max:    s[len(s)-1],
		mean:   time.Duration(mean),
		p10:    s[len(s)/10],
		p25:    s[len(s)/4],
		median: s[len(s)/2],
		p75:    s[len(s)*3/4],
		p90:    s[len(s)*9/10],
		stdv:   time.Duration(math.Sqrt(stdv)),
	}
}

// goroutinesSettle waits until no more goroutines run than before.
func goroutinesSettle(t *testing.T, before int) {
	t.Helper()
	waitFor(t, "the proxy's goroutines to end", 5*time.Second, func() bool {
		return runtime.NumGoroutine() <= before
	})
}
