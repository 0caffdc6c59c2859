package device

import (
	"encoding/binary"
	"errors"
	"math"
	"os"

	"mahfooz/device/vault"
)

// noExpiry in Device.nextExpiry says no stored message has an expiry.
const noExpiry = math.MaxInt64

// putMessage stores a history entry and notes its expiry for the sweep.
func (dv *Device) putMessage(tx *vault.Tx, m *msgRec) error {
	if err := putMessage(tx, m); err != nil {
		return err
	}
	if !m.ExpiresAt.IsZero() {
		at := m.ExpiresAt.UnixMilli()
		for {
			cur := dv.nextExpiry.Load()
			if cur == 0 || cur <= at {
				break
			}
			if dv.nextExpiry.CompareAndSwap(cur, at) {
				break
			}
		}
	}
	return nil
}

// sweepLogged sweeps under dv.mu, logging a failure.
func (dv *Device) sweepLogged() {
	if err := dv.locked(dv.sweepLocked); err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrWiped) {
		dv.log.Warn("device: sweeping expired messages", "err", err)
	}
}

// sweep is sweepLocked for callers that own the Device alone (Open).
func (dv *Device) sweep() error { return dv.sweepLocked() }

// sweepLocked deletes every message whose disappearing timer has run out, with
// the copies of its attachment that SaveFile wrote.
func (dv *Device) sweepLocked() error {
	now := dv.now().UnixMilli()
	if next := dv.nextExpiry.Load(); next != 0 && next > now {
		return nil
	}
	var (
		files   []string
		expired []Event
		next    int64 = noExpiry
	)
	err := dv.v.Update(func(tx *vault.Tx) error {
		files, expired, next = nil, nil, noExpiry
		entries, err := tx.List(bucketExpiry)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if len(e.Key) != 16 {
				if err := tx.Delete(bucketExpiry, e.Key); err != nil {
					return err
				}
				continue
			}
			at := int64(binary.BigEndian.Uint64(e.Key[:8]))
			if at > now {
				next = min(next, at)
				continue
			}
			gid, key := e.Value, e.Key[8:]
			var mr msgRec
			err := getJSON(tx, msgBucket(gid), key, &mr)
			switch {
			case err == nil:
				files = append(files, mr.Saved...)
				if err := tx.Delete(msgBucket(gid), key); err != nil {
					return err
				}
				if err := tx.Delete(bucketUnread, []byte(mr.ID)); err != nil {
					return err
				}
				ev := Event{Kind: EventExpired, Message: &Message{ID: mr.ID}}
				if rec, err := loadGroupRec(tx, gid); err == nil {
					ev.ConversationID = convID(rec, dv.self.Name)
					ev.Message.ConversationID = ev.ConversationID
				}
				expired = append(expired, ev)
			case !errors.Is(err, vault.ErrNotFound):
				return err
			}
			if err := tx.Delete(bucketExpiry, e.Key); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	dv.nextExpiry.Store(next)
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			dv.log.Warn("device: deleting an expired attachment copy", "err", err)
		}
	}
	for _, e := range expired {
		dv.publish(e)
	}
	return nil
}
