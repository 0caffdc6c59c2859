// Package store defines what the exchange keeps between a Send and its Ack: the
// mailbox, commit sequencing, deduplication records, expiry notices, KeyPackages
// and attachment blobs. Store is the interface the server uses; package
// store/sqlite is the embedded implementation, and store/storetest the
// conformance suite every implementation must pass.
//
// A Store holds routing metadata and MLS ciphertext only: never a key, a
// plaintext, a ticket or a token. It keeps a message only until every recipient
// acknowledged it or its TTL ran out, and the record that deduplicates a
// retransmitted Send (which holds no payload) no longer than that TTL.
package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"

	"mahfooz/wire"
)

// Errors returned by Store methods. Each maps to one wire code (see the exchange).
var (
	// ErrConflict: a message ID reused by the same sender with a different Send, or
	// a blob ID reused with a different owner or recipients. Wire: conflict.
	ErrConflict = errors.New("store: ID reused with different content")
	// ErrNotFound: no such blob or chunk. Wire: not_found.
	ErrNotFound = errors.New("store: not found")
	// ErrForbidden: the device is not the blob's owner (uploading) or one of its
	// recipients (downloading). Wire: forbidden.
	ErrForbidden = errors.New("store: not allowed for this device")
	// ErrOutOfOrder: a chunk whose index is not the next one, or one after the last
	// chunk. Wire: invalid_request.
	ErrOutOfOrder = errors.New("store: chunk out of order")
	// ErrQuota: a recipient's mailbox, the device's KeyPackage stock or the blob
	// store is full; nothing was stored. Wire: quota_exceeded.
	ErrQuota = errors.New("store: quota exceeded")
	// ErrClosed: the store was closed. Wire: unavailable.
	ErrClosed = errors.New("store: closed")
)

// Digest identifies the content of a Send for deduplication: SHA-256 of its
// encoded body, so a retransmission has the same Digest and any change does not.
type Digest [sha256.Size]byte

// Message is one accepted Send as the store keeps it.
type Message struct {
	Sender     wire.DeviceID
	ID         wire.MessageID
	Digest     Digest
	GroupID    wire.GroupID
	Epoch      uint64
	IsCommit   bool
	Recipients []wire.DeviceID // strictly increasing; may be empty (a commit still sequences)
	SentAt     time.Time       // when the exchange accepted it; kept to the millisecond
	Expires    time.Time       // SentAt plus the TTL
	Payload    []byte          // one MLSMessage, stored once however many recipients
}

// Result is the outcome of Enqueue.
type Result struct {
	// Sequence is the message's sequence number when it was accepted: numbers grow
	// with every accepted message, across all groups and recipients, and are never
	// reused. Zero when Stale.
	Sequence uint64
	// Duplicate reports a retransmission (same sender, message ID and Digest): the
	// original Sequence is returned and nothing is stored again.
	Duplicate bool
	// Stale reports a commit whose epoch is not the group's next one; nothing was
	// stored. CurrentEpoch is then the epoch the next commit must carry.
	Stale        bool
	CurrentEpoch uint64
}

// Entry is one message waiting in a device's mailbox.
type Entry struct {
	Sequence  uint64
	MessageID wire.MessageID
	Sender    wire.DeviceID
	GroupID   wire.GroupID
	SentAt    time.Time
	Payload   []byte
}

// Notice tells a sender that a message expired before one recipient acknowledged it.
type Notice struct {
	Sender    wire.DeviceID
	MessageID wire.MessageID
	Recipient wire.DeviceID
}

// Swept is what one Sweep removed.
type Swept struct {
	// Notices recorded for senders, one per (message, recipient) that expired
	// unacknowledged. They stay stored until TakeNotices returns them.
	Notices []Notice
	// Messages and Blobs deleted because their TTL ran out.
	Messages, Blobs int
}

// Blob is an attachment's metadata.
type Blob struct {
	ID         wire.BlobID
	Owner      wire.DeviceID
	Recipients []wire.DeviceID // strictly increasing, at least one
	Expires    time.Time
}

