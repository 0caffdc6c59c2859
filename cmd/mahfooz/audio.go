package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/gen2brain/malgo"

	"mahfooz/device/call"
	"mahfooz/media/audiodev"
	"mahfooz/media/wav"
)

// envAudioBackend names the audio system a call's microphone and speaker use
// ("null" for a device without hardware: silence in, nothing out); unset, the
// platform's own.
const envAudioBackend = "MAHFOOZ_AUDIO_BACKEND"

// openAudio returns what a call says and where what it hears goes: the WAV
// file in (said once, then the source ends) or else the microphone, and the WAV
// file out or else the speaker. It opens the audio device once, only for the
// ends no file replaces. closeFn releases everything opened; it must be called
// once the call's media has stopped.
func openAudio(in, out string) (src call.Source, sink call.Sink, closeFn func() error, err error) {
	return openAudioEnv(in, out, os.Getenv, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// openAudioEnv is openAudio reading the environment through getenv.
func openAudioEnv(in, out string, getenv func(string) string, log *slog.Logger) (src call.Source, sink call.Sink, closeFn func() error, err error) {
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	if in != "" {
		pcm, err := wav.ReadFile(in)
		if err != nil {
			return nil, nil, nil, err
		}
		src = &pcmSource{pcm: pcm}
	}
	if out != "" {
		w, err := wav.Create(out)
		if err != nil {
			return nil, nil, nil, err
		}
		closers = append(closers, w.Close)
		sink = wavSink{w}
	}
	if in != "" && out != "" {
		return src, sink, closeAll, nil
	}
	cfg := audiodev.Config{Logger: log, Direction: audiodev.Both}
	switch {
	case in != "":
		cfg.Direction = audiodev.Speaker
	case out != "":
		cfg.Direction = audiodev.Microphone
	}
	if name := getenv(envAudioBackend); name != "" {
		b, ok := audiodev.BackendNamed(name)
		if !ok {
			return nil, nil, nil, &hintError{fmt.Errorf("audio: unknown %s %q", envAudioBackend, name),
				"use alsa, pulseaudio, jack, oss, coreaudio, wasapi, null, or leave it unset for the platform's own"}
		}
		cfg.Backends = []malgo.Backend{b}
	}
	dev, err := audiodev.Open(cfg)
	if err != nil {
		return nil, nil, nil, &hintError{err, "pass --in and --out WAV files, or set " + envAudioBackend + "=null for a silent device"}
	}
	closers = append(closers, dev.Close)
	if in == "" {
		src = dev
	}
	if out == "" {
		sink = dev
	}
	return src, sink, closeAll, nil
}
