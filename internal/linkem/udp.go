package linkem

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// maxDatagram is the largest UDP payload the proxy forwards.
const maxDatagram = 65535

// UDPProxy forwards UDP datagrams between clients and one upstream address
// through emulated links. Each client source address gets its own upstream
// socket, like a NAT, so the server sees each client as a distinct address
// and its replies go back to the right client. Mappings last until Close.
// Its methods are safe for concurrent use.
type UDPProxy struct {
	ln       *net.UDPConn
	upstream *net.UDPAddr
	up, down Profile
	o        options
	sched    *scheduler
	stats    [2]dirStats // up, down

	mu       sync.Mutex
	flows    map[netip.AddrPort]*udpFlow
	nlinks   uint64
	sharedUp *link // with WithSharedLink
	sharedDn *link
	closed   bool

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// udpFlow is one client's mapping to its own upstream socket.
type udpFlow struct {
	client   netip.AddrPort
	conn     *net.UDPConn // connected to the upstream
	up, down *link
}

// NewUDP listens on listen (for example "127.0.0.1:0") and forwards datagrams
// to upstream, passing client-to-server datagrams through a link with profile
// up and server-to-client ones through a link with profile down.
func NewUDP(listen, upstream string, up, down Profile, opts ...Option) (*UDPProxy, error) {
	if err := up.Validate(); err != nil {
		return nil, err
	}
	if err := down.Validate(); err != nil {
		return nil, err
	}
	raddr, err := net.ResolveUDPAddr("udp", upstream)
	if err != nil {
		return nil, fmt.Errorf("linkem: upstream: %w", err)
	}
	laddr, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return nil, fmt.Errorf("linkem: listen: %w", err)
	}
	ln, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("linkem: %w", err)
	}
	p := &UDPProxy{
		ln:       ln,
		upstream: raddr,
		up:       up,
		down:     down,
		o:        newOptions(opts),
		sched:    newScheduler(),
		flows:    make(map[netip.AddrPort]*udpFlow),
	}
	if p.o.shared {
		p.sharedUp = newLink(up, &p.stats[0], false, p.o.seed, 0)
		p.sharedDn = newLink(down, &p.stats[1], false, p.o.seed, 1)
	}
	p.wg.Add(1)
	go p.readClients()
	return p, nil
}

// Addr returns the address clients send to.
func (p *UDPProxy) Addr() net.Addr { return p.ln.LocalAddr() }

// Stats returns the proxy's counters so far.
func (p *UDPProxy) Stats() Stats {
	return Stats{Up: p.stats[0].snapshot(), Down: p.stats[1].snapshot()}
}

// Close stops the proxy: it closes the listening and upstream sockets,
// discards packets still on the emulated links, and returns once every
// goroutine of the proxy has ended. It is idempotent.
func (p *UDPProxy) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		err = p.ln.Close()
		for _, f := range p.flows {
			f.conn.Close()
		}
		p.mu.Unlock()
		p.sched.stop()
		p.wg.Wait()
	})
	return err
}

// flow returns the mapping for client, creating it on its first datagram.
func (p *UDPProxy) flow(client netip.AddrPort) (*udpFlow, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.flows[client]; ok {
		return f, nil
	}
	if p.closed {
		return nil, net.ErrClosed
	}
	conn, err := net.DialUDP("udp", nil, p.upstream)
	if err != nil {
		return nil, err
	}
	f := &udpFlow{client: client, conn: conn, up: p.sharedUp, down: p.sharedDn}
	if !p.o.shared {
		f.up = newLink(p.up, &p.stats[0], false, p.o.seed, 2*p.nlinks)
		f.down = newLink(p.down, &p.stats[1], false, p.o.seed, 2*p.nlinks+1)
		p.nlinks++
	}
	p.flows[client] = f
	p.wg.Add(1)
	go p.readUpstream(f)
	return f, nil
}

// readClients forwards datagrams from clients towards the upstream.
func (p *UDPProxy) readClients() {
	defer p.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, client, err := p.ln.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.o.logger.Debug("linkem: udp read", "err", err)
			continue
		}
		now := time.Now()
		f, err := p.flow(client)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.o.logger.Warn("linkem: udp upstream socket", "err", err)
			}
			continue
		}
		at, ok := f.up.admit(now, n+UDPOverhead)
		if !ok {
			continue
		}
		b := append([]byte(nil), buf[:n]...)
		p.sched.at(at, func() {
			if _, err := f.conn.Write(b); err == nil {
				p.stats[0].delivered(len(b), len(b)+UDPOverhead)
			}
		})
	}
}

// readUpstream forwards datagrams from the upstream back to f's client.
func (p *UDPProxy) readUpstream(f *udpFlow) {
	defer p.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, err := f.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A connected UDP socket reports an ICMP port unreachable from
			// the upstream as an error on the next read; the mapping stays.
			p.o.logger.Debug("linkem: udp upstream read", "err", err)
			continue
		}
		at, ok := f.down.admit(time.Now(), n+UDPOverhead)
		if !ok {
			continue
		}
		b := append([]byte(nil), buf[:n]...)
		p.sched.at(at, func() {
			if _, err := p.ln.WriteToUDPAddrPort(b, f.client); err == nil {
				p.stats[1].delivered(len(b), len(b)+UDPOverhead)
			}
		})
	}
}
