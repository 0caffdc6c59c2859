package device

import (
	"errors"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
)

// The application content carried inside MLS application messages, version 1.
// Every member of a conversation encodes and decodes it; MLS authenticates and
// encrypts it, and pads it (Config.PaddingBlock), so its length shows only roughly.
//
//	struct {
//	    uint8  version = 1;
//	    uint8  type;             /* ContentType */
//	    uint64 sent_at;          /* Unix ms by the sender's clock, ≤ 2^63-1 */
//	    uint64 expires_at;       /* Unix ms, 0 = kept; else ≥ sent_at */
//	    select (type) {
//	        case text:         opaque text<1..2^32-1>;          /* UTF-8, ≤ maxTextSize */
//	        case file:         FileReference file;
//	        case timer:        uint32 seconds;                  /* 0 = off, ≤ maxTimerSeconds */
//	        case conversation: ConversationInfo info;
//	        case call:         CallSignal call;
//	    };
//	} Content;
//
//	enum { ring(1), accept(2), decline(3), busy(4), hangup(5), join(6), leave(7), media(8), (255) } CallSignalType;
//	struct {
//	    opaque call_id[16];            /* random, chosen by the caller */
//	    CallSignalType signal;
//	    opaque profile<0..15>;         /* ring, accept, join, media: the most a member asks senders
//	                                      to spend (a call.Profile name); empty for the others */
//	} CallSignal;
//
//	struct {
//	    opaque blob_id[16];
//	    opaque key[32];                /* the attachment key */
//	    uint64 size;                   /* plaintext bytes, ≤ 2^63-1 */
//	    opaque sha256[32];             /* of the plaintext */
//	    opaque name<1..255>;           /* UTF-8 file name, no path, no control characters */
//	    opaque media_type<0..127>;     /* "type/subtype", printable ASCII, or empty */
//	} FileReference;
//
//	enum { direct(1), group(2), (255) } ConversationKind;
//	struct {
//	    ConversationKind kind;
//	    opaque name<0..255>;           /* group: its UTF-8 name, 1..255 bytes; direct: empty */
//	    Official officials<0..2^16-1>; /* direct: the two officials, sorted, distinct; group: empty */
//	    uint32 timer_seconds;          /* the disappearing timer, 0 = off */
//	} ConversationInfo;
//	opaque Official<1..255>;           /* uint8 length prefix, UTF-8 */
//
// Length prefixes are big-endian of the width their bounds imply (uint8, uint16,
// uint32). The decoder accepts exactly the encodings the encoder produces: a known
// version and type, every bound above, valid text, and no trailing bytes.
const (
	contentVersion = 1

	contentText         = 1
	contentFile         = 2
	contentTimer        = 3
	contentConversation = 4
	contentCall         = 5

	kindDirect = 1
	kindGroup  = 2

	maxTextSize      = 64 << 10
	maxFileNameSize  = 255
	maxMediaTypeSize = 127
	maxNameSize      = 255
	maxTimerSeconds  = 365 * 24 * 3600
	maxProfileSize   = 15
)

// errContent is returned for application content that does not decode.
var errContent = errors.New("device: malformed message content")

// content is one decoded application message.
type content struct {
	Type      uint8
	SentAt    time.Time // zero only in tests
	ExpiresAt time.Time // zero: kept
	Text      string
	File      *fileRef
	Timer     time.Duration
	Info      *convInfo
	Call      *callSignal
}

// callSignal is a CallSignal.
type callSignal struct {
	ID      [16]byte
	Signal  uint8
	Profile string
}

// Call signal types.
const (
	signalRing    = 1
	signalAccept  = 2
	signalDecline = 3
	signalBusy    = 4
	signalHangup  = 5
	signalJoin    = 6
	signalLeave   = 7
	signalMedia   = 8
)

// fileRef is a FileReference.
type fileRef struct {
	BlobID    [16]byte
	Key       [32]byte // the attachment key (attach.Key)
	Size      int64
	SHA256    [32]byte
	Name      string
	MediaType string
}

// convInfo is a ConversationInfo.
type convInfo struct {
	Kind      uint8
	Name      string
	Officials []string
	Timer     time.Duration
}

func unixMS(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms)
}

func fromMS(ms uint64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms)).UTC()
}

func encodeContent(c *content) ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddUint8(contentVersion)
	b.AddUint8(c.Type)
	b.AddUint64(unixMS(c.SentAt))
	b.AddUint64(unixMS(c.ExpiresAt))
	switch c.Type {
	case contentText:
		b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(c.Text)) })
	case contentFile:
		f := c.File
		b.AddBytes(f.BlobID[:])
		b.AddBytes(f.Key[:])
		b.AddUint64(uint64(f.Size))
		b.AddBytes(f.SHA256[:])
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(f.Name)) })
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(f.MediaType)) })
	case contentTimer:
		b.AddUint32(uint32(c.Timer / time.Second))
	case contentConversation:
		i := c.Info
		b.AddUint8(i.Kind)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(i.Name)) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, o := range i.Officials {
				b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(o)) })
			}
		})
		b.AddUint32(uint32(i.Timer / time.Second))
	case contentCall:
		b.AddBytes(c.Call.ID[:])
		b.AddUint8(c.Call.Signal)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(c.Call.Profile)) })
	}
	return b.Bytes()
}

