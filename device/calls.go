package device

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"mahfooz/authority"
	"mahfooz/device/call"
	"mahfooz/device/callcode"
	"mahfooz/device/rtc"
	"mahfooz/device/vault"
	"mahfooz/sframe"
	"mahfooz/wire"
)

// Call timing.
const (
	// callSignalTTL is how long the exchange holds a call signal for an offline
	// device: a ring is worthless once the caller has given up.
	callSignalTTL = 60
	// RingTimeout is how long a call rings before it ends unanswered.
	RingTimeout = 45 * time.Second
	// StaleRing is the age past which a ring is no longer answered.
	StaleRing = time.Minute
	// qualityInterval is how often a call measures its audio, reports it and
	// adapts its encoding.
	qualityInterval = 2 * time.Second
	// upgradeAfter is how long the audio must stay good before a call spends
	// more on it again.
	upgradeAfter = 10 * time.Second
	// reconnectFor is how long a call tries to join its media again after the
	// link to the relay failed, before it ends.
	reconnectFor = 20 * time.Second
	// minAdaptFrames is the audio, in 20 ms frames, a quality interval must
	// have carried for its loss to count.
	minAdaptFrames = 25
	// gateFallback is how long after an answer a caller's audio starts even
	// if no audio has come back.
	gateFallback = 5 * time.Second
	// signalTimeout bounds sending one call signal.
	signalTimeout = 10 * time.Second
)

// Errors of calls.
var (
	// ErrCallEnded is returned by AnswerCall for a call that was hung up,
	// answered elsewhere, or whose ring is older than StaleRing.
	ErrCallEnded = errors.New("device: the call has ended")
	// ErrInCall is returned when this device is already in a call.
	ErrInCall = errors.New("device: already in a call")
)

// CallSignalKind is the kind of a call signal.
type CallSignalKind string

// Call signal kinds.
const (
	SignalRing    CallSignalKind = "ring"
	SignalAccept  CallSignalKind = "accept"
	SignalDecline CallSignalKind = "decline"
	SignalBusy    CallSignalKind = "busy"
	SignalHangup  CallSignalKind = "hangup"
	SignalJoin    CallSignalKind = "join"
	SignalLeave   CallSignalKind = "leave"
	SignalMedia   CallSignalKind = "media"
)

var signalKinds = map[uint8]CallSignalKind{
	signalRing: SignalRing, signalAccept: SignalAccept, signalDecline: SignalDecline, signalBusy: SignalBusy,
	signalHangup: SignalHangup, signalJoin: SignalJoin, signalLeave: SignalLeave, signalMedia: SignalMedia,
}

func signalCode(k CallSignalKind) uint8 {
	for c, kk := range signalKinds {
		if kk == k {
			return c
		}
	}
	return 0
}

// CallSignal is one call signal another device sent, as EventCall reports it.
// Signals travel inside the conversation's MLS group, so the exchange learns
// only that members of the group exchanged a message.
type CallSignal struct {
	CallID           string // 32 hex digits
	Kind             CallSignalKind
	ConversationID   string
	ConversationKind ConversationKind
	ConversationName string
	From             Sender
	SentAt           time.Time
	Profile          string // ring, accept, join, media: the most the sender wants spent

	id    [16]byte
	group []byte
}

func (dv *Device) callSignalEvent(rec *groupRec, from memberInfo, c *content) Event {
	sig := &CallSignal{
		CallID:           hex.EncodeToString(c.Call.ID[:]),
		Kind:             signalKinds[c.Call.Signal],
		ConversationID:   convID(rec, dv.self.Name),
		ConversationKind: KindGroup,
		ConversationName: rec.Name,
		From:             Sender{Name: from.Name, DeviceID: from.ID.String()},
		SentAt:           c.SentAt,
		Profile:          c.Call.Profile,
		id:               c.Call.ID,
		group:            append([]byte(nil), rec.ID...),
	}
	if rec.Kind == kindDirect {
		sig.ConversationKind, sig.ConversationName = KindDirect, peer(rec, dv.self.Name)
	}
	return Event{Kind: EventCall, ConversationID: sig.ConversationID, Call: sig}
}

