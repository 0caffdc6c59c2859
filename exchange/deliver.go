package exchange

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"time"

	"mahfooz/exchange/store"
	"mahfooz/wire"
)

// Implementation limits of mailbox pushes.
const (
	// backlogEntries and backlogBytes bound one read of a mailbox backlog.
	backlogEntries = 64
	backlogBytes   = 256 << 10
)

// handleSend checks a Send and hands it to the store; the answer and the pushes
// to connected recipients follow from the store's callback, in sequence order.
func (s *Server) handleSend(c *conn, f wire.Frame, m *wire.Send) {
	h, err := wire.ParseMLSHeader(m.Payload)
	if err != nil {
		c.reply(f.RequestID, wire.CodeInvalidRequest, "payload is not an MLSMessage")
		return
	}
	switch h.WireFormat {
	case wire.WireFormatPublicMessage, wire.WireFormatPrivateMessage:
		if !bytes.Equal(h.GroupID, m.GroupID) || h.Epoch != m.Epoch || h.IsCommit() != m.IsCommit {
			c.reply(f.RequestID, wire.CodeInvalidRequest, "group, epoch or commit flag disagrees with the payload")
			return
		}
	default: // Welcome, GroupInfo, KeyPackage: nothing in them to compare
		if m.IsCommit {
			c.reply(f.RequestID, wire.CodeInvalidRequest, "commit flag set on a message that is not a commit")
			return
		}
	}
	for _, r := range m.Recipients {
		if r == c.device {
			c.reply(f.RequestID, wire.CodeInvalidRequest, "the sender is among the recipients")
			return
		}
	}
	recipients, unknown := s.recipients(m.Recipients)
	if unknown {
		c.reply(f.RequestID, wire.CodeInvalidRequest, "a recipient is not an enrolled device")
		return
	}
	now := s.cfg.Now()
	sentAt := time.UnixMilli(now.UnixMilli()).UTC()
	msg := &store.Message{
		Sender:     c.device,
		ID:         m.MessageID,
		Digest:     sha256.Sum256(f.Body),
		GroupID:    m.GroupID,
		Epoch:      m.Epoch,
		IsCommit:   m.IsCommit,
		Recipients: recipients,
		SentAt:     sentAt,
		Expires:    sentAt.Add(s.ttl(m.TTLSeconds)),
		Payload:    m.Payload,
	}
	requestID := f.RequestID
	c.acquire()
	s.cfg.Store.Enqueue(msg, func(r store.Result, err error) {
		defer c.release()
		s.sent(c, requestID, msg, r, err)
	})
}

// sent runs on the store's callback goroutine, once per Send and in sequence
// order: it queues the Deliver for every connected recipient, then the answer.
// Queuing never blocks, so one slow client holds up nobody.
func (s *Server) sent(c *conn, requestID uint32, m *store.Message, r store.Result, err error) {
	switch {
	case err != nil:
		code, hint := s.storeCode(c, "send", err)
		c.reply(requestID, code, hint)
		return
	case r.Stale:
		s.log.Debug("exchange: stale commit", "device", c.device.String(), "group", m.GroupID.String(), "epoch", m.Epoch, "current", r.CurrentEpoch)
		c.sendMessage(requestID, &wire.SendResult{Status: wire.SendStaleEpoch, CurrentEpoch: r.CurrentEpoch})
		return
	}
	if !r.Duplicate && len(m.Recipients) > 0 {
		frame, err := wire.AppendFrame(nil, 0, &wire.Deliver{
			Sequence: r.Sequence, MessageID: m.ID, Sender: m.Sender, GroupID: m.GroupID, SentAt: m.SentAt, Payload: m.Payload,
		})
		if err != nil { // the parts were all checked on the way in
			s.log.Error("exchange: encoding Deliver", "err", err)
		} else {
			s.fanOut(r.Sequence, m.Recipients, frame)
		}
	}
	s.log.Debug("exchange: stored", "device", c.device.String(), "message", m.ID.String(), "sequence", r.Sequence,
		"group", m.GroupID.String(), "recipients", len(m.Recipients), "bytes", len(m.Payload), "duplicate", r.Duplicate)
	c.sendMessage(requestID, &wire.SendResult{Status: wire.SendAccepted, Sequence: r.Sequence})
}

