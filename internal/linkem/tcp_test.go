package linkem

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// tcpEcho is a TCP server on 127.0.0.1 that echoes each connection back and
// half-closes it when the client does.
type tcpEcho struct {
	ln net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

func newTCPEcho(t *testing.T) *tcpEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &tcpEcho{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns = append(e.conns, c)
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	t.Cleanup(e.close)
	return e
}

func (e *tcpEcho) close() {
	e.ln.Close()
	e.mu.Lock()
	for _, c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

func newTCPProxy(t *testing.T, upstream string, up, down Profile, opts ...Option) *TCPProxy {
	t.Helper()
	p, err := NewTCP("127.0.0.1:0", upstream, up, down, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dialTCP(t *testing.T, addr net.Addr) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

// ping sends a short message and returns how long its echo took.
func ping(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "ping" {
		t.Fatalf("echo %q", buf)
	}
	return time.Since(start)
}

func TestTCPRoundTripDelay(t *testing.T) {
	up := Profile{Delay: 30 * time.Millisecond, Jitter: 5 * time.Millisecond}
	down := Profile{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond}
	echo := newTCPEcho(t)
	p := newTCPProxy(t, echo.ln.Addr().String(), up, down)
	c := dialTCP(t, p.Addr())

	// The first message waits for the emulated handshake: two round trips.
	first := ping(t, c)
	t.Logf("first round trip %v", first)
	if first < 90*time.Millisecond || first > 150*time.Millisecond {
		t.Errorf("first round trip %v, want about 100ms (handshake and echo)", first)
	}
	var rtts []time.Duration
	for range 8 {
		rtts = append(rtts, ping(t, c))
	}
	s := summarise(rtts)
	t.Logf("round trips: min %v median %v max %v", s.min, s.median, s.max)
	if s.min < 40*time.Millisecond || s.median > 60*time.Millisecond {
		t.Errorf("round trips from %v, median %v, want 50ms ±10ms", s.min, s.median)
	}
}

func TestTCPStreamIntactAtRate(t *testing.T) {
	// 4 Mbit/s each way; 200 KiB takes about 0.42 s with the header overhead.
	prof := Profile{Rate: 4_000_000, Delay: 10 * time.Millisecond, Jitter: 3 * time.Millisecond, Queue: 50 * time.Millisecond}
	echo := newTCPEcho(t)
	p := newTCPProxy(t, echo.ln.Addr().String(), prof, prof)
	c := dialTCP(t, p.Addr())
	ping(t, c) // past the handshake

	data := make([]byte, 200<<10)
	rand.Read(data)
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echoed stream differs: %d bytes back of %d", len(got), len(data))
	}
	segs := (len(data) + TCPMSS - 1) / TCPMSS
	ideal := time.Duration(float64((len(data)+segs*TCPOverhead)*8) / float64(prof.Rate) * float64(time.Second))
	t.Logf("200 KiB echoed in %v; serialisation alone takes %v", elapsed, ideal)
	// Up and down links pipeline, so the transfer takes the serialisation
	// time plus the round trip, and a little for the last segments.
	if elapsed < ideal || elapsed > ideal+ideal/4+200*time.Millisecond {
		t.Errorf("transfer took %v, want %v plus the round trip", elapsed, ideal)
	}
	st := p.Stats()
	if st.Up.Bytes != uint64(len(data))+4 || st.Down.Bytes != uint64(len(data))+4 {
		t.Errorf("stats count %d bytes up and %d down, want %d", st.Up.Bytes, st.Down.Bytes, len(data)+4)
	}
	if st.Up.Lost != 0 || st.Up.QueueDrops != 0 {
		t.Errorf("stats %+v on a lossless link", st.Up)
	}
}

func TestTCPFullQueueHoldsSenderBack(t *testing.T) {
	// 400 kbit/s with 100 ms of queue holds about 5 KB, four segments.
	up := Profile{Rate: 400_000, Queue: 100 * time.Millisecond}
	echo := newTCPEcho(t)
	p := newTCPProxy(t, echo.ln.Addr().String(), up, Profile{})
	c := dialTCP(t, p.Addr())
	go c.Write(make([]byte, 1<<20)) // ends with an error when the test closes c
	waitFor(t, "10 segments across the link", 5*time.Second, func() bool { return p.Stats().Up.Forwarded >= 10 })
	st := p.Stats().Up
	t.Logf("%d segments taken from the sender, %d delivered", st.Packets, st.Forwarded)
	if held := st.Packets - st.Forwarded; held > 8 {
		t.Errorf("proxy holds %d segments, more than its 100 ms queue; the sender is not held back", held)
	}
	if st.QueueDrops != 0 {
		t.Errorf("%d TCP segments dropped", st.QueueDrops)
	}
}

func TestTCPLossBecomesDelay(t *testing.T) {
	up := Profile{Delay: 5 * time.Millisecond, Loss: 0.3}
	echo := newTCPEcho(t)
	p := newTCPProxy(t, echo.ln.Addr().String(), up, Profile{}, WithSeed(3))
	c := dialTCP(t, p.Addr())
	data := make([]byte, 50<<10)
	rand.Read(data)
	start := time.Now()
	go func() {
		c.Write(data)
		c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("stream differs: %d bytes back of %d", len(got), len(data))
	}
	st := p.Stats().Up
	t.Logf("%d of %d segments retransmitted; took %v", st.Lost, st.Packets, time.Since(start))
	if st.Lost == 0 {
		t.Errorf("no segment was retransmitted at 30%% loss")
	}
	// At least one segment waited a 200 ms retransmission timeout.
	if e := time.Since(start); e < 200*time.Millisecond {
		t.Errorf("transfer took %v with retransmissions, want at least 200ms", e)
	}
}

func TestTCPCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	echo := newTCPEcho(t)
	p, err := NewTCP("127.0.0.1:0", echo.ln.Addr().String(), Profile{Delay: time.Hour}, Profile{})
	if err != nil {
		t.Fatal(err)
	}
	c := dialTCP(t, p.Addr())
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message on the link", 5*time.Second, func() bool { return p.Stats().Up.Packets == 1 })
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The client sees its connection end, with nothing delivered.
	n, err := c.Read(make([]byte, 10))
	var ne net.Error
	if n != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("read after Close: %d bytes, %v; want the connection closed", n, err)
	}
	if c, err := net.DialTimeout("tcp", p.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Errorf("proxy still accepts after Close")
	}
	c.Close()
	echo.close()
	goroutinesSettle(t, before)
}
