// Package wav reads and writes RIFF/WAVE audio files for the call audio tools
// and tests, always as mono 16-bit samples at 48 kHz, the rate of the Opus
// codec (package mahfooz/media/opus).
//
// Read accepts integer PCM of 8, 16, 24 or 32 bits and IEEE float of 32 or 64
// bits, plain or in the WAVE_FORMAT_EXTENSIBLE form, with any number of
// channels (averaged to mono) and any sample rate from 8 to 192 kHz, resampled
// to 48 kHz with a Kaiser-windowed sinc low-pass filter. It is strict, because
// a file may come from anywhere: a truncated chunk, a size field that does not
// add up, a missing or repeated fmt or data chunk, or an unsupported format
// is refused with an error wrapping ErrMalformed or ErrUnsupported, and a
// header cannot make it allocate memory for data that is not there (data is
// read as it arrives, up to MaxDataSize bytes and MaxSamples output samples).
//
// Writer streams mono 16-bit 48 kHz PCM to a file, and Write writes a whole
// file at once.
//
// The package-level functions are safe for concurrent use; a Writer is not.
package wav
