package audiodev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gen2brain/malgo"
)

// The call audio format, which the device is opened at (miniaudio converts
// from whatever the hardware runs at).
const (
	// SampleRate is the samples per second of call audio.
	SampleRate = 48000
	// FrameSamples is the samples of one 20 ms frame: what ReadFrame gives
	// and WriteFrame takes at a time.
	FrameSamples = 960
	// MaxQueue is the most audio that waits between the device and the
	// caller in either direction before the oldest is dropped.
	MaxQueue = 200 * time.Millisecond
)

const (
	frameDuration = 20 * time.Millisecond
	queueFrames   = int(MaxQueue / frameDuration)
	// periodFrames is how often the audio thread runs: every 10 ms.
	periodFrames = SampleRate / 100
)

// BackendNull is miniaudio's null backend (ma_backend_null, the last value of
// the ma_backend enumeration): a device without hardware whose microphone
// gives silence in real time and whose speaker discards what it plays.
// malgo.BackendNull is 13, which is ma_backend_custom in the miniaudio that
// malgo v0.11.24 bundles, so it must not be used.
const BackendNull malgo.Backend = 14

// realBackends are the platform audio systems Open tries when Config.Backends
// is nil, in miniaudio's order of preference: every backend but the null one
// and the custom one. miniaudio skips those not built for the platform.
var realBackends = []malgo.Backend{
	malgo.BackendWasapi, malgo.BackendDsound, malgo.BackendWinmm, malgo.BackendCoreaudio,
	malgo.BackendSndio, malgo.BackendAudio4, malgo.BackendOss, malgo.BackendPulseaudio,
	malgo.BackendAlsa, malgo.BackendJack, malgo.BackendAaudio, malgo.BackendOpensl,
	malgo.BackendWebaudio,
}

var backendNames = map[string]malgo.Backend{
	"wasapi": malgo.BackendWasapi, "dsound": malgo.BackendDsound, "winmm": malgo.BackendWinmm,
	"coreaudio": malgo.BackendCoreaudio, "sndio": malgo.BackendSndio, "audio4": malgo.BackendAudio4,
	"oss": malgo.BackendOss, "pulseaudio": malgo.BackendPulseaudio, "alsa": malgo.BackendAlsa,
	"jack": malgo.BackendJack, "aaudio": malgo.BackendAaudio, "opensl": malgo.BackendOpensl,
	"webaudio": malgo.BackendWebaudio, "null": BackendNull,
}

// BackendNamed returns the backend of a name as miniaudio spells it, in
// lower case ("alsa", "pulseaudio", "jack", "coreaudio", "wasapi", "null", ...),
// and false if there is none of that name.
func BackendNamed(name string) (malgo.Backend, bool) {
	b, ok := backendNames[strings.ToLower(name)]
	return b, ok
}

// Direction says which ends of the audio device Open starts.
type Direction int

const (
	// Both is the microphone and the speaker, as one device.
	Both Direction = iota
	// Microphone is the microphone only; WriteFrame returns ErrNoSpeaker.
	Microphone
	// Speaker is the speaker only; ReadFrame returns ErrNoMicrophone.
	Speaker
)

// String names the direction as a user would.
func (d Direction) String() string {
	switch d {
	case Both:
		return "microphone and speaker"
	case Microphone:
		return "microphone"
	case Speaker:
		return "speaker"
	}
	return fmt.Sprintf("direction %d", int(d))
}

// Errors returned by a Device.
var (
	// ErrClosed is returned by ReadFrame and WriteFrame once Close has been
	// called, including by a ReadFrame waiting when Close is called.
	ErrClosed = errors.New("audiodev: device closed")
	// ErrStopped is returned by ReadFrame and WriteFrame once the audio
	// system has stopped the device by itself (for example, it was unplugged).
	ErrStopped = errors.New("audiodev: the audio device stopped")
	// ErrNoMicrophone is returned by ReadFrame on a device opened as Speaker.
	ErrNoMicrophone = errors.New("audiodev: opened without the microphone")
	// ErrNoSpeaker is returned by WriteFrame on a device opened as Microphone.
	ErrNoSpeaker = errors.New("audiodev: opened without the speaker")
)

// Config is how Open opens the audio device.
type Config struct {
	// Backends are the audio systems to try, in order. Nil means the
	// platform's real ones (never BackendNull).
	Backends []malgo.Backend
	// Direction is which ends to open; the zero value is Both.
	Direction Direction
	// Logger receives miniaudio's messages (at debug level) and the device
	// stopping on its own. Nil discards them.
	Logger *slog.Logger
}