// CallOptions is how a call sounds and travels.
type CallOptions struct {
	Source call.Source // what this member says; nil: nothing
	Sink   call.Sink   // what it hears; nil: dropped
	// Profile is the encoding to start with and the most this member asks others
	// to spend; zero chooses one from the round trip to the exchange.
	Profile call.Profile
	// Via sends the call's media through this UDP address (a link emulator) rather
	// than straight to the relay.
	Via string
	// Ring is how long to ring; zero is RingTimeout.
	Ring time.Duration
}

// CallEventKind is what a CallEvent reports.
type CallEventKind string

// Call event kinds.
const (
	CallRinging   CallEventKind = "ringing"   // the ring went out; waiting for an answer
	CallConnected CallEventKind = "connected" // audio from another member is playing
	CallCode      CallEventKind = "code"      // the short code for this epoch; read it out to verify
	CallJoined    CallEventKind = "joined"    // Member answered or joined
	CallLeft      CallEventKind = "left"      // Member declined, hung up or left
	CallQuality   CallEventKind = "quality"   // Stats measured over the last interval

	CallReconnecting CallEventKind = "reconnecting" // the link to the relay failed; joining again
	CallReconnected  CallEventKind = "reconnected"  // the media flows again
	CallEnded        CallEventKind = "ended"        // the call is over; Reason says why
)

// CallEvent is what Call.Events delivers.
type CallEvent struct {
	Kind    CallEventKind
	CallID  string
	Code    string // CallCode: four words
	Epoch   uint64 // CallCode: the MLS epoch the code belongs to
	Member  Sender // CallJoined, CallLeft
	Reason  string // CallEnded, CallLeft
	Stats   *call.MediaStats
	Profile string // CallQuality: the encoding in use
	At      time.Time
}

// Call is one call this device takes part in. Its methods are safe for
// concurrent use.
type Call struct {
	dv     *Device
	id     [16]byte
	gid    []byte
	conv   string
	direct bool
	caller bool
	opts   CallOptions
	s      *session

	events      chan CallEvent
	sub         <-chan Event
	unsubscribe func()
	hangup      chan struct{}
	done        chan struct{}
	once        sync.Once

	gate    *gatedSource
	keys    *call.Keys
	link    *rtc.Link
	media   *call.Media
	epoch   uint64
	members []wire.DeviceID         // the group's devices: the relay's allow-list
	wanted  map[string]call.Profile // by device ID: what each member asks senders to spend
	joined  map[string]bool         // devices (other than this one) that answered or joined
	trips   roundTrips              // to the exchange; only run uses it once the call runs

	mu     sync.Mutex
	reason string
}

// ID returns the call's ID, 32 hex digits.
func (c *Call) ID() string { return hex.EncodeToString(c.id[:]) }

// Events returns the call's events; the channel is closed after CallEnded. A
// reader that falls more than 256 events behind misses CallQuality events.
func (c *Call) Events() <-chan CallEvent { return c.events }

// Done is closed when the call has ended.
func (c *Call) Done() <-chan struct{} { return c.done }

// Hangup ends the call for this device, telling the other members.
func (c *Call) Hangup() { c.once.Do(func() { close(c.hangup) }) }

// Stats returns what the call's audio measured so far.
func (c *Call) Stats() call.MediaStats { return c.media.Stats() }

