package device

import (
	"errors"
	"time"
)

// Errors returned by Device methods. Each may be wrapped with detail.
var (
	// ErrWiped is returned by Run when the authority revoked the device and it
	// destroyed its vault, and by every method of a wiped Device.
	ErrWiped = errors.New("device: wiped")
	// ErrClosed is returned by the methods of a closed Device.
	ErrClosed = errors.New("device: closed")
	// ErrNotEnrolled is returned by Open when Home holds no vault.
	ErrNotEnrolled = errors.New("device: not enrolled")
	// ErrEnrolled is returned by Enroll when Home already holds a vault.
	ErrEnrolled = errors.New("device: already enrolled")
	// ErrWrongPassphrase is returned by Open when the passphrase does not open the vault.
	ErrWrongPassphrase = errors.New("device: wrong passphrase")
	// ErrUnknownOfficial is returned for a name the verified directory does not list,
	// or that has no active device.
	ErrUnknownOfficial = errors.New("device: unknown official")
	// ErrNoConversation is returned when a ConversationRef names no conversation.
	ErrNoConversation = errors.New("device: no such conversation")
	// ErrAmbiguous is returned when a group name names more than one conversation;
	// use the conversation's ID.
	ErrAmbiguous = errors.New("device: several conversations have this name")
	// ErrNotMember is returned when this device is no longer in the conversation.
	ErrNotMember = errors.New("device: no longer a member of the conversation")
	// ErrOffline is returned when the exchange cannot be reached for an operation
	// that needs it.
	ErrOffline = errors.New("device: exchange unreachable")
	// ErrNoMessage is returned by SaveFile for a message that is not on the device
	// or carries no file.
	ErrNoMessage = errors.New("device: no such file message")
)

// Identity is this device's official and the device itself.
type Identity struct {
	Name     string // the official's name, as the authority enrolled it
	Role     string
	DeviceID string // 32 lowercase hex digits
}

// Contact is one official in the authority's directory with their active devices.
type Contact struct {
	Name    string
	Role    string
	Devices []string // device IDs, hex
}

// ConversationKind says whether a conversation is one to one or a named group.
type ConversationKind string

// Conversation kinds.
const (
	KindDirect ConversationKind = "direct"
	KindGroup  ConversationKind = "group"
)

// ConversationRef names a conversation: exactly one of To (the one-to-one
// conversation with that official), Group (the group of that name, if only one
// has it) or ID (Conversation.ID).
type ConversationRef struct {
	To    string
	Group string
	ID    string
}

// Conversation is one conversation as the device shows it. A one-to-one
// conversation is one even when the two officials started it at the same moment
// and it is carried by two MLS groups.
type Conversation struct {
	// ID is "direct:" followed by the other official's name, or "group:" followed
	// by the hex MLS group ID.
	ID   string
	Kind ConversationKind
	// Name is the other official (direct) or the group's name; empty until the
	// group's name has arrived.
	Name string
	// Members are the officials in the conversation with their devices, this
	// device's official included.
	Members []Contact
	// Disappearing is the timer after which messages are deleted; 0 = off.
	Disappearing time.Duration
	// Active is false once this device was removed from every group of the conversation.
	Active       bool
	LastActivity time.Time
}

// MessageKind says what a Message is.
type MessageKind string

// Message kinds.
const (
	MessageText        MessageKind = "text"
	MessageFile        MessageKind = "file"
	MessageRoster      MessageKind = "roster"      // a device joined or left; Text describes it
	MessageTimer       MessageKind = "timer"       // the disappearing timer changed; see Timer
	MessageUndelivered MessageKind = "undelivered" // the exchange could not deliver a message; Text says to whom
	MessageCall        MessageKind = "call"        // a call was placed in the conversation; Text says by whom
)

// MessageStatus is where an outgoing message stands; received ones are StatusReceived.
type MessageStatus string

// Message statuses.
const (
	StatusPending  MessageStatus = "pending" // in the outbox, not yet accepted by the exchange
	StatusSent     MessageStatus = "sent"    // stored by the exchange for every recipient
	StatusFailed   MessageStatus = "failed"  // refused by the exchange; not sent
	StatusReceived MessageStatus = "received"
)

// Sender is who wrote a message: an official and one of their devices.
type Sender struct {
	Name     string
	DeviceID string
}

// File describes an attachment. The key that opens it stays in the vault.
type File struct {
	Name      string
	MediaType string
	Size      int64
	SHA256    string // hex, of the plaintext
	BlobID    string // hex, the attachment's name at the exchange
}

// Message is one entry of a conversation's history.
type Message struct {
	// ID is unique on this device: the hex message ID of the exchange message for
	// text, file and timer messages, a local ID for the device's own notices.
	ID string
	// ConversationID is Conversation.ID; ConversationKind and ConversationName
	// are the conversation's kind and name (the other official, or the group's
	// name) as the message was read.
	ConversationID   string
	ConversationKind ConversationKind
	ConversationName string
	Kind             MessageKind
	From             Sender
	Outgoing         bool
	Text             string
	File             *File
	Timer            time.Duration // for MessageTimer: the new timer, 0 = off
	SentAt           time.Time
	ReceivedAt       time.Time
	ExpiresAt        time.Time // zero: kept
	Status           MessageStatus
}

// EventKind says what an Event reports.
type EventKind string

// Event kinds.
const (
	EventMessage      EventKind = "message"      // a new message (of any MessageKind) is in Message
	EventStatus       EventKind = "status"       // an outgoing message's Status changed
	EventExpired      EventKind = "expired"      // Message (ID and conversation only) was deleted by its timer
	EventConversation EventKind = "conversation" // a conversation was created or its name, members or timer changed
	EventWiped        EventKind = "wiped"        // the device was revoked and wiped itself
	EventDirectory    EventKind = "directory"    // the verified directory changed
	EventNewOwnDevice EventKind = "own_device"   // a device enrolled under this official's name; Message.Text names it
	EventConnection   EventKind = "connection"   // connected or disconnected; see Connected
	EventCall         EventKind = "call"         // a call signal arrived; see Call
)

// Event is what Subscribe delivers.
type Event struct {
	Kind           EventKind
	ConversationID string
	Message        *Message
	Connected      bool
	Call           *CallSignal
}