func decodeContent(data []byte) (*content, error) {
	s := cryptobyte.String(data)
	var (
		version, typ    uint8
		sentAt, expires uint64
	)
	if !s.ReadUint8(&version) || version != contentVersion || !s.ReadUint8(&typ) ||
		!s.ReadUint64(&sentAt) || !s.ReadUint64(&expires) {
		return nil, errContent
	}
	if sentAt > math.MaxInt64 || expires > math.MaxInt64 || sentAt == 0 {
		return nil, errContent
	}
	c := &content{Type: typ, SentAt: fromMS(sentAt), ExpiresAt: fromMS(expires)}
	switch typ {
	case contentText:
		var n uint32
		var text []byte
		if !s.ReadUint32(&n) || n > maxTextSize || !s.ReadBytes(&text, int(n)) {
			return nil, errContent
		}
		c.Text = string(text)
	case contentFile:
		f := new(fileRef)
		var size uint64
		var name, media cryptobyte.String
		if !s.CopyBytes(f.BlobID[:]) || !s.CopyBytes(f.Key[:]) || !s.ReadUint64(&size) ||
			!s.CopyBytes(f.SHA256[:]) || !s.ReadUint8LengthPrefixed(&name) || !s.ReadUint8LengthPrefixed(&media) {
			return nil, errContent
		}
		if size > math.MaxInt64 {
			return nil, errContent
		}
		f.Size, f.Name, f.MediaType = int64(size), string(name), string(media)
		c.File = f
	case contentTimer:
		var secs uint32
		if !s.ReadUint32(&secs) {
			return nil, errContent
		}
		c.Timer = time.Duration(secs) * time.Second
	case contentConversation:
		i := new(convInfo)
		var name, officials cryptobyte.String
		var secs uint32
		if !s.ReadUint8(&i.Kind) || !s.ReadUint8LengthPrefixed(&name) ||
			!s.ReadUint16LengthPrefixed(&officials) || !s.ReadUint32(&secs) {
			return nil, errContent
		}
		i.Name = string(name)
		for !officials.Empty() {
			var o cryptobyte.String
			if !officials.ReadUint8LengthPrefixed(&o) {
				return nil, errContent
			}
			i.Officials = append(i.Officials, string(o))
		}
		i.Timer = time.Duration(secs) * time.Second
		c.Info = i
	case contentCall:
		cs := new(callSignal)
		var profile cryptobyte.String
		if !s.CopyBytes(cs.ID[:]) || !s.ReadUint8(&cs.Signal) || !s.ReadUint8LengthPrefixed(&profile) {
			return nil, errContent
		}
		cs.Profile = string(profile)
		c.Call = cs
	default:
		return nil, errContent
	}
	if !s.Empty() {
		return nil, errContent
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// check enforces the bounds of the format on both encoding and decoding.
func (c *content) check() error {
	if c.SentAt.UnixMilli() <= 0 || (!c.ExpiresAt.IsZero() && c.ExpiresAt.UnixMilli() <= 0) {
		return errContent
	}
	if !c.ExpiresAt.IsZero() && c.ExpiresAt.Before(c.SentAt) {
		return errContent
	}
	if unixMS(c.SentAt) > math.MaxInt64 || unixMS(c.ExpiresAt) > math.MaxInt64 {
		return errContent
	}
	switch c.Type {
	case contentText:
		if c.Text == "" || len(c.Text) > maxTextSize || !utf8.ValidString(c.Text) {
			return errContent
		}
	case contentFile:
		f := c.File
		if f == nil || f.Size < 0 || !validFileName(f.Name) || !validMediaType(f.MediaType) {
			return errContent
		}
	case contentTimer:
		if !validTimer(c.Timer) {
			return errContent
		}
	case contentConversation:
		i := c.Info
		if i == nil || !validTimer(i.Timer) {
			return errContent
		}
		switch i.Kind {
		case kindDirect:
			if i.Name != "" || len(i.Officials) != 2 || i.Officials[0] >= i.Officials[1] ||
				!validName(i.Officials[0]) || !validName(i.Officials[1]) {
				return errContent
			}
		case kindGroup:
			if !validName(i.Name) || len(i.Officials) != 0 {
				return errContent
			}
		default:
			return errContent
		}
	case contentCall:
		cs := c.Call
		if cs == nil || cs.Signal < signalRing || cs.Signal > signalMedia || len(cs.Profile) > maxProfileSize {
			return errContent
		}
		for _, r := range []byte(cs.Profile) {
			if r < 'a' || r > 'z' {
				return errContent
			}
		}
		carries := cs.Signal == signalRing || cs.Signal == signalAccept || cs.Signal == signalJoin || cs.Signal == signalMedia
		if !carries && cs.Profile != "" || cs.Signal == signalMedia && cs.Profile == "" {
			return errContent
		}
	default:
		return errContent
	}
	return nil
}

func validTimer(d time.Duration) bool {
	return d >= 0 && d%time.Second == 0 && d <= maxTimerSeconds*time.Second
}

// validName accepts an official's or a group's name: 1..255 bytes of UTF-8 without
// control characters or surrounding space.
func validName(s string) bool {
	return s != "" && len(s) <= maxNameSize && utf8.ValidString(s) && strings.TrimSpace(s) == s &&
		!strings.ContainsFunc(s, unicode.IsControl)
}

// validFileName accepts a bare file name: no directory part, nothing a file system
// would read specially.
func validFileName(s string) bool {
	return validName(s) && len(s) <= maxFileNameSize && s != "." && s != ".." &&
		!strings.ContainsAny(s, "/\\:")
}

// validMediaType accepts "" or "type/subtype" (with optional parameters) in
// printable ASCII.
func validMediaType(s string) bool {
	if s == "" {
		return true
	}
	if len(s) > maxMediaTypeSize || !strings.Contains(s, "/") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
