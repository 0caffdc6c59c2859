package systemtest

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"mahfooz/device"
	"mahfooz/device/vault"
)

// member is one official's enrolled device, in this process.
type member struct {
	t    *testing.T
	name string
	cfg  device.Config

	mu     sync.Mutex
	dv     *device.Device
	cancel context.CancelFunc
	ran    chan error
}

// enrol enrols a device for a new official through a CLI-issued ticket.
func (s *system) enrol(name string) *member {
	s.t.Helper()
	cfg := device.Config{
		Home:       filepath.Join(s.t.TempDir(), "device"),
		Passphrase: []byte("passphrase of " + name),
		KDF:        vault.TestKDF(),
	}
	dv, err := device.Enroll(testContext(s.t, 30*time.Second), cfg, s.addr, s.ticket(name))
	if err != nil {
		s.t.Fatalf("enrolling %s: %v", name, err)
	}
	m := &member{t: s.t, name: name, cfg: cfg, dv: dv}
	s.t.Cleanup(m.close)
	return m
}

func (m *member) device() *device.Device {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dv == nil {
		m.t.Fatalf("%s's device is closed", m.name)
	}
	return m.dv
}

// run keeps the device connected in the background, as an app does.
func (m *member) run() {
	m.mu.Lock()
	defer m.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel, m.ran = cancel, make(chan error, 1)
	dv := m.dv
	go func() { m.ran <- dv.Run(ctx) }()
}

// close stops Run, if running, and closes the device: it goes offline.
func (m *member) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cancel != nil {
		m.cancel()
		if err := <-m.ran; err != nil && !errors.Is(err, context.Canceled) {
			m.t.Errorf("%s: Run: %v", m.name, err)
		}
		m.cancel, m.ran = nil, nil
	}
	if m.dv != nil {
		m.dv.Close()
		m.dv = nil
	}
}

// reopen opens the device again from its vault.
func (m *member) reopen() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	dv, err := device.Open(m.cfg)
	if err != nil {
		m.t.Fatalf("reopening %s: %v", m.name, err)
	}
	m.dv = dv
}

// texts returns the texts of the conversation's text messages, in order.
func (m *member) texts(ref device.ConversationRef) []string {
	m.t.Helper()
	ms, err := m.device().Messages(ref)
	if err != nil && !errors.Is(err, device.ErrNoConversation) {
		m.t.Fatalf("%s: Messages: %v", m.name, err)
	}
	var out []string
	for _, msg := range ms {
		if msg.Kind == device.MessageText {
			out = append(out, msg.Text)
		}
	}
	return out
}

// count returns how many times each text appears.
func count(texts []string) map[string]int {
	n := make(map[string]int, len(texts))
	for _, t := range texts {
		n[t]++
	}
	return n
}
