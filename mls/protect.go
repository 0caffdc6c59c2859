package mls

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
)

// Message framing and protection of RFC 9420 §6: content authentication (§6.1),
// PublicMessage and its membership tag (§6.2), PrivateMessage encryption (§6.3), and
// proposal references (§5.2).
//
// The functions here do not check a message's group_id and epoch against the group
// (checkGroupEpoch does), nor look up the sender's signature key: the caller owns the
// group state and passes what it knows.

// labelFramedContentTBS is the SignWithLabel label of RFC 9420 §6.1.
const labelFramedContentTBS = "FramedContentTBS"

// DefaultPaddingBlock is the block size PrivateMessageContent is padded to a multiple
// of when the caller does not choose one: it hides the exact length of short messages
// at a cost of at most 31 bytes.
const DefaultPaddingBlock = 32

// Errors of message protection. None of them carries key material or plaintext.
var (
	// ErrMembershipTag is returned when a PublicMessage from a member carries a
	// membership_tag that does not match the one computed with the epoch's
	// membership_key: the sender is not a member of this epoch, or the message was
	// altered.
	ErrMembershipTag = errors.New("mls: invalid membership tag")
	// ErrPadding is returned when the padding of a decrypted PrivateMessageContent
	// contains a non-zero byte (RFC 9420 §6.3.1).
	ErrPadding = errors.New("mls: non-zero padding in PrivateMessage")
	// ErrUnknownSender is returned when a PrivateMessage's decrypted sender data
	// names a leaf that is outside the tree or blank.
	ErrUnknownSender = errors.New("mls: sender is not a member of the group")
	// ErrUnencryptedApplication is returned when application data is to be sent, or
	// is received, as a PublicMessage: RFC 9420 §6.2 allows only handshake content in
	// a PublicMessage.
	ErrUnencryptedApplication = errors.New("mls: application data in a PublicMessage")
)

// checkGroupEpoch returns ErrWrongGroup when a message's group_id is not the group's
// and ErrWrongEpoch when its epoch is not the group's current one. Group identifiers
// are public, so comparing them in variable time leaks nothing.
func checkGroupEpoch(gc *GroupContext, groupID GroupID, epoch uint64) error {
	if string(groupID) != string(gc.GroupID) {
		return ErrWrongGroup
	}
	if epoch != gc.Epoch {
		return fmt.Errorf("%w: got %d, group is at %d", ErrWrongEpoch, epoch, gc.Epoch)
	}
	return nil
}

// --- Content authentication (RFC 9420 §6.1) ---

// groupContextIncluded reports whether FramedContentTBS carries the GroupContext for
// a sender of type t: members and new members committing sign the group's state;
// external senders and new members proposing do not know it.
func groupContextIncluded(t SenderType) bool {
	return t == SenderTypeMember || t == SenderTypeNewMemberCommit
}

// marshalFramedContentTBS writes RFC 9420 §6.1:
//
//	struct {
//	    ProtocolVersion version = mls10;
//	    WireFormat wire_format;
//	    FramedContent content;
//	    select (FramedContentTBS.content.sender.sender_type) {
//	        case member:
//	        case new_member_commit:
//	            GroupContext context;
//	        case external:
//	        case new_member_proposal:
//	            struct{};
//	    };
//	} FramedContentTBS;
//
// groupContext is the serialized GroupContext; it is written only for the sender
// types that include it, and must then be present.
func marshalFramedContentTBS(b *cryptobyte.Builder, wf WireFormat, content *FramedContent, groupContext []byte) {
	b.AddUint16(uint16(ProtocolVersionMLS10))
	b.AddUint16(uint16(wf))
	content.marshal(b)
	if groupContextIncluded(content.Sender.Type) {
		if len(groupContext) == 0 {
			b.SetError(errors.New("mls: FramedContentTBS: the sender type requires the group context"))
			return
		}
		b.AddBytes(groupContext)
	}
}

