package audiodev

import (
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gen2brain/malgo"
)

// openNull opens the null device and closes it when the test ends.
func openNull(t *testing.T, dir Direction) *Device {
	t.Helper()
	d, err := Open(Config{Backends: []malgo.Backend{BackendNull}, Direction: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBackendNullIsTheNullDevice checks BackendNull against miniaudio itself:
// the null backend's only devices are named "NULL Playback Device" and "NULL
// Capture Device".
func TestBackendNullIsTheNullDevice(t *testing.T) {
	ctx, err := malgo.InitContext([]malgo.Backend{BackendNull}, malgo.ContextConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx.Uninit()
		ctx.Free()
	}()
	for kind, want := range map[malgo.DeviceType]string{malgo.Playback: "NULL Playback Device", malgo.Capture: "NULL Capture Device"} {
		infos, err := ctx.Devices(kind)
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) != 1 || infos[0].Name() != want {
			var names []string
			for _, in := range infos {
				names = append(names, in.Name())
			}
			t.Fatalf("devices %q, want only %q", names, want)
		}
	}
}

func TestBackendNamed(t *testing.T) {
	for _, tc := range []struct {
		name string
		want malgo.Backend
		ok   bool
	}{
		{"null", BackendNull, true},
		{"NULL", BackendNull, true},
		{"alsa", malgo.BackendAlsa, true},
		{"pulseaudio", malgo.BackendPulseaudio, true},
		{"coreaudio", malgo.BackendCoreaudio, true},
		{"wasapi", malgo.BackendWasapi, true},
		{"", 0, false},
		{"custom", 0, false},
		{"pulse", 0, false},
	} {
		got, ok := BackendNamed(tc.name)
		if ok != tc.ok || got != tc.want {
			t.Errorf("BackendNamed(%q) = %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// TestMicrophoneRealTime reads one second from the null microphone: it comes
// as silence, 20 ms at a time, no faster than real time.
func TestMicrophoneRealTime(t *testing.T) {
	d := openNull(t, Both)
	pcm := make([]int16, FrameSamples)
	start := time.Now()
	for i := range 50 {
		for j := range pcm {
			pcm[j] = 1
		}
		if err := d.ReadFrame(pcm); err != nil {
			t.Fatal(err)
		}
		for j, v := range pcm {
			if v != 0 {
				t.Fatalf("frame %d sample %d is %d; the null microphone hears silence", i, j, v)
			}
		}
	}
	// Loose bounds: this checks that ReadFrame waits for the microphone's
	// clock, not how precisely it keeps time.
	if took := time.Since(start); took < 800*time.Millisecond || took > 3*time.Second {
		t.Fatalf("50 frames (1 s of audio) took %v", took)
	}
	if s := d.Stats(); s.Captured < 980*time.Millisecond {
		t.Fatalf("captured %v after reading 1 s", s.Captured)
	}
}

// TestSpeakerRealTime paces WriteFrame by the microphone, as a call does: the
// speaker plays it all, nothing is dropped, and little waits.
func TestSpeakerRealTime(t *testing.T) {
	d := openNull(t, Both)
	pcm := make([]int16, FrameSamples)
	for range 50 {
		if err := d.ReadFrame(pcm); err != nil {
			t.Fatal(err)
		}
		if err := d.WriteFrame(pcm); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 2*time.Second, "the speaker did not play the second written", func() bool {
		return d.Stats().Played == time.Second
	})
	if s := d.Stats(); s.PlaybackDropped != 0 || s.PlaybackQueued != 0 {
		t.Fatalf("dropped %v, queued %v; want nothing", s.PlaybackDropped, s.PlaybackQueued)
	}
}

// TestSpeakerUnderrun checks that the speaker plays silence, and goes on
// playing, when nothing is written.
func TestSpeakerUnderrun(t *testing.T) {
	d := openNull(t, Speaker)
	if err := d.WriteFrame(frameOf(1000)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the speaker did not play on after running out", func() bool {
		s := d.Stats()
		return s.Played == frameDuration && s.Silence >= 100*time.Millisecond
	})
	if err := d.WriteFrame(frameOf(1000)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the speaker did not play a frame written after silence", func() bool {
		return d.Stats().Played == 2*frameDuration
	})
}

// TestSpeakerLatencyBounded writes two seconds at once: the oldest is dropped
// so that at most MaxQueue waits for the speaker.
func TestSpeakerLatencyBounded(t *testing.T) {
	d := openNull(t, Speaker)
	for i := range 100 {
		if err := d.WriteFrame(frameOf(int16(i))); err != nil {
			t.Fatal(err)
		}
	}
	s := d.Stats()
	if s.PlaybackQueued > MaxQueue+frameDuration {
		t.Fatalf("%v waits for the speaker, want at most %v", s.PlaybackQueued, MaxQueue+frameDuration)
	}
	if s.PlaybackDropped < 2*time.Second-MaxQueue-2*frameDuration {
		t.Fatalf("dropped only %v of 2 s written at once", s.PlaybackDropped)
	}
	waitFor(t, 2*time.Second, "the queue did not drain", func() bool {
		return d.Stats().PlaybackQueued == 0
	})
	if s := d.Stats(); s.Played+s.PlaybackDropped != 2*time.Second {
		t.Fatalf("played %v + dropped %v, want the 2 s written", s.Played, s.PlaybackDropped)
	}
}

// TestMicrophoneLatencyBounded does not read for a while: the microphone
// keeps only the newest MaxQueue.
func TestMicrophoneLatencyBounded(t *testing.T) {
	d := openNull(t, Microphone)
	waitFor(t, 3*time.Second, "the microphone dropped nothing while unread", func() bool {
		return d.Stats().CaptureDropped >= 100*time.Millisecond
	})
	if s := d.Stats(); s.CaptureQueued > MaxQueue {
		t.Fatalf("%v waits to be read, want at most %v", s.CaptureQueued, MaxQueue)
	}
}

func TestDirections(t *testing.T) {
	pcm := make([]int16, FrameSamples)
	mic := openNull(t, Microphone)
	if err := mic.WriteFrame(pcm); !errors.Is(err, ErrNoSpeaker) {
		t.Fatalf("WriteFrame on the microphone: %v, want ErrNoSpeaker", err)
	}
	if err := mic.ReadFrame(pcm); err != nil {
		t.Fatal(err)
	}
	spk := openNull(t, Speaker)
	if err := spk.ReadFrame(pcm); !errors.Is(err, ErrNoMicrophone) {
		t.Fatalf("ReadFrame on the speaker: %v, want ErrNoMicrophone", err)
	}
	if err := spk.WriteFrame(pcm); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Backends: []malgo.Backend{BackendNull}, Direction: 7}); err == nil {
		t.Fatal("Open accepted an unknown direction")
	}
}

func TestFrameSize(t *testing.T) {
	d := openNull(t, Both)
	for _, n := range []int{0, FrameSamples - 1, FrameSamples + 1, 2 * FrameSamples} {
		if err := d.ReadFrame(make([]int16, n)); err == nil {
			t.Errorf("ReadFrame of %d samples succeeded", n)
		}
		if err := d.WriteFrame(make([]int16, n)); err == nil {
			t.Errorf("WriteFrame of %d samples succeeded", n)
		}
	}
}

// TestClose checks that Close ends a waiting ReadFrame, that the device
// refuses audio afterwards, and that closing twice is harmless.
func TestClose(t *testing.T) {
	d := openNull(t, Both)
	ended := make(chan error, 1)
	go func() {
		pcm := make([]int16, FrameSamples)
		for {
			if err := d.ReadFrame(pcm); err != nil {
				ended <- err
				return
			}
		}
	}()
	waitFor(t, 2*time.Second, "the reader read nothing", func() bool { return d.Stats().Captured > 0 })
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("waiting ReadFrame ended with %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not end a waiting ReadFrame")
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	pcm := make([]int16, FrameSamples)
	if err := d.ReadFrame(pcm); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadFrame after Close: %v", err)
	}
	if err := d.WriteFrame(pcm); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteFrame after Close: %v", err)
	}
}

// TestNoGoroutineLeak opens, uses and closes the device a few times and checks
// that no goroutine is left behind.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	pcm := make([]int16, FrameSamples)
	for range 3 {
		d, err := Open(Config{Backends: []malgo.Backend{BackendNull}})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := d.ReadFrame(pcm); err != nil {
				t.Fatal(err)
			}
			if err := d.WriteFrame(pcm); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 2*time.Second, "goroutines left behind", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// TestLogger checks that miniaudio's messages reach the caller's logger.
func TestLogger(t *testing.T) {
	var sb strings.Builder
	d, err := Open(Config{
		Backends: []malgo.Backend{BackendNull},
		Logger:   slog.New(slog.NewTextHandler(&sb, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if !strings.Contains(sb.String(), "audiodev: miniaudio") {
		t.Fatalf("nothing from miniaudio in the log:\n%s", sb.String())
	}
}
