package linkem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// maxInFlight bounds the bytes of one direction of a TCP connection that the
// proxy holds (on the emulated link or waiting for the receiver), like a
// receive window: beyond it the proxy stops reading from the sender.
const maxInFlight = 4 << 20

// tcpReadSize is how much the proxy reads from a sender at once.
const tcpReadSize = 16 << 10

// TCPProxy forwards TCP connections to one upstream address through emulated
// links. The byte stream arrives intact and in order; the links add delay,
// jitter (never reordering bytes: a segment waits for the one ahead of it)
// and the rate limit, with the stream cut into TCPMSS-byte segments that
// each carry TCPOverhead bytes of header. When the rate limit's queue is
// full, the proxy stops reading from the sender rather than dropping, so the
// sender's own TCP slows down. Profile.Loss does not drop bytes, since TCP
// would retransmit them; a segment "lost" with that probability arrives one
// retransmission timeout late instead, max(200 ms, 2·(Delay+2·Jitter)), and
// holds back the segments behind it. The first client-to-server segment of a
// connection leaves no earlier than one round trip (up.Delay + down.Delay)
// after the proxy accepts it, the time a real TCP handshake takes.
// Half-closes are passed on. Its methods are safe for concurrent use.
type TCPProxy struct {
	ln       net.Listener
	upstream string
	up, down Profile
	o        options
	sched    *scheduler
	stats    [2]dirStats
	ctx      context.Context // cancelled by Close, ends upstream dials
	cancel   context.CancelFunc

	mu       sync.Mutex
	conns    map[*tcpConn]struct{}
	nlinks   uint64
	sharedUp *link
	sharedDn *link
	closed   bool

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewTCP listens on listen (for example "127.0.0.1:0") and forwards each
// connection to upstream, passing client-to-server bytes through a link with
// profile up and server-to-client bytes through a link with profile down.
func NewTCP(listen, upstream string, up, down Profile, opts ...Option) (*TCPProxy, error) {
	if err := up.Validate(); err != nil {
		return nil, err
	}
	if err := down.Validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("linkem: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &TCPProxy{
		ln:       ln,
		upstream: upstream,
		up:       up,
		down:     down,
		o:        newOptions(opts),
		sched:    newScheduler(),
		ctx:      ctx,
		cancel:   cancel,
		conns:    make(map[*tcpConn]struct{}),
	}
	if p.o.shared {
		p.sharedUp = newLink(up, &p.stats[0], true, p.o.seed, 0)
		p.sharedDn = newLink(down, &p.stats[1], true, p.o.seed, 1)
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address clients connect to.
func (p *TCPProxy) Addr() net.Addr { return p.ln.Addr() }

// Stats returns the proxy's counters so far.
func (p *TCPProxy) Stats() Stats {
	return Stats{Up: p.stats[0].snapshot(), Down: p.stats[1].snapshot()}
}

// Close stops the proxy: it stops listening, closes every proxied connection
// at both ends, discards bytes still on the emulated links, and returns once
// every goroutine of the proxy has ended. It is idempotent.
func (p *TCPProxy) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		err = p.ln.Close()
		p.cancel()
		for c := range p.conns {
			c.abort()
		}
		p.mu.Unlock()
		p.sched.stop()
		p.wg.Wait()
	})
	return err
}

func (p *TCPProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.o.logger.Debug("linkem: tcp accept", "err", err)
			continue
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

// tcpConn is one proxied connection.
type tcpConn struct {
	client, server net.Conn
	streams        [2]*tcpStream // up, down
	abortOnce      sync.Once
}

// abort closes both ends at once and wakes every goroutine of the connection.
func (c *tcpConn) abort() {
	c.abortOnce.Do(func() {
		c.client.Close()
		if c.server != nil {
			c.server.Close()
		}
		for _, s := range c.streams {
			if s != nil {
				s.abort()
			}
		}
	})
}

// serve dials the upstream for client and runs the connection until both
// directions have finished or either fails.
func (p *TCPProxy) serve(client net.Conn) {
	defer p.wg.Done()
	accepted := time.Now()
	var d net.Dialer
	server, err := d.DialContext(p.ctx, "tcp", p.upstream)
	if err != nil {
		if p.ctx.Err() == nil {
			p.o.logger.Warn("linkem: tcp upstream", "err", err)
		}
		client.Close()
		return
	}
	c := &tcpConn{client: client, server: server}
	up, down := p.sharedUp, p.sharedDn
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		client.Close()
		server.Close()
		return
	}
	if !p.o.shared {
		up = newLink(p.up, &p.stats[0], true, p.o.seed, 2*p.nlinks)
		down = newLink(p.down, &p.stats[1], true, p.o.seed, 2*p.nlinks+1)
		p.nlinks++
	}
	c.streams[0] = newTCPStream(client, server, up, &p.stats[0])
	c.streams[1] = newTCPStream(server, client, down, &p.stats[1])
	p.conns[c] = struct{}{}
	p.mu.Unlock()

	c.streams[0].notBefore = accepted.Add(p.up.Delay + p.down.Delay)
	var wg sync.WaitGroup
	for _, s := range c.streams {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := s.read(p.sched); err != nil {
				c.abort()
			}
		}()
		go func() {
			defer wg.Done()
			if err := s.write(); err != nil {
				c.abort()
			}
		}()
	}
	wg.Wait()
	c.abort()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// tcpStream is one direction of a proxied connection: a reader that puts
