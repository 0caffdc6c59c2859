package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"mahfooz/device"
	"mahfooz/device/call"
	"mahfooz/media/wav"
)

func init() {
	commands["call"] = command{"call an official or a group (end-to-end encrypted audio)", runCall}
	commands["answer"] = command{"wait for the next incoming call and answer it", runAnswer}
	commands["hangup"] = command{"end the call this device is in", runHangup}
}

func runCall(args []string) error   { return newDeviceCLI().call(args) }
func runAnswer(args []string) error { return newDeviceCLI().answer(args) }
func runHangup(args []string) error { return newDeviceCLI().hangup(args) }

// controlSocket is where a running call listens for `mahfooz hangup`, inside
// the device's directory (so only its owner can reach it).
const controlSocket = "call.sock"

// audioFlags are the flags of the commands that carry audio.
type audioFlags struct {
	in, out, via, profile *string
}

func addAudioFlags(fs *flag.FlagSet) audioFlags {
	return audioFlags{
		in:      fs.String("in", "", "say the contents of this WAV `file` (any rate, mono or stereo) instead of the microphone; hang up when it ends"),
		out:     fs.String("out", "", "write what is heard to this WAV `file` (48 kHz mono, 16-bit) instead of the speaker"),
		via:     fs.String("media-via", "", "send the call's media through this UDP `host:port` (a relay's public address or a link emulator)"),
		profile: fs.String("profile", "", "the encoding to start with: good, fair or poor (default: chosen from the round trip to the exchange; calls adapt by themselves)"),
	}
}

// options opens the files and returns the call's options and a function that
// closes them.
func (af audioFlags) options() (device.CallOptions, func() error, error) {
	opts := device.CallOptions{Via: *af.via}
	if *af.profile != "" {
		p, ok := call.ProfileNamed(*af.profile)
		if !ok {
			return opts, nil, fmt.Errorf("unknown profile %q (want good, fair or poor)", *af.profile)
		}
		opts.Profile = p
	}
	src, sink, closeAll, err := openAudio(*af.in, *af.out)
	if err != nil {
		return opts, nil, err
	}
	opts.Source, opts.Sink = src, sink
	return opts, closeAll, nil
}

// pcmSource says a file's samples, 20 ms at a time, then ends.
type pcmSource struct{ pcm []int16 }

func (s *pcmSource) ReadFrame(frame []int16) error {
	if len(s.pcm) == 0 {
		return io.EOF
	}
	n := copy(frame, s.pcm)
	clear(frame[n:])
	s.pcm = s.pcm[n:]
	return nil
}

type wavSink struct{ w *wav.Writer }

func (s wavSink) WriteFrame(pcm []int16) error { return s.w.Write(pcm) }

func (c *deviceCLI) call(args []string) error {
	fs, cf := c.flagSet("call", "call NAME | --group NAME [--in WAV] [--out WAV] [--home DIR] [--json]",
		"Calls an official (every device of theirs rings) or a group, and stays in the call until\nit ends: the other side hangs up, --in's file ends, 'mahfooz hangup' runs, or Ctrl-C.\nThe four-word code must read the same on every participant's screen.")
	group := fs.String("group", "", "call the group of this `name` (or conversation ID)")
	af := addAudioFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	var ref device.ConversationRef
	switch {
	case *group != "" && len(pos) == 0:
		ref.Group = *group
		if strings.HasPrefix(*group, "group:") {
			ref = device.ConversationRef{ID: *group}
		}
	case *group == "" && len(pos) == 1:
		ref.To = pos[0]
	default:
		fs.Usage()
		return errors.New("call: name one official, or --group NAME")
	}
	return c.inCall(cf, af, func(ctx context.Context, dv *device.Device, opts device.CallOptions) (*device.Call, error) {
		return dv.StartCall(ctx, ref, opts)
	})
}

func (c *deviceCLI) answer(args []string) error {
	fs, cf := c.flagSet("answer", "answer [--in WAV] [--out WAV] [--home DIR] [--json]",
		"Waits for the next call to ring this device and answers it, then stays in the call\nas 'mahfooz call' does.")
	af := addAudioFlags(fs)
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	return c.inCall(cf, af, func(ctx context.Context, dv *device.Device, opts device.CallOptions) (*device.Call, error) {
		ring, err := nextRing(ctx, dv, c.stop)
		if err != nil {
			return nil, err
		}
		c.report(*cf.json, map[string]any{"event": "incoming", "call": ring.CallID, "from": ring.From.Name,
			"conversation": ring.ConversationName, "at": time.Now().UTC().Format(time.RFC3339Nano)}, "%s is calling (%s)", ring.From.Name, ring.ConversationName)
		ctx, cancel := context.WithTimeout(context.Background(), *cf.timeout)
		defer cancel()
		return dv.AnswerCall(ctx, ring, opts)
	})
}

// nextRing waits for a ring that is fresh and not yet over.
func nextRing(ctx context.Context, dv *device.Device, stop <-chan struct{}) (*device.CallSignal, error) {
	events, unsubscribe := dv.Subscribe()
	defer unsubscribe()
	ended := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-stop:
			return nil, errors.New("answer: stopped before a call came")
		case e, ok := <-events:
			if !ok {
				return nil, device.ErrClosed
			}
			if e.Kind != device.EventCall {
				continue
			}
			sig := e.Call
			switch sig.Kind {
			case device.SignalHangup, device.SignalLeave, device.SignalAccept:
				ended[sig.CallID] = true
			case device.SignalRing:
				if !ended[sig.CallID] && time.Since(sig.SentAt) < device.StaleRing {
					return sig, nil
				}
			}
		}
	}
}