// framedContentTBS returns the serialized FramedContentTBS of content sent in wire
// format wf. groupContext is the serialized GroupContext of the epoch, or nil for
// external and new_member_proposal senders (for which it is ignored).
func framedContentTBS(wf WireFormat, content *FramedContent, groupContext []byte) ([]byte, error) {
	var b cryptobyte.Builder
	marshalFramedContentTBS(&b, wf, content, groupContext)
	return b.Bytes()
}

// checkWireFormat enforces the content types each wire format may carry, and the
// senders a PrivateMessage may have (RFC 9420 §6.2, §6.3: only members encrypt).
func checkWireFormat(wf WireFormat, content *FramedContent) error {
	switch wf {
	case WireFormatPublicMessage:
		if content.ContentType == ContentTypeApplication {
			return ErrUnencryptedApplication
		}
	case WireFormatPrivateMessage:
		if content.Sender.Type != SenderTypeMember {
			return errors.New("mls: only members can send a PrivateMessage")
		}
	default:
		return fmt.Errorf("mls: wire format %d does not carry framed content", wf)
	}
	switch content.ContentType {
	case ContentTypeApplication, ContentTypeProposal, ContentTypeCommit:
		return nil
	}
	return fmt.Errorf("mls: unknown content type %d", content.ContentType)
}

// signFramedContent signs content for sending in wire format wf and returns the
// AuthenticatedContent (RFC 9420 §6.1):
//
//	signature = SignWithLabel(., "FramedContentTBS", FramedContentTBS)
//
// groupContext is as for framedContentTBS. For a commit, the caller sets
// Auth.ConfirmationTag afterwards: it depends on the signature through the confirmed
// transcript hash. Application content may only be signed for a PrivateMessage.
func signFramedContent(cs CipherSuite, key *SignaturePrivateKey, wf WireFormat, content *FramedContent, groupContext []byte, rand io.Reader) (*AuthenticatedContent, error) {
	if err := checkWireFormat(wf, content); err != nil {
		return nil, err
	}
	tbs, err := framedContentTBS(wf, content, groupContext)
	if err != nil {
		return nil, err
	}
	sig, err := cs.SignWithLabel(key, labelFramedContentTBS, tbs, rand)
	if err != nil {
		return nil, err
	}
	return &AuthenticatedContent{WireFormat: wf, Content: *content, Auth: FramedContentAuthData{Signature: sig}}, nil
}

// verifyFramedContent checks the signature of ac with the sender's public key pub
// (RFC 9420 §6.1), returning an error wrapping ErrSignature when it does not verify.
// groupContext is as for framedContentTBS.
func verifyFramedContent(cs CipherSuite, pub SignaturePublicKey, ac *AuthenticatedContent, groupContext []byte) error {
	if err := checkWireFormat(ac.WireFormat, &ac.Content); err != nil {
		return err
	}
	tbs, err := framedContentTBS(ac.WireFormat, &ac.Content, groupContext)
	if err != nil {
		return err
	}
	if err := cs.VerifyWithLabel(pub, labelFramedContentTBS, tbs, ac.Auth.Signature); err != nil {
		return fmt.Errorf("%w: FramedContentTBS", err)
	}
	return nil
}

// --- PublicMessage (RFC 9420 §6.2) ---

// authenticatedContentTBM returns RFC 9420 §6.2:
//
//	struct {
//	  FramedContentTBS content_tbs;
//	  FramedContentAuthData auth;
//	} AuthenticatedContentTBM;
func authenticatedContentTBM(ac *AuthenticatedContent, groupContext []byte) ([]byte, error) {
	var b cryptobyte.Builder
	marshalFramedContentTBS(&b, ac.WireFormat, &ac.Content, groupContext)
	ac.Auth.marshal(&b, ac.Content.ContentType)
	return b.Bytes()
}

// membershipTag computes RFC 9420 §6.2:
//
//	membership_tag = MAC(membership_key, AuthenticatedContentTBM)
//
// for ac, a PublicMessage from a member, under the epoch's membership_key and
// serialized GroupContext. It returns nil when ac cannot be encoded (which
// signFramedContent has already ruled out), so that no valid tag results.
func membershipTag(cs CipherSuite, membershipKey MembershipKey, ac *AuthenticatedContent, groupContext []byte) []byte {
	tbm, err := authenticatedContentTBM(ac, groupContext)
	if err != nil {
		return nil
	}
	return cs.MAC(membershipKey, tbm)
}

