package client

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"mahfooz/authority"
	"mahfooz/device/rtc"
	"mahfooz/exchange"
	"mahfooz/exchange/relay"
	"mahfooz/wire"
)

// newMediaExchange is newTestExchange with a call relay on 127.0.0.1.
func newMediaExchange(t *testing.T) *testExchange {
	t.Helper()
	a, err := authority.Init(filepath.Join(t.TempDir(), "authority"), []byte("pass"), authority.Options{KDF: testKDF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	cert, err := a.IssueServerCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{Conn: udp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	srv, err := exchange.NewServer(exchange.Config{Registry: a.Registry, Authority: a, ServerCert: cert, Media: r})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &testExchange{a: a, srv: srv, addr: ln.Addr().String()}
}

func dialMedia(t *testing.T, c *Client, call wire.CallID, members ...authority.DeviceID) (*rtc.Link, error) {
	t.Helper()
	ids := make([]wire.DeviceID, len(members))
	for i, m := range members {
		ids[i] = wire.DeviceID(m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := rtc.Dial(ctx, rtc.Config{}, c.CallJoiner(call, ids))
	if err == nil {
		t.Cleanup(func() { l.Close() })
	}
	return l, err
}

func waitLinkDown(t *testing.T, l *rtc.Link, what string) {
	t.Helper()
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: media link still up", what)
	}
}

func TestCallMethods(t *testing.T) {
	e := newMediaExchange(t)
	da, db, dx := e.enrol(t, "Amina"), e.enrol(t, "Bilal"), e.enrol(t, "Xavier")
	ca, err := e.dial(t, da, Handlers{})
	if err != nil {
		t.Fatal(err)
	}
	cb, err := e.dial(t, db, Handlers{})
	if err != nil {
		t.Fatal(err)
	}
	cx, err := e.dial(t, dx, Handlers{})
	if err != nil {
		t.Fatal(err)
	}
	call := wire.CallID{0xCA, 1}
	// Members in any order: the client sorts them.
	la, err := dialMedia(t, ca, call, db.id, da.id)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := dialMedia(t, cb, call, da.id, db.id)
	if err != nil {
		t.Fatal(err)
	}
	// Media flows from a to b.
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 1500)
		if _, _, p, err := lb.ReadRTP(buf); err == nil {
			got <- string(p)
		}
	}()
	deadline := time.After(10 * time.Second)
	for done := false; !done; {
		if err := la.WriteRTP(0, false, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-got:
			if p != "hello" {
				t.Fatalf("b received %q", p)
			}
			done = true
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("b never received a packet")
		}
	}

	if _, err := dialMedia(t, cx, call, dx.id); wire.CodeOf(err) != wire.CodeForbidden {
		t.Fatalf("outsider joining: %v, want forbidden", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cx.SetCallMembers(ctx, call, []wire.DeviceID{wire.DeviceID(dx.id)}); wire.CodeOf(err) != wire.CodeForbidden {
		t.Fatalf("outsider setting members: %v, want forbidden", err)
	}
	if err := ca.SetCallMembers(ctx, call, []wire.DeviceID{wire.DeviceID(da.id)}); err != nil {
		t.Fatal(err)
	}
	waitLinkDown(t, lb, "member removed by SetCallMembers")
	if err := ca.LeaveCall(ctx, call); err != nil {
		t.Fatal(err)
	}
	waitLinkDown(t, la, "member that left")
	if err := ca.LeaveCall(ctx, call); err != nil {
		t.Fatalf("leaving twice: %v", err)
	}
}
