package exchange

import (
	"io"
	"net"
	"sync"
	"time"

	"mahfooz/wire"
)

// Implementation limits of a connection's outbound queue.
const (
	// DefaultMaxQueue bounds the bytes waiting to be written to one connection. A
	// client that falls this far behind is disconnected; it gets the rest from its
	// mailbox when it reconnects.
	DefaultMaxQueue = 8 << 20
	// DefaultWriteTimeout bounds one write to a connection (at most 64 KiB, or
	// one larger frame), so that a client that stops reading is disconnected.
	DefaultWriteTimeout = 30 * time.Second
	// coalesceSize is how many bytes of queued frames one write may carry.
	coalesceSize = 64 << 10
	// backlogHighWater is how far ahead of the client the mailbox backlog is
	// queued; the backlog waits for the writer below it, rather than overflowing.
	backlogHighWater = 1 << 20
	// maxInflight bounds one connection's Sends and Acks waiting for the store.
	maxInflight = 256
)

// connState is how far a connection has got.
type connState uint8

const (
	// stateSyncing: its mailbox backlog is being pushed. Messages stored meanwhile
	// are not pushed live; the backlog reader picks them up from the mailbox.
	stateSyncing connState = iota
	// stateLive: the backlog is out; new messages are pushed as they are stored.
	stateLive
)

// conn is one client connection. One goroutine reads it. Writes go through a
// queue that a writer goroutine drains; that goroutine exists only while the
// queue holds frames, so an idle connection holds no writer and no buffer.
type conn struct {
	srv    *Server
	raw    net.Conn
	w      io.Writer  // the TLS connection: where queued frames go
	wc     *wire.Conn // for reading, by the connection's goroutine only
	device wire.DeviceID

	mu         sync.Mutex
	queue      [][]byte      // guarded by mu: encoded frames waiting to be written
	queued     int           // guarded by mu: their total size
	writing    bool          // guarded by mu: a writer goroutine is running
	closed     bool          // guarded by mu
	closeAfter bool          // guarded by mu: close once the queue is written (revoked)
	state      connState     // guarded by mu
	missed     bool          // guarded by mu: a message was stored while syncing
	cursor     uint64        // guarded by mu: highest sequence queued as Deliver
	drained    chan struct{} // guarded by mu: closed when the backlog may queue more
	idle       chan struct{} // guarded by mu: closed when the writer has written everything

	inflight chan struct{} // semaphore of requests waiting for the store; made when first needed
	cut      sync.Once
}

// enqueueLocked appends a frame, starting the writer if needed. It reports false
// if the connection is closed or has just been closed for falling too far behind.
func (c *conn) enqueueLocked(frame []byte) bool {
	if c.closed || c.closeAfter {
		return false
	}
	if c.queued+len(frame) > c.srv.cfg.MaxQueue && c.queued > 0 {
		c.srv.log.Warn("exchange: client too far behind; disconnecting", "device", c.device.String(), "queued", c.queued)
		c.closeLocked()
		return false
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	if !c.writing {
		c.writing = true
		c.srv.wg.Add(1) // not closed, so the server's Close has not reached Wait
		go c.writeLoop()
	}
	return true
}

// send queues one frame.
func (c *conn) send(frame []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enqueueLocked(frame)
}

// sendMessage encodes m and queues it.
func (c *conn) sendMessage(requestID uint32, m wire.Message) {
	frame, err := wire.AppendFrame(nil, requestID, m)
	if err != nil {
		c.srv.log.Error("exchange: encoding answer", "type", m.Type().String(), "err", err)
		frame, _ = wire.AppendFrame(nil, requestID, &wire.Error{Code: wire.CodeInternal})
	}
	c.send(frame)
}

// reply answers a request with an Error.
func (c *conn) reply(requestID uint32, code wire.Code, msg string) {
	c.sendMessage(requestID, &wire.Error{Code: code, Message: msg})
}

// pushDeliver queues a live Deliver frame for the message with sequence seq,
// unless the connection is still pushing its backlog (which will include it) or
// already queued it from there.
func (c *conn) pushDeliver(seq uint64, frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.state != stateLive:
		c.missed = true
	case seq > c.cursor:
		if c.enqueueLocked(frame) {
			c.cursor = seq
		}
	}
}

