// Package speech makes test speech and measures, objectively, whether what one
// side of a call heard is what the other side said.
//
// [Say] renders text with espeak-ng at 48 kHz. [Compare] aligns the heard
// signal to the said one, following a delay that changes during the
// recording as a jitter buffer's playout delay does, and compares their
// spectra, in 24 mel bands between 100 and 7000 Hz, over the 20 ms frames in
// which said holds active speech; [Result.Intelligible] applies thresholds
// calibrated so that silence, noise, other speech and uncorrected packet loss
// fail while a good call, or a moderately impaired call whose losses were
// concealed, passes. The package is for tests; it does no I/O other than
// running espeak-ng.
package speech