// Reason returns why the call ended, once it has.
func (c *Call) Reason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// StartCall rings the members of a conversation and joins the call's media at
// once, so that audio flows as soon as someone answers. The call runs until it
// is hung up, its Source ends, the others hang up or nobody answers within the
// ring time; ctx bounds only the start.
func (dv *Device) StartCall(ctx context.Context, conv ConversationRef, opts CallOptions) (*Call, error) {
	var gid []byte
	var direct bool
	err := dv.onConversation(ctx, conv, func(s *session, g []byte) error {
		gid = g
		return dv.v.View(func(tx *vault.Tx) error {
			rec, err := loadGroupRec(tx, g)
			if err != nil {
				return err
			}
			direct = rec.Kind == kindDirect
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	var id [16]byte
	if _, err := dv.cfg.Rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("device: call ID: %w", err)
	}
	rtt := dv.startProfile(ctx, &opts)
	c, err := dv.newCall(id, gid, direct, true, opts)
	if err != nil {
		return nil, err
	}
	c.trips.add(rtt)
	if err := dv.sendCall(ctx, gid, id, SignalRing, c.opts.Profile.Name, true); err != nil {
		c.abort()
		return nil, err
	}
	if err := c.startMedia(ctx); err != nil {
		c.abort()
		_ = dv.sendCallSignal(context.Background(), gid, id, c.endSignal(), "")
		return nil, err
	}
	c.emit(CallEvent{Kind: CallRinging})
	go c.run()
	return c, nil
}

// AnswerCall answers a ring (a CallSignal of kind SignalRing) and joins its
// media.
func (dv *Device) AnswerCall(ctx context.Context, ring *CallSignal, opts CallOptions) (*Call, error) {
	if ring == nil || ring.Kind != SignalRing {
		return nil, errors.New("device: only a ring can be answered")
	}
	if dv.now().Sub(ring.SentAt) > StaleRing {
		return nil, ErrCallEnded
	}
	rtt := dv.startProfile(ctx, &opts)
	c, err := dv.newCall(ring.id, ring.group, ring.ConversationKind != KindGroup, false, opts)
	if err != nil {
		return nil, err
	}
	c.trips.add(rtt)
	c.joined[ring.From.DeviceID] = true
	if ring.Profile != "" {
		if p, ok := call.ProfileNamed(ring.Profile); ok {
			c.wanted[ring.From.DeviceID] = p
		}
	}
	kind := SignalAccept
	if !c.direct {
		kind = SignalJoin
	}
	if err := c.startMedia(ctx); err != nil {
		c.abort()
		return nil, err
	}
	if err := dv.sendCallSignal(ctx, c.gid, c.id, kind, c.opts.Profile.Name); err != nil {
		c.abort()
		return nil, err
	}
	c.gate.open()
	go c.run()
	return c, nil
}

// DeclineCall tells the caller this device will not answer.
func (dv *Device) DeclineCall(ctx context.Context, ring *CallSignal) error {
	if ring == nil || ring.Kind != SignalRing {
		return errors.New("device: only a ring can be declined")
	}
	return dv.sendCallSignal(ctx, ring.group, ring.id, SignalDecline, "")
}

func (dv *Device) newCall(id [16]byte, gid []byte, direct, caller bool, opts CallOptions) (*Call, error) {
	if opts.Profile.Bitrate == 0 {
		opts.Profile = call.ProfileGood
	}
	if opts.Ring <= 0 {
		opts.Ring = RingTimeout
	}
	dv.callMu.Lock()
	defer dv.callMu.Unlock()
	if dv.activeCall != nil {
		return nil, ErrInCall
	}
	c := &Call{
		dv: dv, id: id, gid: gid, direct: direct, caller: caller, opts: opts,
		events: make(chan CallEvent, 256), hangup: make(chan struct{}), done: make(chan struct{}),
		gate:   &gatedSource{src: opts.Source},
		keys:   call.NewKeys(call.DefaultGrace, dv.cfg.Now),
		wanted: make(map[string]call.Profile), joined: make(map[string]bool),
	}
	// Subscribe before the first signal goes out, so no answer is missed.
	c.sub, c.unsubscribe = dv.Subscribe()
	dv.activeCall = c
	return c, nil
}

// startMedia keys the call from the group's current epoch and connects to the
// relay through the exchange connection.
func (c *Call) startMedia(ctx context.Context) error {
	dv := c.dv
	k, err := dv.callKeying(c.gid, 0, false)
	if err != nil {
		return err
	}
	if err := c.rekey(k); err != nil {
		return err
	}
	s, link, err := c.joinMedia(ctx)
	if err != nil {
		return err
	}
	c.s, c.link = s, link
	first := func() { c.emit(CallEvent{Kind: CallConnected}) }
	m, err := call.StartMedia(call.MediaConfig{
		Keys: c.keys, Transport: link, Source: c.gate, Sink: c.opts.Sink,
		Profile: c.profile(c.opts.Profile), Logger: dv.log, FirstAudio: first, FirstPacket: c.gate.open,
	})
	if err != nil {
		return err
	}
	c.media = m
	return nil
}

// joinMedia connects to the call's relay through the device's exchange
// connection, which it holds until released.
func (c *Call) joinMedia(ctx context.Context) (*session, *rtc.Link, error) {
	s, err := c.dv.acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	members := c.members
	link, err := rtc.Dial(ctx, rtc.Config{Logger: c.dv.log, Via: c.opts.Via}, func(ctx context.Context, offer string) (string, error) {
		return s.c.JoinCall(ctx, wire.CallID(c.id), members, offer)
	})
	if err != nil {
		c.dv.release(s)
		return nil, nil, fmt.Errorf("device: joining the call's media: %w", err)
	}
	return s, link, nil
}

// relink is the outcome of a reconnection.
type relink struct {
	s    *session
	link *rtc.Link
	err  error
}

// reconnect joins the call's media again after the link to the relay failed
// (the exchange connection dropped, say on a change of mobile network),
// trying until reconnectFor has passed or the call is hung up.
func (c *Call) reconnect(out chan<- relink) {
	deadline := time.Now().Add(reconnectFor)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), min(dialTimeout, time.Until(deadline)))
		go func() {
			select {
			case <-c.hangup:
			case <-c.dv.closing:
			case <-ctx.Done():
			}
			cancel()
		}()
		s, link, err := c.joinMedia(ctx)
		cancel()
		if err == nil {
			out <- relink{s: s, link: link}
			return
		}
		select {
		case <-c.hangup:
			out <- relink{err: err}
			return
		case <-c.dv.closing:
			out <- relink{err: err}
			return
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			out <- relink{err: err}
			return
		}
	}
}

