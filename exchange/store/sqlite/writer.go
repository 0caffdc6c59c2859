package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"mahfooz/exchange/store"
	"mahfooz/wire"
)

// rowsPerStatement are the sizes of the multi-row statements prepared for
// mailbox rows, largest first: a message for n recipients, or an Ack of n
// sequences, takes a few statements, not n.
var rowsPerStatement = []int{64, 8, 1}

// statementRows returns the largest prepared size that n rows fill.
func statementRows(n int) int {
	for _, k := range rowsPerStatement {
		if k <= n {
			return k
		}
	}
	return 1
}

// inList returns "(?, ?, …)" with n placeholders.
func inList(n int) string {
	return "(?" + strings.Repeat(", ?", n-1) + ")"
}

// writer is the state of the one writing connection. Only the write goroutine
// touches it.
type writer struct {
	conn   *sql.Conn
	ctx    context.Context
	quotas *atomic.Pointer[store.Quotas]

	// Cached from the database; reloaded after a rollback.
	lastSeq   uint64
	savedSeq  uint64 // lastSeq as last written to meta
	usage     map[wire.DeviceID]*usage
	refs      map[uint64]int32 // per stored message, its mailbox rows
	blobBytes int64

	sentGet, groupGet, groupPut, msgPut, sentPut, usageGet, seqPut *sql.Stmt
	// By number of rows, one of rowsPerStatement.
	mailboxPut, mailboxDel, mailboxGet, msgDel map[int]*sql.Stmt
}

// usage is one recipient's mailbox, as counted against its quota.
type usage struct {
	entries int
	bytes   int64
}

func newWriter(ctx context.Context, conn *sql.Conn) (*writer, error) {
	w := &writer{conn: conn, ctx: ctx,
		mailboxPut: make(map[int]*sql.Stmt), mailboxDel: make(map[int]*sql.Stmt),
		mailboxGet: make(map[int]*sql.Stmt), msgDel: make(map[int]*sql.Stmt)}
	prep := func(dst **sql.Stmt, q string) error {
		s, err := conn.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("sqlite: preparing statement: %w", err)
		}
		*dst = s
		return nil
	}
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&w.sentGet, `SELECT digest, seq FROM sent WHERE sender = ? AND message_id = ?`},
		{&w.groupGet, `SELECT next_epoch FROM groups WHERE group_id = ?`},
		{&w.groupPut, `INSERT INTO groups (group_id, next_epoch) VALUES (?, ?)
			ON CONFLICT (group_id) DO UPDATE SET next_epoch = excluded.next_epoch`},
		{&w.msgPut, `INSERT INTO messages (seq, sender, message_id, group_id, sent_at, expires, recipients, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`},
		{&w.sentPut, `INSERT INTO sent (sender, message_id, digest, seq, expires) VALUES (?, ?, ?, ?, ?)`},
		{&w.usageGet, `SELECT count(*), coalesce(sum(size), 0) FROM mailbox WHERE device = ?`},
		{&w.seqPut, `UPDATE meta SET value = ? WHERE key = '` + metaLastSeq + `'`},
	} {
		if err := prep(p.dst, p.q); err != nil {
			w.close()
			return nil, err
		}
	}
	for _, n := range rowsPerStatement {
		for _, p := range []struct {
			m map[int]*sql.Stmt
			q string
		}{
			{w.mailboxPut, `INSERT INTO mailbox (device, seq, size) VALUES (?, ?, ?)` + strings.Repeat(`, (?, ?, ?)`, n-1)},
			{w.mailboxDel, `DELETE FROM mailbox WHERE device = ? AND seq IN ` + inList(n)},
			{w.mailboxGet, `SELECT seq, size FROM mailbox WHERE device = ? AND seq IN ` + inList(n)},
			{w.msgDel, `DELETE FROM messages WHERE seq IN ` + inList(n)},
		} {
			var s *sql.Stmt
			if err := prep(&s, p.q); err != nil {
				w.close()
				return nil, err
			}
			p.m[n] = s
		}
	}
	if err := w.reload(); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

func (w *writer) close() {
	for _, s := range []*sql.Stmt{w.sentGet, w.groupGet, w.groupPut, w.msgPut, w.sentPut, w.usageGet, w.seqPut} {
		if s != nil {
			s.Close()
		}
	}
	for _, m := range []map[int]*sql.Stmt{w.mailboxPut, w.mailboxDel, w.mailboxGet, w.msgDel} {
		for _, s := range m {
			s.Close()
		}
	}
	w.conn.Close()
}

