package systemtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mahfooz/internal/speech"
	"mahfooz/media/wav"
)

// The sentences the call test says, as espeak-ng renders them.
const (
	callSentenceA = "The convoy leaves the northern gate at seven tomorrow morning."
	callSentenceB = "Understood. I will inform the minister before the meeting."
)

// callRate is the sample rate of every WAV the test writes and reads.
const callRate = 48000

// callEvent is the documented shape of a `call --json` or `answer --json` line
// (docs/cli.md).
type callEvent struct {
	Event        string    `json:"event"`
	Call         string    `json:"call"`
	At           time.Time `json:"at"`
	Code         string    `json:"code"`
	Epoch        *uint64   `json:"epoch"`
	Reason       string    `json:"reason"`
	From         string    `json:"from"`
	Conversation string    `json:"conversation"`
	Sent         int       `json:"sent"`
	Received     int       `json:"received"`
	Lost         int       `json:"lost"`
}

func (e callEvent) String() string {
	s := e.At.Format("15:04:05.000") + " " + e.Event
	switch e.Event {
	case "ended":
		s += fmt.Sprintf(" (%s; sent %d, received %d, lost %d)", e.Reason, e.Sent, e.Received, e.Lost)
	case "quality":
		s += fmt.Sprintf(" (received %d, lost %d)", e.Received, e.Lost)
	}
	return s
}

// lockedBuffer is a bytes.Buffer that a process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// callProcess is a running `mahfooz call` or `mahfooz answer`, its JSON lines
// gathered as they come.
type callProcess struct {
	t      *testing.T
	who    string
	cmd    *exec.Cmd
	stderr lockedBuffer

	mu     sync.Mutex
	events []callEvent
	bad    []string // stdout lines that break the documented shape, and how

	exited chan struct{}
	err    error // set before exited is closed
}

// start runs the binary for device d with args, as a script would, and keeps
// reading its stdout until it exits. The process is killed, if still running,
// when d's test ends.
func (d cliDevice) start(who string, args ...string) *callProcess {
	d.t.Helper()
	p := &callProcess{t: d.t, who: who, exited: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	// No sound card here: a side without a file uses the silent device.
	p.cmd.Env = append(os.Environ(), "MAHFOOZ_PASSPHRASE=device passphrase", "MAHFOOZ_HOME="+d.home, "MAHFOOZ_AUDIO_BACKEND=null")
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		d.t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e callEvent
			err := json.Unmarshal(sc.Bytes(), &e)
			p.mu.Lock()
			switch {
			case err != nil || e.Event == "":
				p.bad = append(p.bad, "not a JSON object with an event: "+sc.Text())
			case e.Call == "" || e.At.IsZero():
				p.bad = append(p.bad, "lacks call or at: "+sc.Text())
				p.events = append(p.events, e)
			default:
				p.events = append(p.events, e)
			}
			p.mu.Unlock()
		}
		// Wait only once stdout is drained, as exec requires.
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	d.t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if d.t.Failed() {
			p.mu.Lock()
			d.t.Logf("%s: events %v\nstderr:\n%s", who, p.events, p.stderr.String())
			p.mu.Unlock()
		}
	})
	return p
}

// kinds returns the events printed so far, in order.
func (p *callProcess) kinds() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.events {
		out = append(out, e.Event)
	}
	return out
}

// first returns the first event of kind k printed so far.
func (p *callProcess) first(k string) (callEvent, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.events {
		if e.Event == k {
			return e, true
		}
	}
	return callEvent{}, false
}

// codes returns the four-word codes printed, by epoch; a code line without an
// epoch or with a code that is not four words fails the test.
func (p *callProcess) codes() map[uint64]string {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[uint64]string{}
	for _, e := range p.events {
		if e.Event != "code" {
			continue
		}
		if e.Epoch == nil || len(strings.Fields(e.Code)) != 4 {
			p.t.Errorf("%s: code line %+v lacks an epoch or four words", p.who, e)
			continue
		}
		out[*e.Epoch] = e.Code
	}
	return out
}

