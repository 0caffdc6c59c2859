package exchangebench

import (
	"bufio"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"mahfooz/authority"
	"mahfooz/wire"
)

// The idle-connection measurement runs the exchange in a child process (this test
// binary, re-executed with idleServerEnv set) so that the clients' half of every
// connection, its TLS state, goroutine and socket, is not counted. The parent opens
// the connections; the child reports its own memory when asked on stdin.
const (
	// idleServerEnv names the directory the child keeps its authority in.
	idleServerEnv = "MAHFOOZ_BENCH_IDLE_SERVER"
	// idleDevicesEnv is how many devices the child enrols for the parent to be.
	idleDevicesEnv = "MAHFOOZ_BENCH_IDLE_DEVICES"
	// idleConnsEnv overrides the number of connections of TestIdleConnections.
	idleConnsEnv = "MAHFOOZ_BENCH_CONNS"
	// idleProfileEnv, if set, is where TestIdleConnections leaves the child's heap
	// profile (for `go tool pprof -sample_index=inuse_space`).
	idleProfileEnv = "MAHFOOZ_BENCH_HEAPPROFILE"
	// idleLeafOnlyEnv=1 makes the devices present only their own certificate, not
	// the chain up to the root that enrolment hands them.
	idleLeafOnlyEnv = "MAHFOOZ_BENCH_LEAF_ONLY"
)

// idlePingInterval is the exchange's ping interval in the child: long enough that
// no connection is closed for silence while the last of 10,000 are being opened.
// Its value does not change what an idle connection holds.
const idlePingInterval = 10 * time.Minute

func TestMain(m *testing.M) {
	if dir := os.Getenv(idleServerEnv); dir != "" {
		if err := runIdleServer(dir, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "idle server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	closeShared()
	os.Exit(code)
}

// TestIdleConnections measures the exchange's memory per idle authenticated
// connection at 10,000 connections (MAHFOOZ_BENCH_CONNS overrides the number).
func TestIdleConnections(t *testing.T) {
	if os.Getenv(benchEnv) != "1" {
		t.Skip("a measurement: set " + benchEnv + "=1 to run it")
	}
	n := 10000
	if s := os.Getenv(idleConnsEnv); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", idleConnsEnv, s)
		}
	}
	leafOnly := os.Getenv(idleLeafOnlyEnv) == "1"
	res := measureIdle(t, n, leafOnly, os.Getenv(idleProfileEnv))
	t.Log(res.report())
}

// TestIdleHarness runs the idle-connection measurement on 40 connections, to show
// that the harness opens them, that the child counts one goroutine for each, and
// that its figures come out.
func TestIdleHarness(t *testing.T) {
	const n = 40
	res := measureIdle(t, n, false, "")
	if got := res.after.Goroutines - res.before.Goroutines; got < n {
		t.Errorf("exchange has %d more goroutines with %d connections open, want at least %d", got, n, n)
	}
	if res.perConn() <= 0 {
		t.Errorf("memory per connection %d bytes, want > 0", res.perConn())
	}
	if !strings.Contains(res.sites, "tls.(*Conn)") {
		t.Errorf("allocation sites do not mention tls.Conn:\n%s", res.sites)
	}
}

// memSample is the child's memory once garbage collection has shrunk what it can.
type memSample struct {
	HeapInuse   uint64 // runtime.MemStats.HeapInuse
	StackInuse  uint64 // runtime.MemStats.StackInuse
	HeapObjects uint64
	RSSKiB      uint64 // VmRSS, which also counts SQLite's C heap
	Goroutines  int
}

func (m memSample) heapStack() int64 { return int64(m.HeapInuse + m.StackInuse) }

// idleResult is one measurement.
type idleResult struct {
	n             int
	leafOnly      bool
	before, after memSample
	sockBefore    int64 // kernel TCP memory, bytes (both sides)
	sockAfter     int64
	sites         string // the child's largest allocation sites, per connection
	openFor       time.Duration
}

func (r idleResult) perConn() int64 {
	return (r.after.heapStack() - r.before.heapStack()) / int64(r.n)
}

