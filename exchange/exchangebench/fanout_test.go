package exchangebench

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"testing"
	"time"
)

// The fan-out comparison: one publisher sends 1 KB messages, each of which reaches
// every one of N recipients. The same payload bytes go through the exchange and
// through an embedded NATS server in the same run.
const (
	// payloadSize is the size of each message's payload: for the exchange, one
	// MLSMessage (a PrivateMessage) of exactly this many bytes.
	payloadSize = 1024
	// fanoutWindow is how many messages the publisher may have sent and not yet had
	// acknowledged as stored (SendResult; a JetStream PubAck), or, for core NATS,
	// sent since its last flush.
	fanoutWindow = 128
	// fanoutTimeout bounds one run's wait for the last delivery.
	fanoutTimeout = 5 * time.Minute
)

// fanoutRecipients are the fan-out sizes measured.
var fanoutRecipients = []int{1, 10, 100}

// fanout is a publisher and its recipients, all connected. Its methods are called
// by one goroutine, one after another.
type fanout interface {
	// run publishes msgs messages and returns once every recipient has received
	// (and, where the system has acknowledgements, acknowledged) every one.
	run(msgs int) error
	close() error
}

// fanoutSystem opens a fanout of one system for a number of recipients.
type fanoutSystem struct {
	name string
	open func(recipients int) (fanout, error)
}

// BenchmarkFanout measures deliveries per second (messages × recipients) for 1 KB
// messages fanned out to 1, 10 and 100 recipients:
//
//   - exchange: Send with every recipient listed, stored durably before SendResult;
//     each recipient's connection receives Deliver and answers with Ack (batched),
//     and the run ends when every Ack has been answered, so every delivery has also
//     been deleted from the store.
//   - nats-core: core NATS publish/subscribe, in memory, no acknowledgement; each
//     recipient is its own connection subscribed to the subject.
//   - nats-jetstream: a file-storage stream with fsync on every write (SyncAlways)
//     and interest retention, one durable consumer per recipient with explicit
//     acks; the publisher waits for each PubAck (window fanoutWindow) and the run
//     ends when the stream is empty, that is, when every consumer has acknowledged
//     every message.
func BenchmarkFanout(b *testing.B) {
	systems := []fanoutSystem{
		{"exchange", openExchangeFanout},
		{"nats-core", openNATSCore},
		{"nats-jetstream", openNATSJetStream},
	}
	for _, n := range fanoutRecipients {
		for _, sys := range systems {
			b.Run(fmt.Sprintf("recipients=%d/%s", n, sys.name), func(b *testing.B) {
				f, err := sys.open(n)
				if err != nil {
					b.Fatal(err)
				}
				defer func() {
					if err := f.close(); err != nil {
						b.Error(err)
					}
				}()
				b.ResetTimer()
				if err := f.run(b.N); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
			})
		}
	}
}

// benchGroupID is the MLS group the exchange's messages claim to belong to.
var benchGroupID = []byte("exchangebench-group-0123456789ab")

// benchPayload returns a payloadSize-byte MLSMessage: the header of a
// PrivateMessage carrying application data in group benchGroupID, epoch 1
// (RFC 9420 §6.3), then random bytes standing for its encrypted sender data and
// ciphertext. The exchange reads only the header.
func benchPayload() []byte {
	p := binary.BigEndian.AppendUint16(nil, 1) // version = mls10
	p = binary.BigEndian.AppendUint16(p, 2)    // wire_format = mls_private_message
	p = append(p, byte(len(benchGroupID)))     // group_id<V>, a one-byte varint length
	p = append(p, benchGroupID...)
	p = binary.BigEndian.AppendUint64(p, 1) // epoch
	p = append(p, 1)                        // content_type = application
	rest := make([]byte, payloadSize-len(p))
	rand.Read(rest)
	return append(p, rest...)
}