// Chunk is one stored piece of a blob's ciphertext.
type Chunk struct {
	Data []byte
	Last bool
}

// Quotas bound what one device can make the store hold. A zero field means the
// default of DefaultQuotas.
type Quotas struct {
	// MailboxEntries and MailboxBytes bound one recipient's undelivered messages
	// (bytes counted as payload size).
	MailboxEntries int
	MailboxBytes   int64
	// KeyPackages bounds one device's stock, its last-resort package excluded.
	KeyPackages int
	// BlobBytes bounds the ciphertext of all blobs together.
	BlobBytes int64
}

// DefaultQuotas are the quotas of a store whose SetQuotas was never called.
var DefaultQuotas = Quotas{
	MailboxEntries: 10000,
	MailboxBytes:   256 << 20,
	KeyPackages:    1000,
	BlobBytes:      4 << 30,
}

// WithDefaults returns q with each zero field replaced by its DefaultQuotas value.
func (q Quotas) WithDefaults() Quotas {
	if q.MailboxEntries <= 0 {
		q.MailboxEntries = DefaultQuotas.MailboxEntries
	}
	if q.MailboxBytes <= 0 {
		q.MailboxBytes = DefaultQuotas.MailboxBytes
	}
	if q.KeyPackages <= 0 {
		q.KeyPackages = DefaultQuotas.KeyPackages
	}
	if q.BlobBytes <= 0 {
		q.BlobBytes = DefaultQuotas.BlobBytes
	}
	return q
}

// MinNoticeRetention is the least time an expiry notice waits for its sender to
// connect: a message with a short TTL (a disappearing message) must not leave
// a sender who is offline a little longer unaware that it was not delivered.
const MinNoticeRetention = 7 * 24 * time.Hour

// Stats counts what a store holds, for operators and tests.
type Stats struct {
	Messages       int   // stored payloads (one per message, however many recipients)
	MailboxEntries int   // undelivered (message, recipient) pairs
	Notices        int   // expiry notices not yet taken
	SentRecords    int   // deduplication records
	Groups         int   // groups with a sequenced commit
	KeyPackages    int   // stored KeyPackages, last-resort ones included
	Blobs          int   // attachments
	BlobBytes      int64 // their stored ciphertext
}