// reload reads the cached values from the database.
func (w *writer) reload() error {
	var last, maxSent, maxStored, blobBytes int64
	err := w.conn.QueryRowContext(w.ctx, `SELECT
		(SELECT value FROM meta WHERE key = '`+metaLastSeq+`'),
		(SELECT coalesce(max(seq), 0) FROM sent),
		(SELECT coalesce(max(seq), 0) FROM messages),
		(SELECT coalesce(sum(size), 0) FROM blobs)`).Scan(&last, &maxSent, &maxStored, &blobBytes)
	if err != nil {
		return fmt.Errorf("sqlite: reading state: %w", err)
	}
	w.lastSeq = uint64(max(last, maxSent, maxStored))
	w.savedSeq = uint64(last)
	w.blobBytes = blobBytes
	w.usage = make(map[wire.DeviceID]*usage)
	w.refs = make(map[uint64]int32)
	rows, err := w.conn.QueryContext(w.ctx, `SELECT seq, count(*) FROM mailbox GROUP BY seq`)
	if err != nil {
		return fmt.Errorf("sqlite: reading state: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			seq int64
			n   int32
		)
		if err := rows.Scan(&seq, &n); err != nil {
			return fmt.Errorf("sqlite: reading state: %w", err)
		}
		w.refs[uint64(seq)] = n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: reading state: %w", err)
	}
	return nil
}

// unref accounts for deleted mailbox rows of a message and deletes its payload
// with the last one. Payloads to delete are collected in gone and deleted by
// deleteMessages, so that one statement deletes many.
func (w *writer) unref(seq uint64, rows int32, gone *[]uint64) {
	n, ok := w.refs[seq]
	if !ok {
		return
	}
	if n -= rows; n > 0 {
		w.refs[seq] = n
		return
	}
	delete(w.refs, seq)
	*gone = append(*gone, seq)
}

// deleteMessages deletes the payloads of messages with no mailbox row left.
func (w *writer) deleteMessages(seqs []uint64) error {
	args := make([]any, 0, rowsPerStatement[0])
	for len(seqs) > 0 {
		n := statementRows(len(seqs))
		args = args[:0]
		for _, s := range seqs[:n] {
			args = append(args, int64(s))
		}
		if _, err := w.msgDel[n].ExecContext(w.ctx, args...); err != nil {
			return err
		}
		seqs = seqs[n:]
	}
	return nil
}

// run applies ops in one transaction and commits it durably.
func (w *writer) run(ops []op) (err error) {
	if _, err := w.conn.ExecContext(w.ctx, `BEGIN IMMEDIATE`); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			w.conn.ExecContext(w.ctx, `ROLLBACK`)
			if rerr := w.reload(); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	for _, o := range ops {
		if err := o.apply(w); err != nil {
			return err
		}
	}
	if w.lastSeq != w.savedSeq {
		if _, err := w.seqPut.ExecContext(w.ctx, int64(w.lastSeq)); err != nil {
			return err
		}
	}
	if _, err := w.conn.ExecContext(w.ctx, `COMMIT`); err != nil {
		return err
	}
	w.savedSeq = w.lastSeq
	for _, o := range ops {
		if a, ok := o.(interface{ afterCommit(*writer) }); ok {
			a.afterCommit(w)
		}
	}
	return nil
}

// mailboxUsage returns the recipient's cached usage, loading it once.
func (w *writer) mailboxUsage(device wire.DeviceID) (*usage, error) {
	if u, ok := w.usage[device]; ok {
		return u, nil
	}
	u := new(usage)
	if err := w.usageGet.QueryRowContext(w.ctx, device[:]).Scan(&u.entries, &u.bytes); err != nil {
		return nil, err
	}
	w.usage[device] = u
	return u, nil
}

// removed accounts for a deleted mailbox row.
func (w *writer) removed(device wire.DeviceID, size int64) {
	if u, ok := w.usage[device]; ok {
		u.entries--
		u.bytes -= size
	}
}

// enqueueOp is one Send.
type enqueueOp struct {
	m    *store.Message
	done func(store.Result, error)
	res  store.Result
	err  error
}

