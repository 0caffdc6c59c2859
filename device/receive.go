package device

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"mahfooz/authority"
	"mahfooz/device/vault"
	"mahfooz/mls"
	"mahfooz/wire"
)

// dedupSlack is how long past the exchange's maximum TTL a received message ID
// is remembered: the exchange cannot deliver a message again after that.
const dedupSlack = 24 * time.Hour

// errDrop marks a delivery that cannot be processed: it is logged and acknowledged.
var errDrop = errors.New("device: delivery dropped")

// errHold marks a delivery for a group not joined yet or an epoch not reached yet.
var errHold = errors.New("device: delivery is ahead of this device's group state")

// maxHeld bounds the deliveries held for a later group or epoch; the oldest go first.
const maxHeld = 512

// drainLocked processes every queued push, acknowledging each delivery once its
// effect is stored. dv.mu is held.
func (dv *Device) drainLocked(ctx context.Context, s *session) error {
	if !s.flushed {
		if err := dv.flushLocked(ctx, s); err != nil {
			return err
		}
	}
	for {
		if err := dv.retryHeldLocked(ctx, s); err != nil {
			return err
		}
		items := s.take()
		if len(items) == 0 {
			return nil
		}
		var acks []uint64
		for i, it := range items {
			switch {
			case it.dirty:
				// Fetched at once: the deliveries that follow may remove a device
				// this update revokes, and should say so.
				if _, err := dv.refreshDirectory(ctx, s); err != nil {
					dv.log.Warn("device: fetching the updated directory", "err", err)
					s.dirDirty = true
				}
				s.reconcile = true
			case it.expired != nil:
				if err := dv.handleExpiredLocked(it.expired); err != nil {
					dv.log.Warn("device: recording undelivered messages", "err", err)
				}
			case it.deliver != nil:
				if err := dv.handleDeliverLocked(ctx, s, it.deliver); err != nil {
					// The vault failed: leave this and the rest unacknowledged, to be
					// processed again.
					s.mu.Lock()
					s.queue = append(slices.Clone(items[i:]), s.queue...)
					s.mu.Unlock()
					return errors.Join(err, dv.ack(ctx, s, acks))
				}
				acks = append(acks, it.deliver.Sequence)
			}
			if err := dv.retryHeldLocked(ctx, s); err != nil {
				s.mu.Lock()
				s.queue = append(slices.Clone(items[i+1:]), s.queue...)
				s.mu.Unlock()
				return errors.Join(err, dv.ack(ctx, s, acks))
			}
		}
		if err := dv.ack(ctx, s, acks); err != nil {
			return err
		}
	}
}

// ack acknowledges processed deliveries, in batches the protocol allows.
func (dv *Device) ack(ctx context.Context, s *session, seqs []uint64) error {
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	if len(seqs) > 0 && dv.testAck != nil && !dv.testAck() {
		s.c.Close()
		return fmt.Errorf("%w: connection dropped before acknowledging", ErrOffline)
	}
	for len(seqs) > 0 {
		n := min(len(seqs), wire.MaxAck)
		if err := s.c.Ack(ctx, seqs[:n]); err != nil {
			return fmt.Errorf("%w: acknowledging: %w", ErrOffline, err)
		}
		seqs = seqs[n:]
	}
	return nil
}

