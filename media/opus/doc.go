// Package opus encodes and decodes call audio with the Opus codec (RFC 6716),
// through a thin cgo binding to the system's libopus (found with pkg-config;
// on Debian and Ubuntu the package is libopus-dev).
//
// Call audio is mono, 16-bit, at 48 kHz (SampleRate). An Encoder turns 10, 20,
// 40 or 60 ms of samples into one packet; it is set up for speech (the VoIP
// application, voice signal, 20 kbit/s, complexity 5) and can be tuned for a
// poor link: a lower bitrate (SetBitrate), in-band forward error correction
// (SetFEC), which lets the receiver rebuild a lost packet from the next one, and
// discontinuous transmission (SetDTX), which makes packets the sender need not
// send during silence (IsDTX).
//
// A Decoder turns packets back into samples (Decode), rebuilds a lost packet
// from the in-band FEC of its successor (DecodeFEC), or conceals one that is
// gone (Conceal).
//
// Packets come from the network, so every function that reads one checks it
// first against the framing rules of RFC 6716 §3 (PacketSamples) and refuses a
// malformed packet with ErrInvalidPacket; none of them panics on any input.
//
// Encoders and Decoders hold C memory: Close frees it at once, and a garbage
// collector cleanup frees it if Close is never called. Neither is safe for
// concurrent use; the package-level functions are.
package opus