// waitExit waits for the process to exit and fails the test unless it exited 0.
func (p *callProcess) waitExit(timeout time.Duration) {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v; events %v\nstderr:\n%s", p.who, timeout, p.kinds(), p.stderr.String())
	}
	if p.err != nil {
		p.t.Fatalf("%s exited with %v; events %v\nstderr:\n%s", p.who, p.err, p.kinds(), p.stderr.String())
	}
}

// check asserts that every stdout line was a documented JSON event, that the
// events include want, that all name one call, and that the last is ended.
func (p *callProcess) check(want ...string) (ended callEvent) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.bad {
		p.t.Errorf("%s printed a line that %s", p.who, l)
	}
	seen := map[string]bool{}
	for _, e := range p.events {
		seen[e.Event] = true
		if e.Call != p.events[0].Call {
			p.t.Errorf("%s: events name calls %q and %q", p.who, p.events[0].Call, e.Call)
		}
	}
	for _, k := range want {
		if !seen[k] {
			p.t.Errorf("%s printed no %q event", p.who, k)
		}
	}
	if len(p.events) == 0 || p.events[len(p.events)-1].Event != "ended" {
		p.t.Errorf("%s: the last event is not ended", p.who)
		return callEvent{}
	}
	return p.events[len(p.events)-1]
}

// startCallExchange makes an authority and runs `mahfooz exchange serve` with
// call media on a UDP port of 127.0.0.1. The returned system issues tickets;
// the exchange stops when the test ends.
func startCallExchange(t *testing.T) *system {
	t.Helper()
	s := newSystem(t, "--media", "127.0.0.1:0")
	// The media line comes before "listening on", so it is in the log by now.
	if log, _ := os.ReadFile(s.logPath); !bytes.Contains(log, []byte("exchange: call media on udp 127.0.0.1:")) {
		t.Fatalf("exchange serve --media printed no media address before listening:\n%s", log)
	}
	return s
}

// silence returns d of silence at callRate.
func silence(d time.Duration) []int16 { return make([]int16, int(d.Seconds()*callRate)) }

func concat(parts ...[]int16) []int16 {
	var out []int16
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func writeWAV(t *testing.T, path string, pcm []int16) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := wav.Write(f, pcm); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// heard checks that the WAV a member wrote with --out is an intelligible
// rendition of what the other said.
func heard(t *testing.T, who, path string, said []int16) {
	t.Helper()
	got, err := wav.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: reading --out: %v", who, err)
	}
	r, err := speech.Compare(said, got)
	if err != nil {
		t.Fatalf("%s: comparing speech: %v", who, err)
	}
	t.Logf("%s heard %.1f s: %v", who, float64(len(got))/callRate, r)
	if !r.Intelligible() {
		t.Errorf("%s did not hear what was said: %v", who, r)
	}
}