// Stats are what a Device has carried so far, as durations of audio.
type Stats struct {
	Captured        time.Duration // heard by the microphone
	CaptureDropped  time.Duration // heard but dropped, oldest first, because ReadFrame fell MaxQueue behind
	CaptureQueued   time.Duration // heard and waiting for ReadFrame now
	Played          time.Duration // given by WriteFrame and played by the speaker
	PlaybackDropped time.Duration // given but dropped, oldest first, because WriteFrame ran MaxQueue ahead
	PlaybackQueued  time.Duration // given and waiting for the speaker now
	Silence         time.Duration // played as silence because nothing was queued
}

// Device is an open microphone and speaker at 48 kHz mono. ReadFrame and
// WriteFrame satisfy the call package's Source and Sink. Its methods are safe
// for concurrent use; ReadFrame from two goroutines at once gives each a
// different part of what the microphone heard.
type Device struct {
	log      *slog.Logger
	dir      Direction
	ctx      *malgo.AllocatedContext
	dev      *malgo.Device
	capture  *frameQueue // nil without the microphone
	playback *frameQueue // nil without the speaker

	// Owned by the audio thread.
	in   []int16 // the frame being filled from the microphone
	inN  int
	out  []int16 // the frame being played, nil if none
	outN int

	captured, played, silence atomic.Uint64 // samples
	pending                   atomic.Int64  // samples of out not yet played

	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	stopped   chan struct{}
	stopOnce  sync.Once
}

// Open opens and starts the audio device of the first of cfg.Backends that
// has one, at 48 kHz mono 16-bit with a 10 ms period. The caller must Close
// it.
func Open(cfg Config) (*Device, error) {
	var devType malgo.DeviceType
	switch cfg.Direction {
	case Both:
		devType = malgo.Duplex
	case Microphone:
		devType = malgo.Capture
	case Speaker:
		devType = malgo.Playback
	default:
		return nil, fmt.Errorf("audiodev: unknown %v", cfg.Direction)
	}
	d := newDevice(cfg.Direction, cfg.Logger)
	backends := cfg.Backends
	if backends == nil {
		backends = realBackends
	}
	ctx, err := malgo.InitContext(backends, malgo.ContextConfig{}, func(msg string) {
		d.log.Debug("audiodev: miniaudio", "text", strings.TrimSpace(msg))
	})
	if err != nil {
		return nil, fmt.Errorf("audiodev: no audio system: %w", err)
	}
	dc := malgo.DefaultDeviceConfig(devType)
	dc.SampleRate = SampleRate
	dc.PeriodSizeInFrames = periodFrames
	dc.Capture.Format = malgo.FormatS16
	dc.Capture.Channels = 1
	dc.Playback.Format = malgo.FormatS16
	dc.Playback.Channels = 1
	dev, err := malgo.InitDevice(ctx.Context, dc, malgo.DeviceCallbacks{Data: d.onData, Stop: d.onStop})
	if err != nil {
		ctx.Uninit()
		ctx.Free()
		return nil, fmt.Errorf("audiodev: opening the %v: %w", cfg.Direction, err)
	}
	if err := dev.Start(); err != nil {
		dev.Uninit()
		ctx.Uninit()
		ctx.Free()
		return nil, fmt.Errorf("audiodev: starting the %v: %w", cfg.Direction, err)
	}
	d.ctx, d.dev = ctx, dev
	return d, nil
}

// newDevice returns a Device with its queues but no audio system: Open
// attaches one.
func newDevice(dir Direction, log *slog.Logger) *Device {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Device{log: log, dir: dir, done: make(chan struct{}), stopped: make(chan struct{})}
	if dir != Speaker {
		d.capture = newFrameQueue(queueFrames)
		d.in = d.capture.spare()
	}
	if dir != Microphone {
		d.playback = newFrameQueue(queueFrames)
	}
	return d
}

// ReadFrame fills pcm, which must hold FrameSamples samples, with the oldest
// 20 ms the microphone heard that have not been read, waiting until there are
// 20 ms to give.
func (d *Device) ReadFrame(pcm []int16) error {
	if d.capture == nil {
		return ErrNoMicrophone
	}
	if len(pcm) != FrameSamples {
		return fmt.Errorf("audiodev: reading %d samples, want %d", len(pcm), FrameSamples)
	}
	select {
	case <-d.done:
		return ErrClosed
	default:
	}
	select {
	case f := <-d.capture.full:
		copy(pcm, f)
		d.capture.recycle(f)
		return nil
	case <-d.done:
		return ErrClosed
	case <-d.stopped:
		return ErrStopped
	}
}

