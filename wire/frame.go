package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"golang.org/x/crypto/cryptobyte"
)

// Errors returned by this package. Each maps to a wire Code through CodeOf.
var (
	// ErrMalformed is wrapped by every error about bytes that do not decode: a frame
	// shorter than its header, a truncated or over-long body, a non-minimal varint, an
	// unknown enum value, invalid UTF-8 or a list out of order. Code: CodeMalformed.
	ErrMalformed = errors.New("wire: malformed")

	// ErrFrameTooLarge is returned by ReadFrame when the peer announces a frame longer
	// than the read limit (the connection cannot be resynchronised and must be closed),
	// and by WriteFrame and WriteMessage for a frame longer than the write limit.
	// Code: CodeTooLarge.
	ErrFrameTooLarge = errors.New("wire: frame too large")

	// ErrUnknownMessageType is returned by ReadFrame, together with the frame's type and
	// request ID, when the type is not known; the body has been skipped and the
	// connection remains usable. Code: CodeUnknownMessage.
	ErrUnknownMessageType = errors.New("wire: unknown message type")

	// ErrUnexpectedMessage is returned by the handshake helpers when the peer sends a
	// message that is known but not valid at that point. Code: CodeUnexpectedMessage.
	ErrUnexpectedMessage = errors.New("wire: unexpected message")

	// ErrUnsupportedVersion is returned by the handshake helpers when the two sides
	// share no protocol version. Code: CodeUnsupportedVersion.
	ErrUnsupportedVersion = errors.New("wire: no common protocol version")
)

// CodeOf returns the wire code to send for err: the Code of an *Error, the code of
// one of this package's sentinels, and CodeInternal for anything else.
func CodeOf(err error) Code {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, ErrMalformed):
		return CodeMalformed
	case errors.Is(err, ErrFrameTooLarge):
		return CodeTooLarge
	case errors.Is(err, ErrUnknownMessageType):
		return CodeUnknownMessage
	case errors.Is(err, ErrUnexpectedMessage):
		return CodeUnexpectedMessage
	case errors.Is(err, ErrUnsupportedVersion):
		return CodeUnsupportedVersion
	}
	return CodeInternal
}

// Frame is one protocol frame:
//
//	uint32 length;        /* of type, request_id and body: 6..MaxFrameSize */
//	uint16 type;          /* MessageType */
//	uint32 request_id;    /* chosen by the requester, echoed by the answer; 0 for a push */
//	opaque body[length - 6];
//
// All integers are big-endian.
type Frame struct {
	Type      MessageType
	RequestID uint32
	Body      []byte
}

// Marshal returns the body of m.
func Marshal(m Message) ([]byte, error) {
	var b cryptobyte.Builder
	m.marshal(&b)
	return b.Bytes()
}

// Unmarshal decodes a body of type t, rejecting trailing bytes. The message may
// alias body.
func Unmarshal(t MessageType, body []byte) (Message, error) {
	info, ok := types[t]
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrUnknownMessageType, uint16(t))
	}
	m := info.new()
	s := cryptobyte.String(body)
	if !m.unmarshal(&s) {
		return nil, decodeError(info.name)
	}
	if !s.Empty() {
		return nil, decodeError(info.name + ": trailing bytes")
	}
	return m, nil
}

// Decode decodes a frame's body into its typed message.
func Decode(f Frame) (Message, error) { return Unmarshal(f.Type, f.Body) }

// AppendFrame appends the whole frame carrying m to dst.
func AppendFrame(dst []byte, requestID uint32, m Message) ([]byte, error) {
	start := len(dst)
	dst = slices.Grow(dst, headerSize+sizeHint(m))
	b := cryptobyte.NewBuilder(append(dst, make([]byte, headerSize)...))
	m.marshal(b)
	out, err := b.Bytes()
	if err != nil {
		return dst, err
	}
	n := len(out) - start - 4
	if n > MaxFrameSize {
		return dst, fmt.Errorf("%w: %s of %d bytes", ErrFrameTooLarge, m.Type(), n)
	}
	binary.BigEndian.PutUint32(out[start:], uint32(n))
	binary.BigEndian.PutUint16(out[start+4:], uint16(m.Type()))
	binary.BigEndian.PutUint32(out[start+6:], requestID)
	return out, nil
}

// sizeHint estimates the encoded size of the messages that carry bulk data, so that
// encoding them allocates once.
func sizeHint(m Message) int {
	const fixed = 128 // IDs, integers and length prefixes
	switch m := m.(type) {
	case *Send:
		return fixed + len(m.GroupID) + IDSize*len(m.Recipients) + len(m.Payload)
	case *Deliver:
		return fixed + len(m.GroupID) + len(m.Payload)
	case *UploadChunk:
		return fixed + len(m.Data)
	case *BlobChunk:
		return fixed + len(m.Data)
	case *Directory:
		return fixed + len(m.Signed)
	case *JoinCall:
		return fixed + IDSize*len(m.Members) + len(m.Offer)
	case *CallJoined:
		return fixed + len(m.Answer)
	}
	return fixed
}

