package wire

import (
	"fmt"
	"slices"
)

// SupportedVersions are the protocol versions this package speaks, best first.
var SupportedVersions = []uint16{ProtocolVersion1}

// helloRequestID is the request ID of Hello; the exchange answers with the same ID.
const helloRequestID = 1

// NegotiateVersion returns the highest version in offered that this package speaks.
func NegotiateVersion(offered []uint16) (uint16, bool) {
	best, ok := uint16(0), false
	for _, v := range offered {
		if slices.Contains(SupportedVersions, v) && v > best {
			best, ok = v, true
		}
	}
	return best, ok
}

// ClientHandshake sends h as the connection's first frame and reads the exchange's
// answer. On Welcome it checks the chosen version was offered, lowers the write limit
// to the exchange's MaxFrameSize and returns it; on Error it returns that *Error.
func (c *Conn) ClientHandshake(h *Hello) (*Welcome, error) {
	if err := c.WriteMessage(helloRequestID, h); err != nil {
		return nil, err
	}
	id, m, err := c.ReadMessage()
	if err != nil {
		return nil, err
	}
	if id != helloRequestID {
		return nil, fmt.Errorf("%w: answer to Hello has request ID %d", ErrUnexpectedMessage, id)
	}
	switch m := m.(type) {
	case *Welcome:
		if !slices.Contains(h.Versions, m.Version) {
			return nil, fmt.Errorf("%w: exchange chose version %d, not offered", ErrUnsupportedVersion, m.Version)
		}
		c.SetWriteLimit(m.Limits.MaxFrameSize)
		return m, nil
	case *Error:
		return nil, m
	default:
		return nil, fmt.Errorf("%w: %s in answer to Hello", ErrUnexpectedMessage, m.Type())
	}
}

// ServerHandshake reads the client's Hello, chooses the version and answers with w,
// its Version filled in. If the first frame is not a well-formed Hello, or no version
// is shared, it answers with an Error (request ID 0 when the frame could not be read)
// and returns the error; the caller then closes the connection.
func (c *Conn) ServerHandshake(w *Welcome) (*Hello, error) {
	id, m, err := c.ReadMessage()
	if err != nil {
		if code := CodeOf(err); code != CodeInternal { // not an I/O error: say why
			c.sendError(id, code, "")
		}
		return nil, err
	}
	h, ok := m.(*Hello)
	if !ok {
		c.sendError(id, CodeUnexpectedMessage, "first frame must be Hello")
		return nil, fmt.Errorf("%w: %s before Hello", ErrUnexpectedMessage, m.Type())
	}
	v, ok := NegotiateVersion(h.Versions)
	if !ok {
		c.sendError(id, CodeUnsupportedVersion, fmt.Sprintf("this exchange speaks version %d", ProtocolVersion1))
		return nil, fmt.Errorf("%w: client offered %v", ErrUnsupportedVersion, h.Versions)
	}
	w.Version = v
	if err := c.WriteMessage(id, w); err != nil {
		return nil, err
	}
	return h, nil
}

// sendError answers best-effort: the connection is being given up anyway.
func (c *Conn) sendError(requestID uint32, code Code, msg string) {
	_ = c.WriteMessage(requestID, &Error{Code: code, Message: msg})
}