// WriteFrame queues pcm, which must hold FrameSamples samples, for the
// speaker, without waiting. If more than MaxQueue is then waiting, the oldest
// is dropped.
func (d *Device) WriteFrame(pcm []int16) error {
	if d.playback == nil {
		return ErrNoSpeaker
	}
	if len(pcm) != FrameSamples {
		return fmt.Errorf("audiodev: writing %d samples, want %d", len(pcm), FrameSamples)
	}
	select {
	case <-d.done:
		return ErrClosed
	case <-d.stopped:
		return ErrStopped
	default:
	}
	f := d.playback.spare()
	copy(f, pcm)
	d.playback.put(f)
	return nil
}

// Close stops the device, waits for its audio thread to finish, and releases
// it. A ReadFrame waiting returns ErrClosed. Close may be called more than
// once; later calls return what the first returned.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		close(d.done)
		if d.dev != nil {
			d.dev.Uninit()
		}
		if d.ctx != nil {
			if err := d.ctx.Uninit(); err != nil {
				d.closeErr = fmt.Errorf("audiodev: closing: %w", err)
			}
			d.ctx.Free()
		}
	})
	return d.closeErr
}

// Stats returns what the device has carried so far.
func (d *Device) Stats() Stats {
	s := Stats{
		Captured: samplesDuration(d.captured.Load()),
		Played:   samplesDuration(d.played.Load()),
		Silence:  samplesDuration(d.silence.Load()),
	}
	if q := d.capture; q != nil {
		s.CaptureDropped = samplesDuration(q.dropped.Load() * FrameSamples)
		s.CaptureQueued = samplesDuration(uint64(q.len()) * FrameSamples)
	}
	if q := d.playback; q != nil {
		s.PlaybackDropped = samplesDuration(q.dropped.Load() * FrameSamples)
		s.PlaybackQueued = samplesDuration(uint64(q.len())*FrameSamples + uint64(max(d.pending.Load(), 0)))
	}
	return s
}

func samplesDuration(n uint64) time.Duration {
	return time.Duration(n) * time.Second / SampleRate
}

// onData runs on the audio thread every period: it takes what the microphone
// heard into the capture queue and feeds the speaker from the playback queue.
// It never waits for the caller.
func (d *Device) onData(out, in []byte, _ uint32) {
	if d.capture != nil && len(in) > 0 {
		d.takeInput(in)
	}
	if d.playback != nil && len(out) > 0 {
		d.giveOutput(out)
	}
}

func (d *Device) takeInput(in []byte) {
	for len(in) >= 2 {
		n := min(len(in)/2, FrameSamples-d.inN)
		for i := range n {
			d.in[d.inN+i] = int16(binary.NativeEndian.Uint16(in[2*i:]))
		}
		in = in[2*n:]
		d.inN += n
		d.captured.Add(uint64(n))
		if d.inN == FrameSamples {
			d.capture.put(d.in)
			d.in = d.capture.spare()
			d.inN = 0
		}
	}
}

func (d *Device) giveOutput(out []byte) {
	for len(out) >= 2 {
		if d.out == nil || d.outN == FrameSamples {
			if d.out != nil {
				d.playback.recycle(d.out)
			}
			f, ok := d.playback.get()
			if !ok {
				d.out = nil
				d.pending.Store(0)
				clear(out)
				d.silence.Add(uint64(len(out) / 2))
				return
			}
			d.out, d.outN = f, 0
		}
		n := min(len(out)/2, FrameSamples-d.outN)
		for i := range n {
			binary.NativeEndian.PutUint16(out[2*i:], uint16(d.out[d.outN+i]))
		}
		out = out[2*n:]
		d.outN += n
		d.played.Add(uint64(n))
		d.pending.Store(int64(FrameSamples - d.outN))
	}
}

// onStop runs when the device stops: by Close, or by the audio system on its
// own, which ends ReadFrame and WriteFrame with ErrStopped.
func (d *Device) onStop() {
	select {
	case <-d.done:
		return
	default:
	}
	d.stopOnce.Do(func() {
		d.log.Warn("audiodev: the audio device stopped", "direction", d.dir.String())
		close(d.stopped)
	})
}
