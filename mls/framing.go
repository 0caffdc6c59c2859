package mls

import (
	"golang.org/x/crypto/cryptobyte"
)

// ContentType is RFC 9420 §6.
type ContentType uint8

// Content types.
const (
	ContentTypeApplication ContentType = 1
	ContentTypeProposal    ContentType = 2
	ContentTypeCommit      ContentType = 3
)

// SenderType is RFC 9420 §6.
type SenderType uint8

// Sender types.
const (
	SenderTypeMember            SenderType = 1
	SenderTypeExternal          SenderType = 2
	SenderTypeNewMemberProposal SenderType = 3
	SenderTypeNewMemberCommit   SenderType = 4
)

// WireFormat is RFC 9420 §6.
type WireFormat uint16

// Wire formats of RFC 9420 §17.2.
const (
	WireFormatPublicMessage  WireFormat = 1
	WireFormatPrivateMessage WireFormat = 2
	WireFormatWelcome        WireFormat = 3
	WireFormatGroupInfo      WireFormat = 4
	WireFormatKeyPackage     WireFormat = 5
)

// Sender is RFC 9420 §6:
//
//	struct {
//	    SenderType sender_type;
//	    select (Sender.sender_type) {
//	        case member:
//	            uint32 leaf_index;
//	        case external:
//	            uint32 sender_index;
//	        case new_member_commit:
//	        case new_member_proposal:
//	            struct{};
//	    };
//	} Sender;
type Sender struct {
	Type        SenderType
	LeafIndex   LeafIndex // member
	SenderIndex uint32    // external
}

func (s *Sender) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(s.Type))
	switch s.Type {
	case SenderTypeMember:
		b.AddUint32(uint32(s.LeafIndex))
	case SenderTypeExternal:
		b.AddUint32(s.SenderIndex)
	case SenderTypeNewMemberCommit, SenderTypeNewMemberProposal:
	default:
		b.SetError(decodeError("unknown sender type"))
	}
}

func (s *Sender) unmarshal(str *cryptobyte.String) bool {
	*s = Sender{}
	if !str.ReadUint8((*uint8)(&s.Type)) {
		return false
	}
	switch s.Type {
	case SenderTypeMember:
		return str.ReadUint32((*uint32)(&s.LeafIndex))
	case SenderTypeExternal:
		return str.ReadUint32(&s.SenderIndex)
	case SenderTypeNewMemberCommit, SenderTypeNewMemberProposal:
		return true
	}
	return false
}

// FramedContent is RFC 9420 §6:
//
//	struct {
//	    opaque group_id<V>;
//	    uint64 epoch;
//	    Sender sender;
//	    opaque authenticated_data<V>;
//
//	    ContentType content_type;
//	    select (FramedContent.content_type) {
//	        case application:
//	          opaque application_data<V>;
//	        case proposal:
//	          Proposal proposal;
//	        case commit:
//	          Commit commit;
//	    };
//	} FramedContent;
type FramedContent struct {
	GroupID           GroupID
	Epoch             uint64
	Sender            Sender
	AuthenticatedData []byte
	ContentType       ContentType
	ApplicationData   []byte    // application
	Proposal          *Proposal // proposal
	Commit            *Commit   // commit
}

func (c *FramedContent) marshal(b *cryptobyte.Builder) {
	addOpaque(b, c.GroupID)
	b.AddUint64(c.Epoch)
	c.Sender.marshal(b)
	addOpaque(b, c.AuthenticatedData)
	b.AddUint8(uint8(c.ContentType))
	c.marshalBody(b)
}

// marshalBody writes the select on content_type (shared with PrivateMessageContent).
func (c *FramedContent) marshalBody(b *cryptobyte.Builder) {
	switch c.ContentType {
	case ContentTypeApplication:
		addOpaque(b, c.ApplicationData)
	case ContentTypeProposal:
		c.Proposal.marshal(b)
	case ContentTypeCommit:
		c.Commit.marshal(b)
	default:
		b.SetError(decodeError("unknown content type"))
	}
}

func (c *FramedContent) unmarshal(s *cryptobyte.String) bool {
	*c = FramedContent{}
	return readOpaque(s, (*[]byte)(&c.GroupID)) && s.ReadUint64(&c.Epoch) && c.Sender.unmarshal(s) &&
		readOpaque(s, &c.AuthenticatedData) && s.ReadUint8((*uint8)(&c.ContentType)) && c.unmarshalBody(s)
}

