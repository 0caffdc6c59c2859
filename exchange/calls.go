package exchange

import (
	"context"
	"errors"
	"time"

	"mahfooz/exchange/relay"
	"mahfooz/wire"
)

// joinTimeout bounds the relay's preparation of an answer. It runs on the
// connection's reading goroutine: the relay answers from local state at once
// (ICE-lite gathers its one candidate without the network), so this is a bound
// for a relay in trouble, not a wait.
const joinTimeout = 5 * time.Second

// handleCall answers JoinCall, SetCallMembers and LeaveCall through the relay.
// The device is the connection's, from its certificate: no message names the
// device it acts for.
func (s *Server) handleCall(c *conn, requestID uint32, m wire.Message) {
	media := s.cfg.Media
	if media == nil {
		c.reply(requestID, wire.CodeUnavailable, "no call relay")
		return
	}
	switch m := m.(type) {
	case *wire.JoinCall:
		ctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
		answer, err := media.Join(ctx, c.device, m.CallID, m.Members, m.Offer)
		cancel()
		if err != nil {
			s.replyCallError(c, requestID, "join", m.CallID, err)
			return
		}
		c.sendMessage(requestID, &wire.CallJoined{Answer: answer})
	case *wire.SetCallMembers:
		if err := media.SetMembers(c.device, m.CallID, m.Members); err != nil {
			s.replyCallError(c, requestID, "set members", m.CallID, err)
			return
		}
		c.sendMessage(requestID, &wire.OK{})
	case *wire.LeaveCall:
		if err := media.Leave(c.device, m.CallID); err != nil {
			s.replyCallError(c, requestID, "leave", m.CallID, err)
			return
		}
		c.sendMessage(requestID, &wire.OK{})
	}
}

// replyCallError answers a call request the relay refused with its wire code.
func (s *Server) replyCallError(c *conn, requestID uint32, op string, call wire.CallID, err error) {
	code, hint := wire.CodeInternal, ""
	switch {
	case errors.Is(err, relay.ErrForbidden):
		code = wire.CodeForbidden
	case errors.Is(err, relay.ErrLimit):
		code, hint = wire.CodeQuotaExceeded, "too many calls"
	case errors.Is(err, relay.ErrBadOffer):
		code, hint = wire.CodeInvalidRequest, "unusable offer"
	case errors.Is(err, relay.ErrBadMembers):
		code, hint = wire.CodeInvalidRequest, "members must include the sender"
	case errors.Is(err, relay.ErrClosed):
		code = wire.CodeUnavailable
	}
	level := s.log.Info
	if code == wire.CodeInternal {
		level = s.log.Error
	}
	level("exchange: call request refused", "op", op, "device", c.device.String(), "call", call.String(), "err", err)
	c.reply(requestID, code, hint)
}