// abort undoes a call that could not start.
func (c *Call) abort() {
	if c.link != nil {
		_ = c.link.Close()
	}
	if c.media != nil {
		c.media.Close()
	}
	if c.s != nil {
		ctx, cancel := context.WithTimeout(context.Background(), signalTimeout)
		_ = c.s.c.LeaveCall(ctx, wire.CallID(c.id))
		cancel()
		c.dv.release(c.s)
	}
	c.unsubscribe()
	c.dv.callMu.Lock()
	if c.dv.activeCall == c {
		c.dv.activeCall = nil
	}
	c.dv.callMu.Unlock()
	close(c.events)
	close(c.done)
}

// rekey moves the call's keys to a new epoch and shows the epoch's short code.
func (c *Call) rekey(k *callKeys) error {
	if err := c.keys.SetEpoch(k.epoch); err != nil {
		return err
	}
	clear(k.epoch.BaseKey)
	c.epoch = k.epoch.Number
	c.members = k.members
	code, err := callcode.Derive(k.authenticator, c.id)
	if err != nil {
		return err
	}
	c.emit(CallEvent{Kind: CallCode, Code: code.String(), Epoch: k.epoch.Number})
	return nil
}

func (c *Call) emit(e CallEvent) {
	e.CallID = c.ID()
	e.At = c.dv.now()
	select {
	case c.events <- e:
	default:
		if e.Kind != CallQuality {
			// Never lose what changes the call's state: wait for the reader.
			c.events <- e
		}
	}
}

func (c *Call) endSignal() CallSignalKind {
	if c.direct {
		return SignalHangup
	}
	return SignalLeave
}