func (c *FramedContent) unmarshalBody(s *cryptobyte.String) bool {
	switch c.ContentType {
	case ContentTypeApplication:
		return readOpaque(s, &c.ApplicationData)
	case ContentTypeProposal:
		c.Proposal = new(Proposal)
		return c.Proposal.unmarshal(s)
	case ContentTypeCommit:
		c.Commit = new(Commit)
		return c.Commit.unmarshal(s)
	}
	return false
}

// FramedContentAuthData is RFC 9420 §6.1:
//
//	struct {
//	    /* SignWithLabel(., "FramedContentTBS", FramedContentTBS) */
//	    opaque signature<V>;
//	    select (FramedContent.content_type) {
//	        case commit:
//	            /* MAC(confirmation_key, GroupContext.confirmed_transcript_hash) */
//	            MAC confirmation_tag;
//	        case application:
//	        case proposal:
//	            struct{};
//	    };
//	} FramedContentAuthData;
type FramedContentAuthData struct {
	Signature       []byte
	ConfirmationTag []byte // commit only
}

func (a *FramedContentAuthData) marshal(b *cryptobyte.Builder, ct ContentType) {
	addOpaque(b, a.Signature)
	if ct == ContentTypeCommit {
		addOpaque(b, a.ConfirmationTag)
	}
}

func (a *FramedContentAuthData) unmarshal(s *cryptobyte.String, ct ContentType) bool {
	*a = FramedContentAuthData{}
	if !readOpaque(s, &a.Signature) {
		return false
	}
	if ct == ContentTypeCommit {
		return readOpaque(s, &a.ConfirmationTag)
	}
	return true
}

// AuthenticatedContent is RFC 9420 §6.1:
//
//	struct {
//	    WireFormat wire_format;
//	    FramedContent content;
//	    FramedContentAuthData auth;
//	} AuthenticatedContent;
type AuthenticatedContent struct {
	WireFormat WireFormat
	Content    FramedContent
	Auth       FramedContentAuthData
}

func (a *AuthenticatedContent) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(a.WireFormat))
	a.Content.marshal(b)
	a.Auth.marshal(b, a.Content.ContentType)
}

func (a *AuthenticatedContent) unmarshal(s *cryptobyte.String) bool {
	return s.ReadUint16((*uint16)(&a.WireFormat)) && a.Content.unmarshal(s) && a.Auth.unmarshal(s, a.Content.ContentType)
}

// PublicMessage is RFC 9420 §6.2:
//
//	struct {
//	    FramedContent content;
//	    FramedContentAuthData auth;
//	    select (PublicMessage.content.sender.sender_type) {
//	        case member:
//	            MAC membership_tag;
//	        case external:
//	        case new_member_commit:
//	        case new_member_proposal:
//	            struct{};
//	    };
//	} PublicMessage;
type PublicMessage struct {
	Content       FramedContent
	Auth          FramedContentAuthData
	MembershipTag []byte // member senders only
}

func (m *PublicMessage) marshal(b *cryptobyte.Builder) {
	m.Content.marshal(b)
	m.Auth.marshal(b, m.Content.ContentType)
	if m.Content.Sender.Type == SenderTypeMember {
		addOpaque(b, m.MembershipTag)
	}
}

func (m *PublicMessage) unmarshal(s *cryptobyte.String) bool {
	*m = PublicMessage{}
	if !m.Content.unmarshal(s) || !m.Auth.unmarshal(s, m.Content.ContentType) {
		return false
	}
	if m.Content.Sender.Type == SenderTypeMember {
		return readOpaque(s, &m.MembershipTag)
	}
	return true
}

// PrivateMessage is RFC 9420 §6.3:
//
//	struct {
//	    opaque group_id<V>;
//	    uint64 epoch;
//	    ContentType content_type;
//	    opaque authenticated_data<V>;
//	    opaque encrypted_sender_data<V>;
//	    opaque ciphertext<V>;
//	} PrivateMessage;
type PrivateMessage struct {
	GroupID             GroupID
	Epoch               uint64
	ContentType         ContentType
	AuthenticatedData   []byte
	EncryptedSenderData []byte
	Ciphertext          []byte
}

func (m *PrivateMessage) marshal(b *cryptobyte.Builder) {
	addOpaque(b, m.GroupID)
	b.AddUint64(m.Epoch)
	b.AddUint8(uint8(m.ContentType))
	addOpaque(b, m.AuthenticatedData)
	addOpaque(b, m.EncryptedSenderData)
	addOpaque(b, m.Ciphertext)
}

