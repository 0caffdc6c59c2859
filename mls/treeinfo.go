package mls

import (
	"golang.org/x/crypto/cryptobyte"
)

// Views of trees and external senders that the interop harness and applications
// use: the tree of a pending commit, a look at a tree received out of band, and
// single ExternalSender encoding.

// PendingRatchetTree returns the ratchet_tree extension data of the epoch this
// member's pending commit leads to, for giving to joiners out of band; ok is false
// when no commit is pending.
func (g *Group) PendingRatchetTree() (tree []byte, ok bool) {
	if g.pending == nil {
		return nil, false
	}
	return g.pending.next.RatchetTree(), true
}

// RatchetTreeMembers parses ratchet_tree extension data (RFC 9420 §12.4.3.3) and
// returns its occupied leaves in leaf order. It checks only the encoding, not the
// tree: use it to find a leaf, never to trust one.
func RatchetTreeMembers(data []byte) ([]Member, error) {
	t, err := unmarshalRatchetTree(data)
	if err != nil {
		return nil, err
	}
	var out []Member
	for l, leaf := range t.members() {
		out = append(out, Member{Leaf: l, Credential: leaf.Credential, SignatureKey: leaf.SignatureKey, LeafNode: leaf})
	}
	return out, nil
}

// MarshalExternalSender encodes one ExternalSender (RFC 9420 §12.1.8.1), the form in
// which a prospective external sender hands itself to a group member.
func MarshalExternalSender(s ExternalSender) []byte {
	var b cryptobyte.Builder
	addOpaque(&b, s.SignatureKey)
	s.Credential.marshal(&b)
	return b.BytesOrPanic()
}

// UnmarshalExternalSender decodes one ExternalSender (RFC 9420 §12.1.8.1).
func UnmarshalExternalSender(data []byte) (ExternalSender, error) {
	var s ExternalSender
	err := decodeAll(data, "ExternalSender", func(str *cryptobyte.String) bool {
		return readOpaque(str, (*[]byte)(&s.SignatureKey)) && s.Credential.unmarshal(str)
	})
	return s, err
}
