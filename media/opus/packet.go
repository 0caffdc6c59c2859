package opus

import "fmt"

// Packet framing limits (RFC 6716 §3).
const (
	maxFrameBytes  = 1275 // §3.2.1: no frame is longer
	maxFrameCount  = 48   // §3.2.5: a code 3 packet holds at most 48 frames
	frameCountMask = 0x3f
)

// frameSamples returns the samples at 48 kHz of each frame of a packet whose
// TOC byte is toc (RFC 6716 §3.1, Table 2).
func frameSamples(toc byte) int {
	config := toc >> 3
	switch {
	case config < 12: // SILK-only: 10, 20, 40, 60 ms
		return [4]int{480, 960, 1920, 2880}[config&3]
	case config < 16: // Hybrid: 10, 20 ms
		return [2]int{480, 960}[config&1]
	default: // CELT-only: 2.5, 5, 10, 20 ms
		return [4]int{120, 240, 480, 960}[config&3]
	}
}

// PacketSamples returns the number of samples at 48 kHz in the Opus packet
// pkt, from its TOC byte and frame count. It checks the whole packet against
// the requirements of RFC 6716 §3.4 ([R1] to [R7]) and returns an error
// wrapping ErrInvalidPacket for any packet that breaks one. PacketSamples is
// safe for concurrent use.
func PacketSamples(pkt []byte) (int, error) {
	frames, err := parseFrameCount(pkt)
	if err != nil {
		return 0, err
	}
	return frames * frameSamples(pkt[0]), nil
}

// parseFrameCount checks pkt and returns its number of frames.
func parseFrameCount(pkt []byte) (int, error) {
	// [R1]: at least one byte.
	if len(pkt) < 1 {
		return 0, fmt.Errorf("%w: empty", ErrInvalidPacket)
	}
	rest := len(pkt) - 1
	switch pkt[0] & 3 {
	case 0: // §3.2.2: one frame.
		if rest > maxFrameBytes { // [R2]
			return 0, fmt.Errorf("%w: frame of %d bytes", ErrInvalidPacket, rest)
		}
		return 1, nil
	case 1: // §3.2.3: two frames of equal size.
		if rest%2 != 0 { // [R3]
			return 0, fmt.Errorf("%w: code 1 payload of odd length %d", ErrInvalidPacket, rest)
		}
		if rest/2 > maxFrameBytes { // [R2]
			return 0, fmt.Errorf("%w: frame of %d bytes", ErrInvalidPacket, rest/2)
		}
		return 2, nil
	case 2: // §3.2.4: two frames, the first length coded.
		n1, used, err := frameLength(pkt[1:]) // [R4]
		if err != nil {
			return 0, err
		}
		rest -= used
		if n1 > rest {
			return 0, fmt.Errorf("%w: first frame of %d bytes in %d", ErrInvalidPacket, n1, rest)
		}
		if rest-n1 > maxFrameBytes { // [R2]
			return 0, fmt.Errorf("%w: frame of %d bytes", ErrInvalidPacket, rest-n1)
		}
		return 2, nil
	default: // §3.2.5: a signalled number of frames.
		return parseCode3(pkt)
	}
}

// parseCode3 checks a code 3 packet (RFC 6716 §3.2.5) and returns its number of
// frames.
func parseCode3(pkt []byte) (int, error) {
	if len(pkt) < 2 { // [R6]
		return 0, fmt.Errorf("%w: code 3 without frame count", ErrInvalidPacket)
	}
	vbr := pkt[1]&0x80 != 0
	padded := pkt[1]&0x40 != 0
	m := int(pkt[1] & frameCountMask)
	// [R5]: at least one frame and at most 120 ms.
	if m == 0 || m > maxFrameCount || m*frameSamples(pkt[0]) > MaxFrameSamples {
		return 0, fmt.Errorf("%w: %d frames of %d samples", ErrInvalidPacket, m, frameSamples(pkt[0]))
	}
	p := pkt[2:]
	rest := len(p)
	if padded {
		// Each padding length byte of 255 adds 254 bytes and another length
		// byte; the first other value ends the sequence.
		padding := 0
		for {
			if len(p) == 0 {
				return 0, fmt.Errorf("%w: truncated padding length", ErrInvalidPacket)
			}
			b := int(p[0])
			p = p[1:]
			if b == 255 {
				padding += 254
				continue
			}
			padding += b
			break
		}
		rest = len(p) - padding
		if rest < 0 { // [R6], [R7]
			return 0, fmt.Errorf("%w: %d bytes of padding in %d", ErrInvalidPacket, padding, len(p))
		}
	}
	if !vbr {
		// [R6]: the frames share what is left equally.
		if rest%m != 0 || rest/m > maxFrameBytes {
			return 0, fmt.Errorf("%w: %d bytes in %d constant-size frames", ErrInvalidPacket, rest, m)
		}
		return m, nil
	}
	// [R7]: M-1 coded lengths, the last frame takes what is left.
	for range m - 1 {
		n, used, err := frameLength(p)
		if err != nil {
			return 0, err
		}
		p = p[used:]
		rest -= used + n
		if rest < 0 {
			return 0, fmt.Errorf("%w: frame lengths exceed the packet", ErrInvalidPacket)
		}
	}
	if rest > maxFrameBytes { // [R2]
		return 0, fmt.Errorf("%w: frame of %d bytes", ErrInvalidPacket, rest)
	}
	return m, nil
}