// segments on the emulated link and a writer that passes them on as the
// scheduler delivers them.
type tcpStream struct {
	src, dst  net.Conn
	link      *link
	stats     *dirStats
	notBefore time.Time // no segment leaves earlier: the emulated handshake

	mu       sync.Mutex
	cond     sync.Cond
	ready    [][]byte // delivered segments not yet written
	eof      bool     // the sender's EOF has been delivered
	inFlight int      // bytes read from src and not yet written to dst
	aborted  bool
	done     chan struct{} // closed by abort
}

func newTCPStream(src, dst net.Conn, l *link, stats *dirStats) *tcpStream {
	s := &tcpStream{src: src, dst: dst, link: l, stats: stats, done: make(chan struct{})}
	s.cond.L = &s.mu
	return s
}

func (s *tcpStream) abort() {
	s.mu.Lock()
	if !s.aborted {
		s.aborted = true
		close(s.done)
	}
	s.mu.Unlock()
	s.cond.Broadcast()
}

// read reads src until EOF, scheduling each segment's delivery. It returns
// nil at EOF, or the error that should end the connection.
func (s *tcpStream) read(sched *scheduler) error {
	buf := make([]byte, tcpReadSize)
	for {
		room, err := s.waitForRoom()
		if err != nil {
			return err
		}
		n, err := s.src.Read(buf[:room])
		now := time.Now()
		if s.notBefore.After(now) {
			now = s.notBefore
		}
		for off := 0; off < n; off += TCPMSS {
			seg := append([]byte(nil), buf[off:min(off+TCPMSS, n)]...)
			at, _ := s.link.admit(now, len(seg)+TCPOverhead)
			s.mu.Lock()
			s.inFlight += len(seg)
			s.mu.Unlock()
			sched.at(at, func() { s.deliver(seg) })
		}
		if errors.Is(err, io.EOF) {
			// The FIN follows the last segment.
			at := now.Add(s.link.p.Delay)
			if last := s.link.lastDelivery(); last.After(at) {
				at = last
			}
			sched.at(at, func() { s.deliver(nil) })
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// waitForRoom blocks while the stream holds too much or the link's queue is
// full, the proxy's form of back-pressure, then returns how many bytes to read
// next: no more than the queue has room for, so that it is not overrun by
// more than a segment.
func (s *tcpStream) waitForRoom() (int, error) {
	s.mu.Lock()
	for s.inFlight >= maxInFlight && !s.aborted {
		s.cond.Wait()
	}
	s.mu.Unlock()
	rate := s.link.p.Rate
	for {
		select {
		case <-s.done:
			return 0, net.ErrClosed
		default:
		}
		if rate == 0 {
			return tcpReadSize, nil
		}
		room := s.link.queue - s.link.backlog(time.Now())
		if room > 0 {
			n := int(int64(room) * int64(rate) / (8 * int64(time.Second)))
			return min(max(n, TCPMSS), tcpReadSize), nil
		}
		t := time.NewTimer(-room)
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
		}
	}
}

// deliver hands a segment, or the EOF for a nil segment, to the writer. The
// scheduler calls it at the segment's delivery time.
func (s *tcpStream) deliver(seg []byte) {
	s.mu.Lock()
	if seg == nil {
		s.eof = true
	} else {
		s.ready = append(s.ready, seg)
	}
	s.mu.Unlock()
	s.cond.Broadcast()
}

// write writes delivered segments to dst and half-closes it after the
// sender's EOF. It returns nil after the EOF, or the error that should end the
// connection.
func (s *tcpStream) write() error {
	for {
		s.mu.Lock()
		for len(s.ready) == 0 && !s.eof && !s.aborted {
			s.cond.Wait()
		}
		if s.aborted {
			s.mu.Unlock()
			return net.ErrClosed
		}
		segs, eof := s.ready, s.eof
		s.ready = nil
		s.mu.Unlock()

		if len(segs) > 0 {
			n := 0
			for _, seg := range segs {
				n += len(seg)
			}
			nsegs := len(segs)
			// WriteTo consumes the segments.
			bufs := net.Buffers(segs)
			if _, err := bufs.WriteTo(s.dst); err != nil {
				return err
			}
			s.stats.forwarded.Add(uint64(nsegs))
			s.stats.bytes.Add(uint64(n))
			s.stats.wireBytes.Add(uint64(n + nsegs*TCPOverhead))
			s.mu.Lock()
			s.inFlight -= n
			s.mu.Unlock()
			s.cond.Broadcast()
			continue
		}
		if eof {
			if cw, ok := s.dst.(interface{ CloseWrite() error }); ok {
				return cw.CloseWrite()
			}
			return nil
		}
	}
}
