package exchange

import (
	"testing"
	"time"

	"mahfooz/authority"
	"mahfooz/wire"
)

// cutOffWithin waits for the session to end, which it must within a second of
// start, having received Revoked.
func cutOffWithin(t *testing.T, s *session, start time.Time) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(time.Until(start.Add(time.Second))):
		t.Fatalf("connection still open %v after revocation", time.Since(start))
	}
	if took := time.Since(start); took >= time.Second {
		t.Fatalf("connection closed %v after revocation, want < 1s", took)
	}
	for _, m := range s.drain() {
		if _, ok := m.(*wire.Revoked); ok {
			return
		}
	}
	t.Error("connection closed without Revoked")
}

// directoryUpdated waits for a DirectoryUpdated push.
func directoryUpdated(t *testing.T, s *session, who string) {
	t.Helper()
	select {
	case <-s.dirUp:
	case <-time.After(waitTime):
		t.Fatalf("%s got no DirectoryUpdated", who)
	}
}

func TestRevocationWithDelivery(t *testing.T) {
	e := newStoreEnv(t, nil)
	amina, bilal, chen, dina := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal"), enrolMLS(t, e.a, "Chen"), enrolMLS(t, e.a, "Dina")
	a, b, c := e.session(t, amina), e.session(t, bilal), e.session(t, chen)
	// Dina is offline with a message and KeyPackages waiting.
	a.accepted(appMessage(1, testGroup, dina))
	d := e.session(t, dina)
	d.ok(&wire.UploadKeyPackages{KeyPackages: [][]byte{keyPackage(t, dina, e.clock.Now())}})
	d.close()
	a.drain()
	for len(a.dirUp) > 0 { // enrolments above may still be announced
		<-a.dirUp
	}

	t.Run("Server.Revoke", func(t *testing.T) {
		start := time.Now()
		if err := e.srv.Revoke(bilal.id); err != nil {
			t.Fatal(err)
		}
		cutOffWithin(t, b, start)
		directoryUpdated(t, a, "Amina")
		directoryUpdated(t, c, "Chen")
		if err := refusedAtTLS(e.dial(t, bilal.cert)); err != nil {
			t.Errorf("revoked device reconnected: %v", err)
		}
		// Sending to the revoked device now leaves it out.
		a.accepted(appMessage(2, testGroup, bilal, chen))
		if dv := c.deliver(); dv.MessageID != appMessage(2, testGroup).MessageID {
			t.Error("Chen did not get the message")
		}
	})

	t.Run("authority revoke in another handle", func(t *testing.T) {
		other, err := authority.Open(e.dir, testPassphrase, authority.Options{KDF: testKDF})
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		start := time.Now()
		if err := other.Revoke(chen.id); err != nil {
			t.Fatal(err)
		}
		cutOffWithin(t, c, start)
		directoryUpdated(t, a, "Amina")
	})

	t.Run("offline device forgotten", func(t *testing.T) {
		if err := e.srv.Revoke(dina.id); err != nil {
			t.Fatal(err)
		}
		if es, err := e.store.Pending(t.Context(), dina.wid(), 0, 10, 1<<20); err != nil || len(es) != 0 {
			t.Errorf("revoked device's mailbox: %d entries, %v", len(es), err)
		}
		if n, lr, err := e.store.KeyPackageCount(t.Context(), dina.wid()); err != nil || n != 0 || lr {
			t.Errorf("revoked device's KeyPackages: %d, %v, %v", n, lr, err)
		}
		wantErr(t, a.call(&wire.ClaimKeyPackage{Device: dina.wid()}), wire.CodeNotFound)
	})
	a.sync() // Amina was never disturbed
}
