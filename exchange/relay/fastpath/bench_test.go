package fastpath

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"

	"mahfooz/device/rtc"
	"mahfooz/wire"
)

// BenchmarkForward measures one packet's trip from a sending Link through the
// relay to a receiving Link, all in this process: each op is one ~80-byte payload
// forwarded to one receiver. The figure includes both clients' SRTP and sockets;
// TestStreamsPerCore separates the relay's own cost.
func BenchmarkForward(b *testing.B) {
	r := newRelay(b, nil)
	call := callID(1)
	a, c := dev(1), dev(2)
	la := mustDial(b, r, a, call, a, c)
	lc := mustDial(b, r, c, call)
	rx := receive(lc)
	for heard := false; !heard; {
		if err := la.WriteRTP(0, false, []byte("warm-a:0")); err != nil {
			b.Fatal(err)
		}
		select {
		case <-rx:
			heard = true
		case <-time.After(10 * time.Millisecond):
		}
	}
	for len(rx) > 0 {
		<-rx
	}
	payload := make([]byte, 80)
	copy(payload, "a:0")
	b.ReportAllocs()
	b.ResetTimer()
	got := 0
	for i := 0; b.Loop(); i++ {
		if err := la.WriteRTP(uint32(i*960), false, payload); err != nil {
			b.Fatal(err)
		}
		// Keep at most 64 packets in flight, so that sockets do not overflow.
		for i-got > 64 {
			<-rx
			got++
		}
	}
}

// TestStreamsPerCore measures how many audio streams the relay forwards per CPU
// core. A stream is one sender's 50 packets/s of 80-byte payloads forwarded to
// one receiver. The clients run in a child process, so the relay's CPU time (this
// process's, from getrusage) is its own. It is a measurement, run only with
// MAHFOOZ_BENCH=1:
//
//	MAHFOOZ_BENCH=1 go test ./exchange/relay/fastpath -run TestStreamsPerCore -v
//
// MAHFOOZ_BENCH_CALLS (default 100) calls of MAHFOOZ_BENCH_SIZE (default 3)
// participants run for MAHFOOZ_BENCH_SECONDS (default 10). MAHFOOZ_BENCH_CPUPROFILE
// names a file for a CPU profile of the relay over the measured seconds.
func TestStreamsPerCore(t *testing.T) {
	if os.Getenv("MAHFOOZ_BENCH") != "1" {
		t.Skip("a measurement: set MAHFOOZ_BENCH=1 to run it")
	}
	calls, size, seconds := envInt("MAHFOOZ_BENCH_CALLS", 100), envInt("MAHFOOZ_BENCH_SIZE", 3), envInt("MAHFOOZ_BENCH_SECONDS", 10)
	var seen atomic.Int64
	r := newRelay(t, func(wire.CallID, wire.DeviceID, *rtp.Packet) { seen.Add(1) })

	cmd := exec.Command(os.Args[0], "-test.run", "^TestStreamsPerCoreClients$", "-test.timeout", "10m")
	cmd.Env = append(os.Environ(), "MAHFOOZ_BENCH_CLIENTS=1",
		fmt.Sprintf("MAHFOOZ_BENCH_CALLS=%d", calls), fmt.Sprintf("MAHFOOZ_BENCH_SIZE=%d", size),
		fmt.Sprintf("MAHFOOZ_BENCH_SECONDS=%d", seconds))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 1<<20)
	// Joins, answered concurrently: "JOIN id call-index device-index offer",
	// answered by "ANSWER id answer", or "ANSWER id -" if the relay refused it.
	var (
		joins  sync.WaitGroup
		mu     sync.Mutex // guards stdin and failed
		failed error
	)
	for lines.Scan() {
		f := strings.Fields(lines.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "READY" {
			break
		}
		if f[0] != "JOIN" || len(f) != 5 {
			continue // the test framework's own output
		}
		id := f[1]
		ci, _ := strconv.Atoi(f[2])
		di, _ := strconv.Atoi(f[3])
		offer, _ := base64.StdEncoding.DecodeString(f[4])
		joins.Add(1)
		go func() {
			defer joins.Done()
			members := make([]wire.DeviceID, size)
			for i := range members {
				members[i] = benchDev(ci, i)
			}
			answer, err := r.Join(context.Background(), benchDev(ci, di), benchCall(ci), members, string(offer))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = err
				fmt.Fprintf(stdin, "ANSWER %s -\n", id)
				return
			}
			fmt.Fprintf(stdin, "ANSWER %s %s\n", id, base64.StdEncoding.EncodeToString([]byte(answer)))
		}()
	}
	joins.Wait()
	if failed != nil {
		t.Fatalf("join: %v", failed)
	}
	// Skip the first and last second, while streams start and stop.
	time.Sleep(time.Second)
	if path := os.Getenv("MAHFOOZ_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0, wall0, seen0 := cpuTime(), time.Now(), seen.Load()
	time.Sleep(time.Duration(seconds-2) * time.Second)
	cpu, wall, sent := cpuTime()-cpu0, time.Since(wall0), seen.Load()-seen0
	pprof.StopCPUProfile()
	for lines.Scan() {
		if strings.HasPrefix(lines.Text(), "RECEIVED") {
			t.Log("clients:", lines.Text())
		}
	}
	streams := calls * size * (size - 1)
	rate := float64(sent) / wall.Seconds()  // packets in per second
	forwarded := rate * float64(size-1)     // packets out per second
	cores := cpu.Seconds() / wall.Seconds() // relay CPU in use
	measuredStreams := forwarded / 50       // streams actually carried
	t.Logf("%d calls of %d: %d streams nominal, %.0f carried (%.0f packets/s out); relay CPU %.3f cores",
		calls, size, streams, measuredStreams, forwarded, cores)
	t.Logf("streams per core: %.0f (%.1f µs of relay CPU per forwarded packet)",
		measuredStreams/cores, cpu.Seconds()/(forwarded*wall.Seconds())*1e6)
}