func (r idleResult) report() string {
	n := int64(r.n)
	var b strings.Builder
	chain := "leaf and root"
	if r.leafOnly {
		chain = "leaf only"
	}
	fmt.Fprintf(&b, "%d idle authenticated connections, client chain %s (opened in %v)\n", r.n, chain, r.openFor.Round(time.Millisecond))
	fmt.Fprintf(&b, "exchange per connection: HeapInuse+StackInuse %d B (heap %d B, stacks %d B), heap objects %.1f\n",
		r.perConn(), (int64(r.after.HeapInuse)-int64(r.before.HeapInuse))/n,
		(int64(r.after.StackInuse)-int64(r.before.StackInuse))/n,
		float64(int64(r.after.HeapObjects)-int64(r.before.HeapObjects))/float64(n))
	fmt.Fprintf(&b, "exchange per connection: process RSS %d B (freed pages returned to the OS first)\n",
		(int64(r.after.RSSKiB)-int64(r.before.RSSKiB))*1024/n)
	fmt.Fprintf(&b, "goroutines: %d before, %d after\n", r.before.Goroutines, r.after.Goroutines)
	fmt.Fprintf(&b, "kernel TCP memory (both ends of every connection, /proc/net/sockstat): %d B per connection\n",
		(r.sockAfter-r.sockBefore)/n)
	b.WriteString(r.sites)
	return b.String()
}

// measureIdle starts the exchange in a child process, opens n authenticated
// connections to it, lets them go idle and compares the child's memory with and
// without them. With leafOnly, the devices send only their own certificate in the
// TLS handshake. With profile set, the child's heap profile is left there.
func measureIdle(t *testing.T, n int, leafOnly bool, profile string) idleResult {
	if err := raiseFileLimit(uint64(n) + 512); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	child, err := startIdleServer(dir, n)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := child.stop(); err != nil {
			t.Error(err)
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(child.root)
	cfgs := make([]*tls.Config, len(child.devices))
	for i := range child.devices {
		d := child.devices[i]
		if leafOnly {
			d.cert.Certificate = d.cert.Certificate[:1]
		}
		cfgs[i] = clientTLS(roots, &d)
	}

	// Warm up: the first connections initialise caches, prepared statements and
	// pools that every later one shares.
	warm, err := openConns(child.addr, cfgs, 64)
	if err != nil {
		t.Fatal(err)
	}
	quiet, err := child.sample()
	if err != nil {
		t.Fatal(err)
	}
	closeConns(warm)
	var res idleResult
	res.n = n
	res.leafOnly = leafOnly
	if res.before, err = child.waitGoroutines(func(g int) bool { return g <= quiet.Goroutines-len(warm) }); err != nil {
		t.Fatal(err)
	}
	res.sockBefore = kernelTCPMemory()

	start := time.Now()
	conns, err := openConns(child.addr, cfgs, n)
	res.openFor = time.Since(start)
	defer closeConns(conns)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := child.waitGoroutines(func(g int) bool { return g >= res.before.Goroutines+n }); err != nil {
		t.Fatal(err)
	}
	// Idle: nothing is sent for a while, so that every deadline, buffer and timer
	// is in the state a silent device leaves it in.
	time.Sleep(2 * time.Second)
	if res.after, err = child.sample(); err != nil {
		t.Fatal(err)
	}
	res.sockAfter = kernelTCPMemory()
	if res.sites, err = child.profile(n, profile); err != nil {
		t.Fatal(err)
	}
	// Every connection must still be up, or the figure is for fewer.
	for i, c := range conns {
		if err := alive(c); err != nil {
			t.Fatalf("connection %d no longer answers: %v", i, err)
		}
	}
	return res
}

// alive checks that the exchange still answers a Ping on c; pushes that arrive
// first are skipped.
func alive(c *client) error {
	c.tc.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.tc.SetDeadline(time.Time{})
	const id = 7
	if err := c.wc.WriteMessage(id, &wire.Ping{}); err != nil {
		return err
	}
	for {
		got, m, err := c.wc.ReadMessage()
		switch {
		case err != nil:
			return err
		case got == id && m.Type() == wire.TypePong:
			return nil
		case got == id:
			return fmt.Errorf("Ping answered with %s", m.Type())
		}
	}
}

// openConns opens n connections, 32 at a time, cycling through cfgs.
func openConns(addr string, cfgs []*tls.Config, n int) ([]*client, error) {
	conns := make([]*client, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := connect(addr, cfgs[i%len(cfgs)])
				if err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	close(errs)
	return conns, <-errs
}

func closeConns(conns []*client) {
	for _, c := range conns {
		if c != nil {
			c.close()
		}
	}
}

// raiseFileLimit makes sure this process may hold want open files.
func raiseFileLimit(want uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur >= want {
		return nil
	}
	l.Cur = want
	l.Max = max(l.Max, want)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("raising RLIMIT_NOFILE to %d: %w (raise the hard limit: ulimit -Hn)", want, err)
	}
	return nil
}

// kernelTCPMemory is the kernel's memory for TCP socket buffers, machine-wide.
func kernelTCPMemory() int64 {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			if f[i] == "mem" {
				pages, _ := strconv.ParseInt(f[i+1], 10, 64)
				return pages * int64(os.Getpagesize())
			}
		}
	}
	return 0
}