// verifyMembershipTag checks tag against the membership tag of ac in constant time,
// returning ErrMembershipTag on mismatch.
func verifyMembershipTag(cs CipherSuite, membershipKey MembershipKey, ac *AuthenticatedContent, groupContext, tag []byte) error {
	want := membershipTag(cs, membershipKey, ac, groupContext)
	if want == nil || !constantTimeEqual(want, tag) {
		return ErrMembershipTag
	}
	return nil
}

// newPublicMessage frames ac, signed for WireFormatPublicMessage, as a PublicMessage,
// adding the membership tag when the sender is a member. Application content is
// refused with ErrUnencryptedApplication.
func newPublicMessage(cs CipherSuite, ac *AuthenticatedContent, membershipKey MembershipKey, groupContext []byte) (*PublicMessage, error) {
	if ac.WireFormat != WireFormatPublicMessage {
		return nil, errors.New("mls: content was not signed for a PublicMessage")
	}
	if err := checkWireFormat(ac.WireFormat, &ac.Content); err != nil {
		return nil, err
	}
	if ac.Content.ContentType == ContentTypeCommit && len(ac.Auth.ConfirmationTag) == 0 {
		return nil, errors.New("mls: commit without a confirmation tag")
	}
	pm := &PublicMessage{Content: ac.Content, Auth: ac.Auth}
	if ac.Content.Sender.Type == SenderTypeMember {
		pm.MembershipTag = membershipTag(cs, membershipKey, ac, groupContext)
		if pm.MembershipTag == nil {
			return nil, errors.New("mls: content cannot be encoded")
		}
	}
	return pm, nil
}

// publicMessageContent returns the AuthenticatedContent of a received PublicMessage
// after checking what can be checked without the sender's key: the content type is
// one the sender type may send (RFC 9420 §6.2, §12.1.8, §12.4.3.2), and for a member,
// the membership tag. The caller then verifies the signature with
// verifyFramedContent.
func publicMessageContent(cs CipherSuite, pm *PublicMessage, membershipKey MembershipKey, groupContext []byte) (*AuthenticatedContent, error) {
	ac := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: pm.Content, Auth: pm.Auth}
	if err := checkWireFormat(ac.WireFormat, &ac.Content); err != nil {
		return nil, err
	}
	ct := pm.Content.ContentType
	switch pm.Content.Sender.Type {
	case SenderTypeMember:
		if err := verifyMembershipTag(cs, membershipKey, ac, groupContext, pm.MembershipTag); err != nil {
			return nil, err
		}
	case SenderTypeExternal, SenderTypeNewMemberProposal:
		if ct != ContentTypeProposal {
			return nil, fmt.Errorf("mls: sender type %d can only send proposals", pm.Content.Sender.Type)
		}
	case SenderTypeNewMemberCommit:
		if ct != ContentTypeCommit {
			return nil, errors.New("mls: a new_member_commit sender can only send a commit")
		}
	default:
		return nil, fmt.Errorf("mls: unknown sender type %d", pm.Content.Sender.Type)
	}
	return ac, nil
}

// --- PrivateMessage (RFC 9420 §6.3) ---

// ratchetFor returns the secret-tree ratchet that protects content of type ct
// (RFC 9420 §6.3.1): application data has its own, proposals and commits share the
// handshake ratchet.
func ratchetFor(ct ContentType) ratchetType {
	if ct == ContentTypeApplication {
		return applicationRatchet
	}
	return handshakeRatchet
}

// privateContentAAD is RFC 9420 §6.3.1:
//
//	struct {
//	    opaque group_id<V>;
//	    uint64 epoch;
//	    ContentType content_type;
//	    opaque authenticated_data<V>;
//	} PrivateContentAAD;
type privateContentAAD struct {
	GroupID           GroupID
	Epoch             uint64
	ContentType       ContentType
	AuthenticatedData []byte
}

