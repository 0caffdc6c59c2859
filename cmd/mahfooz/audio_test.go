package main

import (
	"path/filepath"
	"strings"
	"testing"

	"mahfooz/media/audiodev"
	"mahfooz/media/wav"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// TestOpenAudioFiles checks that with both files no audio device is opened (an
// unusable backend is not even looked at) and the files carry the audio.
func TestOpenAudioFiles(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.wav"), filepath.Join(dir, "out.wav")
	said := make([]int16, 2*audiodev.FrameSamples+100)
	for i := range said {
		said[i] = int16(i)
	}
	if err := writeWAV(in, said); err != nil {
		t.Fatal(err)
	}
	src, sink, closeFn, err := openAudioEnv(in, out, envOf(map[string]string{envAudioBackend: "bogus"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]int16, audiodev.FrameSamples)
	var got []int16
	for {
		if err := src.ReadFrame(frame); err != nil {
			break
		}
		got = append(got, frame...)
		if err := sink.WriteFrame(frame); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 3*audiodev.FrameSamples || got[len(said)-1] != said[len(said)-1] || got[len(said)] != 0 {
		t.Fatalf("read %d samples from the file, want %d then silence to a whole frame", len(got), len(said))
	}
	if err := closeFn(); err != nil {
		t.Fatal(err)
	}
	heard, err := wav.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(heard) != len(got) || heard[1000] != said[1000] {
		t.Fatalf("out file holds %d samples, want the %d written", len(heard), len(got))
	}
}

// TestOpenAudioDevice uses the null device for the end without a file.
func TestOpenAudioDevice(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.wav"), filepath.Join(dir, "out.wav")
	if err := writeWAV(in, make([]int16, audiodev.FrameSamples)); err != nil {
		t.Fatal(err)
	}
	null := envOf(map[string]string{envAudioBackend: "null"})
	frame := make([]int16, audiodev.FrameSamples)

	t.Run("microphone", func(t *testing.T) {
		src, sink, closeFn, err := openAudioEnv("", out, null, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer closeFn()
		if _, ok := src.(*audiodev.Device); !ok {
			t.Fatalf("source is %T, want the microphone", src)
		}
		if _, ok := sink.(*audiodev.Device); ok {
			t.Fatal("sink is the speaker although --out names a file")
		}
		if err := src.ReadFrame(frame); err != nil {
			t.Fatal(err)
		}
		if err := sink.WriteFrame(frame); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("speaker", func(t *testing.T) {
		src, sink, closeFn, err := openAudioEnv(in, "", null, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer closeFn()
		if _, ok := src.(*audiodev.Device); ok {
			t.Fatal("source is the microphone although --in names a file")
		}
		d, ok := sink.(*audiodev.Device)
		if !ok {
			t.Fatalf("sink is %T, want the speaker", sink)
		}
		if err := d.ReadFrame(frame); err == nil {
			t.Fatal("the microphone was opened although --in names a file")
		}
		if err := sink.WriteFrame(frame); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("both", func(t *testing.T) {
		src, sink, closeFn, err := openAudioEnv("", "", null, nil)
		if err != nil {
			t.Fatal(err)
		}
		if any(src) != any(sink) {
			t.Fatal("microphone and speaker are not one device")
		}
		if err := src.ReadFrame(frame); err != nil {
			t.Fatal(err)
		}
		if err := closeFn(); err != nil {
			t.Fatal(err)
		}
		if err := src.ReadFrame(frame); err == nil {
			t.Fatal("the device still reads after closeFn")
		}
	})
}

func TestOpenAudioErrors(t *testing.T) {
	dir := t.TempDir()
	_, _, _, err := openAudioEnv("", filepath.Join(dir, "out.wav"), envOf(map[string]string{envAudioBackend: "bogus"}), nil)
	if err == nil || !strings.Contains(err.Error(), "hint:") || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("unknown backend: %v, want an error with a hint", err)
	}
	if _, _, _, err := openAudioEnv(filepath.Join(dir, "missing.wav"), "", envOf(nil), nil); err == nil {
		t.Fatal("a missing --in file was accepted")
	}
}

func writeWAV(path string, pcm []int16) error {
	w, err := wav.Create(path)
	if err != nil {
		return err
	}
	if err := w.Write(pcm); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}
