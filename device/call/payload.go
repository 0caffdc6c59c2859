package call

import (
	"errors"

	"mahfooz/media/opus"
)

// The media payload: what an SFrame ciphertext of a call carries.
//
//	struct {
//	    uint8 flags;                    /* redundant(0x01) | resumes(0x02); other bits 0 */
//	    select (flags & redundant) {
//	        case 0: opaque packet[rest];         /* one Opus packet */
//	        case redundant:
//	                uint8 length;                /* of packet, 1..255 */
//	                opaque packet[length];
//	                opaque previous[rest];       /* the Opus packet sent before this one */
//	    };
//	} MediaPayload;
//
// A redundant payload repeats the previous packet, whose first sample is at
// this packet's timestamp minus the previous packet's duration: when one
// packet is lost the next one brings it. It is what poor links get, since
// libopus's own in-band FEC needs more bitrate than they have.
//
// The resumes flag marks the first packet after the sender's silence, when it
// sent nothing (DTX): the receiver plays the gap before it as silence rather
// than counting and repairing a loss. It is inside the ciphertext, so the
// relay can neither read nor forge it.
const (
	flagRedundant   = 0x01
	flagResumes     = 0x02
	maxRedundantLen = 255
)

// errPayload is returned for a media payload that does not decode.
var errPayload = errors.New("call: malformed media payload")

// MediaPayload is one decoded media payload.
type MediaPayload struct {
	Packet []byte // the Opus packet
	// Previous is the Opus packet sent before Packet, or nil;
	// PreviousSamples is its duration in samples.
	Previous        []byte
	PreviousSamples int
	// Resumes is set on the first packet after the sender's silence.
	Resumes bool
}

// appendPayload appends the payload for packet, with previous repeated when it
// is not nil and fits.
func appendPayload(dst, packet, previous []byte, resumes bool) []byte {
	var flags byte
	if resumes {
		flags |= flagResumes
	}
	if previous == nil || len(packet) == 0 || len(packet) > maxRedundantLen {
		dst = append(dst, flags)
		return append(dst, packet...)
	}
	dst = append(dst, flags|flagRedundant, byte(len(packet)))
	dst = append(dst, packet...)
	return append(dst, previous...)
}

// ParsePayload decodes a media payload. Its packets must be well-formed Opus
// packets; they alias p.
func ParsePayload(p []byte) (MediaPayload, error) {
	var m MediaPayload
	if len(p) < 2 || p[0]&^(flagRedundant|flagResumes) != 0 {
		return MediaPayload{}, errPayload
	}
	m.Resumes = p[0]&flagResumes != 0
	if p[0]&flagRedundant == 0 {
		m.Packet = p[1:]
	} else {
		n := int(p[1])
		if n == 0 || len(p) < 2+n+1 {
			return MediaPayload{}, errPayload
		}
		m.Packet, m.Previous = p[2:2+n], p[2+n:]
		var err error
		if m.PreviousSamples, err = opus.PacketSamples(m.Previous); err != nil {
			return MediaPayload{}, errPayload
		}
	}
	if _, err := opus.PacketSamples(m.Packet); err != nil {
		return MediaPayload{}, errPayload
	}
	return m, nil
}