func (a *privateContentAAD) marshal(b *cryptobyte.Builder) {
	addOpaque(b, a.GroupID)
	b.AddUint64(a.Epoch)
	b.AddUint8(uint8(a.ContentType))
	addOpaque(b, a.AuthenticatedData)
}

// senderData is RFC 9420 §6.3.2:
//
//	struct {
//	    uint32 leaf_index;
//	    uint32 generation;
//	    opaque reuse_guard[4];
//	} SenderData;
type senderData struct {
	LeafIndex  LeafIndex
	Generation uint32
	ReuseGuard [reuseGuardLen]byte
}

func (d *senderData) marshal(b *cryptobyte.Builder) {
	b.AddUint32(uint32(d.LeafIndex))
	b.AddUint32(d.Generation)
	b.AddBytes(d.ReuseGuard[:])
}

func (d *senderData) unmarshal(s *cryptobyte.String) bool {
	return s.ReadUint32((*uint32)(&d.LeafIndex)) && s.ReadUint32(&d.Generation) && s.CopyBytes(d.ReuseGuard[:])
}

// senderDataAAD is RFC 9420 §6.3.2:
//
//	struct {
//	    opaque group_id<V>;
//	    uint64 epoch;
//	    ContentType content_type;
//	} SenderDataAAD;
type senderDataAAD struct {
	GroupID     GroupID
	Epoch       uint64
	ContentType ContentType
}

func (a *senderDataAAD) marshal(b *cryptobyte.Builder) {
	addOpaque(b, a.GroupID)
	b.AddUint64(a.Epoch)
	b.AddUint8(uint8(a.ContentType))
}

// aeadOverhead is the tag size of every AEAD MLS uses (AES-GCM, ChaCha20-Poly1305).
const aeadOverhead = 16

// marshalPrivateMessageContent returns RFC 9420 §6.3.1:
//
//	struct {
//	    select (PrivateMessage.content_type) {
//	        case application:
//	          opaque application_data<V>;
//	        case proposal:
//	          Proposal proposal;
//	        case commit:
//	          Commit commit;
//	    };
//
//	    FramedContentAuthData auth;
//	    opaque padding[length_of_padding];
//	} PrivateMessageContent;
//
// with zero padding up to the next multiple of block bytes, in a buffer with room
// for the AEAD tag so that it can be sealed in place.
func marshalPrivateMessageContent(ac *AuthenticatedContent, block int) ([]byte, error) {
	if block <= 0 {
		block = DefaultPaddingBlock
	}
	// Size the buffer for the common case (application data) so that building,
	// padding and sealing take one allocation.
	est := len(ac.Content.ApplicationData) + len(ac.Auth.Signature) + len(ac.Auth.ConfirmationTag) + 16
	b := cryptobyte.NewBuilder(make([]byte, 0, est+block+aeadOverhead))
	ac.Content.marshalBody(b)
	ac.Auth.marshal(b, ac.Content.ContentType)
	pt, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	n := len(pt)
	padded := (n + block - 1) / block * block
	if cap(pt) < padded+aeadOverhead {
		pt = append(make([]byte, 0, padded+aeadOverhead), pt...)
	}
	pt = pt[:padded]
	clear(pt[n:])
	return pt, nil
}

// unmarshalPrivateMessageContent parses a decrypted PrivateMessageContent of type ct
// into content and auth, returning ErrPadding when the padding is not all zero.
func unmarshalPrivateMessageContent(pt []byte, content *FramedContent, auth *FramedContentAuthData) error {
	s := cryptobyte.String(pt)
	if !content.unmarshalBody(&s) || !auth.unmarshal(&s, content.ContentType) {
		return decodeError("PrivateMessageContent")
	}
	var nonZero byte
	for _, c := range s {
		nonZero |= c
	}
	if nonZero != 0 {
		return ErrPadding
	}
	return nil
}

