package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"mahfooz/authority"
	"mahfooz/device/vault"
	"mahfooz/mls"
	"mahfooz/wire"
)

// errRefused marks an outbox entry the exchange refused for good; it was dropped.
var errRefused = errors.New("device: the exchange refused the message")

// errRetryLater marks an outbox entry the exchange could not take now (full
// mailbox, overload); it stays in the outbox.
var errRetryLater = errors.New("device: the exchange cannot take the message now")

// flushLocked sends every outbox entry, oldest first, including the Welcomes that
// accepted commits queue. It stops at the first failure of the connection; an
// entry the exchange refuses is dropped (its message marked failed), one it
// cannot take now stays for the next flush, and the others still go.
func (dv *Device) flushLocked(ctx context.Context, s *session) error {
	tried := map[uint64]bool{}
	for {
		var entries []*outRec
		err := dv.v.View(func(tx *vault.Tx) error {
			list, err := tx.List(bucketOutbox)
			if err != nil {
				return err
			}
			for _, e := range list {
				o := new(outRec)
				if err := json.Unmarshal(e.Value, o); err != nil {
					return fmt.Errorf("device: outbox record: %w", err)
				}
				if !tried[o.Seq] {
					entries = append(entries, o)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			s.flushed = true
			return nil
		}
		for _, o := range entries {
			tried[o.Seq] = true
			_, err := dv.sendEntryLocked(ctx, s, o)
			if err != nil && !errors.Is(err, errRefused) && !errors.Is(err, errRetryLater) {
				return err
			}
		}
	}
}

// sendEntryLocked sends one outbox entry and applies the exchange's answer:
// accepted entries complete (a commit's new state takes over), a commit that lost
// its epoch is dropped (the state from before it stays). It returns the status
// the exchange answered; errRefused when the exchange refused the entry for good;
// any other error leaves the entry to be sent again with the same message ID.
func (dv *Device) sendEntryLocked(ctx context.Context, s *session, o *outRec) (wire.SendStatus, error) {
	if o.Kind == outCommit {
		// A commit made in an epoch the group has since left (another member's
		// commit was processed first) can no longer win.
		var epoch uint64
		err := dv.v.View(func(tx *vault.Tx) error {
			rec, err := loadGroupRec(tx, o.Send.GroupID)
			if err == nil {
				epoch = rec.Epoch
			}
			return err
		})
		if err != nil && !errors.Is(err, vault.ErrNotFound) {
			return 0, err
		}
		if err != nil || epoch != o.Send.Epoch {
			return wire.SendStaleEpoch, dv.dropEntry(o, false)
		}
	}
	retried := false
	for {
		if dv.testSend != nil {
			dv.testSend(o.Send)
		}
		res, err := s.c.Send(ctx, o.Send)
		if err == nil {
			switch res.Status {
			case wire.SendAccepted:
				return wire.SendAccepted, dv.completeEntry(s, o)
			case wire.SendStaleEpoch:
				return wire.SendStaleEpoch, dv.dropEntry(o, false)
			}
			return 0, fmt.Errorf("device: exchange answered send status %d", res.Status)
		}
		var we *wire.Error
		if !errors.As(err, &we) {
			return 0, fmt.Errorf("%w: sending: %w", ErrOffline, err)
		}
		switch we.Code {
		case wire.CodeInternal, wire.CodeUnavailable, wire.CodeRateLimited, wire.CodeQuotaExceeded:
			return 0, fmt.Errorf("%w: %w", errRetryLater, err)
		case wire.CodeInvalidRequest:
			// Perhaps a recipient was revoked since: look again, once.
			if !retried {
				retried = true
				if changed, rerr := dv.pruneRecipients(ctx, s, o); rerr == nil && changed {
					continue
				}
			}
		}
		dv.log.Warn("device: exchange refused a message", "message", o.Send.MessageID.String(), "err", err)
		if err := dv.dropEntry(o, true); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("%w: %w", errRefused, err)
	}
}

// pruneRecipients refreshes the directory and removes recipients it no longer
// lists as active from the entry.
func (dv *Device) pruneRecipients(ctx context.Context, s *session, o *outRec) (bool, error) {
	if _, err := dv.refreshDirectory(ctx, s); err != nil {
		return false, err
	}
	d := dv.dir.Load()
	var keep []wire.DeviceID
	for _, r := range o.Send.Recipients {
		if d.active(authority.DeviceID(r)) {
			keep = append(keep, r)
		}
	}
	if len(keep) == len(o.Send.Recipients) {
		return false, nil
	}
	o.Send.Recipients = keep
	return true, dv.v.Update(func(tx *vault.Tx) error { return putJSON(tx, bucketOutbox, u64(o.Seq), o) })
}

// dropEntry removes an entry that will not be sent; failed marks its message.
func (dv *Device) dropEntry(o *outRec, failed bool) error {
	var ev *Event
	err := dv.v.Update(func(tx *vault.Tx) error {
		ev = nil
		if err := tx.Delete(bucketOutbox, u64(o.Seq)); err != nil {
			return err
		}
		if failed && o.MsgKey != 0 {
			e, err := dv.setStatus(tx, o.Send.GroupID, o.MsgKey, StatusFailed)
			if err != nil {
				return err
			}
			ev = e
		}
		return nil
	})
	if err == nil && ev != nil {
		dv.publish(*ev)
	}
	return err
}

// setStatus changes the status of an outgoing history entry, if it still exists.
func (dv *Device) setStatus(tx *vault.Tx, gid []byte, key uint64, st MessageStatus) (*Event, error) {
	var mr msgRec
	err := getJSON(tx, msgBucket(gid), u64(key), &mr)
	if errors.Is(err, vault.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	mr.Status = st
	if err := putJSON(tx, msgBucket(gid), u64(key), &mr); err != nil {
		return nil, err
	}
	rec, err := loadGroupRec(tx, gid)
	if err != nil {
		return nil, err
	}
	msg := mr.message(rec, dv.self.Name)
	return &Event{Kind: EventStatus, ConversationID: msg.ConversationID, Message: &msg}, nil
}

// completeEntry applies an accepted entry.
func (dv *Device) completeEntry(s *session, o *outRec) error {
	var events []Event
	err := dv.v.Update(func(tx *vault.Tx) error {
		events = nil
		now := dv.now()
		if err := tx.Delete(bucketOutbox, u64(o.Seq)); err != nil {
			return err
		}
		keep := time.Duration(o.Send.TTLSeconds)*time.Second + dedupSlack
		if o.Send.TTLSeconds == 0 {
			keep = time.Duration(s.c.Welcome().Limits.MaxTTL)*time.Second + dedupSlack
		}
		ir := &idRec{Group: o.Send.GroupID, Key: o.MsgKey, Until: now.Add(keep), Sent: o.Kind}
		for _, r := range o.Send.Recipients {
			ir.Recipients = append(ir.Recipients, r)
		}
		if err := putJSON(tx, bucketIDs, o.Send.MessageID[:], ir); err != nil {
			return err
		}
		switch o.Kind {
		case outApp:
			if o.MsgKey != 0 {
				ev, err := dv.setStatus(tx, o.Send.GroupID, o.MsgKey, StatusSent)
				if err != nil {
					return err
				}
				if ev != nil {
					events = append(events, *ev)
				}
			}
		case outCommit:
			rec, err := loadGroupRec(tx, o.Send.GroupID)
			if err != nil {
				return err
			}
			g, err := mls.LoadGroup(o.Post, dv.mlsConfig())
			if err != nil {
				return fmt.Errorf("device: state after commit: %w", err)
			}
			rec.Epoch, rec.Members, rec.Last, rec.KeyUpdated = g.Epoch(), rosterOf(g), now, now
			if err := tx.Put(bucketMLS, rec.ID, o.Post); err != nil {
				return err
			}
			dv.noteGroupChange()
			if err := putJSON(tx, bucketGroups, rec.ID, rec); err != nil {
				return err
			}
			evs, err := dv.storeNotes(tx, rec, o.Notes, now)
			if err != nil {
				return err
			}
			events = append(events, evs...)
			if len(o.Welcome) > 0 && len(o.WelcomeTo) > 0 {
				seq, err := nextSeq(tx)
				if err != nil {
					return err
				}
				w := &outRec{Seq: seq, Kind: outWelcome, Send: &wire.Send{
					GroupID:  rec.ID,
					Epoch:    rec.Epoch,
					Payload:  o.Welcome,
					IsCommit: false,
				}}
				for _, id := range o.WelcomeTo {
					w.Send.Recipients = append(w.Send.Recipients, wire.DeviceID(id))
				}
				w.Send.Recipients = wire.SortDeviceIDs(w.Send.Recipients)
				if w.Send.MessageID, err = dv.newMessageID(); err != nil {
					return err
				}
				if err := putJSON(tx, bucketOutbox, u64(seq), w); err != nil {
					return err
				}
				// Behind the Welcome, the conversation's kind, name and timer, so
				// that the devices joining learn them whatever becomes of the
				// operation that added them.
				if rec.Kind != 0 {
					_, _, evs, err := dv.queueAppTx(tx, s, rec, g, infoContent(rec), false)
					if err != nil {
						return err
					}
					events = append(events, evs...)
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if o.Kind == outCommit {
		s.retry = append(s.retry, o.Send.GroupID)
	}
	for _, e := range events {
		dv.publish(e)
	}
	return nil
}

func (dv *Device) newMessageID() (wire.MessageID, error) {
	var id wire.MessageID
	_, err := io.ReadFull(dv.cfg.Rand, id[:])
	return id, err
}

// recipients are the devices of a roster other than this one, as far as the
// directory lists them as active (the exchange refuses revoked ones).
func (dv *Device) recipients(members []memberRec) []wire.DeviceID {
	d := dv.dir.Load()
	var out []wire.DeviceID
	for _, m := range members {
		if m.Device == dv.self.ID || !d.active(m.Device) {
			continue
		}
		out = append(out, wire.DeviceID(m.Device))
	}
	return wire.SortDeviceIDs(out)
}

// ttlFor is the Send TTL of an application message in a group with the given
// disappearing timer: the timer, within the exchange's limit; 0 (the default) if off.
func ttlFor(timer time.Duration, s *session) uint32 {
	if timer <= 0 {
		return 0
	}
	secs := uint64((timer + time.Second - 1) / time.Second)
	if limit := uint64(s.c.Welcome().Limits.MaxTTL); limit > 0 && secs > limit {
		secs = limit
	}
	return uint32(secs)
}

func secondsDuration(secs uint32) time.Duration { return time.Duration(secs) * time.Second }

// queueAppLocked encrypts content for a group and puts it in the outbox, with
// the group's advanced state, in one transaction: a generation is never used
// twice, even across a crash. When show is set the message enters the history as
// pending. It returns the entry and the history record (nil unless shown).
func (dv *Device) queueAppLocked(s *session, gid []byte, c *content, show bool) (*outRec, *msgRec, error) {
	var (
		o  *outRec
		mr *msgRec
		ev []Event
	)
	err := dv.v.Update(func(tx *vault.Tx) error {
		rec, err := loadGroupRec(tx, gid)
		if err != nil {
			return err
		}
		if !rec.Active {
			return ErrNotMember
		}
		g, err := dv.loadGroup(tx, gid)
		if err != nil {
			return err
		}
		o, mr, ev, err = dv.queueAppTx(tx, s, rec, g, c, show)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ev {
		dv.publish(e)
	}
	return o, mr, nil
}

// queueAppTx is queueAppLocked inside a transaction, on a loaded group; it stores
// the group's state and record.
func (dv *Device) queueAppTx(tx *vault.Tx, s *session, rec *groupRec, g *mls.Group, c *content, show bool) (*outRec, *msgRec, []Event, error) {
	var ev []Event
	now := dv.now()
	c.SentAt = now
	if rec.Timer > 0 && (c.Type == contentText || c.Type == contentFile) {
		c.ExpiresAt = now.Add(rec.Timer)
	}
	if c.Type == contentTimer {
		rec.Timer = c.Timer
	}
	data, err := encodeContent(c)
	if err != nil {
		return nil, nil, nil, err
	}
	msg, err := g.Protect(data, nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("device: encrypting: %w", err)
	}
	rec.Last = now
	if err := dv.putGroup(tx, rec, g); err != nil {
		return nil, nil, nil, err
	}
	// Only what disappears is held by the exchange no longer than its timer; a
	// timer change or conversation info must reach members however late.
	var ttl uint32
	switch c.Type {
	case contentText, contentFile:
		ttl = ttlFor(rec.Timer, s)
	case contentCall:
		ttl = callSignalTTL
	}
	seq, err := nextSeq(tx)
	if err != nil {
		return nil, nil, nil, err
	}
	o := &outRec{Seq: seq, Kind: outApp, Send: &wire.Send{
		GroupID:    rec.ID,
		Epoch:      g.Epoch(),
		Recipients: dv.recipients(rec.Members),
		TTLSeconds: ttl,
		Payload:    msg.Bytes(),
	}}
	if o.Send.MessageID, err = dv.newMessageID(); err != nil {
		return nil, nil, nil, err
	}
	var mr *msgRec
	if show {
		mr = &msgRec{
			ID:         o.Send.MessageID.String(),
			Group:      rec.ID,
			FromName:   dv.self.Name,
			FromDevice: dv.self.ID.String(),
			Outgoing:   true,
			SentAt:     now,
			ReceivedAt: now,
			ExpiresAt:  c.ExpiresAt,
			Status:     StatusPending,
		}
		switch c.Type {
		case contentText:
			mr.Kind, mr.Text = MessageText, c.Text
		case contentFile:
			mr.Kind, mr.File = MessageFile, c.File
		case contentTimer:
			mr.Kind, mr.Timer, mr.Text = MessageTimer, c.Timer, timerText("you", c.Timer)
		case contentCall:
			mr.Kind, mr.Text = MessageCall, "you called"
			if rec.Timer > 0 {
				mr.ExpiresAt = now.Add(rec.Timer)
			}
		}
		if err := dv.putMessage(tx, mr); err != nil {
			return nil, nil, nil, err
		}
		o.MsgKey = mr.Key
		msg := mr.message(rec, dv.self.Name)
		ev = append(ev, Event{Kind: EventMessage, ConversationID: msg.ConversationID, Message: &msg})
	}
	if c.Type == contentTimer {
		ev = append(ev, Event{Kind: EventConversation, ConversationID: convID(rec, dv.self.Name)})
	}
	if err := putJSON(tx, bucketOutbox, u64(seq), o); err != nil {
		return nil, nil, nil, err
	}
	return o, mr, ev, nil
}

// infoContent is a group's conversation info, as sent to members that join.
func infoContent(rec *groupRec) *content {
	info := &convInfo{Kind: rec.Kind, Name: rec.Name, Timer: rec.Timer}
	if rec.Kind == kindDirect {
		info.Name, info.Officials = "", rec.Officials
	}
	return &content{Type: contentConversation, Info: info}
}

// sendAppLocked queues content and sends it at once. A shown message is returned
// as the history now has it: sent, failed, or still pending when the connection
// failed (the outbox sends it later).
func (dv *Device) sendAppLocked(ctx context.Context, s *session, gid []byte, c *content, show bool) (*msgRec, error) {
	o, mr, err := dv.queueAppLocked(s, gid, c, show)
	if err != nil {
		return nil, err
	}
	_, err = dv.sendEntryLocked(ctx, s, o)
	if mr != nil {
		var fresh msgRec
		if verr := dv.v.View(func(tx *vault.Tx) error {
			return getJSON(tx, msgBucket(gid), u64(mr.Key), &fresh)
		}); verr == nil {
			mr = &fresh
		}
	}
	if errors.Is(err, errRefused) {
		return mr, err
	}
	if err != nil {
		dv.log.Info("device: message queued; it goes out with the next connection", "err", err)
	}
	return mr, nil
}
