package device

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"mahfooz/authority"
	"mahfooz/device/vault"
	"mahfooz/mls"
)

// groupIDSize is the size of the random MLS group IDs the device makes.
const groupIDSize = 32

// Prefixes of Conversation.ID.
const (
	directPrefix = "direct:"
	groupPrefix  = "group:"
)

// peer is the other official of a direct conversation.
func peer(rec *groupRec, me string) string {
	for _, o := range rec.Officials {
		if o != me {
			return o
		}
	}
	return ""
}

// convID names the conversation a group belongs to.
func convID(rec *groupRec, me string) string {
	if rec.Kind == kindDirect {
		return directPrefix + peer(rec, me)
	}
	return groupPrefix + hex.EncodeToString(rec.ID)
}

// message is a history record as the API shows it.
func (mr *msgRec) message(rec *groupRec, me string) Message {
	m := Message{
		ID:               mr.ID,
		ConversationID:   convID(rec, me),
		ConversationKind: KindGroup,
		ConversationName: rec.Name,
		Kind:             mr.Kind,
		From:             Sender{Name: mr.FromName, DeviceID: mr.FromDevice},
		Outgoing:         mr.Outgoing,
		Text:             mr.Text,
		Timer:            mr.Timer,
		SentAt:           mr.SentAt,
		ReceivedAt:       mr.ReceivedAt,
		ExpiresAt:        mr.ExpiresAt,
		Status:           mr.Status,
	}
	if rec.Kind == kindDirect {
		m.ConversationKind, m.ConversationName = KindDirect, peer(rec, me)
	}
	if f := mr.File; f != nil {
		m.File = &File{Name: f.Name, MediaType: f.MediaType, Size: f.Size, SHA256: hex.EncodeToString(f.SHA256[:]),
			BlobID: hex.EncodeToString(f.BlobID[:])}
	}
	return m
}