// encryptPrivateMessage encrypts ac, signed by a member for WireFormatPrivateMessage,
// as a PrivateMessage (RFC 9420 §6.3). It takes the next key and nonce of the
// sender's ratchet in the secret tree (application or handshake, by content type),
// pads the content with zeros to a multiple of paddingBlock bytes
// (DefaultPaddingBlock if paddingBlock <= 0), draws the reuse_guard from rand, and
// encrypts the sender data under keys derived from sender_data_secret and the
// ciphertext sample.
func encryptPrivateMessage(cs CipherSuite, st *secretTree, senderDataSecret []byte, ac *AuthenticatedContent, paddingBlock int, rand io.Reader) (*PrivateMessage, error) {
	if ac.WireFormat != WireFormatPrivateMessage {
		return nil, errors.New("mls: content was not signed for a PrivateMessage")
	}
	if err := checkWireFormat(ac.WireFormat, &ac.Content); err != nil {
		return nil, err
	}
	ct := ac.Content.ContentType
	if ct == ContentTypeCommit && len(ac.Auth.ConfirmationTag) == 0 {
		return nil, errors.New("mls: commit without a confirmation tag")
	}
	pt, err := marshalPrivateMessageContent(ac, paddingBlock)
	if err != nil {
		return nil, err
	}
	return sealPrivateMessage(cs, st, senderDataSecret, &ac.Content, pt, rand)
}

// sealPrivateMessage encrypts pt, a serialized and padded PrivateMessageContent
// whose header fields and sender are those of content, into a PrivateMessage. pt's
// buffer is overwritten with the ciphertext.
func sealPrivateMessage(cs CipherSuite, st *secretTree, senderDataSecret []byte, content *FramedContent, pt []byte, rand io.Reader) (*PrivateMessage, error) {
	ct := content.ContentType
	sd := senderData{LeafIndex: content.Sender.LeafIndex}
	if _, err := io.ReadFull(rand, sd.ReuseGuard[:]); err != nil {
		return nil, fmt.Errorf("mls: reading reuse_guard: %w", err)
	}
	aad, err := encode(&privateContentAAD{
		GroupID:           content.GroupID,
		Epoch:             content.Epoch,
		ContentType:       ct,
		AuthenticatedData: content.AuthenticatedData,
	})
	if err != nil {
		return nil, err
	}
	generation, key, nonce, err := st.next(sd.LeafIndex, ratchetFor(ct))
	if err != nil {
		return nil, err
	}
	sd.Generation = generation
	guarded := applyReuseGuard(nonce, sd.ReuseGuard)
	ciphertext, err := sealInPlace(cs, key, guarded, aad, pt)
	clear(key)
	clear(nonce)
	clear(guarded)
	if err != nil {
		return nil, err
	}

	sdKey, sdNonce := senderDataKeyNonce(cs, senderDataSecret, ciphertext)
	sdAAD := mustEncode(&senderDataAAD{GroupID: content.GroupID, Epoch: content.Epoch, ContentType: ct})
	encSenderData, err := cs.seal(sdKey, sdNonce, sdAAD, mustEncode(&sd))
	clear(sdKey)
	if err != nil {
		return nil, err
	}
	return &PrivateMessage{
		GroupID:             content.GroupID,
		Epoch:               content.Epoch,
		ContentType:         ct,
		AuthenticatedData:   content.AuthenticatedData,
		EncryptedSenderData: encSenderData,
		Ciphertext:          ciphertext,
	}, nil
}

// sealInPlace encrypts pt with the suite's AEAD into pt's own buffer.
func sealInPlace(cs CipherSuite, key, nonce, aad, pt []byte) ([]byte, error) {
	a, err := cs.newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(nonce) != a.NonceSize() {
		return nil, errors.New("mls: wrong nonce length")
	}
	return a.Seal(pt[:0], nonce, pt, aad), nil
}

// decryptPrivateMessage decrypts pm (RFC 9420 §6.3) and returns its content as an
// AuthenticatedContent with wire format PrivateMessage, whose sender is the member
// named by the sender data. isMember reports whether a leaf index is inside the tree
// and not blank; a sender for which it is false gives ErrUnknownSender.
//
// The caller has checked pm's group_id and epoch (checkGroupEpoch) and verifies the
// signature afterwards (verifyFramedContent). Errors are ErrDecrypt for ciphertexts
// that do not authenticate, ErrPadding, ErrUnknownSender, the secret tree's
// ErrGenerationUsed (a replay) and ErrGenerationOutOfWindow, or wrap ErrDecode.
func decryptPrivateMessage(cs CipherSuite, st *secretTree, senderDataSecret []byte, pm *PrivateMessage, isMember func(LeafIndex) bool) (*AuthenticatedContent, error) {
	return decryptPrivateMessageVerified(cs, st, senderDataSecret, pm, isMember, nil)
}

