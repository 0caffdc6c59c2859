package exchangebench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	natsSubject = "fanout"
	natsStream  = "FANOUT"
)

// startNATS starts an embedded NATS server on 127.0.0.1. With storeDir, JetStream
// is on, with file storage under storeDir and an fsync after every write.
func startNATS(storeDir string) (*server.Server, error) {
	opts := &server.Options{
		Host:   "127.0.0.1",
		Port:   server.RANDOM_PORT,
		NoLog:  true,
		NoSigs: true,
		// Let the server buffer a whole run for a slow subscriber rather than cut
		// it off: a disconnected subscriber would end the measurement.
		MaxPending: 1 << 30,
	}
	if storeDir != "" {
		opts.JetStream = true
		opts.StoreDir = storeDir
		opts.SyncAlways = true
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats: server not ready after 10s")
	}
	return s, nil
}

// counters counts each recipient's deliveries of the current run and signals when
// every recipient has reached the run's target. got and add are safe for concurrent
// use; start and wait are called by the one goroutine that drives the run.
type counters struct {
	target  atomic.Int64
	counts  []atomic.Int64
	pending sync.WaitGroup
}

func newCounters(n int) *counters { return &counters{counts: make([]atomic.Int64, n)} }

// start begins a run in which each recipient must get msgs messages.
func (c *counters) start(msgs int) {
	for i := range c.counts {
		c.counts[i].Store(0)
	}
	c.target.Store(int64(msgs))
	c.pending.Add(len(c.counts))
}

// got counts one delivery to recipient i.
func (c *counters) got(i int) { c.add(i, 1) }

// add counts k deliveries to recipient i.
func (c *counters) add(i int, k int64) {
	n, target := c.counts[i].Add(k), c.target.Load()
	if n >= target && n-k < target {
		c.pending.Done()
	}
}

// wait waits until every recipient has its messages, or fanoutTimeout passes.
func (c *counters) wait() error {
	done := make(chan struct{})
	go func() { c.pending.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(fanoutTimeout):
		var least int64 = -1
		for i := range c.counts {
			if n := c.counts[i].Load(); least < 0 || n < least {
				least = n
			}
		}
		return fmt.Errorf("after %v a recipient has %d of %d messages", fanoutTimeout, least, c.target.Load())
	}
}

// natsCore is core NATS: one publishing connection and one subscribing connection
// per recipient. One goroutine drives it.
type natsCore struct {
	srv     *server.Server
	pub     *nats.Conn
	subs    []*nats.Conn
	sub     []*nats.Subscription
	c       *counters
	payload []byte
}

func openNATSCore(recipients int) (fanout, error) {
	srv, err := startNATS("")
	if err != nil {
		return nil, err
	}
	f := &natsCore{srv: srv, c: newCounters(recipients), payload: benchPayload()}
	if f.pub, err = nats.Connect(srv.ClientURL()); err != nil {
		f.close()
		return nil, err
	}
	for i := range recipients {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			f.close()
			return nil, err
		}
		f.subs = append(f.subs, nc)
		sub, err := nc.Subscribe(natsSubject, func(*nats.Msg) { f.c.got(i) })
		if err != nil {
			f.close()
			return nil, err
		}
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			f.close()
			return nil, err
		}
		f.sub = append(f.sub, sub)
		if err := nc.Flush(); err != nil {
			f.close()
			return nil, err
		}
	}
	return f, nil
}

func (f *natsCore) run(msgs int) error {
	f.c.start(msgs)
	for i := range msgs {
		if err := f.pub.Publish(natsSubject, f.payload); err != nil {
			return err
		}
		if i%fanoutWindow == fanoutWindow-1 {
			if err := f.pub.Flush(); err != nil {
				return err
			}
		}
	}
	if err := f.pub.Flush(); err != nil {
		return err
	}
	if err := f.c.wait(); err != nil {
		return err
	}
	for i, s := range f.sub {
		if n, err := s.Dropped(); err != nil || n != 0 {
			return fmt.Errorf("nats: recipient %d dropped %d messages (%v)", i, n, err)
		}
	}
	return nil
}

func (f *natsCore) close() error {
	for _, nc := range f.subs {
		nc.Close()
	}
	if f.pub != nil {
		f.pub.Close()
	}
	f.srv.Shutdown()
	f.srv.WaitForShutdown()
	return nil
}

// natsJetStream is JetStream: a file-storage stream with interest retention, a
// publishing connection, and per recipient a connection with its own durable
// consumer that acknowledges every message. One goroutine drives it.
type natsJetStream struct {
	dir      string
	srv      *server.Server
	pub      *nats.Conn
	js       jetstream.JetStream
	stream   jetstream.Stream
	subs     []*nats.Conn
	consumes []jetstream.ConsumeContext
	c        *counters
	payload  []byte
}

func openNATSJetStream(recipients int) (fanout, error) {
	dir, err := benchDir("jetstream-")
	if err != nil {
		return nil, err
	}
	srv, err := startNATS(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	f := &natsJetStream{dir: dir, srv: srv, c: newCounters(recipients), payload: benchPayload()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if f.pub, err = nats.Connect(srv.ClientURL()); err != nil {
		f.close()
		return nil, err
	}
	if f.js, err = jetstream.New(f.pub, jetstream.WithPublishAsyncMaxPending(fanoutWindow)); err != nil {
		f.close()
		return nil, err
	}
	f.stream, err = f.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      natsStream,
		Subjects:  []string{natsSubject},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.InterestPolicy,
	})
	if err != nil {
		f.close()
		return nil, err
	}
	for i := range recipients {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			f.close()
			return nil, err
		}
		f.subs = append(f.subs, nc)
		js, err := jetstream.New(nc)
		if err != nil {
			f.close()
			return nil, err
		}
		cons, err := js.CreateOrUpdateConsumer(ctx, natsStream, jetstream.ConsumerConfig{
			Durable:   fmt.Sprintf("recipient-%d", i),
			AckPolicy: jetstream.AckExplicitPolicy,
		})
		if err != nil {
			f.close()
			return nil, err
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			if m.Ack() == nil {
				f.c.got(i)
			}
		})
		if err != nil {
			f.close()
			return nil, err
		}
		f.consumes = append(f.consumes, cc)
	}
	return f, nil
}

func (f *natsJetStream) run(msgs int) error {
	f.c.start(msgs)
	for range msgs {
		if _, err := f.js.PublishAsync(natsSubject, f.payload, jetstream.WithStallWait(fanoutTimeout)); err != nil {
			return err
		}
	}
	select {
	case <-f.js.PublishAsyncComplete():
	case <-time.After(fanoutTimeout):
		return fmt.Errorf("jetstream: %d publishes not acknowledged after %v", f.js.PublishAsyncPending(), fanoutTimeout)
	}
	if err := f.c.wait(); err != nil {
		return err
	}
	// Interest retention deletes a message once every consumer has acknowledged
	// it: an empty stream means every Ack has been applied.
	ctx, cancel := context.WithTimeout(context.Background(), fanoutTimeout)
	defer cancel()
	for {
		info, err := f.stream.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs == 0 {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
}

func (f *natsJetStream) close() error {
	for _, cc := range f.consumes {
		cc.Stop()
	}
	for _, nc := range f.subs {
		nc.Close()
	}
	if f.pub != nil {
		f.pub.Close()
	}
	f.srv.Shutdown()
	f.srv.WaitForShutdown()
	return os.RemoveAll(f.dir)
}
