package call

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"sync"
	"testing"
	"time"
)

// recordingTransport keeps what Media sends and delivers nothing.
type recordingTransport struct {
	mu   sync.Mutex
	sent []sentPacket
	done chan struct{}
}

type sentPacket struct {
	ts      uint32
	marker  bool
	payload []byte
}

func (r *recordingTransport) WriteRTP(ts uint32, marker bool, payload []byte) error {
	r.mu.Lock()
	r.sent = append(r.sent, sentPacket{ts, marker, append([]byte(nil), payload...)})
	r.mu.Unlock()
	return nil
}

func (r *recordingTransport) ReadRTP([]byte) (uint32, bool, []byte, error) {
	<-r.done
	return 0, false, nil, io.EOF
}

func (r *recordingTransport) Done() <-chan struct{} { return r.done }

// voiceSource says a voiced sound with the given stretches of silence (in
// 20 ms frames, from-to), for frames frames, then ends.
type voiceSource struct {
	frames, at int
	silent     [][2]int
	phase      float64
}

func (v *voiceSource) ReadFrame(pcm []int16) error {
	if v.at == v.frames {
		return io.EOF
	}
	quiet := false
	for _, s := range v.silent {
		quiet = quiet || v.at >= s[0] && v.at < s[1]
	}
	for i := range pcm {
		v.phase += 2 * math.Pi * 140 / 48000
		if quiet {
			pcm[i] = 0
			continue
		}
		var x float64
		for h := 1; h <= 20; h++ {
			x += math.Sin(float64(h)*v.phase) / float64(h)
		}
		pcm[i] = int16(4000 * x * (0.6 + 0.4*math.Sin(float64(v.at)/8)))
	}
	v.at++
	return nil
}

// TestRedundantStream checks what a sender on the poor profile puts on the
// wire through its silences: every packet carries a copy of the packet just
// before it, except the first after a silence that was not sent, which says
// so; the receiver relies on both to tell loss from silence and to keep the
// delay copies call for.
func TestRedundantStream(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	alice, bob := member(t, clk, 0, 1), member(t, clk, 1, 1)
	tr := &recordingTransport{done: make(chan struct{})}
	src := &voiceSource{frames: 150, silent: [][2]int{{45, 100}}}
	m, err := StartMedia(MediaConfig{Keys: alice, Transport: tr, Source: src, Profile: ProfilePoor})
	if err != nil {
		t.Fatal(err)
	}
	<-m.Done()
	close(tr.done)
	m.Close()

	tr.mu.Lock()
	defer tr.mu.Unlock()
	var (
		prevTS   uint32
		prevOpus []byte
		resumed  int
	)
	for i, p := range tr.sent {
		plain, _, err := bob.AppendUnprotect(nil, binary.BigEndian.AppendUint32(nil, p.ts), p.payload)
		if err != nil {
			t.Fatalf("packet %d does not open: %v", i, err)
		}
		mp, err := ParsePayload(plain)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		follows := i > 0 && p.ts == prevTS+uint32(ProfilePoor.samples())
		switch {
		case i == 0:
		case mp.Resumes:
			resumed++
			if follows {
				t.Errorf("packet %d (ts %d) says it follows a silence, but the packet before ends there", i, p.ts)
			}
			if !p.marker {
				t.Errorf("packet %d follows a silence without the RTP marker", i)
			}
		case !follows:
			t.Errorf("packet %d (ts %d) follows a gap but does not say so", i, p.ts)
		case mp.Previous == nil:
			t.Errorf("packet %d (ts %d) carries no copy of the packet before", i, p.ts)
		case p.ts-uint32(mp.PreviousSamples) != prevTS || !bytes.Equal(mp.Previous, prevOpus):
			t.Errorf("packet %d (ts %d) carries a copy that is not the packet before", i, p.ts)
		}
		prevTS, prevOpus = p.ts, mp.Packet
	}
	// 150 frames are 50 packets of 60 ms; of the silence's 18, only its first
	// (carrying the last spoken one's copy) and a refresh every 400 ms go out.
	if resumed == 0 || len(tr.sent) > 50-10 {
		t.Errorf("%d packets sent for 50 with a 1.1 s silence, %d of them after a silence", len(tr.sent), resumed)
	}
}
