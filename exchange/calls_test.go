package exchange

import (
	"context"
	"net"
	"testing"
	"time"

	"mahfooz/device/rtc"
	"mahfooz/exchange/relay"
	"mahfooz/wire"
)

// newMediaEnv is a store environment whose exchange has a call relay on 127.0.0.1.
func newMediaEnv(t *testing.T) (*storeEnv, *relay.Relay) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{Conn: conn})
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the environment's cleanups, so it runs after the server closes.
	t.Cleanup(func() { r.Close() })
	e := newStoreEnv(t, func(c *Config) { c.Media = r })
	return e, r
}

// joinCall dials a media link for the session's device, sending the offer in a
// JoinCall; a refusal comes back as the *wire.Error.
func joinCall(t *testing.T, s *session, call wire.CallID, members []wire.DeviceID) (*rtc.Link, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	l, err := rtc.Dial(ctx, rtc.Config{}, func(ctx context.Context, offer string) (string, error) {
		switch a := s.call(&wire.JoinCall{CallID: call, Members: members, Offer: offer}).(type) {
		case *wire.CallJoined:
			return a.Answer, nil
		case *wire.Error:
			return "", a
		default:
			t.Fatalf("JoinCall answered with %s", describe(a))
			return "", nil
		}
	})
	if err == nil {
		t.Cleanup(func() { l.Close() })
	}
	return l, err
}

func linkDown(t *testing.T, l *rtc.Link, what string) {
	t.Helper()
	select {
	case <-l.Done():
	case <-time.After(waitTime):
		t.Fatalf("%s: media link still up", what)
	}
}

// hears has from send until to receives a packet, and checks the payload.
func hears(t *testing.T, from, to *rtc.Link) {
	t.Helper()
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 1500)
		_, _, p, err := to.ReadRTP(buf)
		if err == nil {
			got <- p
		}
		close(got)
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitTime)
	for {
		if err := from.WriteRTP(960, true, []byte("sframe ciphertext")); err != nil {
			t.Fatal(err)
		}
		select {
		case p, ok := <-got:
			if !ok || string(p) != "sframe ciphertext" {
				t.Fatalf("received %q, %v", p, ok)
			}
			return
		case <-tick.C:
		case <-deadline:
			t.Fatal("no packet arrived through the relay")
		}
	}
}

func TestCallsOverExchange(t *testing.T) {
	e, r := newMediaEnv(t)
	a, b, x := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal"), enrolMLS(t, e.a, "Xavier")
	sa, sb, sx := e.session(t, a), e.session(t, b), e.session(t, x)
	call := wire.CallID{1, 2, 3}
	members := ids(a, b)

	la, err := joinCall(t, sa, call, members)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := joinCall(t, sb, call, members)
	if err != nil {
		t.Fatal(err)
	}
	hears(t, la, lb)
	hears(t, lb, la)

	// An admitted device that is not on the allow-list is refused, even if it
	// lists itself.
	_, err = joinCall(t, sx, call, ids(a, b, x))
	if we, ok := err.(*wire.Error); !ok || we.Code != wire.CodeForbidden {
		t.Fatalf("outsider's JoinCall: %v, want Error{forbidden}", err)
	}
	wantErr(t, sx.call(&wire.SetCallMembers{CallID: call, Members: ids(a, b, x)}), wire.CodeForbidden)
	// A garbage offer and a first join without the sender are invalid requests.
	wantErr(t, sx.call(&wire.JoinCall{CallID: wire.CallID{9}, Members: ids(x), Offer: "v=0"}), wire.CodeInvalidRequest)
	wantErr(t, sx.call(&wire.JoinCall{CallID: wire.CallID{9}, Members: ids(a), Offer: "v=0"}), wire.CodeInvalidRequest)

	// Closing a device's connection to the exchange takes it out of the call.
	sb.close()
	linkDown(t, lb, "device whose connection closed")
	waitFor(t, "the relay to drop the device", func() bool { return len(r.Participants(call)) == 1 })

	// SetCallMembers from a participant, and LeaveCall.
	sa.ok(&wire.SetCallMembers{CallID: call, Members: ids(a)})
	sa.ok(&wire.LeaveCall{CallID: call})
	linkDown(t, la, "device that left")
	if n := r.Calls(); n != 0 {
		t.Fatalf("%d calls left", n)
	}
}

func TestCallsWithoutRelay(t *testing.T) {
	e := newStoreEnv(t, nil)
	a := enrolMLS(t, e.a, "Amina")
	s := e.session(t, a)
	wantErr(t, s.call(&wire.JoinCall{CallID: wire.CallID{1}, Members: ids(a), Offer: "v=0"}), wire.CodeUnavailable)
	wantErr(t, s.call(&wire.LeaveCall{CallID: wire.CallID{1}}), wire.CodeUnavailable)
}

// TestRevokedDeviceLosesCall checks that revocation cuts a device's media.
func TestRevokedDeviceLosesCall(t *testing.T) {
	e, r := newMediaEnv(t)
	a, b := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal")
	sa, sb := e.session(t, a), e.session(t, b)
	call := wire.CallID{7}
	la, err := joinCall(t, sa, call, ids(a, b))
	if err != nil {
		t.Fatal(err)
	}
	lb, err := joinCall(t, sb, call, ids(a, b))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Revoke(b.id); err != nil {
		t.Fatal(err)
	}
	linkDown(t, lb, "revoked device")
	waitFor(t, "the relay to drop the revoked device", func() bool { return len(r.Participants(call)) == 1 })
	select {
	case <-la.Done():
		t.Fatal("the other participant's link ended")
	default:
	}
}
