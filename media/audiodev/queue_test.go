package audiodev

import (
	"encoding/binary"
	"testing"
	"time"
)

// frameOf returns a frame whose every sample is v.
func frameOf(v int16) []int16 {
	f := make([]int16, FrameSamples)
	for i := range f {
		f[i] = v
	}
	return f
}

func TestQueueKeepsNewest(t *testing.T) {
	q := newFrameQueue(10)
	for i := range 15 {
		f := q.spare()
		copy(f, frameOf(int16(i)))
		q.put(f)
	}
	if got := q.dropped.Load(); got != 5 {
		t.Fatalf("dropped %d frames, want 5", got)
	}
	for want := int16(5); want < 15; want++ {
		f, ok := q.get()
		if !ok {
			t.Fatalf("queue empty before frame %d", want)
		}
		if f[0] != want || f[FrameSamples-1] != want {
			t.Fatalf("got frame %d, want %d (oldest first, oldest dropped)", f[0], want)
		}
		q.recycle(f)
	}
	if _, ok := q.get(); ok {
		t.Fatal("queue gave more than it was given")
	}
}

// TestCallbackFrames feeds the audio thread's callback periods of odd sizes and
// checks that the microphone's samples come out of ReadFrame in order, and that
// the speaker plays WriteFrame's samples in order and then silence.
func TestCallbackFrames(t *testing.T) {
	d := newDevice(Both, nil)
	var next int16
	for _, n := range []int{480, 1, 959, 700, 300, 480, 2000} {
		in := make([]byte, 2*n)
		for i := range n {
			binary.NativeEndian.PutUint16(in[2*i:], uint16(next))
			next++
		}
		d.onData(nil, in, uint32(n))
	}
	total := int(next)
	pcm := make([]int16, FrameSamples)
	var want int16
	for range total / FrameSamples {
		if err := d.ReadFrame(pcm); err != nil {
			t.Fatal(err)
		}
		for i, v := range pcm {
			if v != want {
				t.Fatalf("sample %d of frame is %d, want %d", i, v, want)
			}
			want++
		}
	}
	if got := d.Stats().CaptureQueued; got != 0 {
		t.Fatalf("%v still queued after reading every whole frame", got)
	}

	for i := range 3 {
		f := make([]int16, FrameSamples)
		for j := range f {
			f[j] = int16(i*FrameSamples + j + 1)
		}
		if err := d.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	var played []int16
	for _, n := range []int{480, 333, 1000, 1067, 500} {
		out := make([]byte, 2*n)
		for i := range out {
			out[i] = 0xAA // what the audio system left in its buffer
		}
		d.onData(out, nil, uint32(n))
		for i := range n {
			played = append(played, int16(binary.NativeEndian.Uint16(out[2*i:])))
		}
	}
	for i, v := range played {
		want := int16(0)
		if i < 3*FrameSamples {
			want = int16(i + 1)
		}
		if v != want {
			t.Fatalf("speaker sample %d is %d, want %d", i, v, want)
		}
	}
	s := d.Stats()
	if s.Played != 60*time.Millisecond || s.PlaybackQueued != 0 {
		t.Fatalf("played %v with %v queued, want 60ms and nothing", s.Played, s.PlaybackQueued)
	}
	if want := samplesDuration(uint64(len(played) - 3*FrameSamples)); s.Silence != want {
		t.Fatalf("silence %v, want %v", s.Silence, want)
	}
}

// BenchmarkCallback runs the audio thread's work for one 10 ms duplex period.
func BenchmarkCallback(b *testing.B) {
	d := newDevice(Both, nil)
	in := make([]byte, 2*periodFrames)
	out := make([]byte, 2*periodFrames)
	pcm := make([]int16, FrameSamples)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d.onData(out, in, periodFrames)
		if i++; i%2 == 0 {
			if err := d.ReadFrame(pcm); err != nil {
				b.Fatal(err)
			}
			if err := d.WriteFrame(pcm); err != nil {
				b.Fatal(err)
			}
		}
	}
}
