package exchange

import (
	"bytes"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"mahfooz/wire"
)

// BenchmarkDelivery measures durable deliveries of 1 KB messages from one sender
// (up to 256 Sends in flight) to N connected recipients that acknowledge what
// they receive in batches, over TLS on loopback with the SQLite store. One op is
// one message; deliveries/s counts messages × recipients.
func BenchmarkDelivery(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("recipients=%d", n), func(b *testing.B) {
			e := newStoreEnv(b, func(c *Config) {
				c.Logger = slog.New(slog.DiscardHandler)
				c.ExpirySweep = DefaultExpirySweep
				c.DeviceRateLimit = Rate{Events: 1 << 30, Per: time.Second}
				c.Quotas.MailboxEntries = 1 << 30
				c.Quotas.MailboxBytes = 1 << 40
			})
			sender := enrolMLS(b, e.a, "sender")
			var recipients []mlsDevice
			for i := range n {
				recipients = append(recipients, enrolMLS(b, e.a, fmt.Sprintf("recipient %d", i)))
			}
			s := e.session(b, sender)
			var wg sync.WaitGroup
			for _, r := range recipients {
				rs := e.session(b, r)
				wg.Add(1)
				go func() {
					defer wg.Done()
					var pending []uint64
					got := 0
					for got < b.N {
						m := <-rs.pushes
						d, ok := m.(*wire.Deliver)
						if !ok {
							continue
						}
						got++
						pending = append(pending, d.Sequence)
						if len(pending) == 64 || got == b.N {
							rs.start(&wire.Ack{Sequences: pending})
							pending = nil
						}
					}
				}()
			}
			payload := mlsPayload(testGroup, 1, wire.ContentTypeApplication, string(bytes.Repeat([]byte{0x5a}, 1000)))
			to := ids(recipients...)
			window := make(chan struct{}, 256)
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			for i := range b.N {
				window <- struct{}{}
				ch := s.start(&wire.Send{MessageID: wire.MessageID{0: 1, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)},
					GroupID: testGroup, Epoch: 1, Recipients: to, Payload: payload})
				go func() {
					if r, ok := (<-ch).(*wire.SendResult); !ok || r.Status != wire.SendAccepted {
						b.Error("send not accepted")
					}
					<-window
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
