package wire

import (
	"encoding/hex"

	"golang.org/x/crypto/cryptobyte"
)

// Call limits. The exchange enforces the per-device ones; a decoder rejects
// anything beyond the size bounds.
const (
	// MaxCallMembers bounds a call's allow-list.
	MaxCallMembers = 256
	// MaxSDPSize bounds an SDP offer or answer.
	MaxSDPSize = 65535
	// MaxCallsPerDevice is how many calls one device may take part in at once;
	// a JoinCall beyond it gets Error{quota_exceeded}.
	MaxCallsPerDevice = 4
)

// CallID names one call. The caller chooses it at random and names it in the
// MLS-encrypted ring; the exchange uses it only to find the call's allow-list and
// participants.
type CallID [IDSize]byte

// String returns the ID in lowercase hex.
func (id CallID) String() string { return hex.EncodeToString(id[:]) }

// JoinCall asks the exchange's media relay to take the sending device into a call.
// The first JoinCall for a CallID creates the call with Members as its allow-list;
// a later one is accepted only from a device on the allow-list, and its Members
// is then ignored. Offer is a WebRTC SDP offer with one audio section.
//
//	struct {
//	    CallID call_id;                       /* opaque[16], random */
//	    DeviceID members<V>;                  /* 1..MaxCallMembers, strictly increasing,
//	                                             including the sender */
//	    opaque offer<1..MaxSDPSize>;          /* SDP, UTF-8 */
//	} JoinCall;
type JoinCall struct {
	CallID  CallID
	Members []DeviceID
	Offer   string
}

// CallJoined answers JoinCall with the relay's SDP answer.
//
//	struct { opaque answer<1..MaxSDPSize>; } CallJoined;   /* SDP, UTF-8 */
type CallJoined struct {
	Answer string
}

// SetCallMembers replaces a call's allow-list. Only a current participant may send
// it, and it must be on the new list; participants not on it are disconnected at once.
//
//	struct {
//	    CallID call_id;
//	    DeviceID members<V>;                  /* 1..MaxCallMembers, strictly increasing */
//	} SetCallMembers;
type SetCallMembers struct {
	CallID  CallID
	Members []DeviceID
}

// LeaveCall takes the sending device out of a call's media.
//
//	struct { CallID call_id; } LeaveCall;
type LeaveCall struct {
	CallID CallID
}

func (*JoinCall) Type() MessageType       { return TypeJoinCall }
func (*CallJoined) Type() MessageType     { return TypeCallJoined }
func (*SetCallMembers) Type() MessageType { return TypeSetCallMembers }
func (*LeaveCall) Type() MessageType      { return TypeLeaveCall }

func (m *JoinCall) marshal(b *cryptobyte.Builder) {
	b.AddBytes(m.CallID[:])
	addDeviceIDs(b, m.Members, 1, MaxCallMembers)
	addString(b, m.Offer, 1, MaxSDPSize, "offer")
}

func (m *JoinCall) unmarshal(s *cryptobyte.String) bool {
	*m = JoinCall{}
	return readFixed(s, m.CallID[:]) && readDeviceIDs(s, &m.Members, 1, MaxCallMembers) &&
		readString(s, &m.Offer, 1, MaxSDPSize)
}

func (m *CallJoined) marshal(b *cryptobyte.Builder) {
	addString(b, m.Answer, 1, MaxSDPSize, "answer")
}

func (m *CallJoined) unmarshal(s *cryptobyte.String) bool {
	*m = CallJoined{}
	return readString(s, &m.Answer, 1, MaxSDPSize)
}

func (m *SetCallMembers) marshal(b *cryptobyte.Builder) {
	b.AddBytes(m.CallID[:])
	addDeviceIDs(b, m.Members, 1, MaxCallMembers)
}

func (m *SetCallMembers) unmarshal(s *cryptobyte.String) bool {
	*m = SetCallMembers{}
	return readFixed(s, m.CallID[:]) && readDeviceIDs(s, &m.Members, 1, MaxCallMembers)
}

func (m *LeaveCall) marshal(b *cryptobyte.Builder) {
	b.AddBytes(m.CallID[:])
}

func (m *LeaveCall) unmarshal(s *cryptobyte.String) bool {
	*m = LeaveCall{}
	return readFixed(s, m.CallID[:])
}
