package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"mahfooz/authority"
	"mahfooz/device/vault"
	"mahfooz/mls"
	"mahfooz/wire"
)

// maxCommitAttempts bounds how often one change is retried after losing commit races.
const maxCommitAttempts = 5

// keyUpdateInterval is how long a device keeps its keys in a group before it
// commits new ones on its own, so that a device compromised once stops being
// able to read the group (post-compromise security) within this time.
const keyUpdateInterval = 7 * 24 * time.Hour

// commitPlan is one change to a group's roster.
type commitPlan struct {
	proposals []*mls.Proposal
	added     []authority.DeviceID // the devices the Adds are for: the Welcome goes to them
}

// planFunc decides, from a group's current state, what its next commit holds;
// nil means nothing (left) to do.
type planFunc func(g *mls.Group, rec *groupRec) (*commitPlan, error)

// commitLocked commits the change plan finds on the group's current state. A
// commit that loses its epoch to another member's is dropped; the winner's is
// taken in from the mailbox and plan is asked again, so a change the winner
// already made (say, the same revoked device removed) is not made twice. It
// reports whether a commit of this device was accepted.
func (dv *Device) commitLocked(ctx context.Context, s *session, gid []byte, plan planFunc) (bool, error) {
	// A commit still in the outbox goes first: its fate decides the epoch.
	if err := dv.flushLocked(ctx, s); err != nil {
		return false, err
	}
	for range maxCommitAttempts {
		o, err := dv.prepareCommitLocked(s, gid, plan)
		if err != nil || o == nil {
			return false, err
		}
		status, err := dv.sendEntryLocked(ctx, s, o)
		if err != nil {
			return false, err
		}
		if status == wire.SendAccepted {
			// The Welcome for the added devices was queued behind the commit.
			return true, dv.flushLocked(ctx, s)
		}
		dv.log.Info("device: commit lost its epoch to another member's; catching up", "group", shortGroup(gid))
		if err := dv.syncLocked(ctx, s); err != nil {
			return false, err
		}
	}
	return false, errors.New("device: the group kept changing; giving up on this change")
}

// prepareCommitLocked builds the commit and queues it in the outbox. The group's
// stored state is the one after building the commit (its handshake generation
// is spent) but before the commit takes effect; the state after is kept in the
// entry until the exchange accepts it.
func (dv *Device) prepareCommitLocked(s *session, gid []byte, plan planFunc) (*outRec, error) {
	var o *outRec
	err := dv.v.Update(func(tx *vault.Tx) error {
		o = nil
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
		p, err := plan(g, rec)
		if err != nil || p == nil {
			return err
		}
		before := rosterOf(g)
		// Every commit of this device carries a path: its keys in the group are
		// renewed each time it changes the roster, and so is its certificate in
		// its leaf when it has been renewed since.
		res, err := g.Commit(mls.CommitOptions{Proposals: p.proposals, ForcePath: true, Credential: dv.staleCredential(g)})
		if err != nil {
			return fmt.Errorf("device: making commit: %w", err)
		}
		pre, err := g.MarshalState()
		if err != nil {
			return err
		}
		if _, err := g.MergePendingCommit(); err != nil {
			return err
		}
		post, err := g.MarshalState()
		if err != nil {
			return err
		}
		if err := tx.Put(bucketMLS, gid, pre); err != nil {
			return err
		}
		seq, err := nextSeq(tx)
		if err != nil {
			return err
		}
		o = &outRec{
			Seq:   seq,
			Kind:  outCommit,
			Pre:   pre,
			Post:  post,
			Notes: dv.rosterNotes("you", before, rosterOf(g)),
			Send: &wire.Send{
				GroupID:  rec.ID,
				Epoch:    rec.Epoch,
				IsCommit: true,
				// Every current member learns of the commit, those it removes included.
				Recipients: dv.recipients(before),
				Payload:    res.Commit.Bytes(),
			},
		}
		if o.Send.MessageID, err = dv.newMessageID(); err != nil {
			return err
		}
		if res.Welcome != nil {
			o.Welcome = res.Welcome.Bytes()
			for _, id := range p.added {
				o.WelcomeTo = append(o.WelcomeTo, id)
			}
		}
		return putJSON(tx, bucketOutbox, u64(seq), o)
	})
	return o, err
}

