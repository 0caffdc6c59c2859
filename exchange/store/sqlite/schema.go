package sqlite

import (
	"bytes"
	"errors"
	"time"

	"mahfooz/exchange/store"
	"mahfooz/wire"
)

// Meta keys.
const (
	metaSchema  = "schema_version"
	metaLastSeq = "last_seq" // the last sequence number handed out, never reused
)

// schema creates the database. Times are Unix milliseconds. IDs are 16-byte
// BLOBs; epochs and sequences are uint64 stored bit for bit in INTEGER columns
// (only compared for equality or, for sequences, which stay far below 2^63, order).
//
// messages holds each payload once, with its recipients (for expiry); mailbox
// holds one row per undelivered (recipient, message). The writer counts each
// message's mailbox rows in memory (loaded at Open) and deletes the payload with
// the last one, which spares an index on mailbox.seq and a trigger per row.
const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
	seq        INTEGER PRIMARY KEY,
	sender     BLOB NOT NULL,
	message_id BLOB NOT NULL,
	group_id   BLOB NOT NULL,
	sent_at    INTEGER NOT NULL,
	expires    INTEGER NOT NULL,
	recipients BLOB NOT NULL,
	payload    BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_expires ON messages (expires);
CREATE TABLE IF NOT EXISTS mailbox (
	device BLOB NOT NULL,
	seq    INTEGER NOT NULL,
	size   INTEGER NOT NULL,
	PRIMARY KEY (device, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sent (
	sender     BLOB NOT NULL,
	message_id BLOB NOT NULL,
	digest     BLOB NOT NULL,
	seq        INTEGER NOT NULL,
	expires    INTEGER NOT NULL,
	PRIMARY KEY (sender, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sent_expires ON sent (expires);
CREATE TABLE IF NOT EXISTS groups (
	group_id   BLOB PRIMARY KEY,
	next_epoch INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notices (
	sender     BLOB NOT NULL,
	message_id BLOB NOT NULL,
	recipient  BLOB NOT NULL,
	expires    INTEGER NOT NULL,
	UNIQUE (sender, message_id, recipient)
);
CREATE INDEX IF NOT EXISTS notices_expires ON notices (expires);
CREATE TABLE IF NOT EXISTS key_packages (
	id          INTEGER PRIMARY KEY,
	device      BLOB NOT NULL,
	last_resort INTEGER NOT NULL,
	data        BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS key_packages_device ON key_packages (device, last_resort, id);
CREATE TABLE IF NOT EXISTS blobs (
	id       BLOB PRIMARY KEY,
	owner    BLOB NOT NULL,
	expires  INTEGER NOT NULL,
	chunks   INTEGER NOT NULL DEFAULT 0,
	complete INTEGER NOT NULL DEFAULT 0,
	size     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blobs_expires ON blobs (expires);
CREATE TABLE IF NOT EXISTS blob_recipients (
	blob    BLOB NOT NULL REFERENCES blobs (id) ON DELETE CASCADE,
	device  BLOB NOT NULL,
	fetched INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (blob, device)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blob_recipients_device ON blob_recipients (device);
CREATE TABLE IF NOT EXISTS blob_chunks (
	blob BLOB NOT NULL REFERENCES blobs (id) ON DELETE CASCADE,
	idx  INTEGER NOT NULL,
	last INTEGER NOT NULL,
	data BLOB NOT NULL,
	UNIQUE (blob, idx)
);
`

// errRow reports a stored row that does not hold what this package writes.
var errRow = errors.New("sqlite: malformed stored row")

// readID copies a stored 16-byte ID.
func readID(b []byte, id *[wire.IDSize]byte) bool {
	if len(b) != wire.IDSize {
		return false
	}
	copy(id[:], b)
	return true
}

// entryFromRow checks and converts one mailbox row as Pending reads it. It never
// trusts the file: a row this package could not have written is an error.
func entryFromRow(seq int64, messageID, sender, groupID []byte, sentAt int64, payload []byte) (store.Entry, error) {
	var e store.Entry
	if seq <= 0 || sentAt < 0 || len(groupID) < 1 || len(groupID) > wire.MaxGroupIDSize ||
		len(payload) < 1 || len(payload) > wire.MaxBodySize ||
		!readID(messageID, (*[wire.IDSize]byte)(&e.MessageID)) || !readID(sender, (*[wire.IDSize]byte)(&e.Sender)) {
		return store.Entry{}, errRow
	}
	e.Sequence = uint64(seq)
	e.GroupID = wire.GroupID(groupID)
	e.SentAt = time.UnixMilli(sentAt).UTC()
	e.Payload = payload
	return e, nil
}

// recipientsFromRow checks and converts a message's stored recipients: 16-byte
// device IDs, at least one, at most wire.MaxRecipients, strictly increasing.
func recipientsFromRow(b []byte) ([]wire.DeviceID, error) {
	if len(b) == 0 || len(b)%wire.IDSize != 0 || len(b)/wire.IDSize > wire.MaxRecipients {
		return nil, errRow
	}
	out := make([]wire.DeviceID, len(b)/wire.IDSize)
	for i := range out {
		copy(out[i][:], b[i*wire.IDSize:])
		if i > 0 && bytes.Compare(out[i-1][:], out[i][:]) >= 0 {
			return nil, errRow
		}
	}
	return out, nil
}

// recipientsRow is the stored form recipientsFromRow reads.
func recipientsRow(ids []wire.DeviceID) []byte {
	b := make([]byte, 0, len(ids)*wire.IDSize)
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

// noticeFromRow checks and converts one notice row.
func noticeFromRow(sender wire.DeviceID, messageID, recipient []byte) (store.Notice, error) {
	n := store.Notice{Sender: sender}
	if !readID(messageID, (*[wire.IDSize]byte)(&n.MessageID)) || !readID(recipient, (*[wire.IDSize]byte)(&n.Recipient)) {
		return store.Notice{}, errRow
	}
	return n, nil
}
