package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"mahfooz/exchange/store"
	"mahfooz/wire"
)

// readers holds the statements prepared on the read pool.
type readers struct {
	pending, chunk, blobAccess, kpCount *sql.Stmt
}

func newReaders(ctx context.Context, db *sql.DB) (*readers, error) {
	r := &readers{}
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&r.pending, `SELECT b.seq, m.message_id, m.sender, m.group_id, m.sent_at, m.payload
			FROM mailbox b JOIN messages m ON m.seq = b.seq
			WHERE b.device = ? AND b.seq > ? ORDER BY b.seq LIMIT ?`},
		{&r.chunk, `SELECT data, last FROM blob_chunks WHERE blob = ? AND idx = ?`},
		{&r.blobAccess, `SELECT (SELECT count(*) FROM blobs WHERE id = ?1),
			(SELECT count(*) FROM blob_recipients WHERE blob = ?1 AND device = ?2)`},
		{&r.kpCount, `SELECT coalesce(sum(last_resort = 0), 0), coalesce(max(last_resort), 0) FROM key_packages WHERE device = ?`},
	} {
		s, err := db.PrepareContext(ctx, p.q)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("sqlite: preparing statement: %w", err)
		}
		*p.dst = s
	}
	return r, nil
}

func (r *readers) close() {
	for _, s := range []*sql.Stmt{r.pending, r.chunk, r.blobAccess, r.kpCount} {
		if s != nil {
			s.Close()
		}
	}
}

// Enqueue implements store.Store.
func (s *Store) Enqueue(m *store.Message, done func(store.Result, error)) {
	for i := 1; i < len(m.Recipients); i++ {
		if bytes.Compare(m.Recipients[i-1][:], m.Recipients[i][:]) >= 0 {
			done(store.Result{}, errors.New("sqlite: recipients not strictly increasing"))
			return
		}
	}
	s.submit(&enqueueOp{m: m, done: done})
}

// Ack implements store.Store.
func (s *Store) Ack(device wire.DeviceID, sequences []uint64, done func(error)) {
	s.submit(&ackOp{device: device, sequences: sequences, done: done})
}

// Pending implements store.Store.
func (s *Store) Pending(ctx context.Context, device wire.DeviceID, after uint64, maxEntries, maxBytes int) ([]store.Entry, error) {
	if maxEntries <= 0 {
		return nil, nil
	}
	rows, err := s.r.pending.QueryContext(ctx, device[:], int64(after), maxEntries)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var (
		out   []store.Entry
		total int
	)
	for rows.Next() {
		var (
			seq, sentAt                       int64
			messageID, sender, group, payload []byte
		)
		if err := rows.Scan(&seq, &messageID, &sender, &group, &sentAt, &payload); err != nil {
			return nil, dbErr(err)
		}
		e, err := entryFromRow(seq, messageID, sender, group, sentAt, payload)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		if total += len(payload); total >= maxBytes {
			break
		}
	}
	return out, dbErr(rows.Err())
}

// TakeNotices implements store.Store.
func (s *Store) TakeNotices(ctx context.Context, sender wire.DeviceID, limit int) ([]store.Notice, error) {
	var out []store.Notice
	err := s.do(ctx, func(w *writer, _ *error) error {
		out = out[:0]
		rows, err := w.conn.QueryContext(w.ctx, `DELETE FROM notices WHERE rowid IN
			(SELECT rowid FROM notices WHERE sender = ? ORDER BY rowid LIMIT ?)
			RETURNING message_id, recipient`, sender[:], limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, recipient []byte
			if err := rows.Scan(&id, &recipient); err != nil {
				return err
			}
			n, err := noticeFromRow(sender, id, recipient)
			if err != nil {
				return err
			}
			out = append(out, n)
		}
		return rows.Err()
	})
	return out, err
}

// Sweep implements store.Store. It commits in several transactions when much has
// expired, then truncates the WAL.
func (s *Store) Sweep(ctx context.Context, now time.Time) (store.Swept, error) {
	var total store.Swept
	for {
		var (
			part store.Swept
			more bool
		)
		err := s.do(ctx, func(w *writer, _ *error) error {
			var err error
			part, more, err = w.sweepMessages(now)
			return err
		})
		if err != nil {
			return total, err
		}
		total.Notices = append(total.Notices, part.Notices...)
		total.Messages += part.Messages
		if !more {
			break
		}
	}
	err := s.do(ctx, func(w *writer, _ *error) error {
		var err error
		total.Blobs, err = w.sweepRest(now)
		return err
	})
	if err != nil {
		return total, err
	}
	return total, s.Checkpoint(ctx)
}