// fanOut queues one encoded Deliver, shared, on every live connection of the
// recipients.
func (s *Server) fanOut(seq uint64, recipients []wire.DeviceID, frame []byte) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, r := range recipients {
		for rc := range s.devices[r] {
			rc.pushDeliver(seq, frame)
		}
	}
}

func (s *Server) handleAck(c *conn, requestID uint32, m *wire.Ack) {
	c.acquire()
	s.cfg.Store.Ack(c.device, m.Sequences, func(err error) {
		defer c.release()
		if err != nil {
			code, hint := s.storeCode(c, "ack", err)
			c.reply(requestID, code, hint)
			return
		}
		c.sendMessage(requestID, &wire.OK{})
	})
}

// syncMailbox pushes the device's whole mailbox, oldest first, then its pending
// expiry notices, before the connection's first request is read. Messages stored
// meanwhile are read from the mailbox too, until none is left; from then on they
// are pushed as they are stored. So the device gets every message once per
// connection, in sequence order, and a Ping answered on this connection comes
// after the whole backlog.
func (s *Server) syncMailbox(c *conn) error {
	var after uint64
	for {
		es, err := s.cfg.Store.Pending(background, c.device, after, backlogEntries, backlogBytes)
		if err != nil {
			return err
		}
		if len(es) == 0 {
			if c.goLive(after) {
				break
			}
			continue
		}
		for _, e := range es {
			frame, err := wire.AppendFrame(nil, 0, &wire.Deliver{
				Sequence: e.Sequence, MessageID: e.MessageID, Sender: e.Sender, GroupID: e.GroupID, SentAt: e.SentAt, Payload: e.Payload,
			})
			if err != nil {
				s.log.Error("exchange: encoding a stored message", "device", c.device.String(), "sequence", e.Sequence, "err", err)
				continue
			}
			if !c.sendBacklog(e.Sequence, frame) {
				return errConnClosed
			}
			after = e.Sequence
		}
	}
	s.pushNotices(c.device, []*conn{c})
	return nil
}

var errConnClosed = errors.New("exchange: connection closed")

// pushNotices takes the sender's stored expiry notices and pushes them as
// Expired to the given connections.
func (s *Server) pushNotices(sender wire.DeviceID, conns []*conn) {
	for {
		ns, err := s.cfg.Store.TakeNotices(background, sender, wire.MaxAck)
		if err != nil {
			s.log.Error("exchange: reading expiry notices", "device", sender.String(), "err", err)
			return
		}
		if len(ns) == 0 {
			return
		}
		ex := &wire.Expired{Messages: make([]wire.ExpiredMessage, len(ns))}
		for i, n := range ns {
			ex.Messages[i] = wire.ExpiredMessage{MessageID: n.MessageID, Recipient: n.Recipient}
		}
		frame, err := wire.AppendFrame(nil, 0, ex)
		if err != nil {
			s.log.Error("exchange: encoding Expired", "err", err)
			return
		}
		for _, c := range conns {
			c.send(frame)
		}
		s.log.Info("exchange: expiry notices pushed", "device", sender.String(), "messages", len(ns))
		if len(ns) < wire.MaxAck {
			return
		}
	}
}

// sweepLoop deletes expired messages and blobs every ExpirySweep and pushes the
// resulting notices to senders that are connected; the others get them when they
// next connect.
func (s *Server) sweepLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ExpirySweep)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		sw, err := s.cfg.Store.Sweep(background, s.cfg.Now())
		if err != nil {
			s.log.Error("exchange: expiry sweep", "err", err)
			continue
		}
		if sw.Messages > 0 || sw.Blobs > 0 {
			s.log.Info("exchange: expired", "messages", sw.Messages, "notices", len(sw.Notices), "blobs", sw.Blobs)
		}
		senders := make(map[wire.DeviceID]bool)
		for _, n := range sw.Notices {
			senders[n.Sender] = true
		}
		for sender := range senders {
			var live []*conn
			for _, c := range s.deviceConns(sender) {
				if c.isLive() {
					live = append(live, c)
				}
			}
			if len(live) > 0 {
				s.pushNotices(sender, live)
			}
		}
	}
}