// handleDeliverLocked processes one delivery. It returns an error only when the
// vault fails; a message that cannot be processed is logged and dropped.
func (dv *Device) handleDeliverLocked(ctx context.Context, s *session, m *wire.Deliver) error {
	seen := false
	err := dv.v.View(func(tx *vault.Tx) error {
		_, err := tx.Get(bucketIDs, m.MessageID[:])
		seen = err == nil
		if errors.Is(err, vault.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if seen {
		dv.log.Debug("device: duplicate delivery discarded", "message", m.MessageID.String())
		return nil
	}
	msg, err := mls.UnmarshalMLSMessage(m.Payload)
	if err != nil {
		dv.log.Warn("device: delivery is not an MLS message", "message", m.MessageID.String(), "err", err)
		return nil
	}
	switch msg.WireFormat {
	case mls.WireFormatWelcome:
		err = dv.handleWelcomeLocked(ctx, s, m, msg.Welcome)
	case mls.WireFormatPrivateMessage, mls.WireFormatPublicMessage:
		err = dv.handleGroupMessageLocked(ctx, s, m, msg)
	default:
		err = fmt.Errorf("%w: wire format %d", errDrop, msg.WireFormat)
	}
	if errors.Is(err, errDrop) {
		dv.log.Warn("device: delivery refused", "message", m.MessageID.String(), "sender", m.Sender.String(), "err", err)
		return nil
	}
	return err
}

// dropError wraps a processing failure as errDrop, keeping vault failures apart.
func dropError(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", errDrop, what, err)
}

// remember records a processed message ID so that a second delivery is discarded.
func (dv *Device) remember(tx *vault.Tx, s *session, id wire.MessageID, group []byte, key uint64) error {
	keep := time.Duration(s.c.Welcome().Limits.MaxTTL)*time.Second + dedupSlack
	return putJSON(tx, bucketIDs, id[:], &idRec{Group: group, Key: key, Until: dv.now().Add(keep)})
}

// handleGroupMessageLocked processes a commit or an application message of a group.
func (dv *Device) handleGroupMessageLocked(ctx context.Context, s *session, m *wire.Deliver, msg *mls.MLSMessage) error {
	var gid []byte
	if msg.PrivateMessage != nil {
		gid = msg.PrivateMessage.GroupID
	} else {
		gid = msg.PublicMessage.Content.GroupID
	}
	if !bytes.Equal(gid, m.GroupID) {
		return fmt.Errorf("%w: group ID differs from the delivery's", errDrop)
	}
	err := dv.processLocked(s, m, msg, gid)
	if errors.Is(err, mls.ErrCredentialRejected) {
		// A device this directory does not know yet may have been added: look again.
		if _, rerr := dv.refreshDirectory(ctx, s); rerr == nil {
			err = dv.processLocked(s, m, msg, gid)
		}
	}
	if errors.Is(err, errHold) {
		return dv.holdLocked(m)
	}
	var perr *processError
	if errors.As(err, &perr) {
		return dropError("processing", perr.err)
	}
	return err
}

// holdLocked keeps a delivery that is ahead of this device's state, to be
// processed once its group or epoch is reached. The MLS checks all happen then.
func (dv *Device) holdLocked(m *wire.Deliver) error {
	dv.log.Info("device: delivery held for a later group state", "message", m.MessageID.String())
	return dv.v.Update(func(tx *vault.Tx) error {
		list, err := tx.List(bucketHeld)
		if err != nil {
			return err
		}
		for i := 0; i <= len(list)-maxHeld; i++ {
			if err := tx.Delete(bucketHeld, list[i].Key); err != nil {
				return err
			}
		}
		seq, err := nextSeq(tx)
		if err != nil {
			return err
		}
		return putJSON(tx, bucketHeld, u64(seq), &heldRec{Deliver: m, Until: dv.now().Add(heldFor)})
	})
}

// heldFor is how long a held delivery waits for its group or epoch.
const heldFor = 7 * 24 * time.Hour

// retryHeldLocked processes again the held deliveries of groups that moved on.
func (dv *Device) retryHeldLocked(ctx context.Context, s *session) error {
	for len(s.retry) > 0 {
		gid := s.retry[0]
		s.retry = s.retry[1:]
		var todo []*wire.Deliver
		err := dv.v.Update(func(tx *vault.Tx) error {
			todo = nil
			list, err := tx.List(bucketHeld)
			if err != nil {
				return err
			}
			for _, e := range list {
				var h heldRec
				if err := json.Unmarshal(e.Value, &h); err != nil || h.Deliver == nil {
					if err := tx.Delete(bucketHeld, e.Key); err != nil {
						return err
					}
					continue
				}
				if !bytes.Equal(h.Deliver.GroupID, gid) {
					continue
				}
				todo = append(todo, h.Deliver)
				if err := tx.Delete(bucketHeld, e.Key); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, m := range todo {
			if err := dv.handleDeliverLocked(ctx, s, m); err != nil {
				return err
			}
		}
	}
	return nil
}

// processError is an MLS refusal, as opposed to a vault failure.
type processError struct{ err error }

func (e *processError) Error() string { return e.err.Error() }
func (e *processError) Unwrap() error { return e.err }

// processLocked applies one group message in one vault transaction: the MLS state,
// the conversation record, the history entries and the deduplication record.
func (dv *Device) processLocked(s *session, m *wire.Deliver, msg *mls.MLSMessage, gid []byte) error {
	var (
		events []Event
		moved  bool
	)
	err := dv.v.Update(func(tx *vault.Tx) error {
		events, moved = nil, false
		rec, err := loadGroupRec(tx, gid)
		if errors.Is(err, vault.ErrNotFound) {
			return errHold
		}
		if err != nil {
			return err
		}
		if !rec.Active {
			return fmt.Errorf("%w: this device left the group", errDrop)
		}
		g, err := dv.loadGroup(tx, gid)
		if errors.Is(err, mls.ErrState) {
			return &processError{err}
		}
		if err != nil {
			return err
		}
		r, err := g.Process(msg)
		if err != nil {
			if messageEpoch(msg) > g.Epoch() {
				return errHold
			}
			return &processError{err}
		}
		var key uint64
		now := dv.now()
		switch r.ContentType {
		case mls.ContentTypeApplication:
			key, events, err = dv.applyContentLocked(tx, rec, r, m, now)
			if err != nil {
				return err
			}
		case mls.ContentTypeCommit:
			events, err = dv.applyCommitLocked(tx, rec, g, r, now)
			if err != nil {
				return err
			}
			moved = true
		default:
			// This device's groups commit only by value; a proposal would block
			// sending until someone committed it.
			return &processError{errors.New("proposals are not used in these groups")}
		}
		if err := dv.putGroup(tx, rec, g); err != nil {
			return err
		}
		return dv.remember(tx, s, m.MessageID, gid, key)
	})
	if err != nil {
		return err
	}
	if moved {
		s.retry = append(s.retry, gid)
	}
	for _, e := range events {
		dv.publish(e)
	}
	return nil
}

// messageEpoch is the epoch a group message was made in.
func messageEpoch(msg *mls.MLSMessage) uint64 {
	if msg.PrivateMessage != nil {
		return msg.PrivateMessage.Epoch
	}
	if msg.PublicMessage != nil {
		return msg.PublicMessage.Content.Epoch
	}
	return 0
}

// applyContentLocked stores the effect of an application message.
func (dv *Device) applyContentLocked(tx *vault.Tx, rec *groupRec, r *mls.Received, m *wire.Deliver, now time.Time) (uint64, []Event, error) {
	from := credInfo(r.SenderCredential)
	if d := dv.dir.Load(); d != nil && d.revoked[from.ID] {
		// A revoked device may still hold the group's keys until a member removes
		// it; what it sends is not shown.
		dv.log.Warn("device: message from a revoked device not shown", "message", m.MessageID.String(), "device", from.ID.String())
		return 0, nil, nil
	}
	c, err := decodeContent(r.ApplicationData)
	if err != nil {
		// The MLS state has advanced past this message; keep that, show nothing.
		dv.log.Warn("device: message content does not decode", "message", m.MessageID.String())
		return 0, nil, nil
	}
	if c.Type == contentCall {
		// Call signals drive calls; only a ring leaves a line in the history,
		// so that a call nobody took is not forgotten.
		events := []Event{dv.callSignalEvent(rec, from, c)}
		if c.Call.Signal != signalRing {
			return 0, events, nil
		}
		mr := &msgRec{
			ID: m.MessageID.String(), Group: rec.ID, Kind: MessageCall,
			FromName: from.Name, FromDevice: from.ID.String(), Text: from.Name + " called",
			SentAt: c.SentAt, ReceivedAt: now, Status: StatusReceived,
			ExpiresAt: expiry(time.Time{}, rec.Timer, now),
		}
		if err := dv.putMessage(tx, mr); err != nil {
			return 0, nil, err
		}
		msg := mr.message(rec, dv.self.Name)
		return mr.Key, append(events, Event{Kind: EventMessage, ConversationID: msg.ConversationID, Message: &msg}), nil
	}
	mr := &msgRec{
		ID:         m.MessageID.String(),
		Group:      rec.ID,
		FromName:   from.Name,
		FromDevice: from.ID.String(),
		SentAt:     c.SentAt,
		ReceivedAt: now,
		Status:     StatusReceived,
	}
	var events []Event
	switch c.Type {
	case contentText:
		mr.Kind, mr.Text = MessageText, c.Text
		mr.ExpiresAt = expiry(c.ExpiresAt, rec.Timer, now)
	case contentFile:
		mr.Kind, mr.File = MessageFile, c.File
		mr.ExpiresAt = expiry(c.ExpiresAt, rec.Timer, now)
	case contentTimer:
		rec.Timer = c.Timer
		mr.Kind, mr.Timer = MessageTimer, c.Timer
		mr.Text = timerText(from.Name, c.Timer)
		events = append(events, Event{Kind: EventConversation, ConversationID: convID(rec, dv.self.Name)})
	case contentConversation:
		text, ok := dv.applyInfo(rec, c.Info, from.Name)
		events = append(events, Event{Kind: EventConversation, ConversationID: convID(rec, dv.self.Name)})
		if !ok || text == "" {
			return 0, events, nil
		}
		mr.Kind, mr.Text = MessageRoster, text
	}
	rec.Last = now
	if err := dv.putMessage(tx, mr); err != nil {
		return 0, nil, err
	}
	msg := mr.message(rec, dv.self.Name)
	events = append(events, Event{Kind: EventMessage, ConversationID: msg.ConversationID, Message: &msg})
	return mr.Key, events, nil
}

// applyInfo takes in a group's conversation info. The kind of a conversation never
// changes once known, and a direct conversation must be between the sender's and
// this device's officials. It returns the roster text to show, if any.
func (dv *Device) applyInfo(rec *groupRec, info *convInfo, sender string) (string, bool) {
	if rec.Kind != 0 && rec.Kind != info.Kind {
		dv.log.Warn("device: conversation info changes the conversation's kind; ignored")
		return "", false
	}
	switch info.Kind {
	case kindDirect:
		if !slices.Contains(info.Officials, dv.self.Name) || !slices.Contains(info.Officials, sender) {
			dv.log.Warn("device: direct conversation info names other officials; ignored")
			return "", false
		}
		for _, mem := range rec.Members {
			if !slices.Contains(info.Officials, mem.Name) {
				dv.log.Warn("device: direct conversation has a member of a third official; ignored")
				return "", false
			}
		}
		rec.Kind, rec.Officials, rec.Timer = kindDirect, info.Officials, info.Timer
		return "", true
	case kindGroup:
		text := ""
		if rec.Name != "" && rec.Name != info.Name {
			text = fmt.Sprintf("%s renamed the group to %q", sender, info.Name)
		}
		rec.Kind, rec.Name, rec.Timer = kindGroup, info.Name, info.Timer
		return text, true
	}
	return "", false
}

// expiry is when a received message disappears: the time it carries, but never
// later than this device's own view of the conversation's timer allows.
func expiry(carried time.Time, timer time.Duration, now time.Time) time.Time {
	if timer > 0 {
		limit := now.Add(timer)
		if carried.IsZero() || carried.After(limit) {
			return limit
		}
	}
	return carried
}

func timerText(who string, d time.Duration) string {
	if d == 0 {
		return who + " turned disappearing messages off"
	}
	return fmt.Sprintf("%s set disappearing messages to %v", who, d)
}

// applyCommitLocked records a commit of another member: the new roster and one
// roster message per device added or removed.
func (dv *Device) applyCommitLocked(tx *vault.Tx, rec *groupRec, g *mls.Group, r *mls.Received, now time.Time) ([]Event, error) {
	who := credInfo(r.SenderCredential).Name
	var notes []string
	if r.Commit.SelfRemoved || !g.Active() {
		rec.Active = false
		notes = append(notes, who+" removed this device from the conversation")
	} else {
		after := rosterOf(g)
		notes = dv.rosterNotes(who, rec.Members, after)
		rec.Members = after
	}
	rec.Epoch = g.Epoch()
	rec.Last = now
	return dv.storeNotes(tx, rec, notes, now)
}

// storeNotes adds roster messages to a group's history.
func (dv *Device) storeNotes(tx *vault.Tx, rec *groupRec, notes []string, now time.Time) ([]Event, error) {
	events := []Event{{Kind: EventConversation, ConversationID: convID(rec, dv.self.Name)}}
	for _, n := range notes {
		mr := &msgRec{Group: rec.ID, Kind: MessageRoster, Text: n, SentAt: now, ReceivedAt: now, Status: StatusReceived}
		if err := dv.putMessage(tx, mr); err != nil {
			return nil, err
		}
		msg := mr.message(rec, dv.self.Name)
		events = append(events, Event{Kind: EventMessage, ConversationID: msg.ConversationID, Message: &msg})
	}
	return events, nil
}

// rosterNotes describes a commit's roster changes, by whoever made it: every
// device that is in the group after it and was not before, and the reverse. The
// rosters are compared rather than the commit's proposals, so that a leaf that
// changed hands is shown too.
func (dv *Device) rosterNotes(who string, before, after []memberRec) []string {
	key := func(m memberRec) string { return string(m.Device[:]) }
	had, has := map[string]bool{}, map[string]bool{}
	for _, m := range before {
		had[key(m)] = true
	}
	for _, m := range after {
		has[key(m)] = true
	}
	var notes []string
	for _, m := range after {
		if !had[key(m)] {
			notes = append(notes, fmt.Sprintf("%s added %s's device %s", who, m.Name, shortID(m.Device)))
		}
	}
	d := dv.dir.Load()
	for _, m := range before {
		if has[key(m)] || m.Device == dv.self.ID {
			continue
		}
		note := fmt.Sprintf("%s removed %s's device %s", who, m.Name, shortID(m.Device))
		switch {
		case d != nil && d.revoked[m.Device]:
			note = fmt.Sprintf("%s's device %s was removed by %s (revoked)", m.Name, shortID(m.Device), who)
		case d != nil && !d.active(m.Device):
			note = fmt.Sprintf("%s's device %s was removed by %s (its certificate expired)", m.Name, shortID(m.Device), who)
		}
		notes = append(notes, note)
	}
	return notes
}

// handleWelcomeLocked joins a group this device was added to.
func (dv *Device) handleWelcomeLocked(ctx context.Context, s *session, m *wire.Deliver, w *mls.Welcome) error {
	err := dv.joinLocked(s, m, w)
	if errors.Is(err, mls.ErrCredentialRejected) {
		if _, rerr := dv.refreshDirectory(ctx, s); rerr == nil {
			err = dv.joinLocked(s, m, w)
		}
	}
	var perr *processError
	if errors.As(err, &perr) {
		return dropError("joining", perr.err)
	}
	return err
}

func (dv *Device) joinLocked(s *session, m *wire.Deliver, w *mls.Welcome) error {
	var (
		events      []Event
		joined      []byte
		usedOneTime bool
	)
	err := dv.v.Update(func(tx *vault.Tx) error {
		events = nil
		var (
			kr  kpRec
			ref mls.KeyPackageRef
		)
		for _, sec := range w.Secrets {
			err := getJSON(tx, bucketKP, sec.NewMember, &kr)
			if err == nil {
				ref = sec.NewMember
				break
			}
			if !errors.Is(err, vault.ErrNotFound) {
				return err
			}
		}
		if ref == nil {
			return fmt.Errorf("%w: welcome holds no secrets for this device's KeyPackages", errDrop)
		}
		kp, priv, err := dv.keyPackagePrivate(&kr)
		if err != nil {
			return err
		}
		g, err := mls.JoinGroup(w, kp, priv, mls.JoinOptions{}, dv.mlsConfig())
		if err != nil {
			return &processError{err}
		}
		gid := g.GroupID()
		joined = gid
		rec, err := loadGroupRec(tx, gid)
		switch {
		case err == nil && rec.Active:
			return fmt.Errorf("%w: already a member of the group", errDrop)
		case err == nil:
			// Added again after having been removed: the history continues.
			rec.Active = true
		case errors.Is(err, vault.ErrNotFound):
			rec = &groupRec{ID: gid, Active: true, Created: dv.now()}
		default:
			return err
		}
		now := dv.now()
		rec.Epoch, rec.Members, rec.Last, rec.KeyUpdated = g.Epoch(), rosterOf(g), now, now
		usedOneTime = !kr.LastResort
		if usedOneTime {
			if err := tx.Delete(bucketKP, ref); err != nil {
				return err
			}
		}
		if err := dv.putGroup(tx, rec, g); err != nil {
			return err
		}
		if events, err = dv.storeNotes(tx, rec, []string{joinNote(rec.Members, dv.self.ID)}, now); err != nil {
			return err
		}
		return dv.remember(tx, s, m.MessageID, gid, 0)
	})
	if err != nil {
		return err
	}
	if usedOneTime {
		s.replace++
	}
	s.retry = append(s.retry, joined)
	for _, e := range events {
		dv.publish(e)
	}
	return nil
}

// joinNote lists everyone a joiner finds in the group, so that no device is there unseen.
func joinNote(members []memberRec, me authority.DeviceID) string {
	var parts []string
	for _, m := range members {
		if m.Device == me {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s's device %s", m.Name, shortID(m.Device)))
	}
	if len(parts) == 0 {
		return "this device was added to the conversation"
	}
	return "this device was added to the conversation with " + strings.Join(parts, ", ")
}

// handleExpiredLocked records an "undelivered" notice for each expired message.
func (dv *Device) handleExpiredLocked(e *wire.Expired) error {
	var events []Event
	err := dv.v.Update(func(tx *vault.Tx) error {
		events = nil
		now := dv.now()
		d := dv.dir.Load()
		for _, em := range e.Messages {
			var ir idRec
			err := getJSON(tx, bucketIDs, em.MessageID[:], &ir)
			if errors.Is(err, vault.ErrNotFound) || (err == nil && ir.Sent == 0) {
				continue
			}
			if err != nil {
				return err
			}
			rec, err := loadGroupRec(tx, ir.Group)
			if errors.Is(err, vault.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			who := "device " + shortID(em.Recipient)
			if d != nil {
				if dev, ok := d.devices[authority.DeviceID(em.Recipient)]; ok {
					who = dev.Name + "'s device " + shortID(em.Recipient)
				}
			}
			text := "not delivered to " + who
			switch ir.Sent {
			case outWelcome:
				text += " (invitation to the conversation)"
			case outCommit:
				text += " (change of members)"
			}
			mr := &msgRec{Group: rec.ID, Kind: MessageUndelivered, Text: text, SentAt: now, ReceivedAt: now, Status: StatusReceived}
			if err := dv.putMessage(tx, mr); err != nil {
				return err
			}
			msg := mr.message(rec, dv.self.Name)
			events = append(events, Event{Kind: EventMessage, ConversationID: msg.ConversationID, Message: &msg})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, ev := range events {
		dv.publish(ev)
	}
	return nil
}

// memberInfo is what a credential says of its device.
type memberInfo struct {
	Name, Role string
	ID         authority.DeviceID
}

// credInfo reads a validated credential: the device certificate's official (the
// authority writes the name as the subject's common name and the role as its
// organizational unit) and device ID.
func credInfo(c mls.Credential) memberInfo {
	if c.Type != mls.CredentialTypeX509 || len(c.Certificates) == 0 {
		return memberInfo{Name: "unknown"}
	}
	cert, err := x509.ParseCertificate(c.Certificates[0])
	if err != nil {
		return memberInfo{Name: "unknown"}
	}
	info := memberInfo{Name: cert.Subject.CommonName}
	if len(cert.Subject.OrganizationalUnit) > 0 {
		info.Role = cert.Subject.OrganizationalUnit[0]
	}
	info.ID, _ = authority.DeviceIDFromCertificate(cert)
	return info
}

// rosterOf lists a group's members.
func rosterOf(g *mls.Group) []memberRec {
	var out []memberRec
	for _, m := range g.Members() {
		info := credInfo(m.Credential)
		out = append(out, memberRec{Leaf: uint32(m.Leaf), Name: info.Name, Role: info.Role, Device: info.ID})
	}
	return out
}

// loadGroup reads a group's MLS state.
func (dv *Device) loadGroup(tx *vault.Tx, gid []byte) (*mls.Group, error) {
	data, err := tx.Get(bucketMLS, gid)
	if err != nil {
		return nil, err
	}
	g, err := mls.LoadGroup(data, dv.mlsConfig())
	if err != nil {
		return nil, fmt.Errorf("device: group state in the vault: %w", err)
	}
	return g, nil
}

// putGroup stores a group's MLS state and record.
func (dv *Device) putGroup(tx *vault.Tx, rec *groupRec, g *mls.Group) error {
	state, err := g.MarshalState()
	if err != nil {
		return fmt.Errorf("device: saving group state: %w", err)
	}
	if err := tx.Put(bucketMLS, rec.ID, state); err != nil {
		return err
	}
	// Calls re-read the group once the caller's lock is released.
	dv.noteGroupChange()
	return putJSON(tx, bucketGroups, rec.ID, rec)
}
