package wire

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
)

// Protocol constants. Changing any of these is a new protocol version.
const (
	// ProtocolVersion1 is the only version this package speaks.
	ProtocolVersion1 uint16 = 1

	// headerSize is the frame header: uint32 length, uint16 type, uint32 request ID.
	headerSize = 4 + 2 + 4
	// lengthCovered is the part of the header that the length field counts.
	lengthCovered = 2 + 4

	// IDSize is the size of a DeviceID, MessageID and BlobID.
	IDSize = 16
)

// Implementation limits. A peer may advertise lower limits in Welcome; no peer may
// exceed these, and a decoder rejects anything beyond them.
const (
	// MaxFrameSize bounds the frame length field: type, request ID and body.
	MaxFrameSize = 1 << 20
	// MaxBodySize is the largest body a frame can carry.
	MaxBodySize = MaxFrameSize - lengthCovered
	// MaxChunkSize bounds one attachment chunk, so that a chunk frame fits MaxFrameSize.
	MaxChunkSize = 512 << 10
	// MaxRecipients bounds the recipient list of one Send or CreateBlob.
	MaxRecipients = 4096
	// MaxGroupIDSize bounds an MLS group ID.
	MaxGroupIDSize = 255
	// MaxKeyPackages bounds the KeyPackages in one upload or claim answer.
	MaxKeyPackages = 256
	// MaxAck bounds the sequence numbers in one Ack, and the entries of one Expired.
	MaxAck = 4096
	// MaxVersions bounds the versions a Hello offers.
	MaxVersions = 16
	// MaxSoftwareSize bounds Hello.Software.
	MaxSoftwareSize = 128
	// MaxErrorMessageSize bounds Error.Message.
	MaxErrorMessageSize = 256
	// MaxTicketSize bounds the enrolment ticket text.
	MaxTicketSize = 1024
	// MaxNameSize bounds an official's name.
	MaxNameSize = 256
	// MaxCertificateSize bounds one DER certificate or certificate request.
	MaxCertificateSize = 16 << 10
	// MaxChainLength bounds the certificates in a chain.
	MaxChainLength = 8
)

// DeviceID identifies one enrolled device. The authority assigns it at enrolment; it
// appears in the device's certificate and is how the exchange addresses the device.
type DeviceID [IDSize]byte

// String returns the ID in lowercase hex.
func (id DeviceID) String() string { return hex.EncodeToString(id[:]) }

// ParseDeviceID parses the hex form returned by String.
func ParseDeviceID(s string) (DeviceID, error) {
	var id DeviceID
	if len(s) != 2*IDSize {
		return id, fmt.Errorf("wire: device ID %q: want %d hex digits", s, 2*IDSize)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("wire: device ID %q: %v", s, err)
	}
	return id, nil
}

