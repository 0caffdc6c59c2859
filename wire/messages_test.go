package wire

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func id16(b byte) (id [IDSize]byte) {
	for i := range id {
		id[i] = b + byte(i)
	}
	return id
}

var testTime = time.UnixMilli(1_790_000_000_123).UTC()

// examples holds at least one message of every type, with fields at their edges.
func examples() []Message {
	payload := bytes.Repeat([]byte{0xA5}, 1024)
	return []Message{
		&Hello{Versions: []uint16{1}, Software: "mahfooz-device/1.0"},
		&Hello{Versions: []uint16{2, 1, 7}, Software: ""},
		&Welcome{Version: 1, ServerTime: testTime, Limits: Limits{MaxFrameSize: MaxFrameSize, MaxChunkSize: MaxChunkSize, MaxRecipients: 1000, MaxTTL: 7 * 24 * 3600, PingInterval: 240}},
		&Error{Code: CodeTicketInvalid, Message: "ticket invalid"},
		&Error{Code: CodeUnavailable},
		&OK{},
		&Ping{},
		&Pong{},
		&Enroll{Ticket: "MHF1-ABCD-EFGH", CSR: []byte{0x30, 0x82, 1, 2}},
		&EnrollResult{DeviceID: id16(1), Chain: [][]byte{{0x30, 1}, {0x30, 2}, bytes.Repeat([]byte{3}, 300)}},
		&RenewCertificate{CSR: []byte{0x30, 0x03}},
		&CertificateResult{Chain: [][]byte{{0x30}}},
		&UploadKeyPackages{KeyPackages: [][]byte{{0, 1, 0, 5, 9}, bytes.Repeat([]byte{7}, 100)}},
		&UploadKeyPackages{KeyPackages: [][]byte{{0, 1, 0, 5}}, LastResort: true},
		&ClaimKeyPackage{Device: id16(9)},
		&ClaimKeyPackage{Official: "Amina Yusuf (Ministry of Interior)"},
		&KeyPackages{KeyPackages: []ClaimedKeyPackage{{Device: id16(1), KeyPackage: []byte{1}}, {Device: id16(2), KeyPackage: payload[:70]}}},
		&GetDirectory{},
		&Directory{Signed: payload[:200]},
		&DirectoryUpdated{},
		&Send{MessageID: id16(4), GroupID: GroupID("group-1"), Epoch: 42, IsCommit: true, Recipients: []DeviceID{id16(1), id16(2), id16(200)}, TTLSeconds: 3600, Payload: payload},
		&Send{MessageID: id16(5), GroupID: GroupID{0}, Payload: []byte{0}},
		&SendResult{Status: SendAccepted, Sequence: 1<<63 + 5},
		&SendResult{Status: SendStaleEpoch, CurrentEpoch: 43},
		&Deliver{Sequence: 7, MessageID: id16(4), Sender: id16(3), GroupID: GroupID(strings.Repeat("g", MaxGroupIDSize)), SentAt: testTime, Payload: payload},
		&Ack{Sequences: []uint64{1, 2, 9, 1 << 40}},
		&Expired{Messages: []ExpiredMessage{{MessageID: id16(4), Recipient: id16(1)}, {MessageID: id16(4), Recipient: id16(2)}}},
		&Revoked{RevokedAt: testTime},
		&Revoked{RevokedAt: testTime, Proof: payload[:300]},
		&CreateBlob{BlobID: id16(8), TTLSeconds: 86400, Recipients: []DeviceID{id16(1)}},
		&UploadChunk{BlobID: id16(8), Index: 0, Data: payload},
		&UploadChunk{BlobID: id16(8), Index: 3, Last: true, Data: []byte{1}},
		&DownloadChunk{BlobID: id16(8), Index: 3},
		&BlobChunk{BlobID: id16(8), Index: 3, Last: true, Data: payload[:9]},
		&JoinCall{CallID: id16(10), Members: []DeviceID{id16(1), id16(2), id16(3)}, Offer: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"},
		&JoinCall{CallID: id16(11), Members: []DeviceID{id16(1)}, Offer: "v"},
		&CallJoined{Answer: "v=0\r\na=ice-lite\r\n"},
		&SetCallMembers{CallID: id16(10), Members: []DeviceID{id16(1), id16(3)}},
		&LeaveCall{CallID: id16(10)},
	}
}

func TestExamplesCoverEveryType(t *testing.T) {
	seen := map[MessageType]bool{}
	for _, m := range examples() {
		seen[m.Type()] = true
	}
	for typ := range types {
		if !seen[typ] {
			t.Errorf("no example of %s", typ)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range examples() {
		t.Run(m.Type().String(), func(t *testing.T) {
			body, err := Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Unmarshal(m.Type(), body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("decoded %#v, want %#v", got, m)
			}
			again, err := Marshal(got)
			if err != nil || !bytes.Equal(again, body) {
				t.Fatalf("re-encoding differs (%v)", err)
			}

			// The same through a whole frame.
			frame, err := AppendFrame([]byte("prefix"), 77, m)
			if err != nil {
				t.Fatal(err)
			}
			c := NewConn(&rw{r: bytes.NewReader(frame[len("prefix"):])})
			id, got2, err := c.ReadMessage()
			if err != nil || id != 77 || !reflect.DeepEqual(got2, m) {
				t.Fatalf("ReadMessage = %d, %#v, %v", id, got2, err)
			}
		})
	}
}

// TestTruncated checks that no proper prefix of a body decodes, and that a body with
// a byte appended does not either.
func TestTruncatedAndTrailing(t *testing.T) {
	for _, m := range examples() {
		t.Run(m.Type().String(), func(t *testing.T) {
			body, err := Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			for i := range len(body) {
				if _, err := Unmarshal(m.Type(), body[:i]); !errors.Is(err, ErrMalformed) {
					t.Fatalf("prefix of %d/%d bytes: err = %v, want ErrMalformed", i, len(body), err)
				}
			}
			if _, err := Unmarshal(m.Type(), append(slices.Clip(body), 0)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("trailing byte: err = %v, want ErrMalformed", err)
			}
		})
	}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// manyIDs returns n strictly increasing device IDs, concatenated.
func manyIDs(n int) []byte {
	out := make([]byte, 0, n*IDSize)
	for i := range n {
		var id DeviceID
		id[0], id[1] = byte(i>>8), byte(i)
		out = append(out, id[:]...)
	}
	return out
}

func u64(v uint64) []byte {
	return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

func TestRejects(t *testing.T) {
	mid, dev1, dev2 := id16(4), id16(1), id16(2)
	// send builds a Send body around a hand-written group ID and recipient encoding.
	send := func(group, commit, recipients []byte) []byte {
		return cat(mid[:], group, u64(1), commit, recipients, []byte{0, 0, 0, 0}, []byte{1, 0xAA})
	}
	okSend := send([]byte{1, 'g'}, []byte{0}, cat([]byte{32}, dev1[:], dev2[:]))
	if _, err := Unmarshal(TypeSend, okSend); err != nil {
		t.Fatalf("control Send does not decode: %v", err)
	}
	tests := []struct {
		name string
		typ  MessageType
		body []byte
	}{
		{"non-minimal 2-byte varint", TypeSend, send([]byte{0x40, 1, 'g'}, []byte{0}, cat([]byte{32}, dev1[:], dev2[:]))},
		{"non-minimal 4-byte varint", TypeSend, send([]byte{0x80, 0, 0, 1, 'g'}, []byte{0}, cat([]byte{32}, dev1[:], dev2[:]))},
		{"8-byte varint", TypeSend, send([]byte{0xC0, 0, 0, 0, 0, 0, 0, 1, 'g'}, []byte{0}, cat([]byte{32}, dev1[:], dev2[:]))},
		{"empty group ID", TypeSend, send([]byte{0}, []byte{0}, cat([]byte{32}, dev1[:], dev2[:]))},
		{"group ID too long", TypeSend, send(cat([]byte{0x41, 0}, bytes.Repeat([]byte{1}, 256)), []byte{0}, []byte{0})},
		{"bool 2", TypeSend, send([]byte{1, 'g'}, []byte{2}, cat([]byte{32}, dev1[:], dev2[:]))},
		{"recipients out of order", TypeSend, send([]byte{1, 'g'}, []byte{0}, cat([]byte{32}, dev2[:], dev1[:]))},
		{"duplicate recipient", TypeSend, send([]byte{1, 'g'}, []byte{0}, cat([]byte{32}, dev1[:], dev1[:]))},
		{"partial recipient", TypeSend, send([]byte{1, 'g'}, []byte{0}, cat([]byte{17}, dev1[:], []byte{9}))},
		{"empty payload", TypeSend, cat(mid[:], []byte{1, 'g'}, u64(1), []byte{0, 0, 0, 0, 0, 0, 0})},
		{"send status 0", TypeSendResult, cat([]byte{0}, u64(1))},
		{"send status 3", TypeSendResult, cat([]byte{3}, u64(1))},
		{"error code 0", TypeError, []byte{0, 0, 0}},
		{"error code unknown", TypeError, []byte{0, 99, 0}},
		{"error message not UTF-8", TypeError, []byte{0, 1, 2, 0xff, 0xfe}},
		{"hello no versions", TypeHello, []byte{0, 0}},
		{"hello version 0", TypeHello, []byte{2, 0, 0, 0}},
		{"hello duplicate version", TypeHello, []byte{4, 0, 1, 0, 1, 0}},
		{"hello odd versions", TypeHello, []byte{3, 0, 1, 0, 0}},
		{"claim target 3", TypeClaimKeyPackage, cat([]byte{3}, dev1[:])},
		{"claim empty name", TypeClaimKeyPackage, []byte{2, 0}},
		{"last resort with two", TypeUploadKeyPackages, []byte{4, 1, 1, 1, 2, 1}},
		{"empty key package", TypeUploadKeyPackages, []byte{1, 0, 0}},
		{"ack empty", TypeAck, []byte{0}},
		{"ack out of order", TypeAck, cat([]byte{16}, u64(2), u64(1))},
		{"ack duplicate", TypeAck, cat([]byte{16}, u64(2), u64(2))},
		{"ack partial", TypeAck, cat([]byte{9}, u64(2), []byte{1})},
		{"expired partial", TypeExpired, cat([]byte{31}, dev1[:], dev2[:15])},
		{"blob with no recipient", TypeCreateBlob, cat(dev1[:], []byte{0, 0, 0, 1}, []byte{0})},
		{"empty chunk", TypeUploadChunk, cat(dev1[:], []byte{0, 0, 0, 0, 1}, []byte{0})},
		{"empty chain", TypeCertificateResult, []byte{0}},
		{"time beyond int64", TypeRevoked, u64(1 << 63)},
		{"welcome version 0", TypeWelcome, cat([]byte{0, 0}, u64(1), bytes.Repeat([]byte{0, 0, 0, 1}, 5))},
		{"welcome frame limit 0", TypeWelcome, cat([]byte{0, 1}, u64(1), []byte{0, 0, 0, 0}, bytes.Repeat([]byte{0, 0, 0, 1}, 4))},
		{"welcome frame limit above max", TypeWelcome, cat([]byte{0, 1}, u64(1), []byte{0, 0x10, 0, 1}, bytes.Repeat([]byte{0, 0, 0, 1}, 4))},
		{"enroll ticket not UTF-8", TypeEnroll, []byte{1, 0x80, 1, 1}},
		{"join call no members", TypeJoinCall, cat(dev1[:], []byte{0}, []byte{1, 'v'})},
		{"join call members out of order", TypeJoinCall, cat(dev1[:], []byte{32}, dev2[:], dev1[:], []byte{1, 'v'})},
		{"join call empty offer", TypeJoinCall, cat(dev1[:], []byte{16}, dev1[:], []byte{0})},
		{"join call offer not UTF-8", TypeJoinCall, cat(dev1[:], []byte{16}, dev1[:], []byte{1, 0xff})},
		{"join call too many members", TypeJoinCall, cat(dev1[:], []byte{0x50, 0x10}, manyIDs(MaxCallMembers+1), []byte{1, 'v'})},
		{"call joined empty answer", TypeCallJoined, []byte{0}},
		{"set call members none", TypeSetCallMembers, cat(dev1[:], []byte{0})},
		{"set call members duplicate", TypeSetCallMembers, cat(dev1[:], []byte{32}, dev2[:], dev2[:])},
		{"leave call short", TypeLeaveCall, dev1[:15]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m, err := Unmarshal(tt.typ, tt.body); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Unmarshal = %#v, %v; want ErrMalformed", m, err)
			}
		})
	}
}

// TestEncodeRefuses checks that what would not decode is not encoded either.
func TestEncodeRefuses(t *testing.T) {
	tests := []Message{
		&Hello{},
		&Hello{Versions: []uint16{1}, Software: strings.Repeat("x", MaxSoftwareSize+1)},
		&Welcome{Version: 1, ServerTime: testTime},
		&Welcome{Version: 1, ServerTime: time.Time{}, Limits: Limits{1, 1, 1, 1, 1}},
		&Error{Code: 0},
		&Error{Code: CodeInternal, Message: "\xff"},
		&Enroll{Ticket: "", CSR: []byte{1}},
		&EnrollResult{},
		&UploadKeyPackages{KeyPackages: [][]byte{{1}, {2}}, LastResort: true},
		&KeyPackages{},
		&Send{GroupID: GroupID("g"), Recipients: []DeviceID{id16(2), id16(1)}, Payload: []byte{1}},
		&Send{GroupID: nil, Payload: []byte{1}},
		&SendResult{},
		&Ack{},
		&Ack{Sequences: []uint64{3, 3}},
		&Expired{},
		&CreateBlob{},
		&UploadChunk{Data: make([]byte, MaxChunkSize+1)},
		&JoinCall{Members: []DeviceID{id16(1)}},
		&JoinCall{Offer: "v"},
		&JoinCall{Members: []DeviceID{id16(1)}, Offer: strings.Repeat("v", MaxSDPSize+1)},
		&CallJoined{},
		&SetCallMembers{Members: []DeviceID{id16(2), id16(1)}},
	}
	for _, m := range tests {
		if b, err := Marshal(m); err == nil {
			t.Errorf("Marshal(%#v) = %x, want an error", m, b)
		}
	}
}

func TestSortDeviceIDs(t *testing.T) {
	ids := SortDeviceIDs([]DeviceID{id16(3), id16(1), id16(3), id16(2)})
	if !slices.Equal(ids, []DeviceID{id16(1), id16(2), id16(3)}) {
		t.Fatalf("got %v", ids)
	}
	s := ids[1].String()
	if back, err := ParseDeviceID(s); err != nil || back != ids[1] {
		t.Fatalf("ParseDeviceID(%q) = %v, %v", s, back, err)
	}
	if _, err := ParseDeviceID("zz"); err == nil {
		t.Fatal("ParseDeviceID accepted a short string")
	}
}

func TestCodes(t *testing.T) {
	seen := map[string]bool{}
	for c := Code(1); c.Known(); c++ {
		name := c.String()
		if name == "" || seen[name] || strings.HasPrefix(name, "Code(") {
			t.Errorf("code %d has name %q", c, name)
		}
		seen[name] = true
	}
	// The numbers are part of the protocol: pin a few.
	pins := map[Code]uint16{CodeMalformed: 1, CodeUnsupportedVersion: 2, CodeStaleEpoch: 6, CodeTicketInvalid: 9, CodeRevoked: 11, CodeUnavailable: 17}
	for c, n := range pins {
		if uint16(c) != n {
			t.Errorf("%s = %d, want %d", c, c, n)
		}
	}
	if Code(0).Known() || Code(18).Known() || Code(18).String() != "Code(18)" {
		t.Error("codes 0 and 18 must be unknown")
	}
	e := &Error{Code: CodeRevoked, Message: "device revoked"}
	if CodeOf(e) != CodeRevoked || CodeOf(errors.New("x")) != CodeInternal || e.Error() != "wire: exchange error revoked: device revoked" {
		t.Errorf("CodeOf / Error() wrong: %v", e)
	}
}

func TestTypeNumbersAreStable(t *testing.T) {
	want := map[MessageType]uint16{
		TypeHello: 1, TypeWelcome: 2, TypeError: 3, TypeOK: 4, TypePing: 5, TypePong: 6,
		TypeEnroll: 16, TypeEnrollResult: 17, TypeRenewCertificate: 18, TypeCertificateResult: 19,
		TypeUploadKeyPackages: 32, TypeClaimKeyPackage: 33, TypeKeyPackages: 34, TypeGetDirectory: 35, TypeDirectory: 36, TypeDirectoryUpdated: 37,
		TypeSend: 48, TypeSendResult: 49, TypeDeliver: 50, TypeAck: 51, TypeExpired: 52, TypeRevoked: 53,
		TypeCreateBlob: 64, TypeUploadChunk: 65, TypeDownloadChunk: 66, TypeBlobChunk: 67,
		TypeJoinCall: 80, TypeCallJoined: 81, TypeSetCallMembers: 82, TypeLeaveCall: 83,
	}
	if len(want) != len(types) {
		t.Fatalf("%d types registered, %d pinned", len(types), len(want))
	}
	for typ, n := range want {
		if uint16(typ) != n || !typ.Known() || typ.SentBy() == 0 {
			t.Errorf("%s: number %d, want %d", typ, typ, n)
		}
		if m := types[typ].new(); m.Type() != typ {
			t.Errorf("%s constructs a %s", typ, m.Type())
		}
	}
	if TypeSend.SentBy() != SideClient || TypeDeliver.SentBy() != SideExchange || TypePing.SentBy() != SideClient|SideExchange {
		t.Error("SentBy wrong")
	}
}
