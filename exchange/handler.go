package exchange

import (
	"errors"
	"time"

	"mahfooz/exchange/store"
	"mahfooz/wire"
)

// handle answers one frame from an authenticated device. It runs on the
// connection's reading goroutine and never blocks on the network: answers are
// queued. Sends and Acks are answered when the store has made them durable;
// everything else before handle returns. Bad input gets an Error and leaves the
// connection up.
func (s *Server) handle(c *conn, f wire.Frame) {
	m, err := wire.Decode(f)
	if err != nil {
		c.reply(f.RequestID, wire.CodeMalformed, "")
		return
	}
	if f.Type.SentBy()&wire.SideClient == 0 {
		c.reply(f.RequestID, wire.CodeUnexpectedMessage, f.Type.String()+" is sent by the exchange")
		return
	}
	switch m.(type) {
	case *wire.Pong, *wire.Error:
		return // answers to requests of the exchange's; it makes none
	case *wire.Hello:
		c.reply(f.RequestID, wire.CodeUnexpectedMessage, "second Hello")
		return
	case *wire.Enroll:
		c.reply(f.RequestID, wire.CodeForbidden, "already enrolled")
		return
	}
	if f.RequestID == 0 {
		c.reply(0, wire.CodeInvalidRequest, "request ID 0")
		return
	}
	if _, ok := m.(*wire.Ping); ok {
		c.sendMessage(f.RequestID, &wire.Pong{})
		return
	}
	switch m.(type) {
	case *wire.JoinCall, *wire.SetCallMembers, *wire.LeaveCall:
		// Calls need the relay, not the store.
		if !s.devLimiter.allow(c.device) {
			c.reply(f.RequestID, wire.CodeRateLimited, "")
			return
		}
		s.handleCall(c, f.RequestID, m)
		return
	}
	if s.cfg.Store == nil {
		c.reply(f.RequestID, wire.CodeUnavailable, "no store")
		return
	}
	if !s.devLimiter.allow(c.device) {
		c.reply(f.RequestID, wire.CodeRateLimited, "")
		return
	}
	switch m := m.(type) {
	case *wire.Send:
		s.handleSend(c, f, m)
	case *wire.Ack:
		s.handleAck(c, f.RequestID, m)
	case *wire.UploadKeyPackages:
		s.handleUploadKeyPackages(c, f.RequestID, m)
	case *wire.ClaimKeyPackage:
		s.handleClaimKeyPackage(c, f.RequestID, m)
	case *wire.GetDirectory:
		s.handleGetDirectory(c, f.RequestID)
	case *wire.RenewCertificate:
		s.handleRenew(c, f.RequestID, m)
	case *wire.CreateBlob:
		s.handleCreateBlob(c, f.RequestID, m)
	case *wire.UploadChunk:
		s.handleUploadChunk(c, f.RequestID, m)
	case *wire.DownloadChunk:
		s.handleDownloadChunk(c, f.RequestID, m)
	default: // every client message is handled above
		c.reply(f.RequestID, wire.CodeUnexpectedMessage, "")
	}
}

// storeCode maps a store error to its wire code, logging the unexpected ones.
func (s *Server) storeCode(c *conn, what string, err error) (wire.Code, string) {
	switch {
	case errors.Is(err, store.ErrConflict):
		return wire.CodeConflict, "ID reused with different content"
	case errors.Is(err, store.ErrNotFound):
		return wire.CodeNotFound, ""
	case errors.Is(err, store.ErrForbidden):
		return wire.CodeForbidden, ""
	case errors.Is(err, store.ErrOutOfOrder):
		return wire.CodeInvalidRequest, "chunk out of order"
	case errors.Is(err, store.ErrQuota):
		return wire.CodeQuotaExceeded, ""
	case errors.Is(err, store.ErrClosed):
		return wire.CodeUnavailable, ""
	}
	s.log.Error("exchange: store failed", "op", what, "device", c.device.String(), "err", err)
	return wire.CodeInternal, ""
}

// ttl turns a requested TTL in seconds into a duration: 0 is the default, and
// anything longer than MaxTTL is shortened to it.
func (s *Server) ttl(seconds uint32) time.Duration {
	if seconds == 0 {
		return s.cfg.DefaultTTL
	}
	return min(time.Duration(seconds)*time.Second, s.cfg.MaxTTL)
}

// recipients checks a recipient list: each must be an enrolled device (reported
// in unknown otherwise); revoked ones are left out of the result.
func (s *Server) recipients(ids []wire.DeviceID) (out []wire.DeviceID, unknown bool) {
	out = make([]wire.DeviceID, 0, len(ids))
	for _, id := range ids {
		enrolled, active := s.lookupDevice(id)
		switch {
		case !enrolled:
			return nil, true
		case active:
			out = append(out, id)
		}
	}
	return out, false
}
