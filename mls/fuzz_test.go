package mls

import (
	"bytes"
	"testing"
)

// Fuzz tests for every decoder of bytes that come from outside the process. Each is
// seeded from the official vectors and asserts that the decoder never panics and
// that whatever it accepts re-encodes to exactly the bytes it was given: a decoder
// that accepts two encodings of one value would let two members disagree on the
// bytes they hash and sign.

// welcomeVectorMessages returns the KeyPackage and Welcome MLSMessages of welcome.json.
func welcomeVectorMessages(f *testing.F) [][]byte {
	var out [][]byte
	for _, v := range loadVectors[welcomeVector](f, "welcome.json") {
		out = append(out, v.KeyPackage, v.Welcome)
	}
	return out
}

// seedKeyPackages returns serialized KeyPackages (without MLSMessage wrapper) from
// messages.json and welcome.json.
func seedKeyPackages(f *testing.F) [][]byte {
	var out [][]byte
	for _, v := range loadVectors[messagesVector](f, "messages.json") {
		out = append(out, v.AddProposal)
		if m, err := UnmarshalMLSMessage(v.MLSKeyPackage); err == nil {
			out = append(out, m.KeyPackage.Bytes())
		}
	}
	for _, data := range welcomeVectorMessages(f) {
		if m, err := UnmarshalMLSMessage(data); err == nil && m.KeyPackage != nil {
			out = append(out, m.KeyPackage.Bytes())
		}
	}
	return out
}

// checkReencode fails the fuzz target when a decoded value does not serialize to
// the input it was decoded from.
func checkReencode(t *testing.T, in []byte, out []byte, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("decoded input %x does not re-encode: %v", in, err)
	}
	if !bytes.Equal(in, out) {
		t.Fatalf("input %x re-encodes to %x: %s", in, out, firstDifference(out, in))
	}
}

// fuzzReencode decodes data as a T and, if it parses, checks that it re-encodes
// to data.
func fuzzReencode[T any, P codecPtr[T]](t *testing.T, data []byte, what string) {
	t.Helper()
	var v T
	if decodeAll(data, what, P(&v).unmarshal) != nil {
		return
	}
	out, err := encode(P(&v))
	checkReencode(t, data, out, err)
}

func FuzzUnmarshalMLSMessage(f *testing.F) {
	for _, v := range loadVectors[messagesVector](f, "messages.json") {
		for _, data := range [][]byte{v.MLSWelcome, v.MLSGroupInfo, v.MLSKeyPackage,
			v.PublicMessageApplication, v.PublicMessageProposal, v.PublicMessageCommit, v.PrivateMessage} {
			f.Add([]byte(data))
		}
	}
	for _, data := range welcomeVectorMessages(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := UnmarshalMLSMessage(data)
		if err != nil {
			return
		}
		out, err := encode(m)
		checkReencode(t, data, out, err)
	})
}

func FuzzUnmarshalKeyPackage(f *testing.F) {
	for _, data := range seedKeyPackages(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		kp, err := UnmarshalKeyPackage(data)
		if err != nil {
			return
		}
		out, err := encode(kp)
		checkReencode(t, data, out, err)
	})
}

func FuzzUnmarshalLeafNode(f *testing.F) {
	for _, v := range loadVectors[messagesVector](f, "messages.json") {
		f.Add([]byte(v.UpdateProposal))
	}
	for _, data := range seedKeyPackages(f) {
		if kp, err := UnmarshalKeyPackage(data); err == nil {
			f.Add(kp.LeafNode.Bytes())
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := UnmarshalLeafNode(data)
		if err != nil {
			return
		}
		out, err := encode(l)
		checkReencode(t, data, out, err)
	})
}

func FuzzGroupSecrets(f *testing.F) {
	for _, v := range loadVectors[messagesVector](f, "messages.json") {
		f.Add([]byte(v.GroupSecrets))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzReencode[GroupSecrets](t, data, "GroupSecrets") })
}

func FuzzUnmarshalExternalSenders(f *testing.F) {
	// The vectors carry no external_senders extension: seed with senders built
	// from the vectors' credentials and signature keys.
	var senders []ExternalSender
	for i, data := range seedKeyPackages(f) {
		if i >= 8 {
			break
		}
		if kp, err := UnmarshalKeyPackage(data); err == nil {
			senders = append(senders, ExternalSender{SignatureKey: kp.LeafNode.SignatureKey, Credential: kp.LeafNode.Credential})
		}
	}
	senders = append(senders, ExternalSender{SignatureKey: bytes.Repeat([]byte{7}, 32), Credential: NewX509Credential([][]byte{{1, 2, 3}, {4}})})
	f.Add(MarshalExternalSenders(nil))
	for i := range senders {
		f.Add(MarshalExternalSenders(senders[:i+1]))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := UnmarshalExternalSenders(data)
		if err != nil {
			return
		}
		checkReencode(t, data, MarshalExternalSenders(s), nil)
	})
}

func FuzzUnmarshalRequiredCapabilities(f *testing.F) {
	f.Add(MarshalRequiredCapabilities(RequiredCapabilities{}))
	f.Add(MarshalRequiredCapabilities(RequiredCapabilities{
		ExtensionTypes:  []ExtensionType{ExtensionTypeApplicationID, 0xff00},
		ProposalTypes:   []ProposalType{ProposalTypeAdd, ProposalTypeGroupContextExtensions, 0xff01},
		CredentialTypes: []CredentialType{CredentialTypeBasic, CredentialTypeX509},
	}))
	for i, data := range seedKeyPackages(f) {
		if i >= 8 {
			break
		}
		// A leaf's capabilities end in three uint16 vectors laid out as
		// RequiredCapabilities is: use them as realistic seeds.
		if kp, err := UnmarshalKeyPackage(data); err == nil {
			c := kp.LeafNode.Capabilities
			f.Add(MarshalRequiredCapabilities(RequiredCapabilities{c.Extensions, c.Proposals, c.Credentials}))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := UnmarshalRequiredCapabilities(data)
		if err != nil {
			return
		}
		checkReencode(t, data, MarshalRequiredCapabilities(r), nil)
	})
}

func FuzzProposal(f *testing.F) {
	for _, v := range loadVectors[messagesVector](f, "messages.json") {
		for _, p := range []struct {
			typ  ProposalType
			body []byte
		}{
			{ProposalTypeAdd, v.AddProposal},
			{ProposalTypeUpdate, v.UpdateProposal},
			{ProposalTypeRemove, v.RemoveProposal},
			{ProposalTypePSK, v.PreSharedKeyProposal},
			{ProposalTypeReInit, v.ReInitProposal},
			{ProposalTypeExternalInit, v.ExternalInitProposal},
			{ProposalTypeGroupContextExtensions, v.GroupContextExtensionsProposal},
		} {
			f.Add(append([]byte{byte(p.typ >> 8), byte(p.typ)}, p.body...))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzReencode[Proposal](t, data, "Proposal") })
}

func FuzzCommit(f *testing.F) {
	for _, v := range loadVectors[messagesVector](f, "messages.json") {
		f.Add([]byte(v.Commit))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzReencode[Commit](t, data, "Commit") })
}
