package opus

import (
	"errors"
	"math"
	"slices"
	"testing"
)

// voice returns n samples of a speech-like test signal: a glottal pulse train
// with a gliding pitch, shaped by two formants, in syllables of 200 ms
// separated by pauses of 200 ms.
func voice(n int) []int16 { return speechLike(n, true) }

// speechLike is voice, with pauses or with syllables running into each other.
func speechLike(n int, pauses bool) []int16 {
	out := make([]int16, n)
	phase := 0.0
	for i := range out {
		t := float64(i) / SampleRate
		f0 := 140 + 40*math.Sin(2*math.Pi*0.7*t) + 5*math.Sin(2*math.Pi*5*t)
		phase += f0 / SampleRate
		f1 := 600 + 250*math.Sin(2*math.Pi*1.3*t)
		f2 := 1700 + 500*math.Sin(2*math.Pi*0.9*t)
		var s float64
		for h := 1; float64(h)*f0 < 7000; h++ {
			f := float64(h) * f0
			a := 1/(1+math.Pow((f-f1)/150, 2)) + 0.6/(1+math.Pow((f-f2)/200, 2)) + 0.02
			s += a * math.Sin(2*math.Pi*float64(h)*phase)
		}
		env := math.Max(0, math.Sin(2*math.Pi*2.5*t))
		if !pauses {
			env = 0.6 + 0.4*math.Sin(2*math.Pi*2.5*t)
		}
		out[i] = int16(2500 * s * env)
	}
	return out
}

// codec encodes pcm in frames of frame samples and returns the packets.
func encodeAll(t testing.TB, e *Encoder, pcm []int16, frame int) [][]byte {
	t.Helper()
	var pkts [][]byte
	buf := make([]byte, MaxPacketSize)
	for i := 0; i+frame <= len(pcm); i += frame {
		n, err := e.Encode(pcm[i:i+frame], buf)
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		pkts = append(pkts, append([]byte(nil), buf[:n]...))
	}
	return pkts
}

func decodeAll(t testing.TB, pkts [][]byte) []int16 {
	t.Helper()
	d := newDecoder(t)
	var out []int16
	buf := make([]int16, MaxFrameSamples)
	for _, p := range pkts {
		n, err := d.Decode(p, buf)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		out = append(out, buf[:n]...)
	}
	return out
}

