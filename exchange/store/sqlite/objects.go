package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"

	"mahfooz/exchange/store"
	"mahfooz/wire"
)

// AddKeyPackages implements store.Store.
func (s *Store) AddKeyPackages(ctx context.Context, device wire.DeviceID, keyPackages [][]byte) error {
	return s.do(ctx, func(w *writer, outcome *error) error {
		var n int
		if err := w.conn.QueryRowContext(w.ctx, `SELECT count(*) FROM key_packages WHERE device = ? AND last_resort = 0`, device[:]).Scan(&n); err != nil {
			return err
		}
		if n+len(keyPackages) > w.quotas.Load().KeyPackages {
			*outcome = store.ErrQuota
			return nil
		}
		for _, kp := range keyPackages {
			if _, err := w.conn.ExecContext(w.ctx, `INSERT INTO key_packages (device, last_resort, data) VALUES (?, 0, ?)`, device[:], kp); err != nil {
				return err
			}
		}
		return nil
	})
}

// SetLastResortKeyPackage implements store.Store.
func (s *Store) SetLastResortKeyPackage(ctx context.Context, device wire.DeviceID, keyPackage []byte) error {
	return s.do(ctx, func(w *writer, _ *error) error {
		if _, err := w.conn.ExecContext(w.ctx, `DELETE FROM key_packages WHERE device = ? AND last_resort = 1`, device[:]); err != nil {
			return err
		}
		_, err := w.conn.ExecContext(w.ctx, `INSERT INTO key_packages (device, last_resort, data) VALUES (?, 1, ?)`, device[:], keyPackage)
		return err
	})
}

// ClaimKeyPackages implements store.Store.
func (s *Store) ClaimKeyPackages(ctx context.Context, devices []wire.DeviceID) ([]wire.ClaimedKeyPackage, error) {
	var out []wire.ClaimedKeyPackage
	err := s.do(ctx, func(w *writer, _ *error) error {
		out = out[:0]
		for _, d := range devices {
			var (
				id         int64
				lastResort bool
				data       []byte
			)
			err := w.conn.QueryRowContext(w.ctx, `SELECT id, last_resort, data FROM key_packages
				WHERE device = ? ORDER BY last_resort, id LIMIT 1`, d[:]).Scan(&id, &lastResort, &data)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			if !lastResort {
				if _, err := w.conn.ExecContext(w.ctx, `DELETE FROM key_packages WHERE id = ?`, id); err != nil {
					return err
				}
			}
			out = append(out, wire.ClaimedKeyPackage{Device: d, KeyPackage: data})
		}
		return nil
	})
	return out, err
}

// KeyPackageCount implements store.Store.
func (s *Store) KeyPackageCount(ctx context.Context, device wire.DeviceID) (int, bool, error) {
	var (
		n          int
		lastResort bool
	)
	err := s.r.kpCount.QueryRowContext(ctx, device[:]).Scan(&n, &lastResort)
	return n, lastResort, dbErr(err)
}

