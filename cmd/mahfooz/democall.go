package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"mahfooz/device"
	"mahfooz/device/call"
)

// call is the demo's call: Amina calls Bilal, who answers; she says two
// seconds of a voice-like signal and hangs up when it ends.
func (r *demoRun) call(ctx context.Context) error {
	r.section("A call: Opus audio, SFrame-encrypted with keys from their MLS group, through a relay that cannot open it")
	for _, o := range []*demoOfficial{r.amina, r.bilal} {
		o.run()
	}
	defer func() {
		for _, o := range []*demoOfficial{r.amina, r.bilal} {
			o.stop()
		}
	}()
	events, unsubscribe := r.bilal.dv.Subscribe()
	defer unsubscribe()
	heard := &energySink{}
	ac, err := r.amina.dv.StartCall(ctx, r.direct, device.CallOptions{Source: &toneSource{left: 100}})
	if err != nil {
		return fmt.Errorf("Amina calling: %w", err)
	}
	r.printf("Amina calls Bilal; every device of his rings")
	var ring *device.CallSignal
	for ring == nil {
		select {
		case e := <-events:
			if e.Kind == device.EventCall && e.Call.Kind == device.SignalRing {
				ring = e.Call
			}
		case <-ctx.Done():
			return errors.New("Bilal's device did not ring")
		}
	}
	bc, err := r.bilal.dv.AnswerCall(ctx, ring, device.CallOptions{Sink: heard})
	if err != nil {
		return fmt.Errorf("Bilal answering: %w", err)
	}
	r.printf("Bilal answers")
	codes := map[string]string{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for who, c := range map[string]*device.Call{"Amina": ac, "Bilal": bc} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range c.Events() {
				if e.Kind == device.CallCode {
					mu.Lock()
					codes[who] = e.Code
					mu.Unlock()
				}
			}
		}()
	}
	select {
	case <-ac.Done():
	case <-ctx.Done():
		return errors.New("the call did not end")
	}
	select {
	case <-bc.Done():
	case <-ctx.Done():
		return errors.New("Bilal's side of the call did not end")
	}
	wg.Wait()
	r.printf("both screens show the code %q / %q: they read it out and it matches", codes["Amina"], codes["Bilal"])
	if codes["Amina"] == "" || codes["Amina"] != codes["Bilal"] {
		return errors.New("the call's codes differ")
	}
	st := bc.Stats()
	r.printf("Bilal heard %.1f s of Amina's audio (%d packets, %d lost); the call ended: %s",
		heard.seconds(), st.Received, st.Lost, bc.Reason())
	r.printf("the relay forwarded %d packets (%d bytes), each SFrame ciphertext it holds no key for",
		r.relayed.Load(), r.relayedBytes.Load())
	if heard.seconds() < 1 {
		return errors.New("Bilal heard almost nothing")
	}
	return nil
}

// toneSource says a voice-like signal (a vowel-like harmonic series whose
// pitch glides) for left frames.
type toneSource struct {
	left, n int
}

func (s *toneSource) ReadFrame(pcm []int16) error {
	if s.left == 0 {
		return io.EOF
	}
	s.left--
	for i := range pcm {
		t := float64(s.n) / 48000
		f0 := 140 + 30*math.Sin(2*math.Pi*0.7*t)
		v := 0.0
		for h := 1; h <= 8; h++ {
			v += math.Sin(2*math.Pi*f0*float64(h)*t) / float64(h)
		}
		pcm[i] = int16(4000 * v * (0.6 + 0.4*math.Sin(2*math.Pi*3*t)))
		s.n++
	}
	return nil
}

// energySink counts the 20 ms frames in which something was heard.
type energySink struct {
	mu     sync.Mutex
	frames int
}

func (s *energySink) WriteFrame(pcm []int16) error {
	var e float64
	for _, v := range pcm {
		e += float64(v) * float64(v)
	}
	if math.Sqrt(e/float64(len(pcm))) > 300 {
		s.mu.Lock()
		s.frames++
		s.mu.Unlock()
	}
	return nil
}

func (s *energySink) seconds() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return float64(s.frames) * float64(call.FrameSamples) / 48000
}