// isLive reports whether the backlog is out.
func (c *conn) isLive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == stateLive && !c.closed
}

// sendBacklog queues a Deliver from the mailbox, first waiting while more than
// backlogHighWater (or half the queue's limit) is queued. It reports false once the connection is closed.
func (c *conn) sendBacklog(seq uint64, frame []byte) bool {
	high := min(backlogHighWater, c.srv.cfg.MaxQueue/2)
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.queued >= high && !c.closed {
		ch := make(chan struct{})
		c.drained = ch
		c.mu.Unlock()
		<-ch
		c.mu.Lock()
	}
	if !c.enqueueLocked(frame) {
		return false
	}
	c.cursor = max(c.cursor, seq)
	return true
}

// goLive ends the backlog if nothing was stored for this device since the last
// mailbox read; otherwise it reports false and the caller reads again.
func (c *conn) goLive(after uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.missed {
		c.missed = false
		return false
	}
	c.state = stateLive
	c.cursor = max(c.cursor, after)
	return true
}

// writeLoop writes queued frames, several per write when they are small, and
// ends when the queue is empty.
func (c *conn) writeLoop() {
	defer c.srv.wg.Done()
	var buf []byte
	for {
		c.mu.Lock()
		if c.closed || len(c.queue) == 0 {
			c.writing = false
			c.queue, c.queued = nil, 0
			if c.drained != nil {
				close(c.drained)
				c.drained = nil
			}
			if c.idle != nil {
				close(c.idle)
				c.idle = nil
			}
			if c.closeAfter && !c.closed {
				c.closeLocked()
			}
			c.mu.Unlock()
			return
		}
		out := c.queue[0]
		n := 1
		if len(out) < coalesceSize {
			size := len(out)
			for n < len(c.queue) && size+len(c.queue[n]) <= coalesceSize {
				size += len(c.queue[n])
				n++
			}
			if n > 1 {
				buf = buf[:0]
				for _, f := range c.queue[:n] {
					buf = append(buf, f...)
				}
				out = buf
			}
		}
		clear(c.queue[:n])
		c.queue = c.queue[n:]
		c.queued -= len(out)
		if c.drained != nil && c.queued < min(backlogHighWater, c.srv.cfg.MaxQueue/2)/2 {
			close(c.drained)
			c.drained = nil
		}
		c.mu.Unlock()

		c.raw.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		if _, err := c.w.Write(out); err != nil {
			c.srv.log.Info("exchange: writing to client", "device", c.device.String(), "err", err)
			c.close()
		}
	}
}

// flush waits until everything queued is written, or for at most d.
func (c *conn) flush(d time.Duration) {
	c.mu.Lock()
	if !c.writing {
		c.mu.Unlock()
		return
	}
	if c.idle == nil {
		c.idle = make(chan struct{})
	}
	idle := c.idle
	c.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}

// cuttingOff reports whether the connection is being closed for revocation.
func (c *conn) cuttingOff() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeAfter && !c.closed
}

// close closes the connection at once, dropping whatever is queued; the reading
// goroutine then ends and unregisters it.
func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked()
}

func (c *conn) closeLocked() {
	if c.closed {
		return
	}
	c.closed = true
	c.queue, c.queued = nil, 0
	if c.drained != nil {
		close(c.drained)
		c.drained = nil
	}
	c.raw.Close()
}

// cutOff tells the device it is revoked, in place of anything still queued, and
// closes the connection once that is written or after revokedWriteTimeout,
// whichever comes first.
func (c *conn) cutOff(at time.Time, proof []byte) {
	c.cut.Do(func() {
		frame, _ := wire.AppendFrame(nil, 0, &wire.Revoked{RevokedAt: at, Proof: proof})
		c.mu.Lock()
		if !c.closed {
			c.queue, c.queued = nil, 0
			c.enqueueLocked(frame)
			c.closeAfter = true
		}
		c.mu.Unlock()
		time.AfterFunc(revokedWriteTimeout, c.close)
	})
}

// acquire takes a slot for a request answered from a store callback, waiting
// while maxInflight are outstanding; release gives it back.
func (c *conn) acquire() {
	if c.inflight == nil {
		c.inflight = make(chan struct{}, maxInflight) // only the reading goroutine gets here
	}
	c.inflight <- struct{}{}
}

func (c *conn) release() { <-c.inflight }