// claimed is a KeyPackage claimed for one device.
type claimed struct {
	device authority.DeviceID
	kp     *mls.KeyPackage
}

// claimOfficial claims a KeyPackage of each of an official's devices. Each is
// checked against the directory: it must be for an active device of that
// official, carrying that device's certificate, so that an exchange cannot
// slip in another device. This device's own package, if the exchange hands it
// out, is not used; it is dropped and replaced.
func (dv *Device) claimOfficial(ctx context.Context, s *session, name string) ([]claimed, error) {
	list, err := s.c.ClaimOfficial(ctx, name)
	if wire.CodeOf(err) == wire.CodeNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("device: claiming KeyPackages of %s: %w", name, err)
	}
	var out []claimed
	for _, ck := range list {
		id := authority.DeviceID(ck.Device)
		kp, err := dv.checkClaimed(name, id, ck.KeyPackage)
		if err != nil {
			dv.log.Warn("device: claimed KeyPackage refused", "device", id.String(), "err", err)
			continue
		}
		if id == dv.self.ID {
			if dv.dropOwnKeyPackage(kp) {
				s.replace++
			}
			continue
		}
		out = append(out, claimed{device: id, kp: kp})
	}
	return out, nil
}

// claimDevice claims one KeyPackage of one device of an official.
func (dv *Device) claimDevice(ctx context.Context, s *session, name string, id authority.DeviceID) (*claimed, error) {
	ck, err := s.c.ClaimDevice(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("device: claiming a KeyPackage of device %s: %w", shortID(id), err)
	}
	if authority.DeviceID(ck.Device) != id {
		return nil, errors.New("device: exchange answered a claim with another device's KeyPackage")
	}
	kp, err := dv.checkClaimed(name, id, ck.KeyPackage)
	if err != nil {
		return nil, err
	}
	return &claimed{device: id, kp: kp}, nil
}

func (dv *Device) checkClaimed(name string, id authority.DeviceID, data []byte) (*mls.KeyPackage, error) {
	m, err := mls.UnmarshalMLSMessage(data)
	if err != nil {
		return nil, err
	}
	if m.WireFormat != mls.WireFormatKeyPackage {
		return nil, errors.New("not a KeyPackage")
	}
	kp := m.KeyPackage
	if err := kp.Validate(cipherSuite, dv.now()); err != nil {
		return nil, err
	}
	info := credInfo(kp.LeafNode.Credential)
	dev, ok := dv.dir.Load().devices[id]
	if info.ID != id || !ok || dev.Name != name || !bytes.Equal(dev.Key, kp.LeafNode.SignatureKey) {
		return nil, errors.New("KeyPackage is not for this official's device")
	}
	if err := dv.validator().ValidateCredential(kp.LeafNode.Credential, kp.LeafNode.SignatureKey); err != nil {
		return nil, err
	}
	return kp, nil
}

// addPlan adds, of the claimed packages, those whose device is not in the group.
func addPlan(claims []claimed) planFunc {
	return func(g *mls.Group, rec *groupRec) (*commitPlan, error) {
		present := map[authority.DeviceID]bool{}
		for _, m := range rosterOf(g) {
			present[m.Device] = true
		}
		p := &commitPlan{}
		for _, c := range claims {
			if present[c.device] {
				continue
			}
			present[c.device] = true
			p.proposals = append(p.proposals, &mls.Proposal{Type: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *c.kp}})
			p.added = append(p.added, c.device)
		}
		if len(p.proposals) == 0 {
			return nil, nil
		}
		return p, nil
	}
}

// removePlan removes every leaf whose device drop selects, never this device's own.
func (dv *Device) removePlan(drop func(memberRec) bool) planFunc {
	return func(g *mls.Group, rec *groupRec) (*commitPlan, error) {
		p := &commitPlan{}
		for _, m := range rosterOf(g) {
			if m.Device == dv.self.ID || !drop(m) {
				continue
			}
			p.proposals = append(p.proposals, &mls.Proposal{Type: mls.ProposalTypeRemove, Remove: &mls.Remove{Removed: mls.LeafIndex(m.Leaf)}})
		}
		if len(p.proposals) == 0 {
			return nil, nil
		}
		return p, nil
	}
}

