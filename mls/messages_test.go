package mls

import (
	"bytes"
	"fmt"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

// messagesVector is one case of messages.json: one encoding of each structure.
// The vectors test the codec only; their signatures and MACs need not verify.
type messagesVector struct {
	MLSWelcome                     hexBytes `json:"mls_welcome"`
	MLSGroupInfo                   hexBytes `json:"mls_group_info"`
	MLSKeyPackage                  hexBytes `json:"mls_key_package"`
	RatchetTree                    hexBytes `json:"ratchet_tree"`
	GroupSecrets                   hexBytes `json:"group_secrets"`
	AddProposal                    hexBytes `json:"add_proposal"`
	UpdateProposal                 hexBytes `json:"update_proposal"`
	RemoveProposal                 hexBytes `json:"remove_proposal"`
	PreSharedKeyProposal           hexBytes `json:"pre_shared_key_proposal"`
	ReInitProposal                 hexBytes `json:"re_init_proposal"`
	ExternalInitProposal           hexBytes `json:"external_init_proposal"`
	GroupContextExtensionsProposal hexBytes `json:"group_context_extensions_proposal"`
	Commit                         hexBytes `json:"commit"`
	PublicMessageApplication       hexBytes `json:"public_message_application"`
	PublicMessageProposal          hexBytes `json:"public_message_proposal"`
	PublicMessageCommit            hexBytes `json:"public_message_commit"`
	PrivateMessage                 hexBytes `json:"private_message"`
}

// messageField is one field of messagesVector with the decoder its bytes must
// go through: reencode parses the bytes completely and serializes the result.
type messageField struct {
	name     string
	get      func(v *messagesVector) []byte
	reencode func(data []byte) ([]byte, error)
}

var messageFields = []messageField{
	{"mls_welcome", func(v *messagesVector) []byte { return v.MLSWelcome }, reencodeMLSMessage(WireFormatWelcome, 0)},
	{"mls_group_info", func(v *messagesVector) []byte { return v.MLSGroupInfo }, reencodeMLSMessage(WireFormatGroupInfo, 0)},
	{"mls_key_package", func(v *messagesVector) []byte { return v.MLSKeyPackage }, reencodeMLSMessage(WireFormatKeyPackage, 0)},
	{"ratchet_tree", func(v *messagesVector) []byte { return v.RatchetTree }, reencodeRatchetTree},
	{"group_secrets", func(v *messagesVector) []byte { return v.GroupSecrets }, reencodeAs[GroupSecrets]("GroupSecrets")},
	{"add_proposal", func(v *messagesVector) []byte { return v.AddProposal }, reencodeProposalBody(ProposalTypeAdd)},
	{"update_proposal", func(v *messagesVector) []byte { return v.UpdateProposal }, reencodeProposalBody(ProposalTypeUpdate)},
	{"remove_proposal", func(v *messagesVector) []byte { return v.RemoveProposal }, reencodeProposalBody(ProposalTypeRemove)},
	{"pre_shared_key_proposal", func(v *messagesVector) []byte { return v.PreSharedKeyProposal }, reencodeProposalBody(ProposalTypePSK)},
	{"re_init_proposal", func(v *messagesVector) []byte { return v.ReInitProposal }, reencodeProposalBody(ProposalTypeReInit)},
	{"external_init_proposal", func(v *messagesVector) []byte { return v.ExternalInitProposal }, reencodeProposalBody(ProposalTypeExternalInit)},
	{"group_context_extensions_proposal", func(v *messagesVector) []byte { return v.GroupContextExtensionsProposal }, reencodeProposalBody(ProposalTypeGroupContextExtensions)},
	{"commit", func(v *messagesVector) []byte { return v.Commit }, reencodeAs[Commit]("Commit")},
	{"public_message_application", func(v *messagesVector) []byte { return v.PublicMessageApplication }, reencodeMLSMessage(WireFormatPublicMessage, ContentTypeApplication)},
	{"public_message_proposal", func(v *messagesVector) []byte { return v.PublicMessageProposal }, reencodeMLSMessage(WireFormatPublicMessage, ContentTypeProposal)},
	{"public_message_commit", func(v *messagesVector) []byte { return v.PublicMessageCommit }, reencodeMLSMessage(WireFormatPublicMessage, ContentTypeCommit)},
	{"private_message", func(v *messagesVector) []byte { return v.PrivateMessage }, reencodeMLSMessage(WireFormatPrivateMessage, 0)},
}

// codecPtr is a pointer to a structure with a marshal/unmarshal pair.
type codecPtr[T any] interface {
	*T
	marshaler
	unmarshal(s *cryptobyte.String) bool
}

// reencodeAs returns a function that decodes data as a T, rejecting trailing
// bytes, and serializes it again.
func reencodeAs[T any, P codecPtr[T]](what string) func(data []byte) ([]byte, error) {
	return func(data []byte) ([]byte, error) {
		var v T
		if err := decodeAll(data, what, P(&v).unmarshal); err != nil {
			return nil, err
		}
		return encode(P(&v))
	}
}

// reencodeProposalBody returns a function that decodes the body of a proposal of
// type typ (an Add, Update, Remove, ... as messages.json holds them) by prefixing
// its proposal_type and reading a whole Proposal, then serializes the body again.
func reencodeProposalBody(typ ProposalType) func(body []byte) ([]byte, error) {
	return func(body []byte) ([]byte, error) {
		data := append([]byte{byte(typ >> 8), byte(typ)}, body...)
		var p Proposal
		if err := decodeAll(data, "Proposal", p.unmarshal); err != nil {
			return nil, err
		}
		if p.Type != typ {
			return nil, fmt.Errorf("decoded a proposal of type %d, want %d", p.Type, typ)
		}
		out, err := encode(&p)
		if err != nil {
			return nil, err
		}
		return out[2:], nil
	}
}

// reencodeMLSMessage returns a function that decodes an MLSMessage, checks that it
// has wire format wf (and for PublicMessages content type ct), and serializes it.
func reencodeMLSMessage(wf WireFormat, ct ContentType) func(data []byte) ([]byte, error) {
	return func(data []byte) ([]byte, error) {
		m, err := UnmarshalMLSMessage(data)
		if err != nil {
			return nil, err
		}
		if m.WireFormat != wf {
			return nil, fmt.Errorf("wire format %d, want %d", m.WireFormat, wf)
		}
		if wf == WireFormatPublicMessage && m.PublicMessage.Content.ContentType != ct {
			return nil, fmt.Errorf("content type %d, want %d", m.PublicMessage.Content.ContentType, ct)
		}
		return encode(m)
	}
}

// reencodeRatchetTree decodes ratchet_tree extension data with the decoder a
// joiner uses and encodes the tree again.
func reencodeRatchetTree(data []byte) ([]byte, error) {
	t, err := UnmarshalRatchetTree(data)
	if err != nil {
		return nil, err
	}
	return MarshalRatchetTree(t)
}

// firstDifference describes where got departs from want.
func firstDifference(got, want []byte) string {
	n := min(len(got), len(want))
	for i := range n {
		if got[i] != want[i] {
			return fmt.Sprintf("byte %d is %02x, want %02x (lengths %d and %d)", i, got[i], want[i], len(got), len(want))
		}
	}
	return fmt.Sprintf("lengths %d and %d, equal up to %d", len(got), len(want), n)
}

func TestMessagesVectors(t *testing.T) {
	cases := loadVectors[messagesVector](t, "messages.json")
	c := vectorCount{name: "messages.json"}
	defer c.report(t)
	for i := range cases {
		v := &cases[i]
		c.run(t, fmt.Sprint(i), func(t *testing.T) {
			for _, f := range messageFields {
				t.Run(f.name, func(t *testing.T) {
					data := f.get(v)
					if len(data) == 0 {
						t.Fatalf("%s is missing from the vector", f.name)
					}
					out, err := f.reencode(data)
					if err != nil {
						t.Fatalf("decoding: %v", err)
					}
					if !bytes.Equal(out, data) {
						t.Errorf("re-encoding differs: %s", firstDifference(out, data))
					}
				})
			}
		})
	}
}
