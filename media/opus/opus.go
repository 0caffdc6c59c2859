package opus

/*
#cgo pkg-config: opus
#include <stdlib.h>
#include <opus.h>

// The encoder's controls are variadic, which cgo cannot call directly.
static int mz_encoder_set(OpusEncoder *st, int request, opus_int32 value) {
	return opus_encoder_ctl(st, request, value);
}
static int mz_encoder_get(OpusEncoder *st, int request, opus_int32 *value) {
	return opus_encoder_ctl(st, request, value);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"
)

// Stream parameters.
const (
	// SampleRate is the only sample rate this package encodes and decodes, in
	// samples per second. Audio is always mono.
	SampleRate = 48000
	// MaxPacketSize is a size for the output buffer of Encode that is always
	// large enough (the size libopus recommends).
	MaxPacketSize = 4000
	// MaxFrameSamples is the most samples one packet can hold: 120 ms
	// (RFC 6716 §3.2.5).
	MaxFrameSamples = 5760
)

// Encoder defaults.
const (
	// DefaultBitrate is the bitrate of a new Encoder, in bits per second.
	DefaultBitrate = 20000
	// MinBitrate and MaxBitrate bound SetBitrate, in bits per second.
	MinBitrate = 6000
	MaxBitrate = 64000
	// defaultComplexity trades a little quality for about half the CPU time
	// of libopus's default of 10, which matters on phones.
	defaultComplexity = 5
	// minConcealSamples is the granularity of concealment and FEC: 2.5 ms.
	minConcealSamples = SampleRate / 400
)

// Errors returned by this package. Callers test for them with errors.Is; the
// returned errors may wrap them with detail.
var (
	// ErrInvalidPacket is returned for bytes that are not a well-formed Opus
	// packet (RFC 6716 §3), or that libopus refuses to decode.
	ErrInvalidPacket = errors.New("opus: invalid packet")
	// ErrFrameSize is returned by Encode for a frame that is not 10, 20, 40 or
	// 60 ms long, and by Conceal and DecodeFEC for a length that is not a
	// multiple of 2.5 ms between 2.5 and 120 ms.
	ErrFrameSize = errors.New("opus: unsupported frame size")
	// ErrBufferTooSmall is returned when an output buffer cannot hold the
	// result: a packet for Encode, the decoded samples for Decode.
	ErrBufferTooSmall = errors.New("opus: buffer too small")
	// ErrInvalidSetting is returned by an Encoder setter for a value out of
	// its documented range.
	ErrInvalidSetting = errors.New("opus: invalid setting")
	// ErrClosed is returned by the methods of a closed Encoder or Decoder.
	ErrClosed = errors.New("opus: closed")
	// ErrCodec is returned when libopus fails for a reason not covered above.
	ErrCodec = errors.New("opus: codec error")
)

// Bandwidth is an Opus audio bandwidth (RFC 6716 §2).
type Bandwidth int

// The Opus bandwidths, by passband.
const (
	Narrowband    Bandwidth = C.OPUS_BANDWIDTH_NARROWBAND    // 4 kHz
	Mediumband    Bandwidth = C.OPUS_BANDWIDTH_MEDIUMBAND    // 6 kHz
	Wideband      Bandwidth = C.OPUS_BANDWIDTH_WIDEBAND      // 8 kHz
	SuperWideband Bandwidth = C.OPUS_BANDWIDTH_SUPERWIDEBAND // 12 kHz
	Fullband      Bandwidth = C.OPUS_BANDWIDTH_FULLBAND      // 20 kHz
)

// libopusError maps a negative libopus return code to an error.
func libopusError(op string, code C.int) error {
	sentinel := ErrCodec
	switch code {
	case C.OPUS_BUFFER_TOO_SMALL:
		sentinel = ErrBufferTooSmall
	case C.OPUS_INVALID_PACKET, C.OPUS_BAD_ARG:
		sentinel = ErrInvalidPacket
	}
	return fmt.Errorf("%w: %s: %s", sentinel, op, C.GoString(C.opus_strerror(code)))
}

// Encoder encodes mono 48 kHz audio into Opus packets. An Encoder is not safe
// for concurrent use.
type Encoder struct {
	st      *C.OpusEncoder
	cleanup runtime.Cleanup
}

// NewEncoder returns an Encoder for speech: the VoIP application, the voice
// signal type, DefaultBitrate, complexity 5, with FEC and DTX off.
func NewEncoder() (*Encoder, error) {
	var code C.int
	st := C.opus_encoder_create(SampleRate, 1, C.OPUS_APPLICATION_VOIP, &code)
	if code != C.OPUS_OK || st == nil {
		return nil, libopusError("creating encoder", code)
	}
	e := &Encoder{st: st}
	e.cleanup = runtime.AddCleanup(e, func(st *C.OpusEncoder) { C.opus_encoder_destroy(st) }, st)
	for _, s := range []struct {
		req C.int
		val int
	}{
		{C.OPUS_SET_SIGNAL_REQUEST, C.OPUS_SIGNAL_VOICE},
		{C.OPUS_SET_BITRATE_REQUEST, DefaultBitrate},
		{C.OPUS_SET_COMPLEXITY_REQUEST, defaultComplexity},
	} {
		if err := e.set(s.req, s.val); err != nil {
			e.Close()
			return nil, err
		}
	}
	return e, nil
}

// set applies one encoder control.
func (e *Encoder) set(req C.int, val int) error {
	if e.st == nil {
		return ErrClosed
	}
	code := C.mz_encoder_set(e.st, req, C.opus_int32(val))
	runtime.KeepAlive(e)
	if code != C.OPUS_OK {
		return libopusError("setting encoder", code)
	}
	return nil
}

// SetBitrate sets the target bitrate in bits per second, from MinBitrate to
// MaxBitrate. The encoder uses a variable bitrate around the target.
func (e *Encoder) SetBitrate(bps int) error {
	if bps < MinBitrate || bps > MaxBitrate {
		return fmt.Errorf("%w: bitrate %d outside %d..%d", ErrInvalidSetting, bps, MinBitrate, MaxBitrate)
	}
	return e.set(C.OPUS_SET_BITRATE_REQUEST, bps)
}

// SetFEC turns in-band forward error correction on or off and tells the
// encoder the expected packet loss, in percent (0 to 100). With FEC on and a
// non-zero loss, each packet carries a low-bitrate copy of the previous one,
// which DecodeFEC uses when that one is lost; libopus only does so in its
// speech (SILK) modes and when the bitrate leaves room, lowering the bandwidth
// if it must.
func (e *Encoder) SetFEC(on bool, lossPercent int) error {
	if lossPercent < 0 || lossPercent > 100 {
		return fmt.Errorf("%w: packet loss %d%% outside 0..100", ErrInvalidSetting, lossPercent)
	}
	if err := e.set(C.OPUS_SET_INBAND_FEC_REQUEST, boolInt(on)); err != nil {
		return err
	}
	return e.set(C.OPUS_SET_PACKET_LOSS_PERC_REQUEST, lossPercent)
}

// SetDTX turns discontinuous transmission on or off. With DTX on, the encoder
// emits packets of one or two bytes during silence (IsDTX reports them), which
// need not be sent, and a comfort noise update every 400 ms.
func (e *Encoder) SetDTX(on bool) error {
	return e.set(C.OPUS_SET_DTX_REQUEST, boolInt(on))
}

// SetVBR chooses a variable bitrate (on, the default) or a constant one. With a
// constant bitrate every packet of a frame size has the same length, so the
// lengths of encrypted packets say nothing of the sounds spoken; with a
// variable one they do, which has been used to recognise phrases in encrypted
// calls. DTX silences still show.
func (e *Encoder) SetVBR(on bool) error {
	return e.set(C.OPUS_SET_VBR_REQUEST, boolInt(on))
}

// SetMaxBandwidth caps the audio bandwidth the encoder may choose; it picks
// a lower one on its own when the bitrate is low.
func (e *Encoder) SetMaxBandwidth(bw Bandwidth) error {
	if bw < Narrowband || bw > Fullband {
		return fmt.Errorf("%w: bandwidth %d", ErrInvalidSetting, bw)
	}
	return e.set(C.OPUS_SET_MAX_BANDWIDTH_REQUEST, int(bw))
}

// Lookahead returns the encoder's algorithmic delay in samples: decoded audio
// lags the input by this much.
func (e *Encoder) Lookahead() (int, error) {
	if e.st == nil {
		return 0, ErrClosed
	}
	var v C.opus_int32
	code := C.mz_encoder_get(e.st, C.OPUS_GET_LOOKAHEAD_REQUEST, &v)
	runtime.KeepAlive(e)
	if code != C.OPUS_OK {
		return 0, libopusError("reading lookahead", code)
	}
	return int(v), nil
}

// Encode encodes one frame of pcm, which must hold 480, 960, 1920 or 2880
// samples (10, 20, 40 or 60 ms), into out and returns the packet's length.
// MaxPacketSize bytes are always enough.
func (e *Encoder) Encode(pcm []int16, out []byte) (int, error) {
	if e.st == nil {
		return 0, ErrClosed
	}
	switch len(pcm) {
	case 480, 960, 1920, 2880:
	default:
		return 0, fmt.Errorf("%w: %d samples", ErrFrameSize, len(pcm))
	}
	if len(out) == 0 {
		return 0, ErrBufferTooSmall
	}
	n := C.opus_encode(e.st, (*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(len(pcm)),
		(*C.uchar)(unsafe.Pointer(&out[0])), C.opus_int32(min(len(out), MaxPacketSize)))
	runtime.KeepAlive(e)
	if n < 0 {
		return 0, libopusError("encoding", n)
	}
	return int(n), nil
}

// Close frees the Encoder's C memory. Later calls on e return ErrClosed.
func (e *Encoder) Close() {
	if e.st == nil {
		return
	}
	e.cleanup.Stop()
	C.opus_encoder_destroy(e.st)
	e.st = nil
}

// Decoder decodes Opus packets into mono 48 kHz audio. A Decoder is not safe
// for concurrent use.
type Decoder struct {
	st      *C.OpusDecoder
	cleanup runtime.Cleanup
}

// NewDecoder returns a Decoder.
func NewDecoder() (*Decoder, error) {
	var code C.int
	st := C.opus_decoder_create(SampleRate, 1, &code)
	if code != C.OPUS_OK || st == nil {
		return nil, libopusError("creating decoder", code)
	}
	d := &Decoder{st: st}
	d.cleanup = runtime.AddCleanup(d, func(st *C.OpusDecoder) { C.opus_decoder_destroy(st) }, st)
	return d, nil
}

// Decode decodes pkt into pcm and returns the number of samples written, which
// is PacketSamples(pkt). pcm must be at least that long.
func (d *Decoder) Decode(pkt []byte, pcm []int16) (int, error) {
	if d.st == nil {
		return 0, ErrClosed
	}
	n, err := PacketSamples(pkt)
	if err != nil {
		return 0, err
	}
	if len(pcm) < n {
		return 0, fmt.Errorf("%w: packet holds %d samples, buffer %d", ErrBufferTooSmall, n, len(pcm))
	}
	return d.decode(pkt, pcm[:n], false)
}

// DecodeFEC rebuilds the len(pcm) samples just before pkt, whose packet was
// lost, from the in-band FEC data in pkt, and returns len(pcm). len(pcm) must
// be a multiple of 2.5 ms up to 120 ms; it is normally the duration of the
// lost packet. When pkt carries no FEC data, or len(pcm) is shorter than pkt's
// duration, the samples are concealed as by Conceal instead; when len(pcm) is
// longer, the first part is concealed and the last PacketSamples(pkt) samples
// come from the FEC data. Either way the Decoder is ready to Decode pkt next.
func (d *Decoder) DecodeFEC(pkt []byte, pcm []int16) (int, error) {
	if d.st == nil {
		return 0, ErrClosed
	}
	if err := checkConcealSize(len(pcm)); err != nil {
		return 0, err
	}
	if _, err := PacketSamples(pkt); err != nil {
		return 0, err
	}
	return d.decode(pkt, pcm, true)
}

// Conceal synthesises len(pcm) samples of packet loss concealment, continuing
// the audio decoded last, and returns len(pcm). len(pcm) must be a multiple of
// 2.5 ms up to 120 ms.
func (d *Decoder) Conceal(pcm []int16) (int, error) {
	if d.st == nil {
		return 0, ErrClosed
	}
	if err := checkConcealSize(len(pcm)); err != nil {
		return 0, err
	}
	return d.decode(nil, pcm, false)
}

// decode runs opus_decode; pkt nil means concealment. pcm is not empty.
func (d *Decoder) decode(pkt []byte, pcm []int16, fec bool) (int, error) {
	var data *C.uchar
	if len(pkt) > 0 {
		data = (*C.uchar)(unsafe.Pointer(&pkt[0]))
	}
	n := C.opus_decode(d.st, data, C.opus_int32(len(pkt)),
		(*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(len(pcm)), C.int(boolInt(fec)))
	runtime.KeepAlive(d)
	if n < 0 {
		return 0, libopusError("decoding", n)
	}
	return int(n), nil
}

// Close frees the Decoder's C memory. Later calls on d return ErrClosed.
func (d *Decoder) Close() {
	if d.st == nil {
		return
	}
	d.cleanup.Stop()
	C.opus_decoder_destroy(d.st)
	d.st = nil
}

func checkConcealSize(n int) error {
	if n <= 0 || n > MaxFrameSamples || n%minConcealSamples != 0 {
		return fmt.Errorf("%w: %d samples", ErrFrameSize, n)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// libopusPacketSamples is libopus's own view of pkt: the samples it holds, or
// an error when opus_packet_parse refuses it. The tests compare it with
// PacketSamples.
func libopusPacketSamples(pkt []byte) (int, error) {
	if len(pkt) == 0 {
		return 0, ErrInvalidPacket
	}
	// The parser stores pointers into the packet in frames, so the packet is
	// copied to C memory: Go memory must not receive pointers from C.
	data := (*C.uchar)(C.CBytes(pkt))
	defer C.free(unsafe.Pointer(data))
	var toc C.uchar
	var frames [48]*C.uchar
	var sizes [48]C.opus_int16
	count := C.opus_packet_parse(data, C.opus_int32(len(pkt)), &toc, &frames[0], &sizes[0], nil)
	if count < 0 {
		return 0, libopusError("parsing", count)
	}
	per := C.opus_packet_get_samples_per_frame(data, SampleRate)
	return int(count) * int(per), nil
}