// SortDeviceIDs sorts ids into the strictly increasing order that recipient lists
// must have, removing duplicates, and returns the shortened slice.
func SortDeviceIDs(ids []DeviceID) []DeviceID {
	slices.SortFunc(ids, func(a, b DeviceID) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(ids)
}

// MessageID is chosen at random by the sender of a Send; the exchange uses it to
// recognise a retransmission, and receivers to discard a duplicate delivery.
type MessageID [IDSize]byte

// String returns the ID in lowercase hex.
func (id MessageID) String() string { return hex.EncodeToString(id[:]) }

// BlobID names an attachment. The uploader chooses it at random; knowing it is not
// enough to download the blob (only its listed recipients may).
type BlobID [IDSize]byte

// String returns the ID in lowercase hex.
func (id BlobID) String() string { return hex.EncodeToString(id[:]) }

// GroupID is an MLS group_id (RFC 9420 §8.1), 1 to MaxGroupIDSize bytes.
type GroupID []byte

// String returns the ID in lowercase hex.
func (g GroupID) String() string { return hex.EncodeToString(g) }

// MessageType is the uint16 type of a frame. The numbers are stable: a number is
// never reused for another message, in any version.
type MessageType uint16

// Message types, grouped by purpose in blocks of 16.
const (
	TypeHello   MessageType = 1 // client → exchange, first frame
	TypeWelcome MessageType = 2 // exchange → client, answers Hello
	TypeError   MessageType = 3 // either side, answers a request or closes the connection
	TypeOK      MessageType = 4 // exchange → client, success without data
	TypePing    MessageType = 5 // either side
	TypePong    MessageType = 6 // either side, answers Ping

	TypeEnroll            MessageType = 16 // client → exchange, unauthenticated connections only
	TypeEnrollResult      MessageType = 17 // exchange → client
	TypeRenewCertificate  MessageType = 18 // client → exchange
	TypeCertificateResult MessageType = 19 // exchange → client

	TypeUploadKeyPackages MessageType = 32 // client → exchange, answered by OK
	TypeClaimKeyPackage   MessageType = 33 // client → exchange
	TypeKeyPackages       MessageType = 34 // exchange → client
	TypeGetDirectory      MessageType = 35 // client → exchange
	TypeDirectory         MessageType = 36 // exchange → client
	TypeDirectoryUpdated  MessageType = 37 // exchange → client, push

	TypeSend       MessageType = 48 // client → exchange
	TypeSendResult MessageType = 49 // exchange → client
	TypeDeliver    MessageType = 50 // exchange → client, push
	TypeAck        MessageType = 51 // client → exchange, answered by OK
	TypeExpired    MessageType = 52 // exchange → client, push
	TypeRevoked    MessageType = 53 // exchange → client, push

	TypeCreateBlob    MessageType = 64 // client → exchange, answered by OK
	TypeUploadChunk   MessageType = 65 // client → exchange, answered by OK
	TypeDownloadChunk MessageType = 66 // client → exchange
	TypeBlobChunk     MessageType = 67 // exchange → client

	TypeJoinCall       MessageType = 80 // client → exchange
	TypeCallJoined     MessageType = 81 // exchange → client
	TypeSetCallMembers MessageType = 82 // client → exchange, answered by OK
	TypeLeaveCall      MessageType = 83 // client → exchange, answered by OK
)

// Side is who may send a message type.
type Side uint8

// Sides, as a bit set.
const (
	SideClient Side = 1 << iota
	SideExchange
)

type typeInfo struct {
	name  string
	sides Side
	new   func() Message
}

var types = map[MessageType]typeInfo{
	TypeHello:             {"Hello", SideClient, func() Message { return new(Hello) }},
	TypeWelcome:           {"Welcome", SideExchange, func() Message { return new(Welcome) }},
	TypeError:             {"Error", SideClient | SideExchange, func() Message { return new(Error) }},
	TypeOK:                {"OK", SideExchange, func() Message { return new(OK) }},
	TypePing:              {"Ping", SideClient | SideExchange, func() Message { return new(Ping) }},
	TypePong:              {"Pong", SideClient | SideExchange, func() Message { return new(Pong) }},
	TypeEnroll:            {"Enroll", SideClient, func() Message { return new(Enroll) }},
	TypeEnrollResult:      {"EnrollResult", SideExchange, func() Message { return new(EnrollResult) }},
	TypeRenewCertificate:  {"RenewCertificate", SideClient, func() Message { return new(RenewCertificate) }},
	TypeCertificateResult: {"CertificateResult", SideExchange, func() Message { return new(CertificateResult) }},
	TypeUploadKeyPackages: {"UploadKeyPackages", SideClient, func() Message { return new(UploadKeyPackages) }},
	TypeClaimKeyPackage:   {"ClaimKeyPackage", SideClient, func() Message { return new(ClaimKeyPackage) }},
	TypeKeyPackages:       {"KeyPackages", SideExchange, func() Message { return new(KeyPackages) }},
	TypeGetDirectory:      {"GetDirectory", SideClient, func() Message { return new(GetDirectory) }},
	TypeDirectory:         {"Directory", SideExchange, func() Message { return new(Directory) }},
	TypeDirectoryUpdated:  {"DirectoryUpdated", SideExchange, func() Message { return new(DirectoryUpdated) }},
	TypeSend:              {"Send", SideClient, func() Message { return new(Send) }},
	TypeSendResult:        {"SendResult", SideExchange, func() Message { return new(SendResult) }},
	TypeDeliver:           {"Deliver", SideExchange, func() Message { return new(Deliver) }},
	TypeAck:               {"Ack", SideClient, func() Message { return new(Ack) }},
	TypeExpired:           {"Expired", SideExchange, func() Message { return new(Expired) }},
	TypeRevoked:           {"Revoked", SideExchange, func() Message { return new(Revoked) }},
	TypeCreateBlob:        {"CreateBlob", SideClient, func() Message { return new(CreateBlob) }},
	TypeUploadChunk:       {"UploadChunk", SideClient, func() Message { return new(UploadChunk) }},
	TypeDownloadChunk:     {"DownloadChunk", SideClient, func() Message { return new(DownloadChunk) }},
	TypeBlobChunk:         {"BlobChunk", SideExchange, func() Message { return new(BlobChunk) }},
	TypeJoinCall:          {"JoinCall", SideClient, func() Message { return new(JoinCall) }},
	TypeCallJoined:        {"CallJoined", SideExchange, func() Message { return new(CallJoined) }},
	TypeSetCallMembers:    {"SetCallMembers", SideClient, func() Message { return new(SetCallMembers) }},
	TypeLeaveCall:         {"LeaveCall", SideClient, func() Message { return new(LeaveCall) }},
}

// Known reports whether t is a message type of this protocol version.
func (t MessageType) Known() bool {
	_, ok := types[t]
	return ok
}

// SentBy reports which sides may send t; it is zero for an unknown type. An exchange
// answers a client frame whose type it does not expect from a client with
// CodeUnexpectedMessage.
func (t MessageType) SentBy() Side { return types[t].sides }

// String returns the message's schema name, or "MessageType(n)".
func (t MessageType) String() string {
	if info, ok := types[t]; ok {
		return info.name
	}
	return fmt.Sprintf("MessageType(%d)", uint16(t))
}

// Code is a stable numeric error code carried by Error. The numbers never change
// meaning; new codes come only with a new protocol version.
type Code uint16

// Error codes. docs/protocol.md has the table with when each is sent.
const (
	CodeMalformed          Code = 1  // a frame or body does not decode
	CodeUnsupportedVersion Code = 2  // no protocol version in common
	CodeUnauthenticated    Code = 3  // the request needs an authenticated device
	CodeForbidden          Code = 4  // authenticated, but not allowed this
	CodeNotFound           Code = 5  // no such device, official, KeyPackage or blob
	CodeStaleEpoch         Code = 6  // a commit for an epoch that is not the group's current one
	CodeTooLarge           Code = 7  // a frame, payload or list beyond the advertised limits
	CodeRateLimited        Code = 8  // too many requests; retry later
	CodeTicketInvalid      Code = 9  // enrolment ticket unknown, used, expired or wrong
	CodeInternal           Code = 10 // the exchange failed; nothing was stored
	CodeRevoked            Code = 11 // this device is revoked
	CodeUnknownMessage     Code = 12 // the frame's message type is not known
	CodeUnexpectedMessage  Code = 13 // known type, but not valid from this side or at this point
	CodeInvalidRequest     Code = 14 // decodes, but the values are not acceptable
	CodeConflict           Code = 15 // a message or blob ID reused with different content
	CodeQuotaExceeded      Code = 16 // the recipient's mailbox or the blob store is full, or the device is in too many calls
	CodeUnavailable        Code = 17 // the exchange is shutting down or degraded; retry later
)

var codeNames = [...]string{
	CodeMalformed:          "malformed",
	CodeUnsupportedVersion: "unsupported version",
	CodeUnauthenticated:    "unauthenticated",
	CodeForbidden:          "forbidden",
	CodeNotFound:           "not found",
	CodeStaleEpoch:         "stale epoch",
	CodeTooLarge:           "too large",
	CodeRateLimited:        "rate limited",
	CodeTicketInvalid:      "ticket invalid",
	CodeInternal:           "internal error",
	CodeRevoked:            "revoked",
	CodeUnknownMessage:     "unknown message type",
	CodeUnexpectedMessage:  "unexpected message",
	CodeInvalidRequest:     "invalid request",
	CodeConflict:           "conflict",
	CodeQuotaExceeded:      "quota exceeded",
	CodeUnavailable:        "unavailable",
}

// Known reports whether c is an error code of this protocol version.
func (c Code) Known() bool { return c >= CodeMalformed && int(c) < len(codeNames) }

// String returns the code's name, or "Code(n)" for an unknown code.
func (c Code) String() string {
	if c.Known() {
		return codeNames[c]
	}
	return fmt.Sprintf("Code(%d)", uint16(c))
}
