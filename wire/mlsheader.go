package wire

import (
	"golang.org/x/crypto/cryptobyte"
)

// The few MLSMessage fields the exchange reads (RFC 9420 §6). They are repeated here,
// numbers and all, so that the exchange needs no MLS implementation.
const (
	mlsVersion10 = 1 // ProtocolVersion mls10

	WireFormatPublicMessage  uint16 = 1 // mls_public_message
	WireFormatPrivateMessage uint16 = 2 // mls_private_message
	WireFormatWelcome        uint16 = 3 // mls_welcome
	WireFormatGroupInfo      uint16 = 4 // mls_group_info
	WireFormatKeyPackage     uint16 = 5 // mls_key_package

	ContentTypeApplication uint8 = 1 // application
	ContentTypeProposal    uint8 = 2 // proposal
	ContentTypeCommit      uint8 = 3 // commit

	senderTypeMember            = 1
	senderTypeExternal          = 2
	senderTypeNewMemberProposal = 3
	senderTypeNewMemberCommit   = 4
)

// MLSHeader is what the exchange may learn from a Send payload without any key: the
// unencrypted prefix of a PublicMessage or PrivateMessage (RFC 9420 §6.2, §6.3).
//
//	struct {
//	    ProtocolVersion version = mls10;
//	    WireFormat wire_format;
//	    select (MLSMessage.wire_format) {
//	        case mls_public_message:              /* FramedContent prefix */
//	            opaque group_id<V>;
//	            uint64 epoch;
//	            Sender sender;
//	            opaque authenticated_data<V>;
//	            ContentType content_type;
//	        case mls_private_message:
//	            opaque group_id<V>;
//	            uint64 epoch;
//	            ContentType content_type;
//	    };
//	    ...                                       /* not read */
//	} MLSMessage;
//
// For the other wire formats (Welcome, GroupInfo, KeyPackage) only WireFormat is set.
type MLSHeader struct {
	WireFormat  uint16
	GroupID     GroupID
	Epoch       uint64
	ContentType uint8
}

// IsCommit reports whether the message is a commit, the only kind the exchange
// sequences.
func (h *MLSHeader) IsCommit() bool {
	return (h.WireFormat == WireFormatPublicMessage || h.WireFormat == WireFormatPrivateMessage) &&
		h.ContentType == ContentTypeCommit
}

// ParseMLSHeader reads the header fields of an MLSMessage. It does not check the rest
// of the message, which only the group's members can. The exchange compares the result
// with a Send's group ID, epoch and commit flag and refuses a mismatch, so a device
// cannot have one commit sequenced under another group or epoch than it carries.
func ParseMLSHeader(payload []byte) (MLSHeader, error) {
	var h MLSHeader
	s := cryptobyte.String(payload)
	var version uint16
	if !s.ReadUint16(&version) || version != mlsVersion10 || !s.ReadUint16(&h.WireFormat) {
		return MLSHeader{}, decodeError("MLSMessage header")
	}
	switch h.WireFormat {
	case WireFormatPublicMessage:
		var sender uint8
		var ad cryptobyte.String
		if !readGroupID(&s, &h.GroupID) || !s.ReadUint64(&h.Epoch) || !s.ReadUint8(&sender) {
			return MLSHeader{}, decodeError("PublicMessage header")
		}
		switch sender {
		case senderTypeMember, senderTypeExternal:
			var index uint32
			if !s.ReadUint32(&index) {
				return MLSHeader{}, decodeError("PublicMessage sender")
			}
		case senderTypeNewMemberProposal, senderTypeNewMemberCommit:
		default:
			return MLSHeader{}, decodeError("PublicMessage sender type")
		}
		if !readVector(&s, &ad) || !s.ReadUint8(&h.ContentType) {
			return MLSHeader{}, decodeError("PublicMessage header")
		}
	case WireFormatPrivateMessage:
		if !readGroupID(&s, &h.GroupID) || !s.ReadUint64(&h.Epoch) || !s.ReadUint8(&h.ContentType) {
			return MLSHeader{}, decodeError("PrivateMessage header")
		}
	case WireFormatWelcome, WireFormatGroupInfo, WireFormatKeyPackage:
		return h, nil
	default:
		return MLSHeader{}, decodeError("MLSMessage wire format")
	}
	if h.ContentType < ContentTypeApplication || h.ContentType > ContentTypeCommit {
		return MLSHeader{}, decodeError("MLSMessage content type")
	}
	return h, nil
}