// run follows the call until it ends: signals from the other members, epoch
// changes of the group, the audio's quality, the ring timer and a hangup.
func (c *Call) run() {
	dv := c.dv
	defer c.unsubscribe()
	events := c.sub
	ring := time.NewTimer(c.opts.Ring)
	defer ring.Stop()
	if !c.caller {
		ring.Stop()
	}
	quality := time.NewTicker(qualityInterval)
	defer quality.Stop()
	var (
		linkDone  = c.link.Done()
		relinked  = make(chan relink, 1)
		changes   = dv.groupChanges()
		audio     = c.opts.Profile // what the audio calls for; see adapt
		mine      = c.opts.Profile // what this member asks for: audio, or the floor
		goodSince time.Time
		last      call.MediaStats
		trips     = make(chan time.Duration, 1)
		timing    bool // a round trip is being measured
	)
	if audio == call.ProfilePoor && c.trips.floor() == call.ProfilePoor {
		// A 2G round trip chose poor, and the floor keeps it there while the
		// bearer looks like 2G. The audio starts from fair, so that when it
		// no longer does (that round trip was a retransmission's, or the
		// device moved) the call follows its audio at once.
		audio = call.ProfileFair
	}
	measure := func() {
		if timing {
			return
		}
		timing = true
		go func(s *session) {
			ctx, cancel := context.WithTimeout(context.Background(), qualityInterval)
			defer cancel()
			trips <- roundTrip(ctx, s)
		}(c.s)
	}
	measure()
	for {
		select {
		case <-c.hangup:
			c.finish("hung up", true)
			return
		case <-dv.closing:
			c.finish("device closed", false)
			return
		case <-c.media.Done():
			c.finish("finished speaking", true)
			return
		case <-linkDone:
			linkDone = nil
			c.emit(CallEvent{Kind: CallReconnecting})
			go c.reconnect(relinked)
		case r := <-relinked:
			if r.err != nil {
				dv.log.Info("device: call media lost", "err", r.err)
				c.finish("media connection lost", true)
				return
			}
			_ = c.link.Close()
			dv.release(c.s)
			c.s, c.link = r.s, r.link
			c.media.SetTransport(r.link)
			linkDone = r.link.Done()
			c.emit(CallEvent{Kind: CallReconnected})
		case <-ring.C:
			if len(c.joined) == 0 {
				c.finish("no answer", true)
				return
			}
		case <-changes:
			changes = dv.groupChanges()
			k, err := dv.callKeying(c.gid, c.epoch, true)
			if errors.Is(err, ErrNotMember) {
				c.finish("removed from the conversation", false)
				return
			}
			if err != nil || k == nil {
				continue
			}
			if err := c.rekey(k); err != nil {
				dv.log.Warn("device: call rekey", "err", err)
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), signalTimeout)
			if err := c.s.c.SetCallMembers(ctx, wire.CallID(c.id), k.members); err != nil {
				dv.log.Warn("device: updating the call's members at the relay", "err", err)
			}
			cancel()
			if c.dropRemoved(k.members) {
				c.finish("everyone else left", false)
				return
			}
		case e, ok := <-events:
			if !ok {
				c.finish("device closed", false)
				return
			}
			if e.Kind != EventCall || e.Call == nil {
				continue
			}
			if end, reason := c.onSignal(e.Call); end {
				c.finish(reason, false)
				return
			}
			// A member may have asked for a cheaper profile: follow at once.
			if use := c.profile(mine); use != c.media.Profile() {
				c.media.SetProfile(use)
			}
		case d := <-trips:
			timing = false
			c.trips.add(d)
		case <-quality.C:
			measure()
			st := c.media.Stats()
			audio = adapt(last, st, audio, &goodSince, dv.now())
			want := worse(audio, c.trips.floor())
			last = st
			if want != mine {
				mine = want
				go func() { _ = dv.sendCallSignal(context.Background(), c.gid, c.id, SignalMedia, want.Name) }()
			}
			use := c.profile(mine)
			if use != c.media.Profile() {
				c.media.SetProfile(use)
			}
			c.emit(CallEvent{Kind: CallQuality, Stats: &st, Profile: use.Name})
		}
	}
}

// profile is what this member sends with: the most frugal of what it wants
// itself and what any other member asked for.
func (c *Call) profile(mine call.Profile) call.Profile {
	for _, p := range c.wanted {
		mine = worse(mine, p)
	}
	return mine
}