// Store is the exchange's storage. Implementations must be safe for concurrent use
// and make every write durable (on stable storage) before reporting it done.
//
// Enqueue and Ack are asynchronous so that one connection can have many in flight
// and the store can commit them together: their done functions are called exactly
// once, after the outcome is durable, one at a time and in the order the store
// decided the outcomes. So the Sequences reported by successive done calls of
// accepted messages increase, and a caller that fans messages out from done hands
// every recipient its messages in sequence order. Calls made one after another by
// one goroutine are decided in that order. done must not block; it may call other
// Store methods only from another goroutine.
type Store interface {
	// Enqueue stores m for each of its recipients, atomically:
	//   - a Send already stored by the same sender with the same ID: the original
	//     Result with Duplicate set if the Digest matches, else ErrConflict;
	//   - a commit (IsCommit) is accepted only if Epoch is the group's next epoch,
	//     and then the group's next epoch becomes Epoch+1; a group not seen yet
	//     accepts its first commit at any epoch; otherwise Result.Stale, nothing
	//     stored. Other messages are not sequenced and leave the epoch alone;
	//   - ErrQuota if a recipient's mailbox is full.
	// The deduplication record of an accepted message is kept until m.Expires.
	Enqueue(m *Message, done func(Result, error))

	// Pending returns the device's mailbox entries with a sequence above after, in
	// sequence order: at most maxEntries, and no more once maxBytes of payload is
	// reached (but always at least one entry if there is one). It reads committed
	// state only and does not wait for writes in progress.
	Pending(ctx context.Context, device wire.DeviceID, after uint64, maxEntries, maxBytes int) ([]Entry, error)

	// Ack deletes the device's entries with these sequences. Sequences that are not
	// in its mailbox (never were, already acknowledged, another device's) are
	// ignored. A message's payload is deleted with its last mailbox entry.
	Ack(device wire.DeviceID, sequences []uint64, done func(error))

	// Sweep deletes what expired at now: mailbox entries (recording a Notice for
	// the sender per unacknowledged recipient, kept for as long again as the
	// message's TTL and at least MinNoticeRetention), deduplication records,
	// notices and blobs.
	Sweep(ctx context.Context, now time.Time) (Swept, error)

	// TakeNotices returns up to limit of the sender's notices and deletes them.
	TakeNotices(ctx context.Context, sender wire.DeviceID, limit int) ([]Notice, error)

	// AddKeyPackages adds to the device's stock of one-time KeyPackages (ErrQuota
	// beyond Quotas.KeyPackages; nothing is added then).
	AddKeyPackages(ctx context.Context, device wire.DeviceID, keyPackages [][]byte) error
	// SetLastResortKeyPackage replaces the device's last-resort KeyPackage.
	SetLastResortKeyPackage(ctx context.Context, device wire.DeviceID, keyPackage []byte) error
	// ClaimKeyPackages claims one KeyPackage for each device that has one, in the
	// order given, atomically: the oldest one-time package, which is deleted, or
	// else the last-resort one, which stays until replaced. Devices without any are
	// left out of the result.
	ClaimKeyPackages(ctx context.Context, devices []wire.DeviceID) ([]wire.ClaimedKeyPackage, error)
	// KeyPackageCount returns the device's one-time stock and whether it has a
	// last-resort package.
	KeyPackageCount(ctx context.Context, device wire.DeviceID) (n int, lastResort bool, err error)

	// CreateBlob records a new blob with no chunks. Creating the same blob again
	// (same ID, owner and recipients) succeeds and changes nothing; the same ID with
	// another owner or recipients is ErrConflict.
	CreateBlob(ctx context.Context, b Blob) error
	// AppendChunk stores the chunk at index, which must be the next one (0, 1, …)
	// of a blob not yet complete; last completes it. Sending the previous chunk
	// again with the same data succeeds (a retransmission). Errors: ErrNotFound,
	// ErrForbidden (not the owner), ErrOutOfOrder, ErrQuota.
	AppendChunk(ctx context.Context, owner wire.DeviceID, id wire.BlobID, index uint32, last bool, data []byte) error
	// ReadChunk returns a stored chunk to one of the blob's recipients. Errors:
	// ErrNotFound (no such blob, or no such chunk yet), ErrForbidden.
	ReadChunk(ctx context.Context, recipient wire.DeviceID, id wire.BlobID, index uint32) (Chunk, error)
	// BlobFetched records that the recipient has the blob's last chunk. The blob is
	// deleted once it is complete and every remaining recipient has fetched it.
	// Errors: ErrNotFound, ErrForbidden.
	BlobFetched(ctx context.Context, recipient wire.DeviceID, id wire.BlobID) error

	// ForgetDevice deletes what is stored for a device that will never connect
	// again (revoked): its mailbox, KeyPackages and notices, and its place among
	// blob recipients.
	ForgetDevice(ctx context.Context, device wire.DeviceID) error

	// SetQuotas changes the quotas for writes decided from now on.
	SetQuotas(q Quotas)
	// Stats counts what the store holds.
	Stats(ctx context.Context) (Stats, error)
	// Close waits for writes in progress, fails later ones with ErrClosed, and
	// releases the store.
	Close() error
}

// EnqueueWait is Enqueue for a caller that waits for the outcome. If ctx ends
// first it returns ctx.Err(); the message may still be stored.
func EnqueueWait(ctx context.Context, s Store, m *Message) (Result, error) {
	type outcome struct {
		r   Result
		err error
	}
	ch := make(chan outcome, 1)
	s.Enqueue(m, func(r Result, err error) { ch <- outcome{r, err} })
	select {
	case o := <-ch:
		return o.r, o.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// AckWait is Ack for a caller that waits for the outcome.
func AckWait(ctx context.Context, s Store, device wire.DeviceID, sequences []uint64) error {
	ch := make(chan error, 1)
	s.Ack(device, sequences, func(err error) { ch <- err })
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
