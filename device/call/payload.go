package call

import (
	"errors"

	"mahfooz/media/opus"
)

// The media payload: what an SFrame ciphertext of a call carries.
//
//	enum { single(0), redundant(1), (255) } PayloadFormat;
//	struct {
//	    PayloadFormat format;
//	    select (format) {
//	        case single:    opaque packet[rest];        /* one Opus packet */
//	        case redundant: uint8 length;               /* of packet, 1..255 */
//	                        opaque packet[length];
//	                        opaque previous[rest];      /* the Opus packet sent before this one */
//	    };
//	} MediaPayload;
//
// A redundant payload repeats the previous packet, whose first sample is at
// this packet's timestamp minus the previous packet's duration: when one
// packet is lost the next one brings it. It is what poor links get, since
// libopus's own in-band FEC needs more bitrate than they have.
const (
	payloadSingle    = 0
	payloadRedundant = 1
	maxRedundantLen  = 255
)

// errPayload is returned for a media payload that does not decode.
var errPayload = errors.New("call: malformed media payload")

// appendPayload appends the payload for packet, with previous repeated when it
// is not nil and fits.
func appendPayload(dst, packet, previous []byte) []byte {
	if previous == nil || len(packet) == 0 || len(packet) > maxRedundantLen {
		dst = append(dst, payloadSingle)
		return append(dst, packet...)
	}
	dst = append(dst, payloadRedundant, byte(len(packet)))
	dst = append(dst, packet...)
	return append(dst, previous...)
}

// SplitPayload splits a payload into its packet and the previous packet (nil
// for a single one) and returns the previous packet's duration in samples. Both
// must be well-formed Opus packets.
func SplitPayload(p []byte) (packet, previous []byte, previousSamples int, err error) {
	if len(p) < 2 {
		return nil, nil, 0, errPayload
	}
	switch p[0] {
	case payloadSingle:
		packet = p[1:]
	case payloadRedundant:
		n := int(p[1])
		if n == 0 || len(p) < 2+n+1 {
			return nil, nil, 0, errPayload
		}
		packet, previous = p[2:2+n], p[2+n:]
		if previousSamples, err = opus.PacketSamples(previous); err != nil {
			return nil, nil, 0, errPayload
		}
	default:
		return nil, nil, 0, errPayload
	}
	if _, err := opus.PacketSamples(packet); err != nil {
		return nil, nil, 0, errPayload
	}
	return packet, previous, previousSamples, nil
}