// startProfile sets the profile a call starts with, unless one was asked for:
// one chosen from the round trip to the exchange, since a call that starts too
// rich on a 2G link loses its first seconds before it adapts. It returns the
// round trip, or 0 if it was not measured.
func (dv *Device) startProfile(ctx context.Context, opts *CallOptions) time.Duration {
	if opts.Profile.Bitrate != 0 {
		return 0
	}
	opts.Profile = call.ProfileGood
	s, err := dv.acquire(ctx)
	if err != nil {
		return 0
	}
	defer dv.release(s)
	rtt := roundTrip(ctx, s)
	if rtt > 0 {
		opts.Profile = profileForRTT(rtt)
	}
	return rtt
}

// roundTrip measures a round trip to the exchange through s, or returns 0.
func roundTrip(ctx context.Context, s *session) time.Duration {
	start := time.Now()
	if err := s.c.Ping(ctx); err != nil {
		return 0
	}
	return max(time.Since(start), time.Nanosecond)
}

// Round trips to the exchange: about 300 ms is a 2G (EDGE) bearer, 150–200 ms
// 3G.
const (
	narrowRTT = 250 * time.Millisecond
	mobileRTT = 120 * time.Millisecond
)

// profileForRTT picks a starting profile from a round trip time.
func profileForRTT(rtt time.Duration) call.Profile {
	switch {
	case rtt >= narrowRTT:
		return call.ProfilePoor
	case rtt >= mobileRTT:
		return call.ProfileFair
	}
	return call.ProfileGood
}

// roundTrips keeps a call's last round trips to the exchange. Their minimum
// is the bearer's: a TCP retransmission on a lossy link inflates one round
// trip, not all of them.
type roundTrips struct {
	d [5]time.Duration
	n int
}

// add records a round trip; 0, one not measured, is ignored.
func (r *roundTrips) add(d time.Duration) {
	if d > 0 {
		r.d[r.n%len(r.d)] = d
		r.n++
	}
}

// floor is the most a member may ask senders to spend whatever its audio: on
// a 2G bearer, whose round trip gives it away, the poor profile, which is the
// only one that fits its 100 kbit/s or so; otherwise any.
func (r *roundTrips) floor() call.Profile {
	if r.n == 0 {
		return call.ProfileGood
	}
	low := r.d[0]
	for _, d := range r.d[1:min(r.n, len(r.d))] {
		low = min(low, d)
	}
	if low >= narrowRTT {
		return call.ProfilePoor
	}
	return call.ProfileGood
}

// dropRemoved forgets the participants no longer in the group, as if they had
// left; it reports whether nobody else is left in a call someone had joined.
func (c *Call) dropRemoved(members []wire.DeviceID) bool {
	in := make(map[string]bool, len(members))
	for _, m := range members {
		in[authority.DeviceID(m).String()] = true
	}
	had := len(c.joined) > 0
	for id := range c.joined {
		if !in[id] {
			delete(c.joined, id)
			delete(c.wanted, id)
			c.emit(CallEvent{Kind: CallLeft, Member: Sender{DeviceID: id}, Reason: "removed from the conversation"})
		}
	}
	return had && len(c.joined) == 0
}

// onSignal takes in one call signal; it reports whether the call ends.
func (c *Call) onSignal(sig *CallSignal) (bool, string) {
	dv := c.dv
	if sig.id != c.id {
		if sig.Kind == SignalRing && dv.now().Sub(sig.SentAt) < StaleRing {
			// Another call rings while this one is on: say so.
			go func() { _ = dv.sendCallSignal(context.Background(), sig.group, sig.id, SignalBusy, "") }()
		}
		return false, ""
	}
	if sig.Profile != "" {
		if p, ok := call.ProfileNamed(sig.Profile); ok {
			c.wanted[sig.From.DeviceID] = p
		}
	}
	own := sig.From.Name == dv.self.Name
	switch sig.Kind {
	case SignalAccept, SignalJoin:
		if own && c.direct {
			// Another device of this official answered.
			return !c.caller, "answered on another device"
		}
		c.joined[sig.From.DeviceID] = true
		// The caller speaks once the first packet of an answer arrives: on a
		// poor link the media connects well after the answer, and what is
		// said before would be lost. Should nothing come, it speaks anyway.
		time.AfterFunc(gateFallback, c.gate.open)
		c.emit(CallEvent{Kind: CallJoined, Member: sig.From})
	case SignalDecline, SignalBusy:
		c.emit(CallEvent{Kind: CallLeft, Member: sig.From, Reason: string(sig.Kind)})
		if c.direct && c.caller && !own && len(c.joined) == 0 {
			return true, string(sig.Kind)
		}
	case SignalHangup, SignalLeave:
		delete(c.joined, sig.From.DeviceID)
		delete(c.wanted, sig.From.DeviceID)
		c.emit(CallEvent{Kind: CallLeft, Member: sig.From, Reason: "hung up"})
		if c.direct {
			return true, "the other side hung up"
		}
		if len(c.joined) == 0 {
			return true, "everyone else left"
		}
	}
	return false, ""
}

