// Package tsmlsdriver runs mls/interop/tsmls/driver.mjs, which drives the
// TypeScript MLS implementation ts-mls, and speaks its line-based JSON
// protocol: one request line on the process's stdin, one response line on its
// stdout, in order. It exists for the mls package's interop tests.
package tsmlsdriver

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// maxLine bounds one response line. A Welcome carrying the ratchet tree of a
// small group is a few kilobytes of hex; this leaves ample room.
const maxLine = 16 << 20

// stderrTail is how much of the driver's stderr is kept for error reports.
const stderrTail = 8 << 10

// Error is a request the driver answered with "ok": false: ts-mls (or the
// driver's own checks) refused it. The process is still usable.
type Error struct {
	Op      string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("tsmlsdriver: %s refused: %s", e.Op, e.Message) }

// Driver is one running driver.mjs process. Its methods are safe for
// concurrent use; requests are answered one at a time, in order.
type Driver struct {
	timeout time.Duration

	mu     sync.Mutex // serialises requests and guards nextID and broken
	nextID int
	broken error // set once the stream can no longer be trusted

	cmd       *exec.Cmd
	stdin     io.WriteCloser
	lines     chan []byte // response lines; closed when stdout ends
	readEr    error       // why stdout ended; read only after lines is closed
	stderr    *tailWriter
	waited    chan struct{} // closed when the process has been reaped
	werr      error         // exit status; read only after waited is closed
	closeOnce sync.Once
}

// Start runs `node driver.mjs` in dir, which must hold driver.mjs and its
// node_modules. Every request that takes longer than timeout fails, and kills
// the process.
func Start(node, dir string, timeout time.Duration) (*Driver, error) {
	script := filepath.Join(dir, "driver.mjs")
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("tsmlsdriver: %w", err)
	}
	cmd := exec.Command(node, script)
	cmd.Dir = dir
	// Errors inside ts-mls are then printed with their stack on stderr, which
	// is kept for error reports.
	cmd.Env = append(os.Environ(), "TSMLS_DRIVER_DEBUG=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("tsmlsdriver: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("tsmlsdriver: %w", err)
	}
	d := &Driver{
		timeout: timeout,
		nextID:  1,
		cmd:     cmd,
		stdin:   stdin,
		lines:   make(chan []byte, 1),
		stderr:  &tailWriter{max: stderrTail},
		waited:  make(chan struct{}),
	}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("tsmlsdriver: starting %s: %w", node, err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(d.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), maxLine)
		for sc.Scan() {
			d.lines <- append([]byte(nil), sc.Bytes()...)
		}
		d.readEr = sc.Err()
	}()
	go func() {
		// Wait closes stdout, so reading must be finished first.
		<-readDone
		d.werr = cmd.Wait()
		close(d.waited)
	}()
	return d, nil
}

// Call sends the request op with fields and decodes the response into resp
// (a pointer, or nil). A refusal is returned as *Error.
func (d *Driver) Call(op string, fields map[string]any, resp any) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.broken != nil {
		return d.broken
	}
	id := d.nextID
	d.nextID++
	req := make(map[string]any, len(fields)+2)
	for k, v := range fields {
		req[k] = v
	}
	req["id"], req["op"] = id, op
	line, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("tsmlsdriver: encoding %s: %w", op, err)
	}
	if _, err := d.stdin.Write(append(line, '\n')); err != nil {
		return d.fail(fmt.Errorf("tsmlsdriver: writing %s: %w", op, err))
	}
	timer := time.NewTimer(d.timeout)
	defer timer.Stop()
	var got []byte
	select {
	case l, ok := <-d.lines:
		if !ok {
			return d.fail(fmt.Errorf("tsmlsdriver: driver exited before answering %s (read error: %v)", op, d.readEr))
		}
		got = l
	case <-timer.C:
		return d.fail(fmt.Errorf("tsmlsdriver: no answer to %s within %v", op, d.timeout))
	}
	var env struct {
		ID    *int   `json:"id"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(got, &env); err != nil {
		return d.fail(fmt.Errorf("tsmlsdriver: answer to %s is not JSON: %q", op, truncate(got, 200)))
	}
	if env.ID == nil || *env.ID != id {
		return d.fail(fmt.Errorf("tsmlsdriver: answer to %s has id %v, want %d", op, env.ID, id))
	}
	if !env.OK {
		return &Error{Op: op, Message: env.Error}
	}
	if resp == nil {
		return nil
	}
	if err := json.Unmarshal(got, resp); err != nil {
		return fmt.Errorf("tsmlsdriver: decoding the answer to %s: %w", op, err)
	}
	return nil
}

// fail marks the stream unusable (it may be out of step), kills the process,
// and returns err with the tail of the driver's stderr.
func (d *Driver) fail(err error) error {
	d.kill()
	if tail := d.stderr.String(); tail != "" {
		err = fmt.Errorf("%w\ndriver stderr:\n%s", err, tail)
	}
	d.broken = err
	return err
}

func (d *Driver) kill() {
	if d.cmd.Process != nil {
		_ = d.cmd.Process.Kill()
	}
}

// Stderr returns the last few kilobytes the driver wrote to stderr.
func (d *Driver) Stderr() string { return d.stderr.String() }

// Close asks the driver to quit and waits for it to exit, killing it if it
// does not within the timeout. It is safe to call more than once.
func (d *Driver) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.mu.Lock()
		healthy := d.broken == nil
		if healthy {
			err = d.callQuitLocked()
			d.broken = errors.New("tsmlsdriver: closed")
		}
		d.mu.Unlock()
		_ = d.stdin.Close()
		// Nobody reads responses any more; keep the reader from blocking so
		// that the process can be reaped.
		go func() {
			for range d.lines {
			}
		}()
		select {
		case <-d.waited:
			if healthy && err == nil && d.werr != nil {
				err = fmt.Errorf("tsmlsdriver: driver exit: %w", d.werr)
			}
		case <-time.After(d.timeout):
			d.kill()
			<-d.waited
			if err == nil {
				err = errors.New("tsmlsdriver: driver did not exit; killed")
			}
		}
	})
	return err
}

// callQuitLocked sends quit; d.mu is held.
func (d *Driver) callQuitLocked() error {
	id := d.nextID
	d.nextID++
	line, _ := json.Marshal(map[string]any{"id": id, "op": "quit"})
	if _, err := d.stdin.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("tsmlsdriver: writing quit: %w", err)
	}
	select {
	case _, ok := <-d.lines:
		if !ok {
			return errors.New("tsmlsdriver: driver exited before answering quit")
		}
		return nil
	case <-time.After(d.timeout):
		d.kill()
		return errors.New("tsmlsdriver: no answer to quit; killed")
	}
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
