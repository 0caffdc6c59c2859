package speech

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// SampleRate is the sample rate, in Hz, of every signal this package makes or
// compares.
const SampleRate = 48000

// ErrNoEspeak is returned by [Say] when the espeak-ng program is not installed.
var ErrNoEspeak = errors.New("speech: espeak-ng not found in PATH (install the espeak-ng package)")

// Say renders text as speech with espeak-ng (American English voice) and
// returns it as mono 16-bit samples at 48 kHz. The text is passed on standard
// input, never as an argument. Say is safe for concurrent use; it returns
// [ErrNoEspeak] if espeak-ng is not installed and stops espeak-ng when ctx is
// done.
func Say(ctx context.Context, text string) ([]int16, error) {
	if strings.TrimSpace(text) == "" {
		return nil, errors.New("speech: empty text")
	}
	bin, err := exec.LookPath("espeak-ng")
	if err != nil {
		return nil, ErrNoEspeak
	}
	dir, err := os.MkdirTemp("", "mahfooz-speech-")
	if err != nil {
		return nil, fmt.Errorf("speech: %w", err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "said.wav")
	cmd := exec.CommandContext(ctx, bin, "-v", "en-us", "--stdin", "-w", out)
	cmd.Stdin = strings.NewReader(text)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("speech: espeak-ng: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("speech: %w", err)
	}
	samples, rate, err := parseWAV(b)
	if err != nil {
		return nil, fmt.Errorf("speech: reading espeak-ng output: %w", err)
	}
	if len(samples) == 0 {
		return nil, errors.New("speech: espeak-ng produced no audio")
	}
	return resample(samples, rate, SampleRate), nil
}