// sweepMessages deletes up to sweepBatch expired messages, recording notices, and
// reports whether more may remain.
func (w *writer) sweepMessages(now time.Time) (store.Swept, bool, error) {
	var out store.Swept
	type expired struct {
		seq, expires, sentAt, size int64
		sender, id, recipients     []byte
	}
	rows, err := w.conn.QueryContext(w.ctx, `SELECT seq, sender, message_id, expires, sent_at, recipients, length(payload)
		FROM messages WHERE expires <= ? ORDER BY expires LIMIT ?`, ms(now), sweepBatch)
	if err != nil {
		return out, false, err
	}
	var list []expired
	for rows.Next() {
		var e expired
		if err := rows.Scan(&e.seq, &e.sender, &e.id, &e.expires, &e.sentAt, &e.recipients, &e.size); err != nil {
			rows.Close()
			return out, false, err
		}
		list = append(list, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return out, false, err
	}
	for _, e := range list {
		var sender wire.DeviceID
		if !readID(e.sender, (*[wire.IDSize]byte)(&sender)) {
			return out, false, errRow
		}
		recipients, err := recipientsFromRow(e.recipients)
		if err != nil {
			return out, false, err
		}
		// A notice is kept for as long again as the message's TTL, and at least
		// store.MinNoticeRetention.
		keep := e.expires + max(e.expires-e.sentAt, store.MinNoticeRetention.Milliseconds())
		for _, r := range recipients {
			res, err := w.conn.ExecContext(w.ctx, `DELETE FROM mailbox WHERE device = ? AND seq = ?`, r[:], e.seq)
			if err != nil {
				return out, false, err
			}
			if n, err := res.RowsAffected(); err != nil {
				return out, false, err
			} else if n == 0 {
				continue // acknowledged
			}
			w.removed(r, e.size)
			n := store.Notice{Sender: sender, Recipient: r}
			if !readID(e.id, (*[wire.IDSize]byte)(&n.MessageID)) {
				return out, false, errRow
			}
			if _, err := w.conn.ExecContext(w.ctx, `INSERT INTO notices (sender, message_id, recipient, expires)
				VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`, e.sender, e.id, r[:], keep); err != nil {
				return out, false, err
			}
			out.Notices = append(out.Notices, n)
		}
		delete(w.refs, uint64(e.seq))
		if _, err := w.conn.ExecContext(w.ctx, `DELETE FROM messages WHERE seq = ?`, e.seq); err != nil {
			return out, false, err
		}
		out.Messages++
	}
	return out, len(list) == sweepBatch, nil
}

// sweepRest deletes expired deduplication records, notices and blobs, and returns
// the number of blobs deleted.
func (w *writer) sweepRest(now time.Time) (int, error) {
	t := ms(now)
	for _, q := range []string{`DELETE FROM sent WHERE expires <= ?`, `DELETE FROM notices WHERE expires <= ?`} {
		if _, err := w.conn.ExecContext(w.ctx, q, t); err != nil {
			return 0, err
		}
	}
	var n, size int64
	if err := w.conn.QueryRowContext(w.ctx, `SELECT count(*), coalesce(sum(size), 0) FROM blobs WHERE expires <= ?`, t).Scan(&n, &size); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	if _, err := w.conn.ExecContext(w.ctx, `DELETE FROM blobs WHERE expires <= ?`, t); err != nil {
		return 0, err
	}
	w.blobBytes -= size
	return int(n), nil
}

// Checkpoint copies the WAL into the database file and truncates it, so that
// content deleted since (and zeroed in the database by secure_delete) no longer
// lingers in the WAL. Sweep calls it; it is safe to call at any time.
func (s *Store) Checkpoint(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &checkpointOp{done: make(chan struct{})}
	s.submit(o) // queued like a write, so it runs after the writes before it
	<-o.done
	return o.err
}

// checkpointOp runs a truncating checkpoint once its batch has committed: a
// checkpoint cannot run inside a transaction.
type checkpointOp struct {
	err  error
	done chan struct{}
}

func (o *checkpointOp) apply(*writer) error { return nil }

func (o *checkpointOp) afterCommit(w *writer) {
	// When a reader holds a snapshot the checkpoint reports busy and the WAL is
	// truncated at a later one; that is not an error.
	var busy, logFrames, done int
	o.err = w.conn.QueryRowContext(w.ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &done)
}

func (o *checkpointOp) finish(failed error) {
	if failed != nil {
		o.err = failed
	}
	o.err = dbErr(o.err)
	close(o.done)
}

// ForgetDevice implements store.Store.
func (s *Store) ForgetDevice(ctx context.Context, device wire.DeviceID) error {
	return s.do(ctx, func(w *writer, _ *error) error {
		id := device[:]
		rows, err := w.conn.QueryContext(w.ctx, `SELECT seq FROM mailbox WHERE device = ?`, id)
		if err != nil {
			return err
		}
		var gone []uint64
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				rows.Close()
				return err
			}
			w.unref(uint64(seq), 1, &gone)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if err := w.deleteMessages(gone); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM mailbox WHERE device = ?`,
			`DELETE FROM key_packages WHERE device = ?`,
			`DELETE FROM notices WHERE sender = ?`,
			`DELETE FROM sent WHERE sender = ?`,
			`DELETE FROM blob_recipients WHERE device = ?`,
		} {
			if _, err := w.conn.ExecContext(w.ctx, q, id); err != nil {
				return err
			}
		}
		delete(w.usage, device)
		// Blobs now fetched by every remaining recipient are done with.
		if _, err := w.conn.ExecContext(w.ctx, `DELETE FROM blobs WHERE complete = 1 AND NOT EXISTS
			(SELECT 1 FROM blob_recipients r WHERE r.blob = blobs.id AND r.fetched = 0)`); err != nil {
			return err
		}
		return w.conn.QueryRowContext(w.ctx, `SELECT coalesce(sum(size), 0) FROM blobs`).Scan(&w.blobBytes)
	})
}

// Stats implements store.Store.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	var st store.Stats
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM messages), (SELECT count(*) FROM mailbox), (SELECT count(*) FROM notices),
		(SELECT count(*) FROM sent), (SELECT count(*) FROM groups), (SELECT count(*) FROM key_packages),
		(SELECT count(*) FROM blobs), (SELECT coalesce(sum(length(data)), 0) FROM blob_chunks)`).
		Scan(&st.Messages, &st.MailboxEntries, &st.Notices, &st.SentRecords, &st.Groups, &st.KeyPackages, &st.Blobs, &st.BlobBytes)
	return st, dbErr(err)
}