// Conn reads and writes frames on a stream, normally a *tls.Conn that has completed
// its handshake. It holds no buffer between frames: each frame read allocates its own
// body, and each frame written is encoded into one buffer that is dropped once written,
// so an idle Conn costs a few words beyond the stream itself.
//
// One goroutine may read while any number write: ReadFrame and ReadMessage must not
// be called concurrently with each other; WriteFrame and WriteMessage are safe for
// concurrent use, and each frame reaches the stream in one Write call.
type Conn struct {
	r io.Reader
	w io.Writer

	readLimit uint32 // touched only by the reading goroutine

	wmu        sync.Mutex
	writeLimit uint32 // guarded by wmu
}

// NewConn returns a Conn on rw with both limits at MaxFrameSize.
func NewConn(rw io.ReadWriter) *Conn {
	return &Conn{r: rw, w: rw, readLimit: MaxFrameSize, writeLimit: MaxFrameSize}
}

// SetReadLimit lowers or restores the largest frame length ReadFrame accepts, for
// example a few KiB on an unauthenticated enrolment connection. Values above
// MaxFrameSize are clamped to it. It must be called by the reading goroutine.
func (c *Conn) SetReadLimit(n uint32) { c.readLimit = clampLimit(n) }

// SetWriteLimit sets the largest frame length WriteFrame sends, normally the peer's
// Limits.MaxFrameSize. Values above MaxFrameSize are clamped to it.
func (c *Conn) SetWriteLimit(n uint32) {
	c.wmu.Lock()
	c.writeLimit = clampLimit(n)
	c.wmu.Unlock()
}

func clampLimit(n uint32) uint32 {
	return min(max(n, lengthCovered), MaxFrameSize)
}

// readChunk is how much of a large body is allocated ahead of the bytes actually
// received, so that a peer announcing a large frame and sending nothing more costs at
// most this much.
const readChunk = 64 << 10

// ReadFrame reads one frame. At a clean end of stream between frames it returns io.EOF;
// a stream that ends inside a frame gives io.ErrUnexpectedEOF. A frame whose length is
// below the header size gives an error wrapping ErrMalformed, one above the read limit
// ErrFrameTooLarge: after either, the stream is out of step and must be closed. A frame
// of unknown type gives ErrUnknownMessageType with the frame's type and request ID, its
// body skipped; the stream stays usable.
func (c *Conn) ReadFrame() (Frame, error) {
	var hdr [headerSize]byte
	if _, err := io.ReadFull(c.r, hdr[:4]); err != nil {
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < lengthCovered {
		return Frame{}, fmt.Errorf("%w: frame length %d below header size", ErrMalformed, n)
	}
	if n > c.readLimit {
		return Frame{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, c.readLimit)
	}
	if _, err := io.ReadFull(c.r, hdr[4:]); err != nil {
		return Frame{}, unexpectedEOF(err)
	}
	f := Frame{
		Type:      MessageType(binary.BigEndian.Uint16(hdr[4:])),
		RequestID: binary.BigEndian.Uint32(hdr[6:]),
	}
	size := int(n) - lengthCovered
	if !f.Type.Known() {
		if _, err := io.CopyN(io.Discard, c.r, int64(size)); err != nil {
			return Frame{}, unexpectedEOF(err)
		}
		return f, fmt.Errorf("%w: %d", ErrUnknownMessageType, uint16(f.Type))
	}
	body, err := readBody(c.r, size)
	if err != nil {
		return Frame{}, err
	}
	f.Body = body
	return f, nil
}

// readBody reads exactly size bytes, growing the buffer as bytes arrive rather than
// trusting the announced size up front.
func readBody(r io.Reader, size int) ([]byte, error) {
	body := make([]byte, 0, min(size, readChunk))
	for len(body) < size {
		if len(body) == cap(body) {
			body = slices.Grow(body, min(size-len(body), cap(body)))
		}
		want := min(size, cap(body))
		got, err := io.ReadFull(r, body[len(body):want])
		body = body[:len(body)+got]
		if err != nil {
			return nil, unexpectedEOF(err)
		}
	}
	return body, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ReadMessage reads one frame and decodes it. On ErrUnknownMessageType and on a body
// that does not decode (ErrMalformed) the request ID is still returned, so that the
// caller can answer with an Error; the stream stays usable in both cases.
func (c *Conn) ReadMessage() (requestID uint32, m Message, err error) {
	f, err := c.ReadFrame()
	if err != nil {
		return f.RequestID, nil, err
	}
	m, err = Decode(f)
	return f.RequestID, m, err
}

// WriteFrame writes a frame whose body is already encoded.
func (c *Conn) WriteFrame(f Frame) error {
	if len(f.Body) > MaxBodySize {
		return fmt.Errorf("%w: %d byte body", ErrFrameTooLarge, len(f.Body))
	}
	buf := make([]byte, headerSize+len(f.Body))
	binary.BigEndian.PutUint32(buf, uint32(lengthCovered+len(f.Body)))
	binary.BigEndian.PutUint16(buf[4:], uint16(f.Type))
	binary.BigEndian.PutUint32(buf[6:], f.RequestID)
	copy(buf[headerSize:], f.Body)
	return c.write(buf)
}

// WriteMessage encodes m and writes it as one frame.
func (c *Conn) WriteMessage(requestID uint32, m Message) error {
	buf, err := AppendFrame(nil, requestID, m)
	if err != nil {
		return err
	}
	return c.write(buf)
}

func (c *Conn) write(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if n := len(frame) - 4; n > int(c.writeLimit) {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, c.writeLimit)
	}
	_, err := c.w.Write(frame)
	return err
}