// inCall opens the device, keeps it connected, starts the call with start and
// reports its events until it ends.
func (c *deviceCLI) inCall(cf commonFlags, af audioFlags, start func(context.Context, *device.Device, device.CallOptions) (*device.Call, error)) error {
	opts, closeFiles, err := af.options()
	if err != nil {
		return err
	}
	dv, err := c.open(*cf.home)
	if err != nil {
		closeFiles()
		return err
	}
	defer dv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- dv.Run(ctx) }()

	stop, stopSignals := c.stopChannel(ctx)
	defer stopSignals()
	hangups, closeControl, err := listenControl(*cf.home)
	if err != nil {
		closeFiles()
		return err
	}
	defer closeControl()

	startCtx, cancelStart := context.WithCancel(ctx)
	go func() {
		select {
		case <-stop:
			cancelStart()
		case <-startCtx.Done():
		}
	}()
	cl, err := start(startCtx, dv, opts)
	cancelStart()
	if err != nil {
		closeFiles()
		if errors.Is(err, device.ErrOffline) {
			return &hintError{err, "is the exchange running and reachable?"}
		}
		return err
	}
	events := cl.Events()
	for events != nil {
		select {
		case e, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			c.callEvent(*cf.json, e)
		case <-stop:
			cl.Hangup()
			stop = nil
		case <-hangups:
			cl.Hangup()
			hangups = nil
		}
	}
	<-cl.Done()
	if err := closeFiles(); err != nil {
		return fmt.Errorf("writing --out: %w", err)
	}
	return nil
}

// callEvent prints one call event: a JSON line under --json, else a line of text.
func (c *deviceCLI) callEvent(asJSON bool, e device.CallEvent) {
	j := map[string]any{"event": string(e.Kind), "call": e.CallID, "at": e.At.UTC().Format(time.RFC3339Nano)}
	var text string
	switch e.Kind {
	case device.CallRinging:
		text = "ringing…"
	case device.CallConnected:
		text = "connected"
	case device.CallReconnecting:
		text = "the link to the relay failed; reconnecting…"
	case device.CallReconnected:
		text = "reconnected"
	case device.CallCode:
		j["code"], j["epoch"] = e.Code, e.Epoch
		text = fmt.Sprintf("code: %s   (every participant must see the same four words)", e.Code)
	case device.CallJoined:
		j["member"], j["device"] = e.Member.Name, e.Member.DeviceID
		text = e.Member.Name + " joined"
	case device.CallLeft:
		j["member"], j["device"], j["reason"] = e.Member.Name, e.Member.DeviceID, e.Reason
		text = fmt.Sprintf("%s left (%s)", e.Member.Name, e.Reason)
	case device.CallQuality:
		st := e.Stats
		loss := 0.0
		if st.Received+st.Lost > 0 {
			loss = float64(st.Lost) / float64(st.Received+st.Lost)
		}
		j["profile"], j["received"], j["lost"], j["recovered"], j["concealed"] = e.Profile, st.Received, st.Lost, st.RecoveredFEC, st.Concealed
		j["loss"], j["jitter_ms"], j["delay_ms"], j["sent"] = loss, st.Jitter.Milliseconds(), st.Delay.Milliseconds(), st.PacketsSent
		text = fmt.Sprintf("quality: %s, loss %.1f%%, jitter %d ms", e.Profile, 100*loss, st.Jitter.Milliseconds())
	case device.CallEnded:
		j["reason"] = e.Reason
		if st := e.Stats; st != nil {
			j["sent"], j["received"], j["lost"], j["recovered"] = st.PacketsSent, st.Received, st.Lost, st.RecoveredFEC
		}
		text = "call ended: " + e.Reason
	}
	c.report(asJSON, j, "%s", text)
}

func (c *deviceCLI) report(asJSON bool, j map[string]any, format string, args ...any) {
	if asJSON {
		_ = c.printJSON(j)
		return
	}
	fmt.Fprintf(c.stdout, format+"\n", args...)
}

func (c *deviceCLI) hangup(args []string) error {
	fs, cf := c.flagSet("hangup", "hangup [--home DIR]", "Ends the call that 'mahfooz call' or 'mahfooz answer' is running for this device.")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := needHome(*cf.home); err != nil {
		return err
	}
	conn, err := net.DialTimeout("unix", filepath.Join(*cf.home, controlSocket), 5*time.Second)
	if err != nil {
		return &hintError{errors.New("no call in progress on this device"), "a call runs in 'mahfooz call' or 'mahfooz answer'"}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "hangup\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ok" {
		return errors.New("the call did not confirm the hangup")
	}
	if *cf.json {
		return c.printJSON(map[string]any{"event": "hangup"})
	}
	fmt.Fprintln(c.stdout, "hung up")
	return nil
}

// listenControl listens on the device directory's control socket; every
// "hangup" line received is passed on.
func listenControl(home string) (<-chan struct{}, func(), error) {
	path := filepath.Join(home, controlSocket)
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return nil, nil, errors.New("this device is already in a call")
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, nil, fmt.Errorf("control socket: %w", err)
	}
	ch := make(chan struct{}, 1)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				line, _ := bufio.NewReader(conn).ReadString('\n')
				if strings.TrimSpace(line) == "hangup" {
					select {
					case ch <- struct{}{}:
					default:
					}
					_, _ = io.WriteString(conn, "ok\n")
				}
			}()
		}
	}()
	return ch, func() { ln.Close(); os.Remove(path) }, nil
}
