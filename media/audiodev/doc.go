// Package audiodev is the device's microphone and speaker for calls: it opens
// the platform's audio device through miniaudio (github.com/gen2brain/malgo,
// cgo) at the call format, 48 kHz mono 16-bit, and hands audio over 20 ms
// (FrameSamples) at a time.
//
// A Device is both ends of a call's audio: ReadFrame gives what the microphone
// heard, blocking until 20 ms are there, and WriteFrame queues 20 ms for the
// speaker. Both sides meet the audio thread through bounded queues of at most
// MaxQueue: when the caller falls behind the microphone, or runs ahead of the
// speaker, the oldest audio is dropped so that the delay it adds to a call
// cannot grow. When the speaker finds nothing queued it plays silence.
//
// Open with no Backends tries the platform's real audio systems only (ALSA,
// PulseAudio, JACK, Core Audio, WASAPI, ...), never the null device, so a
// machine without a sound card gets an error rather than a call in which
// nobody is heard. BackendNull, a device with no hardware whose microphone
// gives silence in real time and whose speaker discards what it is given, is
// for tests and headless machines.
//
// The audio thread runs Go code through cgo: it never waits for the caller (it
// only exchanges frame buffers through non-blocking channel operations), but,
// like every cgo callback, it can be held up by the Go runtime itself.
package audiodev