// TestStreamsPerCoreClients is the client side of TestStreamsPerCore, run in a
// child process: it joins through the parent's stdin and stdout, sends for the
// given time and reports what it received.
func TestStreamsPerCoreClients(t *testing.T) {
	if os.Getenv("MAHFOOZ_BENCH_CLIENTS") != "1" {
		t.Skip("the child process of TestStreamsPerCore")
	}
	calls, size, seconds := envInt("MAHFOOZ_BENCH_CALLS", 100), envInt("MAHFOOZ_BENCH_SIZE", 3), envInt("MAHFOOZ_BENCH_SECONDS", 10)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 1<<20)
	var (
		mu      sync.Mutex // guards waiting and stdout
		waiting = map[int]chan string{}
	)
	go func() {
		for in.Scan() {
			f := strings.Fields(in.Text())
			if len(f) != 3 || f[0] != "ANSWER" {
				continue
			}
			id, _ := strconv.Atoi(f[1])
			mu.Lock()
			ch := waiting[id]
			delete(waiting, id)
			mu.Unlock()
			if ch != nil {
				ch <- f[2]
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for id, ch := range waiting {
			close(ch)
			delete(waiting, id)
		}
	}()
	links := make([]*rtc.Link, calls*size)
	var (
		dials   sync.WaitGroup
		failMu  sync.Mutex
		failed  error                     // guarded by failMu
		workers = make(chan struct{}, 32) // dials at once
	)
	for id := range links {
		ci, di := id/size, id%size
		workers <- struct{}{}
		dials.Add(1)
		go func() {
			defer dials.Done()
			defer func() { <-workers }()
			l, err := rtc.Dial(context.Background(), rtc.Config{}, func(_ context.Context, offer string) (string, error) {
				ch := make(chan string, 1)
				mu.Lock()
				waiting[id] = ch
				fmt.Printf("JOIN %d %d %d %s\n", id, ci, di, base64.StdEncoding.EncodeToString([]byte(offer)))
				mu.Unlock()
				a, ok := <-ch
				if !ok {
					return "", io.ErrUnexpectedEOF
				}
				if a == "-" {
					return "", errors.New("the relay refused the join")
				}
				answer, err := base64.StdEncoding.DecodeString(a)
				return string(answer), err
			})
			if err != nil {
				failMu.Lock()
				failed = err
				failMu.Unlock()
				return
			}
			links[id] = l
		}()
	}
	dials.Wait()
	if failed != nil {
		for _, l := range links {
			if l != nil {
				l.Close()
			}
		}
		t.Fatal(failed)
	}
	fmt.Println("READY")
	var received atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(time.Duration(seconds) * time.Second)
	for i, l := range links {
		wg.Add(2)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				if _, _, _, err := l.ReadRTP(buf); err != nil {
					return
				}
				received.Add(1)
			}
		}()
		go func() {
			defer wg.Done()
			defer l.Close()
			payload := make([]byte, 80)
			// Spread the senders over the 20 ms frame interval.
			time.Sleep(time.Duration(i%20) * time.Millisecond)
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for ts := uint32(0); time.Now().Before(stop); ts += 960 {
				<-tick.C
				if err := l.WriteRTP(ts, false, payload); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("RECEIVED %d packets on %d links\n", received.Load(), len(links))
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func benchDev(call, i int) wire.DeviceID {
	var d wire.DeviceID
	d[0], d[1], d[2] = byte(call>>8), byte(call), byte(i)
	return d
}

func benchCall(i int) wire.CallID {
	var c wire.CallID
	copy(c[:], hex.EncodeToString([]byte{byte(i >> 8), byte(i)}))
	return c
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