// finish ends the call: it tells the others if asked, leaves the relay and
// reports CallEnded.
func (c *Call) finish(reason string, tell bool) {
	c.mu.Lock()
	c.reason = reason
	c.mu.Unlock()
	// The link first: the media's receiver waits on it.
	_ = c.link.Close()
	c.media.Close()
	ctx, cancel := context.WithTimeout(context.Background(), signalTimeout)
	defer cancel()
	_ = c.s.c.LeaveCall(ctx, wire.CallID(c.id))
	if tell {
		if err := c.dv.sendCallSignal(ctx, c.gid, c.id, c.endSignal(), ""); err != nil {
			c.dv.log.Info("device: telling the others the call ended", "err", err)
		}
	}
	c.dv.release(c.s)
	c.dv.callMu.Lock()
	if c.dv.activeCall == c {
		c.dv.activeCall = nil
	}
	c.dv.callMu.Unlock()
	st := c.media.Stats()
	c.emit(CallEvent{Kind: CallEnded, Reason: reason, Stats: &st})
	close(c.events)
	close(c.done)
}

// adapt picks the profile a member's audio calls for from what it received
// over the last interval: it steps down at once when loss or jitter grows, and
// back up only after upgradeAfter of good audio. What the member asks for is
// that or the floor its bearer sets (roundTrips.floor), whichever is cheaper.
//
// Loss is counted in 20 ms frames of audio: frames lost, plus the frames the
// packet repetition of the fair and poor profiles rebuilt (they were lost on
// the link, and a call that stepped up again would lose them), against frames
// played. A sender's silences are not loss. Under half a second of audio, or a
// single lost packet, says nothing yet.
//
// Loss alone calls for the fair profile, whose copies rebuild lost packets and
// whose 16 kbit/s keep speech whole; the poor one, at 6.4 kbit/s, is for links
// too narrow for that, which show it by a 2G round trip (the floor) or by a
// jitter of over 60 ms, the queueing of a link filled up.
func adapt(prev, cur call.MediaStats, mine call.Profile, goodSince *time.Time, now time.Time) call.Profile {
	played := cur.Played - prev.Played
	lost := cur.Lost - prev.Lost + cur.RecoveredRedundant - prev.RecoveredRedundant
	if played+lost < minAdaptFrames {
		return mine
	}
	loss := float64(lost) / float64(played+lost)
	want := call.ProfileGood
	switch {
	case cur.Jitter > 60*time.Millisecond:
		want = call.ProfilePoor
	case loss > 0.015 && lost >= 2 || cur.Jitter > 30*time.Millisecond:
		want = call.ProfileFair
	}
	if rank(want) > rank(mine) {
		*goodSince = time.Time{}
		return want
	}
	if rank(want) == rank(mine) {
		*goodSince = time.Time{}
		return mine
	}
	if goodSince.IsZero() {
		*goodSince = now
		return mine
	}
	if now.Sub(*goodSince) < upgradeAfter {
		return mine
	}
	*goodSince = now
	return call.Profiles[rank(mine)-1]
}

func rank(p call.Profile) int {
	for i, q := range call.Profiles {
		if q.Name == p.Name {
			return i
		}
	}
	return 0
}