// idleChild is the parent's handle on the child exchange. One goroutine uses it.
type idleChild struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Reader
	addr    string
	root    *x509.Certificate
	devices []device
}

// idleDevicesFile is where the child leaves the root and the devices' credentials.
const idleDevicesFile = "devices.json"

type idleCredentials struct {
	Root    []byte
	Devices []struct {
		Chain [][]byte
		Seed  []byte // Ed25519 private key seed
	}
}

// startIdleServer re-executes this test binary as the exchange, with n expected
// connections, and waits until it listens.
func startIdleServer(dir string, n int) (*idleChild, error) {
	devices := min(16, n)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), idleServerEnv+"="+dir, idleDevicesEnv+"="+strconv.Itoa(devices),
		idleConnsEnv+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &idleChild{cmd: cmd, in: in, out: bufio.NewReader(out)}
	line, err := c.out.ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	if err != nil || !ok {
		c.stop()
		return nil, fmt.Errorf("idle server did not start: %q, %v", line, err)
	}
	c.addr = addr
	raw, err := os.ReadFile(filepath.Join(dir, idleDevicesFile))
	if err != nil {
		c.stop()
		return nil, err
	}
	var creds idleCredentials
	if err := json.Unmarshal(raw, &creds); err != nil {
		c.stop()
		return nil, err
	}
	if c.root, err = x509.ParseCertificate(creds.Root); err != nil {
		c.stop()
		return nil, err
	}
	for _, d := range creds.Devices {
		leaf, err := x509.ParseCertificate(d.Chain[0])
		if err != nil {
			c.stop()
			return nil, err
		}
		id, err := authority.DeviceIDFromCertificate(leaf)
		if err != nil {
			c.stop()
			return nil, err
		}
		dev := device{id: wire.DeviceID(id)}
		dev.cert = tls.Certificate{Certificate: d.Chain, PrivateKey: ed25519.NewKeyFromSeed(d.Seed)}
		c.devices = append(c.devices, dev)
	}
	return c, nil
}

// command sends one line to the child and reads its one-line answer.
func (c *idleChild) command(cmd string) (string, error) {
	if _, err := io.WriteString(c.in, cmd+"\n"); err != nil {
		return "", err
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("idle server: %s: %w", cmd, err)
	}
	if msg, ok := strings.CutPrefix(line, "error "); ok {
		return "", fmt.Errorf("idle server: %s: %s", cmd, strings.TrimSpace(msg))
	}
	return strings.TrimSpace(line), nil
}

func (c *idleChild) sample() (memSample, error) {
	var m memSample
	line, err := c.command("mem")
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal([]byte(line), &m)
}

// waitGoroutines samples until ok holds for the child's goroutine count.
func (c *idleChild) waitGoroutines(ok func(int) bool) (memSample, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		m, err := c.sample()
		if err != nil || ok(m.Goroutines) {
			return m, err
		}
		if time.Now().After(deadline) {
			return m, fmt.Errorf("idle server: still %d goroutines after 2 minutes", m.Goroutines)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// profile asks the child for its largest allocation sites, divided by n, and for
// its heap profile at path if path is not empty.
func (c *idleChild) profile(n int, path string) (string, error) {
	line, err := c.command(fmt.Sprintf("sites %d %s", n, path))
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(line)
	return string(b), err
}

func (c *idleChild) stop() error {
	c.in.Close() // end of input tells the child to stop
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		c.cmd.Process.Kill()
		return errors.Join(errors.New("idle server did not stop; killed"), <-done)
	}
}