func newEncoder(t testing.TB) *Encoder {
	t.Helper()
	e, err := NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func newDecoder(t testing.TB) *Decoder {
	t.Helper()
	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// bestCorrelation returns the highest normalised correlation between ref and
// got delayed by 0..maxLag samples, and that lag.
func bestCorrelation(ref, got []int16, maxLag int) (float64, int) {
	best, bestLag := -1.0, 0
	for lag := 0; lag <= maxLag; lag++ {
		var xy, xx, yy float64
		for i := 0; i+lag < len(got) && i < len(ref); i++ {
			x, y := float64(ref[i]), float64(got[i+lag])
			xy += x * y
			xx += x * x
			yy += y * y
		}
		if xx == 0 || yy == 0 {
			continue
		}
		if c := xy / math.Sqrt(xx*yy); c > best {
			best, bestLag = c, lag
		}
	}
	return best, bestLag
}

// snr returns the signal to noise ratio in dB of got against ref.
func snr(ref, got []int16) float64 {
	var sig, noise float64
	for i := range min(len(ref), len(got)) {
		d := float64(ref[i]) - float64(got[i])
		sig += float64(ref[i]) * float64(ref[i])
		noise += d * d
	}
	if noise == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(sig/noise)
}

func TestRoundTripVoice(t *testing.T) {
	in := voice(3 * SampleRate)
	for _, frame := range []int{480, 960, 1920, 2880} {
		e := newEncoder(t)
		out := decodeAll(t, encodeAll(t, e, in, frame))
		if len(out) != len(in)/frame*frame {
			t.Fatalf("%d-sample frames: decoded %d samples from %d", frame, len(out), len(in))
		}
		look, err := e.Lookahead()
		if err != nil {
			t.Fatal(err)
		}
		corr, lag := bestCorrelation(in, out, 1000)
		t.Logf("%d-sample frames: correlation %.3f at lag %d (lookahead %d), SNR %.1f dB",
			frame, corr, lag, look, snr(in, out[lag:]))
		if corr < 0.8 {
			t.Errorf("%d-sample frames: correlation %.3f with the input, want >= 0.8", frame, corr)
		}
		if lag < look-16 || lag > look+16 { // the peak may sit a few samples off

			t.Errorf("%d-sample frames: output lags by %d samples, want the lookahead %d", frame, lag, look)
		}
	}
}

// TestBitrate measures the bitrate obtained for continuous speech-like sound
// (VBR spends less in pauses).
func TestBitrate(t *testing.T) {
	in := speechLike(10*SampleRate, false)
	for _, bps := range []int{6000, 8000, 12000, 16000, 24000} {
		for _, frame := range []int{960, 1920, 2880} {
			e := newEncoder(t)
			if err := e.SetBitrate(bps); err != nil {
				t.Fatal(err)
			}
			pkts := encodeAll(t, e, in, frame)
			bytes := 0
			for _, p := range pkts {
				bytes += len(p)
			}
			secs := float64(len(pkts)*frame) / SampleRate
			got := float64(bytes*8) / secs
			t.Logf("target %5d bit/s, %2d ms frames: %6.0f bit/s", bps, frame/48, got)
			if got > 1.1*float64(bps) || got < 0.6*float64(bps) {
				t.Errorf("target %d bit/s, %d ms frames: got %.0f bit/s", bps, frame/48, got)
			}
		}
	}
}

// TestFECBeatsConcealment drops one packet and compares what the decoder makes
// of the gap with FEC from the next packet and with concealment alone, against
// the clean decode of the dropped packet.
func TestFECBeatsConcealment(t *testing.T) {
	in := voice(2 * SampleRate)
	e := newEncoder(t)
	if err := e.SetFEC(true, 10); err != nil {
		t.Fatal(err)
	}
	pkts := encodeAll(t, e, in, 960)
	clean := decodeAll(t, pkts)
	buf := make([]int16, 960)
	better := 0
	var tried int
	for lost := 10; lost+1 < len(pkts); lost += 7 {
		ref := clean[lost*960 : (lost+1)*960]
		if energy(ref) < 1e5 {
			continue // a pause: nothing to recover
		}
		tried++
		var results [2]float64
		for k, fec := range []bool{false, true} {
			d := newDecoder(t)
			for _, p := range pkts[:lost] {
				if _, err := d.Decode(p, buf); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			if fec {
				_, err = d.DecodeFEC(pkts[lost+1], buf)
			} else {
				_, err = d.Conceal(buf)
			}
			if err != nil {
				t.Fatal(err)
			}
			results[k] = snr(ref, buf)
		}
		if results[1] > results[0]+3 {
			better++
		}
		t.Logf("packet %d lost: concealment %.1f dB, FEC %.1f dB", lost, results[0], results[1])
	}
	if tried == 0 || better < tried*3/4 {
		t.Errorf("FEC beat concealment by 3 dB for %d of %d lost packets, want at least 3/4", better, tried)
	}
}

// TestHasFEC checks that packets are flagged as carrying FEC only when the
// encoder was asked for it, and exactly when the decoder finds FEC data in
// them: DecodeFEC differs from concealment.
func TestHasFEC(t *testing.T) {
	in := speechLike(2*SampleRate, false)
	for _, frame := range []int{960, 1920, 2880} {
		for _, on := range []bool{false, true} {
			e := newEncoder(t)
			if err := e.SetFEC(on, 10); err != nil {
				t.Fatal(err)
			}
			pkts := encodeAll(t, e, in, frame)
			flagged, agree := 0, 0
			for k := 1; k < len(pkts); k++ { // the first has no predecessor
				has := HasFEC(pkts[k])
				if has {
					flagged++
				}
				if !on {
					continue
				}
				a, b := newDecoder(t), newDecoder(t)
				buf := make([]int16, frame)
				for _, p := range pkts[:k] {
					if _, err := a.Decode(p, buf); err != nil {
						t.Fatal(err)
					}
					if _, err := b.Decode(p, buf); err != nil {
						t.Fatal(err)
					}
				}
				fec, plc := make([]int16, frame), make([]int16, frame)
				if _, err := a.DecodeFEC(pkts[k], fec); err != nil {
					t.Fatal(err)
				}
				if _, err := b.Conceal(plc); err != nil {
					t.Fatal(err)
				}
				if slices.Equal(fec, plc) != has {
					agree++
				}
			}
			n := len(pkts) - 1
			t.Logf("%d-sample frames, FEC %v: %d of %d packets flagged, %d agree with the decoder", frame, on, flagged, n, agree)
			switch {
			case !on && flagged != 0:
				t.Errorf("%d-sample frames without FEC: %d packets flagged", frame, flagged)
			case on && (flagged < n/2 || agree < n*95/100):
				t.Errorf("%d-sample frames with FEC: %d of %d flagged, %d agree with the decoder", frame, flagged, n, agree)
			}
		}
	}
}

func energy(pcm []int16) float64 {
	var e float64
	for _, s := range pcm {
		e += float64(s) * float64(s)
	}
	return e / float64(len(pcm))
}

func TestDTX(t *testing.T) {
	e := newEncoder(t)
	if err := e.SetDTX(true); err != nil {
		t.Fatal(err)
	}
	speech := voice(SampleRate)
	silence := make([]int16, 3*SampleRate)
	pkts := encodeAll(t, e, append(speech, silence...), 960)
	talk, quiet := pkts[:50], pkts[50+20:] // give the encoder 400 ms to detect the silence
	for i, p := range talk[5:45] {
		if IsDTX(p) {
			t.Fatalf("speech packet %d is a DTX packet (%d bytes)", i, len(p))
		}
	}
	dtx, bytes := 0, 0
	for _, p := range quiet {
		if IsDTX(p) {
			dtx++
		} else {
			bytes += len(p)
		}
	}
	t.Logf("silence: %d of %d packets are DTX; the rest carry %d bytes", dtx, len(quiet), bytes)
	if dtx < len(quiet)*85/100 {
		t.Errorf("silence: %d of %d packets are DTX, want at least 85%%", dtx, len(quiet))
	}
	// The DTX packets still decode (to comfort noise or silence).
	d := newDecoder(t)
	buf := make([]int16, 960)
	for _, p := range quiet {
		if _, err := d.Decode(p, buf); err != nil {
			t.Fatalf("decoding a silence packet: %v", err)
		}
	}
}

func TestEncoderErrors(t *testing.T) {
	e := newEncoder(t)
	buf := make([]byte, MaxPacketSize)
	for _, n := range []int{0, 120, 959, 961, 5760} {
		if _, err := e.Encode(make([]int16, n), buf); !errors.Is(err, ErrFrameSize) {
			t.Errorf("Encode of %d samples: %v, want ErrFrameSize", n, err)
		}
	}
	if _, err := e.Encode(make([]int16, 960), nil); !errors.Is(err, ErrBufferTooSmall) {
		t.Errorf("Encode into no buffer: %v, want ErrBufferTooSmall", err)
	}
	for _, bps := range []int{0, 5999, 64001} {
		if err := e.SetBitrate(bps); !errors.Is(err, ErrInvalidSetting) {
			t.Errorf("SetBitrate(%d): %v, want ErrInvalidSetting", bps, err)
		}
	}
	for _, loss := range []int{-1, 101} {
		if err := e.SetFEC(true, loss); !errors.Is(err, ErrInvalidSetting) {
			t.Errorf("SetFEC(true, %d): %v, want ErrInvalidSetting", loss, err)
		}
	}
	if err := e.SetMaxBandwidth(Bandwidth(0)); !errors.Is(err, ErrInvalidSetting) {
		t.Errorf("SetMaxBandwidth(0): %v, want ErrInvalidSetting", err)
	}
	if err := e.SetMaxBandwidth(Wideband); err != nil {
		t.Errorf("SetMaxBandwidth(Wideband): %v", err)
	}
	e.Close()
	e.Close()
	if _, err := e.Encode(make([]int16, 960), buf); !errors.Is(err, ErrClosed) {
		t.Errorf("Encode after Close: %v, want ErrClosed", err)
	}
	if err := e.SetDTX(true); !errors.Is(err, ErrClosed) {
		t.Errorf("SetDTX after Close: %v, want ErrClosed", err)
	}
}

func TestDecoderErrors(t *testing.T) {
	e := newEncoder(t)
	pkt := encodeAll(t, e, voice(1920), 1920)[0]
	d := newDecoder(t)
	if _, err := d.Decode(pkt, make([]int16, 960)); !errors.Is(err, ErrBufferTooSmall) {
		t.Errorf("Decode of 40 ms into 20 ms: %v, want ErrBufferTooSmall", err)
	}
	if _, err := d.Decode(nil, make([]int16, 960)); !errors.Is(err, ErrInvalidPacket) {
		t.Errorf("Decode of nothing: %v, want ErrInvalidPacket", err)
	}
	if _, err := d.Decode([]byte{9<<3 | 1, 0, 0, 0}, make([]int16, 960)); !errors.Is(err, ErrInvalidPacket) {
		t.Errorf("Decode of a malformed packet: %v, want ErrInvalidPacket", err)
	}
	for _, n := range []int{0, 100, 5880} {
		if _, err := d.Conceal(make([]int16, n)); !errors.Is(err, ErrFrameSize) {
			t.Errorf("Conceal of %d samples: %v, want ErrFrameSize", n, err)
		}
		if _, err := d.DecodeFEC(pkt, make([]int16, n)); !errors.Is(err, ErrFrameSize) {
			t.Errorf("DecodeFEC of %d samples: %v, want ErrFrameSize", n, err)
		}
	}
	if n, err := d.Conceal(make([]int16, 120)); err != nil || n != 120 {
		t.Errorf("Conceal of 2.5 ms: %d, %v", n, err)
	}
	d.Close()
	if _, err := d.Decode(pkt, make([]int16, 1920)); !errors.Is(err, ErrClosed) {
		t.Errorf("Decode after Close: %v, want ErrClosed", err)
	}
}

// TestConstantBitrateHidesSounds checks that with VBR off every speech packet
// of a frame size has one length, whatever is said, so that the lengths of
// encrypted packets do not follow the sounds; with VBR on they do vary. DTX
// still works in constant-bitrate mode.
func TestConstantBitrateHidesSounds(t *testing.T) {
	for _, frame := range []int{960, 1920, 2880} {
		for _, bitrate := range []int{8000, 12000, 24000} {
			sizes := func(vbr bool) map[int]int {
				e := newEncoder(t)
				if err := e.SetBitrate(bitrate); err != nil {
					t.Fatal(err)
				}
				if err := e.SetVBR(vbr); err != nil {
					t.Fatal(err)
				}
				if err := e.SetFEC(true, 10); err != nil {
					t.Fatal(err)
				}
				if err := e.SetDTX(true); err != nil {
					t.Fatal(err)
				}
				got := map[int]int{}
				for _, p := range encodeAll(t, e, append(voice(2*SampleRate), make([]int16, 2*SampleRate)...), frame) {
					if !IsDTX(p) {
						got[len(p)]++
					}
				}
				return got
			}
			cbr, vbr := sizes(false), sizes(true)
			if len(cbr) != 1 {
				t.Errorf("%d samples at %d bit/s, constant bitrate: packet lengths %v, want one", frame, bitrate, cbr)
			}
			if len(vbr) < 3 {
				t.Errorf("%d samples at %d bit/s, variable bitrate: packet lengths %v; the check above proves nothing", frame, bitrate, vbr)
			}
		}
	}
	e := newEncoder(t)
	e.SetVBR(false)
	e.SetDTX(true)
	dtx := 0
	for _, p := range encodeAll(t, e, make([]int16, 2*SampleRate), 960) {
		if IsDTX(p) {
			dtx++
		}
	}
	if dtx < 50 {
		t.Errorf("constant bitrate: %d DTX packets in 2 s of silence", dtx)
	}
}