// blobRecipients returns a blob's recipients in order.
func (w *writer) blobRecipients(id wire.BlobID) ([]wire.DeviceID, error) {
	rows, err := w.conn.QueryContext(w.ctx, `SELECT device FROM blob_recipients WHERE blob = ? ORDER BY device`, id[:])
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []wire.DeviceID
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		var d wire.DeviceID
		if !readID(b, (*[wire.IDSize]byte)(&d)) {
			return nil, errRow
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// CreateBlob implements store.Store.
func (s *Store) CreateBlob(ctx context.Context, b store.Blob) error {
	if len(b.Recipients) == 0 {
		return errors.New("sqlite: blob without recipients")
	}
	for i := 1; i < len(b.Recipients); i++ {
		if bytes.Compare(b.Recipients[i-1][:], b.Recipients[i][:]) >= 0 {
			return errors.New("sqlite: blob recipients not strictly increasing")
		}
	}
	return s.do(ctx, func(w *writer, outcome *error) error {
		var owner []byte
		switch err := w.conn.QueryRowContext(w.ctx, `SELECT owner FROM blobs WHERE id = ?`, b.ID[:]).Scan(&owner); {
		case err == nil:
			have, err := w.blobRecipients(b.ID)
			if err != nil {
				return err
			}
			if !bytes.Equal(owner, b.Owner[:]) || !equalIDs(have, b.Recipients) {
				*outcome = store.ErrConflict
			}
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if _, err := w.conn.ExecContext(w.ctx, `INSERT INTO blobs (id, owner, expires) VALUES (?, ?, ?)`, b.ID[:], b.Owner[:], ms(b.Expires)); err != nil {
			return err
		}
		for _, r := range b.Recipients {
			if _, err := w.conn.ExecContext(w.ctx, `INSERT INTO blob_recipients (blob, device) VALUES (?, ?)`, b.ID[:], r[:]); err != nil {
				return err
			}
		}
		return nil
	})
}

func equalIDs(a, b []wire.DeviceID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// AppendChunk implements store.Store.
func (s *Store) AppendChunk(ctx context.Context, owner wire.DeviceID, id wire.BlobID, index uint32, last bool, data []byte) error {
	if len(data) == 0 {
		return errors.New("sqlite: empty chunk")
	}
	return s.do(ctx, func(w *writer, outcome *error) error {
		var (
			have     []byte
			chunks   int64
			complete bool
		)
		err := w.conn.QueryRowContext(w.ctx, `SELECT owner, chunks, complete FROM blobs WHERE id = ?`, id[:]).Scan(&have, &chunks, &complete)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			*outcome = store.ErrNotFound
			return nil
		case err != nil:
			return err
		case !bytes.Equal(have, owner[:]):
			*outcome = store.ErrForbidden
			return nil
		}
		if int64(index) == chunks-1 {
			// A retransmission of the previous chunk succeeds if it is the same.
			var (
				prev     []byte
				prevLast bool
			)
			if err := w.conn.QueryRowContext(w.ctx, `SELECT data, last FROM blob_chunks WHERE blob = ? AND idx = ?`, id[:], int64(index)).Scan(&prev, &prevLast); err != nil {
				return err
			}
			if prevLast != last || !bytes.Equal(prev, data) {
				*outcome = store.ErrOutOfOrder
			}
			return nil
		}
		if complete || int64(index) != chunks {
			*outcome = store.ErrOutOfOrder
			return nil
		}
		if w.blobBytes+int64(len(data)) > w.quotas.Load().BlobBytes {
			*outcome = store.ErrQuota
			return nil
		}
		if _, err := w.conn.ExecContext(w.ctx, `INSERT INTO blob_chunks (blob, idx, last, data) VALUES (?, ?, ?, ?)`, id[:], int64(index), last, data); err != nil {
			return err
		}
		if _, err := w.conn.ExecContext(w.ctx, `UPDATE blobs SET chunks = chunks + 1, complete = ?, size = size + ? WHERE id = ?`, last, len(data), id[:]); err != nil {
			return err
		}
		w.blobBytes += int64(len(data))
		return nil
	})
}

// ReadChunk implements store.Store.
func (s *Store) ReadChunk(ctx context.Context, recipient wire.DeviceID, id wire.BlobID, index uint32) (store.Chunk, error) {
	if err := s.blobAccess(ctx, recipient, id); err != nil {
		return store.Chunk{}, err
	}
	var c store.Chunk
	err := s.r.chunk.QueryRowContext(ctx, id[:], int64(index)).Scan(&c.Data, &c.Last)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Chunk{}, store.ErrNotFound
	}
	if err == nil && len(c.Data) == 0 {
		return store.Chunk{}, errRow
	}
	return c, dbErr(err)
}

// blobAccess checks that the blob exists and the device is one of its recipients.
func (s *Store) blobAccess(ctx context.Context, recipient wire.DeviceID, id wire.BlobID) error {
	var blobs, listed int
	if err := s.r.blobAccess.QueryRowContext(ctx, id[:], recipient[:]).Scan(&blobs, &listed); err != nil {
		return dbErr(err)
	}
	switch {
	case blobs == 0:
		return store.ErrNotFound
	case listed == 0:
		return store.ErrForbidden
	}
	return nil
}

// BlobFetched implements store.Store.
func (s *Store) BlobFetched(ctx context.Context, recipient wire.DeviceID, id wire.BlobID) error {
	return s.do(ctx, func(w *writer, outcome *error) error {
		var (
			complete bool
			size     int64
		)
		err := w.conn.QueryRowContext(w.ctx, `SELECT complete, size FROM blobs WHERE id = ?`, id[:]).Scan(&complete, &size)
		if errors.Is(err, sql.ErrNoRows) {
			*outcome = store.ErrNotFound
			return nil
		}
		if err != nil {
			return err
		}
		res, err := w.conn.ExecContext(w.ctx, `UPDATE blob_recipients SET fetched = 1 WHERE blob = ? AND device = ?`, id[:], recipient[:])
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			*outcome = store.ErrForbidden
			return nil
		}
		if !complete {
			return nil
		}
		var waiting int
		if err := w.conn.QueryRowContext(w.ctx, `SELECT count(*) FROM blob_recipients WHERE blob = ? AND fetched = 0`, id[:]).Scan(&waiting); err != nil {
			return err
		}
		if waiting > 0 {
			return nil
		}
		if _, err := w.conn.ExecContext(w.ctx, `DELETE FROM blobs WHERE id = ?`, id[:]); err != nil {
			return err
		}
		w.blobBytes -= size
		return nil
	})
}
