package systemtest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mahfooz/device"
)

// TestExchangeKilledMidLoad kills the exchange with SIGKILL while a device is
// sending a stream of messages, restarts it on the same store, and checks that
// every message the exchange acknowledged to its sender reaches each recipient's
// UI exactly once: the connected recipient's, which reconnects by itself, and the
// offline one's, which fetches everything when it comes back.
func TestExchangeKilledMidLoad(t *testing.T) {
	s := newSystem(t)
	amina, bilal, chen := s.enrol("Amina"), s.enrol("Bilal"), s.enrol("Chen")
	group := device.ConversationRef{Group: "load"}
	ctx := testContext(t, 3*time.Minute)
	if _, err := amina.device().CreateGroup(ctx, "load", []string{"Bilal", "Chen"}); err != nil {
		t.Fatal(err)
	}
	bilal.run()
	if err := chen.device().Sync(ctx); err != nil {
		t.Fatal(err)
	}
	chen.close() // offline for the whole load

	// Amina and Bilal (connected, receiving while sending) each send a stream of
	// messages. A third of the way in the exchange is killed; it comes back 300 ms
	// later and the streams go on. A send that fails is not retried by the test:
	// the device keeps it in its outbox and sends it when it can.
	const perSender = 100
	var (
		mu       sync.Mutex
		acked    = make(map[string]bool) // the sender was told the exchange stored it
		failures atomic.Int32
		sent     atomic.Int32
		killedAt atomic.Int32
	)
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		for sent.Load() < 2*perSender/3 {
			time.Sleep(time.Millisecond)
		}
		s.kill()
		killedAt.Store(sent.Load())
		time.Sleep(300 * time.Millisecond)
		s.start()
	}()
	var wg sync.WaitGroup
	for _, from := range []*member{amina, bilal} {
		wg.Go(func() {
			for i := range perSender {
				text := fmt.Sprintf("%s's load message %03d", from.name, i)
				m, err := from.device().SendText(ctx, group, text)
				sent.Add(1)
				if err != nil {
					failures.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				if m.Status == device.StatusSent {
					mu.Lock()
					acked[text] = true
					mu.Unlock()
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	<-restarted
	if failures.Load() == 0 {
		t.Fatal("no send failed: the exchange was not down during the load")
	}
	if len(acked) <= int(killedAt.Load()) {
		t.Fatalf("%d messages acknowledged, none after the restart (killed after %d sends)", len(acked), killedAt.Load())
	}

	// Each sender's outbox drains once the exchange is back.
	for _, m := range []*member{amina, bilal} {
		waitFor(t, m.name+"'s outbox to drain", time.Minute, func() bool {
			if err := m.device().Sync(ctx); err != nil {
				return false
			}
			ms, err := m.device().Messages(group)
			if err != nil {
				t.Fatal(err)
			}
			for _, msg := range ms {
				if msg.Outgoing && msg.Kind == device.MessageText && msg.Status != device.StatusSent {
					return false
				}
			}
			return true
		})
	}

	// Every acknowledged message is shown exactly once by every other member,
	// and nothing is shown twice.
	check := func(who *member) {
		t.Helper()
		n := count(who.texts(group))
		for text := range acked {
			if n[text] != 1 {
				t.Errorf("%s shows acknowledged %q %d times, want exactly once", who.name, text, n[text])
			}
		}
		for text, c := range n {
			if c > 1 {
				t.Errorf("%s shows %q %d times", who.name, text, c)
			}
		}
	}
	all := func(who *member) func() bool {
		return func() bool {
			if err := who.device().Sync(ctx); err != nil {
				return false
			}
			n := count(who.texts(group))
			for text := range acked {
				if n[text] == 0 {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "Amina to show every acknowledged message", time.Minute, all(amina))
	waitFor(t, "Bilal to show every acknowledged message", time.Minute, all(bilal))
	check(amina)
	check(bilal)

	chen.reopen()
	if err := chen.device().Sync(ctx); err != nil {
		t.Fatal(err)
	}
	check(chen)
	t.Logf("%d messages sent, killed after %d; %d acknowledged when sent, %d sends failed while the exchange was down",
		2*perSender, killedAt.Load(), len(acked), failures.Load())
}