// frameLength decodes a frame length in one or two bytes (RFC 6716 §3.2.1) and
// returns it with the number of bytes it took.
func frameLength(b []byte) (n, used int, err error) {
	if len(b) < 1 {
		return 0, 0, fmt.Errorf("%w: truncated frame length", ErrInvalidPacket)
	}
	if b[0] < 252 {
		return int(b[0]), 1, nil
	}
	if len(b) < 2 {
		return 0, 0, fmt.Errorf("%w: truncated frame length", ErrInvalidPacket)
	}
	return int(b[1])*4 + int(b[0]), 2, nil
}

// IsDTX reports whether pkt is one of the one- or two-byte packets the
// encoder emits during silence with DTX on, which the sender need not send (the
// receiver conceals or plays silence for the gap). IsDTX is false for a
// malformed packet. IsDTX is safe for concurrent use.
func IsDTX(pkt []byte) bool {
	if len(pkt) == 0 || len(pkt) > 2 {
		return false
	}
	_, err := PacketSamples(pkt)
	return err == nil
}

// HasFEC reports whether the Opus packet pkt carries in-band FEC data for the
// packet before it: whether it is a SILK-only or hybrid packet whose first
// frame has its LBRR flag set (RFC 6716 §4.2.3, §4.2.4). Only such packets let
// DecodeFEC rebuild a lost predecessor. HasFEC is false for a malformed
// packet. It is safe for concurrent use.
func HasFEC(pkt []byte) bool {
	if _, err := PacketSamples(pkt); err != nil || pkt[0]>>3 >= 16 {
		return false // malformed, or CELT-only: no SILK layer
	}
	frame := firstFrame(pkt)
	if len(frame) == 0 {
		return false
	}
	// The SILK layer opens with one VAD flag per 20 ms SILK frame (one for a
	// 10 ms frame) and then the LBRR flag, each coded with probability 1/2: at
	// the start of the range coder's stream such symbols are the leading bits
	// of the first byte (RFC 6716 §4.1).
	silkFrames := max(1, frameSamples(pkt[0])/960)
	return frame[0]&(0x80>>silkFrames) != 0
}

// firstFrame returns the first frame of the valid packet pkt.
func firstFrame(pkt []byte) []byte {
	rest := pkt[1:]
	switch pkt[0] & 3 {
	case 0:
		return rest
	case 1:
		return rest[:len(rest)/2]
	case 2:
		n, used, _ := frameLength(rest)
		return rest[used : used+n]
	}
	m := int(rest[0] & frameCountMask)
	vbr, padded := rest[0]&0x80 != 0, rest[0]&0x40 != 0
	rest = rest[1:]
	padding := 0
	for padded {
		b := int(rest[0])
		rest = rest[1:]
		if b == 255 {
			padding += 254
			continue
		}
		padding += b
		padded = false
	}
	rest = rest[:len(rest)-padding]
	if !vbr {
		return rest[:len(rest)/m]
	}
	if m == 1 {
		return rest
	}
	n, used, _ := frameLength(rest)
	// The other M-2 lengths follow the first.
	off := used
	for range m - 2 {
		_, u, _ := frameLength(rest[off:])
		off += u
	}
	return rest[off : off+n]
}
