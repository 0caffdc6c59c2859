package mls

import (
	"errors"

	"golang.org/x/crypto/cryptobyte"
)

// Transcript hashes of RFC 9420 §8.2 and the confirmation tag of §6.1 and §12.4.
//
// Each Commit advances two hashes. The confirmed transcript hash covers the Commit
// up to and including its signature; it goes into the new GroupContext, and the
// confirmation tag (a MAC over it under the new epoch's confirmation_key) proves
// that the committer and the receivers agree on the new epoch. The interim
// transcript hash then adds the confirmation tag, and seeds the next epoch's
// confirmed hash:
//
//	confirmed_transcript_hash_[n] =
//	    Hash(interim_transcript_hash_[n-1] || ConfirmedTranscriptHashInput_[n]);
//	interim_transcript_hash_[n] =
//	    Hash(confirmed_transcript_hash_[n] || InterimTranscriptHashInput_[n]);

// ErrConfirmationTag is returned when a Commit's confirmation_tag does not match
// the MAC of the new confirmed transcript hash under the new epoch's confirmation_key.
var ErrConfirmationTag = errors.New("mls: invalid confirmation tag")

// confirmedTranscriptHashInput is RFC 9420 §8.2:
//
//	struct {
//	    WireFormat wire_format;
//	    FramedContent content; /* with content_type == commit */
//	    opaque signature<V>;
//	} ConfirmedTranscriptHashInput;
type confirmedTranscriptHashInput struct {
	WireFormat WireFormat
	Content    *FramedContent
	Signature  []byte
}

func (in *confirmedTranscriptHashInput) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(in.WireFormat))
	in.Content.marshal(b)
	addOpaque(b, in.Signature)
}

// interimTranscriptHashInput is RFC 9420 §8.2:
//
//	struct {
//	    MAC confirmation_tag;
//	} InterimTranscriptHashInput;
//
// where MAC is opaque MAC<V> (§5.1).
type interimTranscriptHashInput struct {
	ConfirmationTag []byte
}

func (in *interimTranscriptHashInput) marshal(b *cryptobyte.Builder) {
	addOpaque(b, in.ConfirmationTag)
}

// confirmedTranscriptHash returns the confirmed transcript hash of the epoch that
// the Commit in ac creates, given the interim transcript hash of the epoch it was
// sent in (RFC 9420 §8.2). At group creation the interim hash is empty.
func confirmedTranscriptHash(cs CipherSuite, interimBefore []byte, ac *AuthenticatedContent) ([]byte, error) {
	if ac.Content.ContentType != ContentTypeCommit {
		return nil, errors.New("mls: transcript hash of a message that is not a commit")
	}
	input, err := encode(&confirmedTranscriptHashInput{
		WireFormat: ac.WireFormat,
		Content:    &ac.Content,
		Signature:  ac.Auth.Signature,
	})
	if err != nil {
		return nil, err
	}
	h := cs.p().newHash()
	h.Write(interimBefore)
	h.Write(input)
	return h.Sum(nil), nil
}

// interimTranscriptHash returns the interim transcript hash that follows the
// confirmed transcript hash confirmed of a Commit carrying confirmationTag
// (RFC 9420 §8.2).
func interimTranscriptHash(cs CipherSuite, confirmed, confirmationTag []byte) []byte {
	input := mustEncode(&interimTranscriptHashInput{ConfirmationTag: confirmationTag})
	h := cs.p().newHash()
	h.Write(confirmed)
	h.Write(input)
	return h.Sum(nil)
}

// transcriptHashes returns both hashes of the epoch created by the Commit in ac,
// whose confirmation tag must already be set.
func transcriptHashes(cs CipherSuite, interimBefore []byte, ac *AuthenticatedContent) (confirmed, interim []byte, err error) {
	confirmed, err = confirmedTranscriptHash(cs, interimBefore, ac)
	if err != nil {
		return nil, nil, err
	}
	if len(ac.Auth.ConfirmationTag) == 0 {
		return nil, nil, errors.New("mls: commit without a confirmation tag")
	}
	return confirmed, interimTranscriptHash(cs, confirmed, ac.Auth.ConfirmationTag), nil
}

// confirmationTag computes RFC 9420 §6.1:
//
//	confirmation_tag = MAC(confirmation_key, GroupContext.confirmed_transcript_hash)
//
// with the confirmation_key of the epoch the Commit creates.
func confirmationTag(cs CipherSuite, confirmationKey ConfirmationKey, confirmed []byte) []byte {
	return cs.MAC(confirmationKey, confirmed)
}

// verifyConfirmationTag checks tag against the confirmed transcript hash in
// constant time, returning ErrConfirmationTag on mismatch.
func verifyConfirmationTag(cs CipherSuite, confirmationKey ConfirmationKey, confirmed, tag []byte) error {
	if !constantTimeEqual(confirmationTag(cs, confirmationKey, confirmed), tag) {
		return ErrConfirmationTag
	}
	return nil
}
