package exchangebench

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"mahfooz/exchange"
	"mahfooz/exchange/store/sqlite"
	"mahfooz/wire"
)

// configureDelivery gives the exchange its durable store: SQLite in dir, as
// `mahfooz exchange serve` keeps it. The returned Closer closes the store.
func configureDelivery(dir string, cfg *exchange.Config) (io.Closer, error) {
	st, err := sqlite.Open(filepath.Join(dir, "exchange.db"), sqlite.Options{})
	if err != nil {
		return nil, err
	}
	cfg.Store = st
	return st, nil
}

// maxRecipients is the largest fan-out measured; the shared exchange enrols one
// publisher and this many recipients once per test binary run.
const maxRecipients = 100

// shared is the exchange the delivery benchmarks share, so that each benchmark
// run does not enrol 101 devices again. closeShared (from TestMain) stops it.
var shared struct {
	once       sync.Once
	dir        string
	r          *rig
	publisher  device
	recipients []device // sorted by device ID
	err        error
}

// sharedExchange starts the shared exchange on first use.
func sharedExchange() (*rig, error) {
	shared.once.Do(func() {
		if shared.dir, shared.err = benchDir("delivery-"); shared.err != nil {
			return
		}
		if shared.r, shared.err = startRig(shared.dir, func(cfg *exchange.Config) (io.Closer, error) {
			// One publishing device stands for the many senders of a real
			// exchange, so its request rate is not limited.
			cfg.DeviceRateLimit = exchange.Rate{Events: 1 << 30, Per: time.Second}
			return configureDelivery(shared.dir, cfg)
		}); shared.err != nil {
			return
		}
		var ds []device
		if ds, shared.err = enrolMany(shared.r.a, "device", maxRecipients+1); shared.err != nil {
			return
		}
		shared.publisher, shared.recipients = ds[0], ds[1:]
	})
	return shared.r, shared.err
}

