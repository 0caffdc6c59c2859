package device

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"mahfooz/device/vault"
	"mahfooz/wire"
)

// The vault is the device's only persistent state. Records are JSON inside the
// vault's sealed rows: nothing outside the vault reads or writes them, and the
// vault authenticates every row, so they need no decoder hardening of their own.
const (
	bucketMeta   = "meta"   // identity and settings, see the meta* keys
	bucketGroups = "group"  // MLS group ID → groupRec
	bucketMLS    = "mls"    // MLS group ID → mls.Group state (secret)
	bucketKP     = "kp"     // KeyPackageRef → kpRec (secret)
	bucketIDs    = "ids"    // exchange message ID → idRec: deduplication and sent-message index
	bucketOutbox = "outbox" // uint64 sequence → outRec, sent in order
	bucketExpiry = "expiry" // uint64 expiry ms || uint64 message key → group ID
	bucketUnread = "unread" // message ID → unreadRec: received messages not yet marked read
	bucketHeld   = "held"   // uint64 sequence → heldRec: deliveries waiting for their group or epoch
	// msgBucketPrefix + hex group ID holds that group's history: uint64 key → msgRec.
	msgBucketPrefix = "msgs:"
)

// Keys of bucketMeta.
var (
	metaIdentity   = []byte("identity")   // the MLS signature key seed (Ed25519)
	metaChain      = []byte("chain")      // JSON [][]byte: device certificate first, root last
	metaRoot       = []byte("root")       // the authority root certificate, DER
	metaExchange   = []byte("exchange")   // host:port
	metaDeviceID   = []byte("device")     // 16 bytes
	metaDirectory  = []byte("directory")  // the latest verified signed directory, as signed
	metaSeq        = []byte("seq")        // uint64 counter for message and outbox keys
	metaLastResort = []byte("lastresort") // the ref of the current last-resort KeyPackage
)

// groupRec is what the device knows of one MLS group beyond its MLS state.
type groupRec struct {
	ID        []byte
	Kind      uint8 // 0 until the conversation's info arrived, else kindDirect or kindGroup
	Name      string
	Officials []string // direct: the two officials, sorted
	Timer     time.Duration
	Active    bool
	Created   time.Time
	Last      time.Time
	Epoch     uint64
	Members   []memberRec // the roster in leaf order, as of Epoch
	// KeyUpdated is when this device last replaced its keys in the group (its
	// last commit, or joining).
	KeyUpdated time.Time
}

// memberRec is one leaf of a group's roster.
type memberRec struct {
	Leaf   uint32
	Name   string
	Role   string
	Device [16]byte
}

// msgRec is one message of a conversation's history.
type msgRec struct {
	Key        uint64
	ID         string
	Group      []byte
	Kind       MessageKind
	FromName   string
	FromDevice string
	Outgoing   bool
	Text       string
	File       *fileRef `json:",omitempty"`
	Timer      time.Duration
	SentAt     time.Time
	ReceivedAt time.Time
	ExpiresAt  time.Time
	Status     MessageStatus
	Saved      []string `json:",omitempty"` // copies SaveFile wrote, deleted with the message
}

// idRec remembers an exchange message ID: one received (to discard a second
// delivery) or one sent (to explain an Expired notice).
type idRec struct {
	Group      []byte
	Key        uint64 // the message's key in the group's history; 0 if it made none
	Until      time.Time
	Sent       uint8 // 0 received, else the outKind it was sent as
	Recipients [][16]byte
}

// Kinds of outbox entries.
const (
	outApp     = 1
	outCommit  = 2
	outWelcome = 3
)

// outRec is one Send waiting for the exchange's SendResult. A commit carries the
// group's state before (already stored) and after it; the exchange's answer
// decides which one stands.
type outRec struct {
	Seq    uint64
	Kind   uint8
	Send   *wire.Send
	MsgKey uint64 // the history entry an application message shows as, 0 if none
	// Commits only.
	Pre, Post []byte
	Welcome   []byte     // for the devices the commit adds, sent once it is accepted
	WelcomeTo [][16]byte // those devices
	Notes     []string   // roster messages to show once it is accepted
}