func (o *enqueueOp) finish(failed error) {
	if failed != nil {
		o.done(store.Result{}, dbErr(failed))
		return
	}
	o.done(o.res, o.err)
}

func (o *enqueueOp) apply(w *writer) error {
	o.res, o.err = store.Result{}, nil
	m := o.m
	var (
		digest []byte
		seq    int64
	)
	switch err := w.sentGet.QueryRowContext(w.ctx, m.Sender[:], m.ID[:]).Scan(&digest, &seq); {
	case err == nil:
		if string(digest) != string(m.Digest[:]) {
			o.err = store.ErrConflict
			return nil
		}
		o.res = store.Result{Sequence: uint64(seq), Duplicate: true}
		return nil
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	if m.IsCommit {
		var next int64
		switch err := w.groupGet.QueryRowContext(w.ctx, []byte(m.GroupID)).Scan(&next); {
		case err == nil:
			if uint64(next) != m.Epoch {
				o.res = store.Result{Stale: true, CurrentEpoch: uint64(next)}
				return nil
			}
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
	}
	q := w.quotas.Load()
	size := int64(len(m.Payload))
	for _, r := range m.Recipients {
		u, err := w.mailboxUsage(r)
		if err != nil {
			return err
		}
		if u.entries+1 > q.MailboxEntries || u.bytes+size > q.MailboxBytes {
			o.err = store.ErrQuota
			return nil
		}
	}
	next := w.lastSeq + 1
	s := int64(next)
	if len(m.Recipients) > 0 {
		if _, err := w.msgPut.ExecContext(w.ctx, s, m.Sender[:], m.ID[:], []byte(m.GroupID), ms(m.SentAt), ms(m.Expires),
			recipientsRow(m.Recipients), m.Payload); err != nil {
			return err
		}
		if err := w.insertMailbox(m.Recipients, s, size); err != nil {
			return err
		}
		w.refs[next] = int32(len(m.Recipients))
	}
	if m.IsCommit {
		if _, err := w.groupPut.ExecContext(w.ctx, []byte(m.GroupID), int64(m.Epoch+1)); err != nil {
			return err
		}
	}
	if _, err := w.sentPut.ExecContext(w.ctx, m.Sender[:], m.ID[:], m.Digest[:], s, ms(m.Expires)); err != nil {
		return err
	}
	w.lastSeq = next
	for _, r := range m.Recipients {
		u := w.usage[r]
		u.entries++
		u.bytes += size
	}
	o.res = store.Result{Sequence: next}
	return nil
}

// insertMailbox adds one mailbox row per recipient with as few statements as the
// prepared sizes allow.
func (w *writer) insertMailbox(recipients []wire.DeviceID, seq, size int64) error {
	args := make([]any, 0, 3*rowsPerStatement[0])
	for len(recipients) > 0 {
		n := statementRows(len(recipients))
		args = args[:0]
		for _, r := range recipients[:n] {
			args = append(args, r[:], seq, size)
		}
		if _, err := w.mailboxPut[n].ExecContext(w.ctx, args...); err != nil {
			return err
		}
		recipients = recipients[n:]
	}
	return nil
}

// ackOp deletes acknowledged entries.
type ackOp struct {
	device    wire.DeviceID
	sequences []uint64
	done      func(error)
}

func (o *ackOp) finish(failed error) { o.done(dbErr(failed)) }

func (o *ackOp) apply(w *writer) error {
	args := make([]any, 0, 1+rowsPerStatement[0])
	var gone []uint64
	for seqs := o.sequences; len(seqs) > 0; {
		n := statementRows(len(seqs))
		args = append(args[:0], o.device[:])
		for _, seq := range seqs[:n] {
			args = append(args, int64(seq))
		}
		seqs = seqs[n:]
		// Find what is there to delete: for the payloads' counts and the quota.
		rows, err := w.mailboxGet[n].QueryContext(w.ctx, args...)
		if err != nil {
			return err
		}
		found := 0
		for rows.Next() {
			var seq, size int64
			if err := rows.Scan(&seq, &size); err != nil {
				rows.Close()
				return err
			}
			found++
			w.removed(o.device, size)
			w.unref(uint64(seq), 1, &gone)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if found == 0 {
			continue
		}
		if _, err := w.mailboxDel[n].ExecContext(w.ctx, args...); err != nil {
			return err
		}
	}
	return w.deleteMessages(gone)
}