// resolve finds the groups of a conversation: every group of a direct
// conversation (usually one), or the one group of a group conversation.
func (dv *Device) resolve(tx *vault.Tx, ref ConversationRef) ([]*groupRec, error) {
	set := 0
	for _, f := range []string{ref.To, ref.Group, ref.ID} {
		if f != "" {
			set++
		}
	}
	if set != 1 {
		return nil, errors.New("device: a conversation reference names exactly one of To, Group and ID")
	}
	if id, ok := strings.CutPrefix(ref.ID, directPrefix); ok {
		ref = ConversationRef{To: id}
	}
	recs, err := allGroupRecs(tx)
	if err != nil {
		return nil, err
	}
	var out []*groupRec
	switch {
	case ref.To != "":
		for _, r := range recs {
			if r.Kind == kindDirect && peer(r, dv.self.Name) == ref.To {
				out = append(out, r)
			}
		}
	case ref.Group != "":
		for _, r := range recs {
			if r.Kind == kindGroup && r.Name == ref.Group && r.Active {
				out = append(out, r)
			}
		}
		if len(out) > 1 {
			return nil, fmt.Errorf("%w: %q", ErrAmbiguous, ref.Group)
		}
	default:
		hexID, ok := strings.CutPrefix(ref.ID, groupPrefix)
		gid, err := hex.DecodeString(hexID)
		if !ok || err != nil {
			return nil, fmt.Errorf("%w: %q", ErrNoConversation, ref.ID)
		}
		for _, r := range recs {
			if bytes.Equal(r.ID, gid) {
				out = append(out, r)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoConversation, describe(ref))
	}
	slices.SortFunc(out, func(a, b *groupRec) int { return bytes.Compare(a.ID, b.ID) })
	return out, nil
}

func describe(ref ConversationRef) string {
	switch {
	case ref.To != "":
		return "with " + ref.To
	case ref.Group != "":
		return "group " + ref.Group
	}
	return ref.ID
}

// sendTarget is the group a conversation's messages go to: the active group with
// the smallest ID (when both officials started a direct conversation at once, both
// then send on the same one).
func sendTarget(recs []*groupRec) ([]byte, error) {
	for _, r := range recs {
		if r.Active {
			return r.ID, nil
		}
	}
	return nil, ErrNotMember
}

// Conversations returns every conversation on the device, most recently active
// first. It is safe for concurrent use.
func (dv *Device) Conversations() ([]Conversation, error) {
	if err := dv.usable(); err != nil {
		return nil, err
	}
	var recs []*groupRec
	if err := dv.v.View(func(tx *vault.Tx) (err error) { recs, err = allGroupRecs(tx); return err }); err != nil {
		return nil, err
	}
	byID := map[string][]*groupRec{}
	var order []string
	for _, r := range recs {
		id := convID(r, dv.self.Name)
		if _, ok := byID[id]; !ok {
			order = append(order, id)
		}
		byID[id] = append(byID[id], r)
	}
	var out []Conversation
	for _, id := range order {
		out = append(out, dv.conversation(id, byID[id]))
	}
	slices.SortFunc(out, func(a, b Conversation) int {
		return cmp.Or(b.LastActivity.Compare(a.LastActivity), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// conversation merges the groups of one conversation.
func (dv *Device) conversation(id string, recs []*groupRec) Conversation {
	slices.SortFunc(recs, func(a, b *groupRec) int { return bytes.Compare(a.ID, b.ID) })
	c := Conversation{ID: id, Kind: KindGroup}
	devices := map[string]map[authority.DeviceID]bool{}
	roles := map[string]string{}
	for _, r := range recs {
		if r.Kind == kindDirect {
			c.Kind, c.Name = KindDirect, peer(r, dv.self.Name)
		} else {
			c.Name = r.Name
		}
		if r.Last.After(c.LastActivity) {
			c.LastActivity = r.Last
		}
		if !r.Active {
			continue
		}
		if !c.Active {
			c.Active, c.Disappearing = true, r.Timer
		}
		for _, m := range r.Members {
			if devices[m.Name] == nil {
				devices[m.Name] = map[authority.DeviceID]bool{}
			}
			devices[m.Name][m.Device] = true
			roles[m.Name] = m.Role
		}
	}
	for _, name := range slices.Sorted(maps.Keys(devices)) {
		ct := Contact{Name: name, Role: roles[name]}
		for _, id := range slices.SortedFunc(maps.Keys(devices[name]), func(a, b authority.DeviceID) int { return bytes.Compare(a[:], b[:]) }) {
			ct.Devices = append(ct.Devices, id.String())
		}
		c.Members = append(c.Members, ct)
	}
	return c
}

// Messages returns the history of a conversation still on the device, oldest
// first; messages whose disappearing timer ran out are never returned, even
// before the sweep deletes them. It is safe for concurrent use.
func (dv *Device) Messages(conv ConversationRef) ([]Message, error) {
	if err := dv.usable(); err != nil {
		return nil, err
	}
	now := dv.now()
	var out []Message
	err := dv.v.View(func(tx *vault.Tx) error {
		recs, err := dv.resolve(tx, conv)
		if err != nil {
			return err
		}
		type entry struct {
			key uint64
			m   Message
		}
		var all []entry
		for _, r := range recs {
			list, err := loadMessages(tx, r.ID)
			if err != nil {
				return err
			}
			for _, mr := range list {
				if !mr.ExpiresAt.IsZero() && !mr.ExpiresAt.After(now) {
					continue
				}
				all = append(all, entry{mr.Key, mr.message(r, dv.self.Name)})
			}
		}
		slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(a.key, b.key) })
		for _, e := range all {
			out = append(out, e.m)
		}
		return nil
	})
	return out, err
}

// SendText sends a text message. To an official without a conversation yet, it
// starts one: a group with all active devices of both officials. The message
// comes back as the history holds it: StatusSent once the exchange stored it,
// StatusPending if the connection failed after it was queued (it goes out with
// the next Sync or with Run), StatusFailed with an error if the exchange refused it.
func (dv *Device) SendText(ctx context.Context, conv ConversationRef, text string) (Message, error) {
	c := &content{Type: contentText, Text: text, SentAt: dv.now()}
	if err := c.check(); err != nil {
		return Message{}, errors.New("device: text must be 1 to 65536 bytes of UTF-8")
	}
	return dv.sendContent(ctx, conv, c)
}

// sendContent sends one shown message to a conversation, starting a direct one
// if needed.
func (dv *Device) sendContent(ctx context.Context, conv ConversationRef, c *content) (m Message, err error) {
	err = dv.onConversation(ctx, conv, func(s *session, gid []byte) (err error) {
		m, err = dv.sendShownLocked(ctx, s, gid, c)
		return err
	})
	return m, err
}

func (dv *Device) sendShownLocked(ctx context.Context, s *session, gid []byte, c *content) (Message, error) {
	mr, err := dv.sendAppLocked(ctx, s, gid, c, true)
	if mr == nil {
		return Message{}, err
	}
	var rec *groupRec
	if verr := dv.v.View(func(tx *vault.Tx) (e error) { rec, e = loadGroupRec(tx, gid); return e }); verr != nil {
		return Message{}, verr
	}
	return mr.message(rec, dv.self.Name), err
}

// targetLocked is the group to send a conversation's messages on, starting a
// direct conversation when there is none.
func (dv *Device) targetLocked(ctx context.Context, s *session, conv ConversationRef) ([]byte, error) {
	name := conv.To
	if n, ok := strings.CutPrefix(conv.ID, directPrefix); ok {
		name = n
	}
	var recs []*groupRec
	err := dv.v.View(func(tx *vault.Tx) (err error) { recs, err = dv.resolve(tx, conv); return err })
	switch {
	case err == nil:
		gid, err := sendTarget(recs)
		if err == nil || name == "" {
			return gid, err
		}
		// This device was removed from every group with name: start afresh.
	case name == "" || !errors.Is(err, ErrNoConversation):
		return nil, err
	}
	return dv.startDirectLocked(ctx, s, name)
}

// startDirectLocked starts the direct conversation with an official: a new group
// with a KeyPackage of each active device of both officials.
func (dv *Device) startDirectLocked(ctx context.Context, s *session, name string) ([]byte, error) {
	if name == dv.self.Name {
		return nil, errors.New("device: a direct conversation needs another official")
	}
	if _, err := dv.refreshDirectory(ctx, s); err != nil {
		return nil, err
	}
	if len(dv.dir.Load().activeDevices(name)) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrUnknownOfficial, name)
	}
	theirs, err := dv.claimOfficial(ctx, s, name)
	if err != nil {
		return nil, err
	}
	if len(theirs) == 0 {
		return nil, fmt.Errorf("device: no device of %s can be reached yet (no KeyPackages)", name)
	}
	mine, err := dv.claimOfficial(ctx, s, dv.self.Name)
	if err != nil {
		return nil, err
	}
	officials := []string{dv.self.Name, name}
	slices.Sort(officials)
	rec := &groupRec{Kind: kindDirect, Officials: officials}
	return dv.startGroupLocked(ctx, s, rec, append(theirs, mine...))
}

// startGroupLocked creates a group holding this device, adds the claimed devices
// and sends the conversation's info. On failure nothing of the group is kept.
func (dv *Device) startGroupLocked(ctx context.Context, s *session, rec *groupRec, claims []claimed) ([]byte, error) {
	gid := make([]byte, groupIDSize)
	if _, err := io.ReadFull(dv.cfg.Rand, gid); err != nil {
		return nil, err
	}
	now := dv.now()
	rec.ID, rec.Active, rec.Created, rec.Last = gid, true, now, now
	err := dv.v.Update(func(tx *vault.Tx) error {
		g, err := mls.NewGroup(cipherSuite, gid, dv.credential(), dv.self.SigKey, mls.CreateOptions{}, dv.mlsConfig())
		if err != nil {
			return fmt.Errorf("device: creating group: %w", err)
		}
		rec.Members = rosterOf(g)
		return dv.putGroup(tx, rec, g)
	})
	if err != nil {
		return nil, err
	}
	added, err := dv.commitLocked(ctx, s, gid, addPlan(claims))
	if !added {
		if err == nil {
			err = errors.New("device: no device could be added")
		}
		dv.forgetGroup(gid)
		return nil, err
	}
	if err != nil {
		// The commit stands; the Welcome and the conversation's info wait in the
		// outbox for the next connection.
		dv.log.Info("device: new conversation's invitations queued", "err", err)
	}
	dv.publish(Event{Kind: EventConversation, ConversationID: convID(rec, dv.self.Name)})
	return gid, nil
}

// forgetGroup deletes a group that never got going.
func (dv *Device) forgetGroup(gid []byte) {
	err := dv.v.Update(func(tx *vault.Tx) error {
		if err := tx.Delete(bucketGroups, gid); err != nil {
			return err
		}
		return tx.Delete(bucketMLS, gid)
	})
	if err != nil {
		dv.log.Warn("device: deleting an unfinished group", "err", err)
	}
}

// CreateGroup creates a named group conversation with the given officials (this
// device's official is always a member): every active device of each of them,
// and this official's other devices, are added, and the group's name is sent to
// them. It is safe for concurrent use.
func (dv *Device) CreateGroup(ctx context.Context, name string, members []string) (Conversation, error) {
	if !validName(name) {
		return Conversation{}, errors.New("device: a group name is 1 to 255 bytes of text")
	}
	var conv Conversation
	var started error // the group exists, but a later step of starting it failed
	err := dv.withSession(ctx, func(s *session) error {
		if _, err := dv.refreshDirectory(ctx, s); err != nil {
			return err
		}
		claims, err := dv.claimMembers(ctx, s, append(slices.Clone(members), dv.self.Name))
		if err != nil {
			return err
		}
		gid, err := dv.startGroupLocked(ctx, s, &groupRec{Kind: kindGroup, Name: name}, claims)
		if err != nil && gid == nil {
			return err
		}
		started = err
		conv, err = dv.conversationOf(gid)
		return err
	})
	if err != nil {
		return Conversation{}, err
	}
	return conv, started
}

// claimMembers claims KeyPackages of every device of the named officials. Every
// named official other than this device's must have one.
func (dv *Device) claimMembers(ctx context.Context, s *session, names []string) ([]claimed, error) {
	slices.Sort(names)
	names = slices.Compact(names)
	var claims []claimed
	for _, n := range names {
		if len(dv.dir.Load().activeDevices(n)) == 0 {
			return nil, fmt.Errorf("%w: %q", ErrUnknownOfficial, n)
		}
		c, err := dv.claimOfficial(ctx, s, n)
		if err != nil {
			return nil, err
		}
		if len(c) == 0 && n != dv.self.Name {
			return nil, fmt.Errorf("device: no device of %s can be reached yet (no KeyPackages)", n)
		}
		claims = append(claims, c...)
	}
	return claims, nil
}

func (dv *Device) conversationOf(gid []byte) (Conversation, error) {
	var rec *groupRec
	if err := dv.v.View(func(tx *vault.Tx) (err error) { rec, err = loadGroupRec(tx, gid); return err }); err != nil {
		return Conversation{}, err
	}
	return dv.conversation(convID(rec, dv.self.Name), []*groupRec{rec}), nil
}

// groupTarget resolves a group conversation by name or ID for a roster change.
func (dv *Device) groupTarget(group string) ([]byte, error) {
	ref := ConversationRef{Group: group}
	if strings.HasPrefix(group, groupPrefix) {
		ref = ConversationRef{ID: group}
	}
	var recs []*groupRec
	if err := dv.v.View(func(tx *vault.Tx) (err error) { recs, err = dv.resolve(tx, ref); return err }); err != nil {
		return nil, err
	}
	if recs[0].Kind != kindGroup {
		return nil, fmt.Errorf("%w: %s is not a group", ErrNoConversation, group)
	}
	return sendTarget(recs)
}

// AddMembers adds officials (every active device of each) to a group, named by
// its name or its Conversation.ID, and sends them the group's name and timer. It
// is safe for concurrent use.
func (dv *Device) AddMembers(ctx context.Context, group string, names []string) error {
	return dv.onGroup(ctx, group, func(s *session, gid []byte) error {
		if _, err := dv.refreshDirectory(ctx, s); err != nil {
			return err
		}
		claims, err := dv.claimMembers(ctx, s, names)
		if err != nil {
			return err
		}
		_, err = dv.commitLocked(ctx, s, gid, addPlan(claims))
		return err
	})
}

// withSession runs f with a connection to the exchange, the device's lock held
// and what the exchange holds for the device processed.
func (dv *Device) withSession(ctx context.Context, f func(s *session) error) error {
	s, err := dv.acquire(ctx)
	if err != nil {
		return err
	}
	defer dv.release(s)
	dv.mu.Lock()
	defer dv.mu.Unlock()
	if err := dv.readyLocked(ctx, s); err != nil {
		return err
	}
	return f(s)
}

// onGroup runs f, as withSession does, on the group named by its name or
// Conversation.ID.
func (dv *Device) onGroup(ctx context.Context, group string, f func(s *session, gid []byte) error) error {
	return dv.withSession(ctx, func(s *session) error {
		gid, err := dv.groupTarget(group)
		if err != nil {
			return err
		}
		return f(s, gid)
	})
}

// onConversation runs f, as withSession does, on the group that carries the
// conversation, starting a direct one if needed.
func (dv *Device) onConversation(ctx context.Context, conv ConversationRef, f func(s *session, gid []byte) error) error {
	return dv.withSession(ctx, func(s *session) error {
		gid, err := dv.targetLocked(ctx, s, conv)
		if err != nil {
			return err
		}
		return f(s, gid)
	})
}

// RemoveMembers removes officials (every device of each) from a group. This
// device's official cannot be removed this way. It is safe for concurrent use.
func (dv *Device) RemoveMembers(ctx context.Context, group string, names []string) error {
	if slices.Contains(names, dv.self.Name) {
		return errors.New("device: this device's own official cannot be removed from a group")
	}
	return dv.onGroup(ctx, group, func(s *session, gid []byte) error {
		var rec *groupRec
		if err := dv.v.View(func(tx *vault.Tx) (err error) { rec, err = loadGroupRec(tx, gid); return err }); err != nil {
			return err
		}
		for _, n := range names {
			if !slices.ContainsFunc(rec.Members, func(m memberRec) bool { return m.Name == n }) {
				return fmt.Errorf("device: %s is not in the group", n)
			}
		}
		_, err := dv.commitLocked(ctx, s, gid, dv.removePlan(func(m memberRec) bool { return slices.Contains(names, m.Name) }))
		return err
	})
}

// SetDisappearing sets the conversation's disappearing timer (0 turns it off,
// otherwise whole seconds up to a year). Every member's device deletes each later
// message once the timer has run from its sending. The change is sent in the
// conversation and shown there. It is safe for concurrent use.
func (dv *Device) SetDisappearing(ctx context.Context, conv ConversationRef, d time.Duration) error {
	if !validTimer(d) {
		return errors.New("device: the timer is whole seconds from 0 to one year")
	}
	return dv.withSession(ctx, func(s *session) error {
		var recs []*groupRec
		if err := dv.v.View(func(tx *vault.Tx) (err error) { recs, err = dv.resolve(tx, conv); return err }); err != nil {
			return err
		}
		sent := false
		for _, r := range recs {
			if !r.Active {
				continue
			}
			if _, err := dv.sendAppLocked(ctx, s, r.ID, &content{Type: contentTimer, Timer: d}, !sent); err != nil {
				return err
			}
			sent = true
		}
		if !sent {
			return ErrNotMember
		}
		return nil
	})
}

// Unread returns every message of every conversation that arrived (or was
// noted) on this device and has not been marked read, oldest first. Expired
// messages are never returned. It is safe for concurrent use.
func (dv *Device) Unread() ([]Message, error) {
	if err := dv.usable(); err != nil {
		return nil, err
	}
	now := dv.now()
	type entry struct {
		key uint64
		m   Message
	}
	var all []entry
	err := dv.v.View(func(tx *vault.Tx) error {
		list, err := tx.List(bucketUnread)
		if err != nil {
			return err
		}
		recs := map[string]*groupRec{}
		for _, e := range list {
			var u unreadRec
			if err := json.Unmarshal(e.Value, &u); err != nil {
				return fmt.Errorf("device: vault unread record: %w", err)
			}
			var mr msgRec
			if err := getJSON(tx, msgBucket(u.Group), u64(u.Key), &mr); err != nil {
				if errors.Is(err, vault.ErrNotFound) {
					continue
				}
				return err
			}
			if !mr.ExpiresAt.IsZero() && !mr.ExpiresAt.After(now) {
				continue
			}
			rec := recs[string(u.Group)]
			if rec == nil {
				if rec, err = loadGroupRec(tx, u.Group); err != nil {
					return err
				}
				recs[string(u.Group)] = rec
			}
			all = append(all, entry{mr.Key, mr.message(rec, dv.self.Name)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(a.key, b.key) })
	out := make([]Message, len(all))
	for i, e := range all {
		out[i] = e.m
	}
	return out, nil
}

// MarkRead marks messages (by Message.ID) as read, so that Unread no longer
// returns them. Unknown IDs are ignored. It is safe for concurrent use.
func (dv *Device) MarkRead(ids ...string) error {
	if err := dv.usable(); err != nil {
		return err
	}
	return dv.v.Update(func(tx *vault.Tx) error {
		for _, id := range ids {
			if err := tx.Delete(bucketUnread, []byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
}
