package exchange

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"mahfooz/authority"
	"mahfooz/exchange/store/sqlite"
	"mahfooz/wire"
)

func encode(t testing.TB, m wire.Message) []byte {
	t.Helper()
	b, err := wire.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBadInputFromOneDeviceIsolated(t *testing.T) {
	e := newStoreEnv(t, nil)
	amina, bilal, mallory := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal"), enrolMLS(t, e.a, "Mallory")
	a, b := e.session(t, amina), e.session(t, bilal)

	// Amina keeps sending to Bilal throughout.
	const n = 100
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			ans := <-a.start(appMessage(i, testGroup, bilal))
			if r, ok := ans.(*wire.SendResult); !ok || r.Status != wire.SendAccepted {
				t.Errorf("Amina's send %d: %s", i, describe(ans))
			}
		}
	}()

	m := e.connect(t, device{id: mallory.id, cert: mallory.cert})
	send := appMessage(1000, testGroup, bilal)
	sendBody := encode(t, send)
	altered := *send
	altered.Payload = mlsPayload(testGroup, 1, wire.ContentTypeApplication, "altered")
	ackBody := encode(t, &wire.Ack{Sequences: []uint64{1, 2}})
	unsorted := bytes.Clone(ackBody)
	copy(unsorted[1:], []byte{0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1})
	var firstSeq uint64
	for i, tc := range []struct {
		name  string
		frame wire.Frame
		want  wire.Code // 0: a SendResult
	}{
		{"unknown type", wire.Frame{Type: 999, RequestID: 2, Body: []byte{1}}, wire.CodeUnknownMessage},
		{"truncated Send", wire.Frame{Type: wire.TypeSend, RequestID: 3, Body: sendBody[:len(sendBody)-3]}, wire.CodeMalformed},
		{"Send with trailing bytes", wire.Frame{Type: wire.TypeSend, RequestID: 4, Body: append(bytes.Clone(sendBody), 0)}, wire.CodeMalformed},
		{"unsorted Ack", wire.Frame{Type: wire.TypeAck, RequestID: 5, Body: unsorted}, wire.CodeMalformed},
		{"Deliver from a device", wire.Frame{Type: wire.TypeDeliver, RequestID: 6, Body: encode(t, &wire.Deliver{Sequence: 1, GroupID: testGroup, SentAt: time.UnixMilli(1), Payload: []byte{1}})}, wire.CodeUnexpectedMessage},
		{"request ID 0", wire.Frame{Type: wire.TypeSend, RequestID: 0, Body: sendBody}, wire.CodeInvalidRequest},
		{"Send", wire.Frame{Type: wire.TypeSend, RequestID: 7, Body: sendBody}, 0},
		{"the same Send replayed", wire.Frame{Type: wire.TypeSend, RequestID: 8, Body: sendBody}, 0},
		{"the same ID altered", wire.Frame{Type: wire.TypeSend, RequestID: 9, Body: encode(t, &altered)}, wire.CodeConflict},
		{"payload that is not MLS", wire.Frame{Type: wire.TypeUploadKeyPackages, RequestID: 10, Body: encode(t, &wire.UploadKeyPackages{KeyPackages: [][]byte{{0, 1, 0, 5, 1}}})}, wire.CodeInvalidRequest},
	} {
		if err := m.wc.WriteFrame(tc.frame); err != nil {
			t.Fatal(err)
		}
		id, ans, err := m.wc.ReadMessage()
		for err == nil && id == 0 && ans.Type() == wire.TypeDirectoryUpdated {
			id, ans, err = m.wc.ReadMessage() // enrolments above, announced
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if id != tc.frame.RequestID {
			t.Errorf("%s: answer has request ID %d, want %d", tc.name, id, tc.frame.RequestID)
		}
		if tc.want == 0 {
			r, ok := ans.(*wire.SendResult)
			if !ok || r.Status != wire.SendAccepted {
				t.Fatalf("%s: %s", tc.name, describe(ans))
			}
			if i > 0 && firstSeq != 0 && r.Sequence != firstSeq {
				t.Errorf("replayed Send stored again: sequence %d, first %d", r.Sequence, firstSeq)
			}
			firstSeq = r.Sequence
			continue
		}
		wantErr(t, ans, tc.want)
	}
	// A frame announcing more than the limit ends Mallory's connection, and only hers.
	var huge [10]byte
	binary.BigEndian.PutUint32(huge[:], wire.MaxFrameSize+1)
	if _, err := m.tc.Write(huge[:]); err != nil {
		t.Fatal(err)
	}
	_, ans, _ := m.wc.ReadMessage()
	for ans != nil && ans.Type() == wire.TypeDirectoryUpdated {
		_, ans, _ = m.wc.ReadMessage()
	}
	wantErr(t, ans, wire.CodeTooLarge)
	m.tc.SetReadDeadline(time.Now().Add(waitTime))
	if _, _, err := m.wc.ReadMessage(); err == nil {
		t.Error("connection still open after an oversized frame")
	}

	wg.Wait()
	got := 0
	for got < n+1 { // Amina's messages and Mallory's one
		b.deliver()
		got++
	}
	b.quiet("after every message") // the replay was not delivered twice
}

// pipeConn is a net.Conn that records what is written to it.
type pipeConn struct {
	mu     sync.Mutex
	out    bytes.Buffer
	closed bool
}

