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
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// passphrase unlocks the test authority's root key; the binary reads it from the
// environment, as automation does.
const passphrase = "system test passphrase"

// binary is the mahfooz command built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mahfooz-systemtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "mahfooz")
	build := exec.Command("go", "build", "-o", binary, "mahfooz/cmd/mahfooz")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "systemtest: building mahfooz:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// mahfooz runs the binary to completion and returns its stdout.
func mahfooz(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "MAHFOOZ_PASSPHRASE="+passphrase)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mahfooz %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// system is an authority made with the CLI and an exchange running as its own
// process, the single-host deployment.
type system struct {
	t            *testing.T
	authorityDir string
	home         string // the exchange's
	logPath      string // the exchange's stderr, across restarts
	addr         string
	flags        []string // more flags for exchange serve

	mu   sync.Mutex
	proc *exec.Cmd
	exit chan error
}

// newSystem makes an authority and starts an exchange on it, with flags
// added to `exchange serve`.
func newSystem(t *testing.T, flags ...string) *system {
	t.Helper()
	dir := t.TempDir()
	s := &system{
		t:            t,
		authorityDir: filepath.Join(dir, "authority"),
		home:         filepath.Join(dir, "exchange"),
		logPath:      filepath.Join(dir, "exchange.log"),
		addr:         "127.0.0.1:0",
		flags:        flags,
	}
	mahfooz(t, "authority", "init", "--dir", s.authorityDir)
	s.start()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			log, _ := os.ReadFile(s.logPath)
			t.Logf("exchange log:\n%s", log)
		}
	})
	return s
}

// ticket issues an enrolment ticket for an official through the CLI.
func (s *system) ticket(name string) string {
	s.t.Helper()
	out := mahfooz(s.t, "authority", "enroll", "--dir", s.authorityDir, "--name", name, "--json")
	var res struct {
		Ticket string `json:"ticket"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Ticket == "" {
		s.t.Fatalf("authority enroll --json: %v: %q", err, out)
	}
	return res.Ticket
}

var listening = regexp.MustCompile(`listening on (127\.0\.0\.1:[0-9]+)`)

// start runs `mahfooz exchange serve` and waits until it listens. After the first
// start it reuses the same address, so devices reconnect to where they enrolled.
func (s *system) start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(binary, append([]string{"exchange", "serve", "--authority", s.authorityDir,
		"--home", s.home, "--listen", s.addr}, s.flags...)...)
	cmd.Env = append(os.Environ(), "MAHFOOZ_PASSPHRASE="+passphrase)
	pr, pw, err := os.Pipe()
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	pw.Close()
	found := make(chan string, 1)
	go func() {
		// Copy everything to the log file, which the canary scan reads.
		// Read to the end whatever happens: an exchange whose stderr is closed
		// would die of SIGPIPE at its next log line.
		defer logf.Close()
		defer pr.Close()
		r := bufio.NewReader(pr)
		sent := false
		for {
			line, err := r.ReadString('\n')
			logf.WriteString(line)
			if m := listening.FindStringSubmatch(line); m != nil && !sent {
				found <- m[1]
				sent = true
			}
			if err != nil {
				return
			}
		}
	}()
	exit := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		unexpected := s.proc == cmd
		s.mu.Unlock()
		if unexpected {
			s.t.Logf("exchange exited by itself: %v", err)
		}
		exit <- err
	}()
	select {
	case addr := <-found:
		s.mu.Lock()
		s.addr, s.proc, s.exit = addr, cmd, exit
		s.mu.Unlock()
	case err := <-exit:
		log, _ := os.ReadFile(s.logPath)
		s.t.Fatalf("exchange exited before listening: %v\n%s", err, log)
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		s.t.Fatal("exchange did not report its address within 60 s")
	}
}

// kill ends the exchange with SIGKILL: no shutdown, no flush.
func (s *system) kill() {
	s.mu.Lock()
	proc, exit := s.proc, s.exit
	s.proc = nil
	s.mu.Unlock()
	if proc == nil {
		return
	}
	proc.Process.Signal(syscall.SIGKILL)
	<-exit
}

// stop ends the exchange gracefully (SIGTERM), or kills it after 10 s.
func (s *system) stop() {
	s.mu.Lock()
	proc, exit := s.proc, s.exit
	s.proc = nil
	s.mu.Unlock()
	if proc == nil {
		return
	}
	proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-exit:
	case <-time.After(10 * time.Second):
		proc.Process.Kill()
		<-exit
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