// reconcileLocked brings every group in line with the directory: devices that are
// no longer active (revoked) are removed, by every member racing to do it; new
// devices of the conversation's officials are added, by the member with the
// lowest leaf among the active ones, so that they are not claimed many times over.
func (dv *Device) reconcileLocked(ctx context.Context, s *session) error {
	d := dv.dir.Load()
	if d == nil || !d.active(dv.self.ID) {
		return nil
	}
	var recs []*groupRec
	if err := dv.v.View(func(tx *vault.Tx) (err error) { recs, err = allGroupRecs(tx); return err }); err != nil {
		return err
	}
	var errs []error
	for _, rec := range recs {
		if !rec.Active {
			continue
		}
		gone := func(m memberRec) bool { return !dv.dir.Load().active(m.Device) }
		if slices.ContainsFunc(rec.Members, func(m memberRec) bool { return m.Device != dv.self.ID && gone(m) }) {
			if _, err := dv.commitLocked(ctx, s, rec.ID, dv.removePlan(gone)); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := dv.addNewDevicesLocked(ctx, s, rec.ID); err != nil {
			errs = append(errs, err)
		}
		if err := dv.updateKeysIfDueLocked(ctx, s, rec.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// updateKeysIfDueLocked commits fresh keys for this device in a group where it
// has not done so for keyUpdateInterval, or where its leaf still carries a
// certificate older than its current one.
func (dv *Device) updateKeysIfDueLocked(ctx context.Context, s *session, gid []byte) error {
	_, err := dv.commitLocked(ctx, s, gid, func(g *mls.Group, rec *groupRec) (*commitPlan, error) {
		last := rec.KeyUpdated
		if last.IsZero() {
			last = rec.Created
		}
		if dv.now().Sub(last) < keyUpdateInterval && dv.staleCredential(g) == nil {
			return nil, nil
		}
		return &commitPlan{}, nil
	})
	return err
}

// staleCredential returns the device's current credential if its leaf in g
// carries another certificate (one since renewed), and nil if it is current.
func (dv *Device) staleCredential(g *mls.Group) *mls.Credential {
	m, ok := g.Member(g.OwnLeaf())
	if !ok {
		return nil
	}
	cred := dv.credential()
	if len(m.Credential.Certificates) > 0 && bytes.Equal(m.Credential.Certificates[0], cred.Certificates[0]) {
		return nil
	}
	return &cred
}

// addNewDevicesLocked adds the active devices of a conversation's officials that
// are not yet in its group, if this device is the one to do it.
func (dv *Device) addNewDevicesLocked(ctx context.Context, s *session, gid []byte) error {
	var rec *groupRec
	if err := dv.v.View(func(tx *vault.Tx) (err error) { rec, err = loadGroupRec(tx, gid); return err }); err != nil {
		return err
	}
	d := dv.dir.Load()
	if !rec.Active || rec.Kind == 0 {
		return nil
	}
	leader := true
	officials := map[string]bool{}
	present := map[authority.DeviceID]bool{}
	var myLeaf uint32
	for _, m := range rec.Members {
		present[m.Device] = true
		if m.Device == dv.self.ID {
			myLeaf = m.Leaf
		}
	}
	for _, m := range rec.Members {
		if d.active(m.Device) {
			officials[m.Name] = true
			if m.Device != dv.self.ID && m.Leaf < myLeaf {
				leader = false
			}
		}
	}
	if rec.Kind == kindDirect {
		for _, o := range rec.Officials {
			officials[o] = true
		}
	}
	if !leader {
		return nil
	}
	var claims []claimed
	for _, name := range slices.Sorted(maps.Keys(officials)) {
		for _, id := range d.activeDevices(name) {
			if present[id] || id == dv.self.ID {
				continue
			}
			c, err := dv.claimDevice(ctx, s, name, id)
			if err != nil {
				dv.log.Info("device: new device cannot be added yet", "device", id.String(), "err", err)
				continue
			}
			claims = append(claims, *c)
		}
	}
	if len(claims) == 0 {
		return nil
	}
	_, err := dv.commitLocked(ctx, s, gid, addPlan(claims))
	return err
}

func shortGroup(gid []byte) string {
	const hexdigits = "0123456789abcdef"
	var b []byte
	for i := 0; i < len(gid) && i < 4; i++ {
		b = append(b, hexdigits[gid[i]>>4], hexdigits[gid[i]&15])
	}
	return string(b)
}
