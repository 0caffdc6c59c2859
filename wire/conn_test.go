package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"reflect"
	"runtime"
	"sync"
	"testing"
)

// rw is a stream made of a reader and a writer.
type rw struct {
	r io.Reader
	w io.Writer
}

func (s *rw) Read(p []byte) (int, error) { return s.r.Read(p) }
func (s *rw) Write(p []byte) (int, error) {
	if s.w == nil {
		return 0, errors.New("read-only stream")
	}
	return s.w.Write(p)
}

func readConn(b []byte) *Conn { return NewConn(&rw{r: bytes.NewReader(b)}) }

func header(length uint32, typ MessageType, id uint32) []byte {
	h := make([]byte, headerSize)
	binary.BigEndian.PutUint32(h, length)
	binary.BigEndian.PutUint16(h[4:], uint16(typ))
	binary.BigEndian.PutUint32(h[6:], id)
	return h
}

func TestReadFrameErrors(t *testing.T) {
	ping, _ := AppendFrame(nil, 5, &Ping{})
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"empty stream", nil, io.EOF},
		{"partial length", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"partial header", header(6, TypePing, 1)[:7], io.ErrUnexpectedEOF},
		{"partial body", cat(header(10, TypeAck, 1), []byte{1, 2}), io.ErrUnexpectedEOF},
		{"length below header", header(5, TypePing, 1), ErrMalformed},
		{"length zero", header(0, TypePing, 1), ErrMalformed},
		{"oversize", header(MaxFrameSize+1, TypeSend, 1), ErrFrameTooLarge},
		{"oversize max uint32", header(0xffffffff, TypeSend, 1), ErrFrameTooLarge},
		{"unknown type", cat(header(9, 999, 3), []byte{1, 2, 3}, ping), ErrUnknownMessageType},
		{"type 0", cat(header(6, 0, 3)), ErrUnknownMessageType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := readConn(tt.input).ReadFrame()
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadFrame = %+v, %v; want %v", f, err, tt.want)
			}
		})
	}

	// After an unknown type the stream is still in step, and the request ID is known.
	c := readConn(cat(header(9, 999, 3), []byte{1, 2, 3}, ping))
	f, err := c.ReadFrame()
	if !errors.Is(err, ErrUnknownMessageType) || f.RequestID != 3 || f.Type != 999 || f.Body != nil || CodeOf(err) != CodeUnknownMessage {
		t.Fatalf("unknown type: %+v, %v", f, err)
	}
	id, m, err := c.ReadMessage()
	if err != nil || id != 5 || m.Type() != TypePing {
		t.Fatalf("frame after unknown type: %d, %v, %v", id, m, err)
	}
	if _, err := c.ReadFrame(); err != io.EOF {
		t.Fatalf("end: %v, want io.EOF", err)
	}

	// A malformed body keeps the request ID and the stream.
	c = readConn(cat(header(7, TypeSendResult, 9), []byte{7}, ping))
	id, _, err = c.ReadMessage()
	if !errors.Is(err, ErrMalformed) || id != 9 || CodeOf(err) != CodeMalformed {
		t.Fatalf("malformed body: %d, %v", id, err)
	}
	if _, m, err := c.ReadMessage(); err != nil || m.Type() != TypePing {
		t.Fatalf("frame after malformed body: %v, %v", m, err)
	}
}

func TestReadLimit(t *testing.T) {
	body := bytes.Repeat([]byte{1}, 2000)
	frame, err := AppendFrame(nil, 1, &Directory{Signed: body})
	if err != nil {
		t.Fatal(err)
	}
	c := readConn(frame)
	c.SetReadLimit(1024)
	if _, err := c.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) || CodeOf(err) != CodeTooLarge {
		t.Fatalf("over read limit: %v", err)
	}
	c = readConn(frame)
	c.SetReadLimit(1 << 30) // clamped to MaxFrameSize
	if _, err := c.ReadFrame(); err != nil {
		t.Fatal(err)
	}
}