// closeShared stops the shared exchange, if it was started.
func closeShared() {
	if shared.r != nil {
		if err := shared.r.close(); err != nil {
			fmt.Fprintln(os.Stderr, "exchangebench: closing the shared exchange:", err)
		}
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

// newMessageID returns a random message ID.
func newMessageID() wire.MessageID {
	var id wire.MessageID
	rand.Read(id[:])
	return id
}

// BenchmarkDeliveryLatency measures, for one 1 KB message at a time, the time from
// device A writing Send to device B having read the Deliver: the exchange checks
// the Send, commits it to its SQLite store (fsync), then pushes it. Both devices
// are connected over TLS on loopback; B acknowledges each message. It reports the
// median and the 99th percentile.
func BenchmarkDeliveryLatency(b *testing.B) {
	r, err := sharedExchange()
	if err != nil {
		b.Fatal(err)
	}
	a, err := connect(r.addr, clientTLS(r.roots, &shared.publisher))
	if err != nil {
		b.Fatal(err)
	}
	defer a.close()
	bdev := shared.recipients[0]
	bc, err := connect(r.addr, clientTLS(r.roots, &bdev))
	if err != nil {
		b.Fatal(err)
	}
	defer bc.close()

	// A's answers (SendResult) are read and checked off the timed path.
	aErr := make(chan error, 1)
	go func() {
		for {
			_, m, err := a.wc.ReadMessage()
			if err != nil {
				aErr <- err
				return
			}
			if e, ok := m.(*wire.Error); ok {
				aErr <- fmt.Errorf("Send refused: %v", e)
				return
			}
		}
	}()
	// B timestamps each Deliver as soon as it is read, then acknowledges it.
	delivered := make(chan time.Time, 1)
	bErr := make(chan error, 1)
	go func() {
		var ackID uint32 = 1
		for {
			_, m, err := bc.wc.ReadMessage()
			at := time.Now()
			if err != nil {
				bErr <- err
				return
			}
			if d, ok := m.(*wire.Deliver); ok {
				delivered <- at
				ackID++
				if err := bc.wc.WriteMessage(ackID, &wire.Ack{Sequences: []uint64{d.Sequence}}); err != nil {
					bErr <- err
					return
				}
			}
		}
	}()

	send := &wire.Send{GroupID: benchGroupID, Epoch: 1, Recipients: []wire.DeviceID{bdev.id}, Payload: benchPayload()}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		send.MessageID = newMessageID()
		start := time.Now()
		if err := a.wc.WriteMessage(uint32(i)+2, send); err != nil {
			b.Fatal(err)
		}
		select {
		case at := <-delivered:
			lat = append(lat, at.Sub(start))
		case err := <-aErr:
			b.Fatal(err)
		case err := <-bErr:
			b.Fatal(err)
		case <-time.After(fanoutTimeout):
			b.Fatal("no Deliver")
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(percentile(lat, 50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 99).Microseconds()), "p99-µs")
}

// percentile returns the p-th percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[max(i, 1)-1]
}

// exchangeFanout is the publisher and recipients' connections to the shared
// exchange. One goroutine drives it; each connection has its own reading goroutine.
type exchangeFanout struct {
	pub        *client
	recipients []wire.DeviceID
	conns      []*client
	c          *counters
	payload    []byte

	window   chan struct{} // one token per Send without its SendResult
	failures chan error    // the first error of any connection's reader
	wg       sync.WaitGroup
}

func openExchangeFanout(recipients int) (fanout, error) {
	r, err := sharedExchange()
	if err != nil {
		return nil, err
	}
	f := &exchangeFanout{
		c:        newCounters(recipients),
		payload:  benchPayload(),
		window:   make(chan struct{}, fanoutWindow),
		failures: make(chan error, recipients+1),
	}
	if f.pub, err = connect(r.addr, clientTLS(r.roots, &shared.publisher)); err != nil {
		return nil, err
	}
	for i := range recipients {
		d := shared.recipients[i]
		c, err := connect(r.addr, clientTLS(r.roots, &d))
		if err != nil {
			f.close()
			return nil, err
		}
		f.conns = append(f.conns, c)
		f.recipients = append(f.recipients, d.id)
	}
	f.wg.Add(1 + len(f.conns))
	go f.readPublisher()
	for i, c := range f.conns {
		go f.readRecipient(i, c)
	}
	return f, nil
}

func (f *exchangeFanout) fail(err error) {
	select {
	case f.failures <- err:
	default:
	}
}

// readPublisher reads SendResults and frees one window slot for each.
func (f *exchangeFanout) readPublisher() {
	defer f.wg.Done()
	for {
		_, m, err := f.pub.wc.ReadMessage()
		if err != nil {
			f.fail(fmt.Errorf("publisher: %w", err))
			return
		}
		switch m := m.(type) {
		case *wire.SendResult:
			if m.Status != wire.SendAccepted {
				f.fail(fmt.Errorf("publisher: Send not accepted: status %d", m.Status))
				return
			}
			<-f.window
		case *wire.Error:
			f.fail(fmt.Errorf("publisher: %w", m))
			return
		}
	}
}

// readRecipient reads Delivers and acknowledges them: the sequences read while
// the previous Ack was being written go into the next Ack, so acknowledgements
// batch themselves under load. A delivery is counted when its Ack is answered.
func (f *exchangeFanout) readRecipient(i int, c *client) {
	defer f.wg.Done()
	seqs := make(chan uint64, wire.MaxAck)
	var acking sync.Map // Ack request ID → number of sequences
	ackerDone := make(chan struct{})
	go func() {
		defer close(ackerDone)
		var id uint32 = 1
		for seq := range seqs {
			batch := []uint64{seq}
		drain:
			for len(batch) < wire.MaxAck {
				select {
				case s, ok := <-seqs:
					if !ok {
						break drain
					}
					batch = append(batch, s)
				default:
					break drain
				}
			}
			id++
			acking.Store(id, len(batch))
			if err := c.wc.WriteMessage(id, &wire.Ack{Sequences: batch}); err != nil {
				f.fail(fmt.Errorf("recipient %d: %w", i, err))
				return
			}
		}
	}()
	defer func() { close(seqs); <-ackerDone }()
	for {
		id, m, err := c.wc.ReadMessage()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				f.fail(fmt.Errorf("recipient %d: %w", i, err))
			}
			return
		}
		switch m := m.(type) {
		case *wire.Deliver:
			select {
			case seqs <- m.Sequence:
			case <-ackerDone: // it failed and said why
				return
			}
		case *wire.OK:
			if n, ok := acking.LoadAndDelete(id); ok {
				f.c.add(i, int64(n.(int)))
			}
		case *wire.Error:
			f.fail(fmt.Errorf("recipient %d: %w", i, m))
			return
		}
	}
}

func (f *exchangeFanout) run(msgs int) error {
	f.c.start(msgs)
	send := &wire.Send{GroupID: benchGroupID, Epoch: 1, Recipients: f.recipients, Payload: f.payload}
	done := make(chan error, 1)
	go func() { done <- f.c.wait() }()
	for i := range msgs {
		select {
		case f.window <- struct{}{}:
		case err := <-f.failures:
			return err
		}
		send.MessageID = newMessageID()
		if err := f.pub.wc.WriteMessage(uint32(i)+2, send); err != nil {
			return err
		}
	}
	select {
	case err := <-done:
		return err
	case err := <-f.failures:
		return err
	}
}

func (f *exchangeFanout) close() error {
	var err error
	if f.pub != nil {
		err = f.pub.close()
	}
	for _, c := range f.conns {
		err = errors.Join(err, c.close())
	}
	f.wg.Wait()
	return err
}