func (p *pipeConn) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, net.ErrClosed
	}
	return p.out.Write(b)
}

func (p *pipeConn) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}

func (p *pipeConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (p *pipeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (p *pipeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (p *pipeConn) SetDeadline(time.Time) error      { return nil }
func (p *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(time.Time) error { return nil }

// handlerRig is a server whose request handler is driven directly, without a
// network, for fuzzing.
type handlerRig struct {
	srv  *Server
	from mlsDevice
	to   mlsDevice
}

func newHandlerRig(f *testing.F) *handlerRig {
	dir := f.TempDir()
	a, err := authority.Init(filepath.Join(dir, "authority"), testPassphrase, authority.Options{KDF: testKDF})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { a.Close() })
	st, err := sqlite.Open(filepath.Join(dir, sqlite.FileName), sqlite.Options{})
	if err != nil {
		f.Fatal(err)
	}
	cert, err := a.IssueServerCertificate("127.0.0.1")
	if err != nil {
		f.Fatal(err)
	}
	srv, err := NewServer(Config{Registry: a.Registry, Authority: a, ServerCert: cert, Store: st,
		DeviceRateLimit: Rate{Events: 1 << 30, Per: time.Second}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close(); st.Close() })
	r := &handlerRig{srv: srv, from: enrolMLS(f, a, "Amina"), to: enrolMLS(f, a, "Bilal")}
	if err := srv.refreshDirectory(true); err != nil {
		f.Fatal(err)
	}
	return r
}

// run feeds frames to a fresh live connection's handler and returns what it wrote
// once every answer is out.
func (r *handlerRig) run(t *testing.T, frames []wire.Frame) []byte {
	p := &pipeConn{}
	c := &conn{srv: r.srv, raw: p, w: p, device: r.from.wid(), state: stateLive}
	for _, f := range frames {
		r.srv.handle(c, f)
	}
	deadline := time.Now().Add(waitTime)
	for {
		c.mu.Lock()
		idle := !c.writing && (c.inflight == nil || len(c.inflight) == 0)
		c.mu.Unlock()
		if idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("answers not all written")
		}
		time.Sleep(time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.out.Bytes())
}

// FuzzHandle feeds arbitrary frame sequences to an authenticated connection's
// request handler: it must not crash, every frame it writes must decode, and a
// request whose body does not decode must get Error{malformed}.
func FuzzHandle(f *testing.F) {
	r := newHandlerRig(f)
	seed := func(ms ...wire.Message) {
		var in []byte
		for i, m := range ms {
			body, err := wire.Marshal(m)
			if err != nil {
				f.Fatal(err)
			}
			in = binary.BigEndian.AppendUint16(in, uint16(m.Type()))
			in = binary.BigEndian.AppendUint32(in, uint32(i+1))
			in = binary.BigEndian.AppendUint16(in, uint16(len(body)))
			in = append(in, body...)
		}
		f.Add(in)
	}
	send := appMessage(1, testGroup, r.to)
	seed(&wire.Ping{}, send, send, &wire.Ack{Sequences: []uint64{1}})
	seed(commitMessage(2, testGroup, 3, r.to), commitMessage(3, testGroup, 3, r.to))
	seed(&wire.CreateBlob{BlobID: wire.BlobID{1}, Recipients: ids(r.to)},
		&wire.UploadChunk{BlobID: wire.BlobID{1}, Index: 0, Last: true, Data: []byte("x")},
		&wire.DownloadChunk{BlobID: wire.BlobID{1}})
	seed(&wire.UploadKeyPackages{KeyPackages: [][]byte{{0, 1, 0, 5}}}, &wire.ClaimKeyPackage{Device: r.to.wid()},
		&wire.ClaimKeyPackage{Official: "Bilal"}, &wire.GetDirectory{}, &wire.RenewCertificate{CSR: []byte{1}})
	seed(&wire.Hello{Versions: []uint16{1}}, &wire.Deliver{Sequence: 1, GroupID: testGroup, SentAt: time.UnixMilli(1), Payload: []byte{1}}, &wire.Enroll{Ticket: "x", CSR: []byte{1}})

	f.Fuzz(func(t *testing.T, in []byte) {
		var frames []wire.Frame
		for len(in) >= 8 && len(frames) < 16 {
			n := int(binary.BigEndian.Uint16(in[6:]))
			f := wire.Frame{Type: wire.MessageType(binary.BigEndian.Uint16(in)), RequestID: binary.BigEndian.Uint32(in[2:])}
			in = in[8:]
			f.Body = in[:min(n, len(in))]
			in = in[len(f.Body):]
			if !f.Type.Known() {
				continue // the reader answers those before the handler sees them
			}
			frames = append(frames, f)
		}
		out := r.run(t, frames)
		answers := make(map[uint32][]wire.Message)
		rd := wire.NewConn(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(out), io.Discard})
		for {
			id, m, err := rd.ReadMessage()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("the handler wrote a frame that does not decode: %v", err)
			}
			answers[id] = append(answers[id], m)
		}
		for _, f := range frames {
			if _, err := wire.Decode(f); err == nil {
				continue
			}
			found := false
			for _, m := range answers[f.RequestID] {
				if e, ok := m.(*wire.Error); ok && e.Code == wire.CodeMalformed {
					found = true
				}
			}
			if !found {
				t.Fatalf("%s with an undecodable body got no Error{malformed}", f.Type)
			}
		}
	})
}