// decryptPrivateMessageVerified is decryptPrivateMessage with a check of the
// decrypted content (the sender's signature) before the generation's key is spent:
// if verify fails, the key is put back, so a frame forged by one member cannot
// make another member's genuine message unreadable.
func decryptPrivateMessageVerified(cs CipherSuite, st *secretTree, senderDataSecret []byte, pm *PrivateMessage, isMember func(LeafIndex) bool, verify func(*AuthenticatedContent) error) (*AuthenticatedContent, error) {
	ct := pm.ContentType
	switch ct {
	case ContentTypeApplication, ContentTypeProposal, ContentTypeCommit:
	default:
		return nil, decodeError("PrivateMessage content type")
	}

	// Sender data (§6.3.2).
	sdKey, sdNonce := senderDataKeyNonce(cs, senderDataSecret, pm.Ciphertext)
	sdAAD := mustEncode(&senderDataAAD{GroupID: pm.GroupID, Epoch: pm.Epoch, ContentType: ct})
	sdPlain, err := cs.open(sdKey, sdNonce, sdAAD, pm.EncryptedSenderData)
	clear(sdKey)
	if err != nil {
		return nil, fmt.Errorf("%w: sender data", ErrDecrypt)
	}
	var sd senderData
	if err := decodeAll(sdPlain, "SenderData", sd.unmarshal); err != nil {
		return nil, err
	}
	if isMember == nil || !isMember(sd.LeafIndex) {
		return nil, ErrUnknownSender
	}

	// Content (§6.3.1).
	key, nonce, err := st.keyNonce(sd.LeafIndex, ratchetFor(ct), sd.Generation)
	if err != nil {
		return nil, err
	}
	aad, err := encode(&privateContentAAD{
		GroupID:           pm.GroupID,
		Epoch:             pm.Epoch,
		ContentType:       ct,
		AuthenticatedData: pm.AuthenticatedData,
	})
	if err != nil {
		return nil, err
	}
	guarded := applyReuseGuard(nonce, sd.ReuseGuard)
	pt, err := cs.open(key, guarded, aad, pm.Ciphertext)
	clear(guarded)
	defer func() {
		clear(key)
		clear(nonce)
	}()
	if err != nil {
		st.restore(sd.LeafIndex, ratchetFor(ct), sd.Generation, key, nonce)
		return nil, fmt.Errorf("%w: content", ErrDecrypt)
	}

	ac := &AuthenticatedContent{
		WireFormat: WireFormatPrivateMessage,
		Content: FramedContent{
			GroupID:           pm.GroupID,
			Epoch:             pm.Epoch,
			Sender:            Sender{Type: SenderTypeMember, LeafIndex: sd.LeafIndex},
			AuthenticatedData: pm.AuthenticatedData,
			ContentType:       ct,
		},
	}
	err = unmarshalPrivateMessageContent(pt, &ac.Content, &ac.Auth)
	clear(pt)
	if err == nil && verify != nil {
		err = verify(ac)
	}
	if err != nil {
		st.restore(sd.LeafIndex, ratchetFor(ct), sd.Generation, key, nonce)
		return nil, err
	}
	return ac, nil
}

// --- Proposal references (RFC 9420 §5.2) ---

// makeProposalRef computes RFC 9420 §5.2:
//
//	MakeProposalRef(value) = RefHash("MLS 1.0 Proposal Reference", value)
//
// where value is the serialized AuthenticatedContent carrying the proposal. It
// returns nil when ac cannot be encoded, a reference that matches nothing.
func makeProposalRef(cs CipherSuite, ac *AuthenticatedContent) ProposalRef {
	value, err := encode(ac)
	if err != nil {
		return nil
	}
	return ProposalRef(cs.RefHash(labelProposalRef, value))
}
