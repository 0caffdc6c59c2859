package wire

import (
	"errors"
	"testing"

	"mahfooz/mls"
)

// mlsPayloads builds MLSMessages with the mls package, independent of the parser.
func mlsPayloads(tb testing.TB) map[string][]byte {
	tb.Helper()
	private := &mls.MLSMessage{Version: mls.ProtocolVersionMLS10, WireFormat: mls.WireFormatPrivateMessage,
		PrivateMessage: &mls.PrivateMessage{GroupID: mls.GroupID("group-A"), Epoch: 9, ContentType: mls.ContentTypeCommit,
			AuthenticatedData: []byte("ad"), EncryptedSenderData: []byte{1, 2, 3}, Ciphertext: []byte{4, 5, 6}}}
	public := &mls.MLSMessage{Version: mls.ProtocolVersionMLS10, WireFormat: mls.WireFormatPublicMessage,
		PublicMessage: &mls.PublicMessage{
			Content: mls.FramedContent{GroupID: mls.GroupID("group-B"), Epoch: 1 << 40,
				Sender:            mls.Sender{Type: mls.SenderTypeMember, LeafIndex: 3},
				AuthenticatedData: make([]byte, 70), ContentType: mls.ContentTypeApplication, ApplicationData: []byte("x")},
			Auth:          mls.FramedContentAuthData{Signature: []byte{9}},
			MembershipTag: []byte{8},
		}}
	external := &mls.MLSMessage{Version: mls.ProtocolVersionMLS10, WireFormat: mls.WireFormatPublicMessage,
		PublicMessage: &mls.PublicMessage{
			Content: mls.FramedContent{GroupID: mls.GroupID("group-C"), Epoch: 2,
				Sender: mls.Sender{Type: mls.SenderTypeNewMemberCommit}, ContentType: mls.ContentTypeCommit, Commit: &mls.Commit{}},
			Auth: mls.FramedContentAuthData{Signature: []byte{9}, ConfirmationTag: []byte{7}},
		}}
	return map[string][]byte{"private commit": private.Bytes(), "public application": public.Bytes(), "external commit": external.Bytes()}
}

func TestParseMLSHeader(t *testing.T) {
	p := mlsPayloads(t)
	tests := []struct {
		name   string
		want   MLSHeader
		commit bool
	}{
		{"private commit", MLSHeader{WireFormatPrivateMessage, GroupID("group-A"), 9, ContentTypeCommit}, true},
		{"public application", MLSHeader{WireFormatPublicMessage, GroupID("group-B"), 1 << 40, ContentTypeApplication}, false},
		{"external commit", MLSHeader{WireFormatPublicMessage, GroupID("group-C"), 2, ContentTypeCommit}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseMLSHeader(p[tt.name])
			if err != nil {
				t.Fatal(err)
			}
			if h.WireFormat != tt.want.WireFormat || string(h.GroupID) != string(tt.want.GroupID) ||
				h.Epoch != tt.want.Epoch || h.ContentType != tt.want.ContentType || h.IsCommit() != tt.commit {
				t.Fatalf("got %+v, want %+v", h, tt.want)
			}
		})
	}
	welcome := []byte{0, 1, 0, 3, 0xff}
	if h, err := ParseMLSHeader(welcome); err != nil || h.WireFormat != WireFormatWelcome || h.IsCommit() {
		t.Fatalf("welcome: %+v, %v", h, err)
	}
	for name, bad := range map[string][]byte{
		"empty":          nil,
		"version 2":      {0, 2, 0, 2, 1, 'g', 0, 0, 0, 0, 0, 0, 0, 0, 3},
		"wire format 6":  {0, 1, 0, 6},
		"content type 4": {0, 1, 0, 2, 1, 'g', 0, 0, 0, 0, 0, 0, 0, 0, 4},
		"sender type 5":  {0, 1, 0, 1, 1, 'g', 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 3},
		"truncated":      p["public application"][:20],
	} {
		if _, err := ParseMLSHeader(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}