func TestLargeFrame(t *testing.T) {
	// A body larger than readChunk arrives whole, read in growing steps.
	m := &Send{MessageID: id16(1), GroupID: GroupID("g"), Payload: bytes.Repeat([]byte{9}, MaxBodySize-200)}
	frame, err := AppendFrame(nil, 1, m)
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := readConn(frame).ReadMessage()
	if err != nil || !bytes.Equal(got.(*Send).Payload, m.Payload) {
		t.Fatalf("large frame: %v", err)
	}
	// A frame over the limit is refused on the way out.
	m.Payload = make([]byte, MaxBodySize)
	if _, err := AppendFrame(nil, 1, m); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("AppendFrame oversize: %v", err)
	}
	c := NewConn(&rw{r: bytes.NewReader(nil), w: io.Discard})
	if err := c.WriteFrame(Frame{Type: TypeDirectory, Body: make([]byte, MaxBodySize+1)}); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("WriteFrame oversize: %v", err)
	}
	c.SetWriteLimit(100)
	if err := c.WriteMessage(1, &Directory{Signed: make([]byte, 100)}); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("WriteMessage over write limit: %v", err)
	}
	if err := c.WriteFrame(Frame{Type: TypePing, RequestID: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestWriteFrameMatchesWriteMessage(t *testing.T) {
	for _, m := range examples() {
		var a, b bytes.Buffer
		body, _ := Marshal(m)
		if err := NewConn(&rw{w: &a}).WriteFrame(Frame{Type: m.Type(), RequestID: 4, Body: body}); err != nil {
			t.Fatal(err)
		}
		if err := NewConn(&rw{w: &b}).WriteMessage(4, m); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatalf("%s: WriteFrame and WriteMessage differ", m.Type())
		}
	}
}

func testWelcome() *Welcome {
	return &Welcome{ServerTime: testTime, Limits: Limits{MaxFrameSize: 64 << 10, MaxChunkSize: 32 << 10, MaxRecipients: 100, MaxTTL: 604800, PingInterval: 240}}
}

// TestPipe runs the handshake and one Send over an in-memory connection.
func TestPipe(t *testing.T) {
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	client, server := NewConn(cc), NewConn(sc)

	done := make(chan error, 1)
	go func() {
		done <- func() error {
			h, err := server.ServerHandshake(testWelcome())
			if err != nil {
				return err
			}
			if h.Software != "test/1" {
				return errors.New("wrong software string")
			}
			id, m, err := server.ReadMessage()
			if err != nil {
				return err
			}
			send, ok := m.(*Send)
			if !ok || send.Epoch != 3 || len(send.Recipients) != 2 {
				return errors.New("server got the wrong message")
			}
			return server.WriteMessage(id, &SendResult{Status: SendStaleEpoch, CurrentEpoch: 4})
		}()
	}()

	w, err := client.ClientHandshake(&Hello{Versions: []uint16{9, ProtocolVersion1}, Software: "test/1"})
	if err != nil {
		t.Fatal(err)
	}
	if w.Version != ProtocolVersion1 || !w.ServerTime.Equal(testTime) || w.Limits.MaxFrameSize != 64<<10 {
		t.Fatalf("Welcome = %+v", w)
	}
	// The client now respects the exchange's frame limit.
	if err := client.WriteMessage(2, &Directory{Signed: make([]byte, 64<<10)}); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("write over the exchange's limit: %v", err)
	}
	send := &Send{MessageID: id16(1), GroupID: GroupID("g"), Epoch: 3, IsCommit: true, Recipients: []DeviceID{id16(1), id16(2)}, Payload: []byte{1, 2, 3}}
	if err := client.WriteMessage(7, send); err != nil {
		t.Fatal(err)
	}
	id, m, err := client.ReadMessage()
	if err != nil || id != 7 {
		t.Fatalf("SendResult: %d, %v", id, err)
	}
	if r := m.(*SendResult); r.Status != SendStaleEpoch || r.CurrentEpoch != 4 {
		t.Fatalf("SendResult = %+v", r)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestHandshakeRefusals(t *testing.T) {
	tests := []struct {
		name       string
		first      Message
		wantServer error
		wantCode   Code
	}{
		{"no common version", &Hello{Versions: []uint16{2, 3}}, ErrUnsupportedVersion, CodeUnsupportedVersion},
		{"not a Hello", &Ping{}, ErrUnexpectedMessage, CodeUnexpectedMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc, sc := net.Pipe()
			defer cc.Close()
			defer sc.Close()
			client, server := NewConn(cc), NewConn(sc)
			done := make(chan error, 1)
			go func() {
				_, err := server.ServerHandshake(testWelcome())
				done <- err
			}()
			var err error
			if h, ok := tt.first.(*Hello); ok {
				_, err = client.ClientHandshake(h)
			} else {
				if err := client.WriteMessage(1, tt.first); err != nil {
					t.Fatal(err)
				}
				_, m, rerr := client.ReadMessage()
				if rerr != nil {
					t.Fatal(rerr)
				}
				err = m.(*Error)
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.wantCode {
				t.Fatalf("client got %v, want code %s", err, tt.wantCode)
			}
			if err := <-done; !errors.Is(err, tt.wantServer) {
				t.Fatalf("server: %v, want %v", err, tt.wantServer)
			}
		})
	}
}

// TestConcurrentWriters checks that frames written from many goroutines arrive whole.
func TestConcurrentWriters(t *testing.T) {
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	client, server := NewConn(cc), NewConn(sc)
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m := &Send{MessageID: id16(byte(w)), GroupID: GroupID{byte(w)}, Epoch: uint64(i), Payload: bytes.Repeat([]byte{byte(w)}, 100+w*37)}
				if err := client.WriteMessage(uint32(w<<16|i), m); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	next := make([]uint64, writers)
	for range writers * each {
		id, m, err := server.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		s := m.(*Send)
		w := int(id >> 16)
		if s.GroupID[0] != byte(w) || s.Epoch != next[w] || len(s.Payload) != 100+w*37 {
			t.Fatalf("frame from writer %d out of order or mixed", w)
		}
		next[w]++
	}
	wg.Wait()
}

// TestIdleConnHoldsNoBuffers checks the design goal that an idle connection costs
// the exchange almost nothing beyond TLS: Conn has no field that can hold a buffer,
// and a thousand Conns that have each read a 64 KiB frame retain well under 1 KB each.
func TestIdleConnHoldsNoBuffers(t *testing.T) {
	typ := reflect.TypeFor[Conn]()
	for i := range typ.NumField() {
		switch f := typ.Field(i); f.Type.Kind() {
		case reflect.Slice, reflect.Map, reflect.Chan, reflect.Array, reflect.Pointer:
			t.Errorf("Conn.%s is a %s: it could keep a buffer between frames", f.Name, f.Type.Kind())
		}
	}

	frame, err := AppendFrame(nil, 1, &Directory{Signed: make([]byte, 64<<10)})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	conns := make([]*Conn, n)
	streams := make([]rw, n)
	for i := range conns {
		streams[i].r = bytes.NewReader(frame)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range conns {
		conns[i] = NewConn(&streams[i])
		if _, err := conns[i].ReadFrame(); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perConn := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("retained per idle Conn: %d bytes (Conn is %d bytes)", perConn, typ.Size())
	if perConn > 512 {
		t.Errorf("each idle Conn retains %d bytes after reading a frame; want ≤ 512", perConn)
	}
	runtime.KeepAlive(conns)
	runtime.KeepAlive(streams)
}

// TestReadBodyGrowsWithData checks that a peer announcing a large frame and then
// stalling makes the reader allocate only about readChunk, not the announced size.
func TestReadBodyGrowsWithData(t *testing.T) {
	pr, pw := io.Pipe()
	c := NewConn(&rw{r: pr})
	go func() {
		pw.Write(header(MaxFrameSize, TypeDirectory, 1))
		pw.Write(make([]byte, 1000))
		pw.CloseWithError(errors.New("stall"))
	}()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := c.ReadFrame()
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("read a truncated frame")
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 2*readChunk {
		t.Errorf("allocated %d bytes for 1000 received; want ≤ %d", got, 2*readChunk)
	}
}