// unreadRec locates a message not yet marked read.
type unreadRec struct {
	Group []byte
	Key   uint64
}

// heldRec is a delivery for a group this device has not joined yet, or for an
// epoch it has not reached yet: a member's message can overtake the Welcome or
// commit it follows when they come from different senders.
type heldRec struct {
	Deliver *wire.Deliver
	Until   time.Time
}

// kpRec is a KeyPackage of this device with its private keys.
type kpRec struct {
	KeyPackage []byte // MLSMessage(KeyPackage)
	InitKey    []byte
	EncKey     []byte
	LastResort bool
	Created    time.Time
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func msgBucket(group []byte) string { return msgBucketPrefix + hex.EncodeToString(group) }

func getJSON(tx *vault.Tx, bucket string, key []byte, v any) error {
	data, err := tx.Get(bucket, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("device: vault record in %s: %w", bucket, err)
	}
	return nil
}

func putJSON(tx *vault.Tx, bucket string, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("device: encoding vault record: %w", err)
	}
	return tx.Put(bucket, key, data)
}

// nextSeq returns a new key for a history or outbox entry, increasing across the
// device's life, so that history sorts in the order the device learned of it.
func nextSeq(tx *vault.Tx) (uint64, error) { return nextCounter(tx, metaSeq) }

// nextCounter increments the counter stored under key in bucketMeta (0 if
// there is none yet) and returns its new value.
func nextCounter(tx *vault.Tx, key []byte) (uint64, error) {
	var n uint64
	data, err := tx.Get(bucketMeta, key)
	switch {
	case errors.Is(err, vault.ErrNotFound):
	case err != nil:
		return 0, err
	case len(data) == 8:
		n = binary.BigEndian.Uint64(data)
	default:
		return 0, errors.New("device: vault counter is corrupt")
	}
	n++
	return n, tx.Put(bucketMeta, key, u64(n))
}

func loadGroupRec(tx *vault.Tx, gid []byte) (*groupRec, error) {
	rec := new(groupRec)
	if err := getJSON(tx, bucketGroups, gid, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

func allGroupRecs(tx *vault.Tx) ([]*groupRec, error) {
	entries, err := tx.List(bucketGroups)
	if err != nil {
		return nil, err
	}
	recs := make([]*groupRec, 0, len(entries))
	for _, e := range entries {
		rec := new(groupRec)
		if err := json.Unmarshal(e.Value, rec); err != nil {
			return nil, fmt.Errorf("device: vault group record: %w", err)
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// putMessage stores a new history entry, with its expiry in the sweep index.
func putMessage(tx *vault.Tx, m *msgRec) error {
	if m.Key == 0 {
		k, err := nextSeq(tx)
		if err != nil {
			return err
		}
		m.Key = k
	}
	if m.ID == "" {
		m.ID = fmt.Sprintf("local-%d", m.Key)
	}
	if err := putJSON(tx, msgBucket(m.Group), u64(m.Key), m); err != nil {
		return err
	}
	if !m.Outgoing {
		if err := putJSON(tx, bucketUnread, []byte(m.ID), &unreadRec{Group: m.Group, Key: m.Key}); err != nil {
			return err
		}
	}
	if !m.ExpiresAt.IsZero() {
		if err := tx.Put(bucketExpiry, expiryKey(m.ExpiresAt, m.Key), m.Group); err != nil {
			return err
		}
	}
	return nil
}

func expiryKey(at time.Time, key uint64) []byte {
	ms := at.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	return append(u64(uint64(ms)), u64(key)...)
}

func loadMessages(tx *vault.Tx, gid []byte) ([]*msgRec, error) {
	entries, err := tx.List(msgBucket(gid))
	if err != nil {
		return nil, err
	}
	out := make([]*msgRec, 0, len(entries))
	for _, e := range entries {
		m := new(msgRec)
		if err := json.Unmarshal(e.Value, m); err != nil {
			return nil, fmt.Errorf("device: vault message record: %w", err)
		}
		out = append(out, m)
	}
	return out, nil
}