// TestCallCLI drives calls through the command line as a script would: an
// exchange serving call media, `answer` and `call` with WAV files in and out
// and JSON events, and `hangup` ending a running call from another process.
func TestCallCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := speech.Say(ctx, callSentenceA)
	if err != nil {
		t.Fatalf("rendering speech (the test command installs espeak-ng): %v", err)
	}
	b, err := speech.Say(ctx, callSentenceB)
	if err != nil {
		t.Fatalf("rendering speech: %v", err)
	}

	s := startCallExchange(t)
	dir := t.TempDir()
	alice := cliDevice{t, filepath.Join(dir, "alice")}
	bob := cliDevice{t, filepath.Join(dir, "bob")}
	alice.must("device", "enroll", "--exchange", s.addr, s.ticket("alice"))
	bob.must("device", "enroll", "--exchange", s.addr, s.ticket("bob"))

	// Alice says her sentence, then listens while bob says his, and her file
	// ends (she hangs up) well before his does.
	aWAV, bWAV := filepath.Join(dir, "a.wav"), filepath.Join(dir, "b.wav")
	aliceSays := concat(silence(200*time.Millisecond), a, silence(time.Second), make([]int16, len(b)), silence(3*time.Second))
	aliceLen := time.Duration(len(aliceSays)) * time.Second / callRate
	writeWAV(t, aWAV, aliceSays)
	writeWAV(t, bWAV, concat(silence(700*time.Millisecond), make([]int16, len(a)), silence(time.Second), b, silence(10*time.Second)))
	aliceHeard, bobHeard := filepath.Join(dir, "alice-heard.wav"), filepath.Join(dir, "bob-heard.wav")

	t.Run("speech both ways", func(t *testing.T) {
		alice, bob := cliDevice{t, alice.home}, cliDevice{t, bob.home}
		bp := bob.start("bob", "answer", "--json", "--in", bWAV, "--out", bobHeard)
		ap := alice.start("alice", "call", "bob", "--json", "--in", aWAV, "--out", aliceHeard)
		ap.waitExit(45 * time.Second)
		bp.waitExit(20 * time.Second)

		aEnd := ap.check("ringing", "code", "connected", "ended")
		bEnd := bp.check("incoming", "code", "connected", "ended")
		if aEnd.Reason != "finished speaking" {
			t.Errorf("alice's call ended with %q, want her file to end it", aEnd.Reason)
		}
		if bEnd.Reason != "the other side hung up" {
			t.Errorf("bob's call ended with %q, want alice's hangup to end it", bEnd.Reason)
		}
		// Alice's file plays in real time once bob answers, after her ring;
		// her call ends only then, and bob's after hers.
		ring, _ := ap.first("ringing")
		if took := aEnd.At.Sub(ring.At); took < aliceLen-time.Second {
			t.Errorf("alice's call ended %v after ringing, before her %v file could have played", took, aliceLen)
		}
		if bEnd.At.Before(aEnd.At) {
			t.Errorf("bob's call ended at %v, before alice hung up at %v", bEnd.At, aEnd.At)
		}
		in, _ := bp.first("incoming")
		if in.From != "alice" {
			t.Errorf("bob's incoming line names %q as the caller, want alice", in.From)
		}
		if in.Call != ring.Call {
			t.Errorf("bob answered call %q, alice rang %q", in.Call, ring.Call)
		}
		ca, cb := ap.codes(), bp.codes()
		if len(ca) == 0 || len(cb) == 0 {
			t.Fatalf("a side showed no code: alice %v, bob %v", ca, cb)
		}
		same := 0
		for epoch, code := range cb {
			if c, ok := ca[epoch]; ok {
				same++
				if c != code {
					t.Errorf("epoch %d: alice reads %q, bob %q", epoch, c, code)
				}
			}
		}
		if same == 0 {
			t.Errorf("alice and bob showed codes for no common epoch: %v, %v", ca, cb)
		}

		heard(t, "bob", bobHeard, a)
		heard(t, "alice", aliceHeard, b)
	})

	t.Run("hangup from another process", func(t *testing.T) {
		alice, bob := cliDevice{t, alice.home}, cliDevice{t, bob.home}
		long := filepath.Join(dir, "long.wav")
		writeWAV(t, long, concat(a, silence(60*time.Second)))
		bp := bob.start("bob", "answer", "--json")
		ap := alice.start("alice", "call", "bob", "--json", "--in", long)
		waitFor(t, "both sides connected", 30*time.Second, func() bool {
			_, ac := ap.first("connected")
			_, bc := bp.first("connected")
			return ac && bc
		})
		out := bob.must("hangup", "--home", bob.home)
		if strings.TrimSpace(out) == "" {
			t.Error("hangup printed nothing")
		}
		bp.waitExit(15 * time.Second)
		ap.waitExit(15 * time.Second)
		if r := bp.check("incoming", "code", "connected", "ended").Reason; r != "hung up" {
			t.Errorf("bob's call ended with %q, want his hangup", r)
		}
		if r := ap.check("ringing", "code", "connected", "ended").Reason; r != "the other side hung up" {
			t.Errorf("alice's call ended with %q, want bob's hangup", r)
		}
		if _, err := bob.run("hangup", "--home", bob.home); err == nil {
			t.Error("hangup with no call in progress succeeded")
		}
	})
}