func worse(a, b call.Profile) call.Profile {
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// sendCallSignal sends one call signal to the group's members.
func (dv *Device) sendCallSignal(ctx context.Context, gid []byte, id [16]byte, kind CallSignalKind, profile string) error {
	return dv.sendCall(ctx, gid, id, kind, profile, false)
}

// sendCall sends one call signal; with show set it also enters the history
// (a ring: "you called").
func (dv *Device) sendCall(ctx context.Context, gid []byte, id [16]byte, kind CallSignalKind, profile string, show bool) error {
	ctx, cancel := context.WithTimeout(ctx, signalTimeout)
	defer cancel()
	c := &content{Type: contentCall, Call: &callSignal{ID: id, Signal: signalCode(kind), Profile: profile}}
	return dv.withSession(ctx, func(s *session) error {
		_, err := dv.sendAppLocked(ctx, s, gid, c, show)
		return err
	})
}

// callKeys is what a call takes from its group's epoch.
type callKeys struct {
	epoch         call.Epoch
	authenticator []byte
	members       []wire.DeviceID // every device of the group, this one included
}

// callKeying exports the group's current epoch for a call, with a fresh SFrame
// context ID. When onlyNewer is set it returns nil if the epoch is still known.
func (dv *Device) callKeying(gid []byte, known uint64, onlyNewer bool) (*callKeys, error) {
	dv.mu.Lock()
	defer dv.mu.Unlock()
	var k *callKeys
	err := dv.v.Update(func(tx *vault.Tx) error {
		rec, err := loadGroupRec(tx, gid)
		if err != nil {
			return err
		}
		if !rec.Active {
			return ErrNotMember
		}
		if onlyNewer && rec.Epoch <= known {
			return nil
		}
		g, err := dv.loadGroup(tx, gid)
		if err != nil {
			return err
		}
		base, err := sframe.MLSBaseKey(g, call.Suite)
		if err != nil {
			return err
		}
		ctxID, err := nextCallContext(tx, gid)
		if err != nil {
			return err
		}
		k = &callKeys{
			epoch:         call.Epoch{Number: g.Epoch(), Leaf: uint32(g.OwnLeaf()), BaseKey: base, ContextID: ctxID},
			authenticator: g.EpochAuthenticator(),
		}
		for _, m := range rec.Members {
			k.members = append(k.members, wire.DeviceID(m.Device))
		}
		k.members = slices.Compact(wire.SortDeviceIDs(k.members))
		return nil
	})
	return k, err
}

// nextCallContext returns the next SFrame context ID this device uses in the
// group. It only grows, across calls and restarts, so no KID repeats.
func nextCallContext(tx *vault.Tx, gid []byte) (uint64, error) {
	n, err := nextCounter(tx, append([]byte("callctx:"), gid...))
	if err != nil {
		return 0, err
	}
	if n >= 1<<(64-call.Layout.IndexBits-call.Layout.EpochBits) {
		return 0, errors.New("device: call key IDs exhausted for this group")
	}
	return n, nil
}

// groupChanges returns a channel closed the next time any group's state is
// stored.
func (dv *Device) groupChanges() <-chan struct{} {
	dv.groupsMu.Lock()
	defer dv.groupsMu.Unlock()
	if dv.groupsChanged == nil {
		dv.groupsChanged = make(chan struct{})
	}
	return dv.groupsChanged
}

func (dv *Device) noteGroupChange() {
	dv.groupsMu.Lock()
	if dv.groupsChanged != nil {
		close(dv.groupsChanged)
		dv.groupsChanged = nil
	}
	dv.groupsMu.Unlock()
}

// gatedSource plays silence until opened: a caller says nothing until a
// packet of someone who answered has arrived, so the start of what it says is
// not lost to an empty room or a link still connecting.
type gatedSource struct {
	src call.Source
	mu  sync.Mutex
	on  bool
}

func (g *gatedSource) open() {
	g.mu.Lock()
	g.on = true
	g.mu.Unlock()
}

func (g *gatedSource) ReadFrame(pcm []int16) error {
	g.mu.Lock()
	on := g.on
	g.mu.Unlock()
	if !on || g.src == nil {
		clear(pcm)
		return nil
	}
	return g.src.ReadFrame(pcm)
}