func (m *PrivateMessage) unmarshal(s *cryptobyte.String) bool {
	*m = PrivateMessage{}
	return readOpaque(s, (*[]byte)(&m.GroupID)) && s.ReadUint64(&m.Epoch) &&
		s.ReadUint8((*uint8)(&m.ContentType)) && m.ContentType >= ContentTypeApplication && m.ContentType <= ContentTypeCommit &&
		readOpaque(s, &m.AuthenticatedData) && readOpaque(s, &m.EncryptedSenderData) && readOpaque(s, &m.Ciphertext)
}

// MLSMessage is RFC 9420 §6:
//
//	struct {
//	    ProtocolVersion version = mls10;
//	    WireFormat wire_format;
//	    select (MLSMessage.wire_format) {
//	        case mls_public_message:
//	            PublicMessage public_message;
//	        case mls_private_message:
//	            PrivateMessage private_message;
//	        case mls_welcome:
//	            Welcome welcome;
//	        case mls_group_info:
//	            GroupInfo group_info;
//	        case mls_key_package:
//	            KeyPackage key_package;
//	    };
//	} MLSMessage;
//
// Exactly the field matching WireFormat is set.
type MLSMessage struct {
	Version        ProtocolVersion
	WireFormat     WireFormat
	PublicMessage  *PublicMessage
	PrivateMessage *PrivateMessage
	Welcome        *Welcome
	GroupInfo      *GroupInfo
	KeyPackage     *KeyPackage
}

func (m *MLSMessage) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(m.Version))
	b.AddUint16(uint16(m.WireFormat))
	switch m.WireFormat {
	case WireFormatPublicMessage:
		m.PublicMessage.marshal(b)
	case WireFormatPrivateMessage:
		m.PrivateMessage.marshal(b)
	case WireFormatWelcome:
		m.Welcome.marshal(b)
	case WireFormatGroupInfo:
		m.GroupInfo.marshal(b)
	case WireFormatKeyPackage:
		m.KeyPackage.marshal(b)
	default:
		b.SetError(decodeError("unknown wire format"))
	}
}

func (m *MLSMessage) unmarshal(s *cryptobyte.String) bool {
	*m = MLSMessage{}
	if !s.ReadUint16((*uint16)(&m.Version)) || m.Version != ProtocolVersionMLS10 || !s.ReadUint16((*uint16)(&m.WireFormat)) {
		return false
	}
	switch m.WireFormat {
	case WireFormatPublicMessage:
		m.PublicMessage = new(PublicMessage)
		return m.PublicMessage.unmarshal(s)
	case WireFormatPrivateMessage:
		m.PrivateMessage = new(PrivateMessage)
		return m.PrivateMessage.unmarshal(s)
	case WireFormatWelcome:
		m.Welcome = new(Welcome)
		return m.Welcome.unmarshal(s)
	case WireFormatGroupInfo:
		m.GroupInfo = new(GroupInfo)
		return m.GroupInfo.unmarshal(s)
	case WireFormatKeyPackage:
		m.KeyPackage = new(KeyPackage)
		return m.KeyPackage.unmarshal(s)
	}
	return false
}

// Bytes returns the serialized message.
func (m *MLSMessage) Bytes() []byte { return mustEncode(m) }

// UnmarshalMLSMessage parses an MLSMessage, rejecting trailing bytes, unknown
// versions and wire formats, and non-minimal length encodings.
func UnmarshalMLSMessage(data []byte) (*MLSMessage, error) {
	var m MLSMessage
	if err := decodeAll(data, "MLSMessage", m.unmarshal); err != nil {
		return nil, err
	}
	return &m, nil
}

// wrap builders for the MLSMessage carriers.

// NewKeyPackageMessage wraps a KeyPackage in an MLSMessage.
func NewKeyPackageMessage(kp *KeyPackage) *MLSMessage {
	return &MLSMessage{Version: ProtocolVersionMLS10, WireFormat: WireFormatKeyPackage, KeyPackage: kp}
}

// NewWelcomeMessage wraps a Welcome in an MLSMessage.
func NewWelcomeMessage(w *Welcome) *MLSMessage {
	return &MLSMessage{Version: ProtocolVersionMLS10, WireFormat: WireFormatWelcome, Welcome: w}
}

// NewGroupInfoMessage wraps a GroupInfo in an MLSMessage.
func NewGroupInfoMessage(gi *GroupInfo) *MLSMessage {
	return &MLSMessage{Version: ProtocolVersionMLS10, WireFormat: WireFormatGroupInfo, GroupInfo: gi}
}
