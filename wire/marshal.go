package wire

import (
	"bytes"
	"math"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// The marshal and unmarshal pair of every message, in the order of messages.go. Each
// unmarshal resets its receiver and reports whether the bytes matched the schema;
// Unmarshal adds the check for trailing bytes.

// Shared field encodings.

func addTime(b *cryptobyte.Builder, t time.Time, what string) {
	ms := t.UnixMilli()
	if ms < 0 {
		b.SetError(errEncode(what))
		return
	}
	b.AddUint64(uint64(ms))
}

func readTime(s *cryptobyte.String, t *time.Time) bool {
	var ms uint64
	if !s.ReadUint64(&ms) || ms > math.MaxInt64 {
		return false
	}
	*t = time.UnixMilli(int64(ms)).UTC()
	return true
}

func addGroupID(b *cryptobyte.Builder, g GroupID) {
	addOpaque(b, g, 1, MaxGroupIDSize, "group ID")
}

func readGroupID(s *cryptobyte.String, g *GroupID) bool {
	return readOpaque(s, (*[]byte)(g), 1, MaxGroupIDSize)
}

// addDeviceIDs writes DeviceID ids<V>, which must be strictly increasing.
func addDeviceIDs(b *cryptobyte.Builder, ids []DeviceID, minLen, maxLen int) {
	if len(ids) < minLen || len(ids) > maxLen {
		b.SetError(errEncode("recipients"))
		return
	}
	for i := 1; i < len(ids); i++ {
		if bytes.Compare(ids[i-1][:], ids[i][:]) >= 0 {
			b.SetError(errEncode("recipients: not strictly increasing"))
			return
		}
	}
	writeVarint(b, len(ids)*IDSize)
	for i := range ids {
		b.AddBytes(ids[i][:])
	}
}

func readDeviceIDs(s *cryptobyte.String, out *[]DeviceID, minLen, maxLen int) bool {
	var v cryptobyte.String
	if !readVector(s, &v) || len(v)%IDSize != 0 {
		return false
	}
	n := len(v) / IDSize
	if n < minLen || n > maxLen {
		return false
	}
	if n == 0 {
		*out = nil
		return true
	}
	ids := make([]DeviceID, n)
	for i := range ids {
		copy(ids[i][:], v[i*IDSize:])
		if i > 0 && bytes.Compare(ids[i-1][:], ids[i][:]) >= 0 {
			return false
		}
	}
	*out = ids
	return true
}

// addChain writes Certificate chain<V>.
func addChain(b *cryptobyte.Builder, chain [][]byte) {
	if len(chain) < 1 || len(chain) > MaxChainLength {
		b.SetError(errEncode("certificate chain"))
		return
	}
	addVector(b, func(b *cryptobyte.Builder) {
		for _, c := range chain {
			addOpaque(b, c, 1, MaxCertificateSize, "certificate")
		}
	})
}

func readChain(s *cryptobyte.String, chain *[][]byte) bool {
	*chain = nil
	return readVectorOf(s, func(s *cryptobyte.String) bool {
		var c []byte
		if len(*chain) == MaxChainLength || !readOpaque(s, &c, 1, MaxCertificateSize) {
			return false
		}
		*chain = append(*chain, c)
		return true
	}) && len(*chain) >= 1
}

// Hello

func (m *Hello) marshal(b *cryptobyte.Builder) {
	if len(m.Versions) < 1 || len(m.Versions) > MaxVersions {
		b.SetError(errEncode("versions"))
		return
	}
	addVector(b, func(b *cryptobyte.Builder) {
		for _, v := range m.Versions {
			b.AddUint16(v)
		}
	})
	addString(b, m.Software, 0, MaxSoftwareSize, "software")
}

func (m *Hello) unmarshal(s *cryptobyte.String) bool {
	*m = Hello{}
	ok := readVectorOf(s, func(s *cryptobyte.String) bool {
		var v uint16
		if len(m.Versions) == MaxVersions || !s.ReadUint16(&v) || v == 0 {
			return false
		}
		for _, w := range m.Versions {
			if w == v {
				return false // duplicate
			}
		}
		m.Versions = append(m.Versions, v)
		return true
	})
	return ok && len(m.Versions) >= 1 && readString(s, &m.Software, 0, MaxSoftwareSize)
}

// Welcome

func (m *Welcome) marshal(b *cryptobyte.Builder) {
	b.AddUint16(m.Version)
	addTime(b, m.ServerTime, "server time")
	m.Limits.marshal(b)
}

func (m *Welcome) unmarshal(s *cryptobyte.String) bool {
	*m = Welcome{}
	return s.ReadUint16(&m.Version) && m.Version != 0 && readTime(s, &m.ServerTime) && m.Limits.unmarshal(s)
}

func (l *Limits) valid() bool {
	return l.MaxFrameSize >= 1 && l.MaxFrameSize <= MaxFrameSize &&
		l.MaxChunkSize >= 1 && l.MaxChunkSize <= MaxChunkSize &&
		l.MaxRecipients >= 1 && l.MaxRecipients <= MaxRecipients &&
		l.MaxTTL >= 1 && l.PingInterval >= 1
}

func (l *Limits) marshal(b *cryptobyte.Builder) {
	if !l.valid() {
		b.SetError(errEncode("limits"))
		return
	}
	b.AddUint32(l.MaxFrameSize)
	b.AddUint32(l.MaxChunkSize)
	b.AddUint32(l.MaxRecipients)
	b.AddUint32(l.MaxTTL)
	b.AddUint32(l.PingInterval)
}

func (l *Limits) unmarshal(s *cryptobyte.String) bool {
	return s.ReadUint32(&l.MaxFrameSize) && s.ReadUint32(&l.MaxChunkSize) &&
		s.ReadUint32(&l.MaxRecipients) && s.ReadUint32(&l.MaxTTL) && s.ReadUint32(&l.PingInterval) &&
		l.valid()
}

// Error

func (m *Error) marshal(b *cryptobyte.Builder) {
	if !m.Code.Known() {
		b.SetError(errEncode("error code"))
		return
	}
	b.AddUint16(uint16(m.Code))
	addString(b, m.Message, 0, MaxErrorMessageSize, "error message")
}

func (m *Error) unmarshal(s *cryptobyte.String) bool {
	*m = Error{}
	return s.ReadUint16((*uint16)(&m.Code)) && m.Code.Known() &&
		readString(s, &m.Message, 0, MaxErrorMessageSize)
}

// Empty bodies.

func (*OK) marshal(*cryptobyte.Builder)                 {}
func (*OK) unmarshal(*cryptobyte.String) bool           { return true }
func (*Ping) marshal(*cryptobyte.Builder)               {}
func (*Ping) unmarshal(*cryptobyte.String) bool         { return true }
func (*Pong) marshal(*cryptobyte.Builder)               {}
func (*Pong) unmarshal(*cryptobyte.String) bool         { return true }
func (*GetDirectory) marshal(*cryptobyte.Builder)       {}
func (*GetDirectory) unmarshal(*cryptobyte.String) bool { return true }
func (*DirectoryUpdated) marshal(*cryptobyte.Builder)   {}
func (*DirectoryUpdated) unmarshal(*cryptobyte.String) bool {
	return true
}

// Enrolment and certificates.

func (m *Enroll) marshal(b *cryptobyte.Builder) {
	addString(b, m.Ticket, 1, MaxTicketSize, "ticket")
	addOpaque(b, m.CSR, 1, MaxCertificateSize, "certificate request")
}

func (m *Enroll) unmarshal(s *cryptobyte.String) bool {
	*m = Enroll{}
	return readString(s, &m.Ticket, 1, MaxTicketSize) && readOpaque(s, &m.CSR, 1, MaxCertificateSize)
}

func (m *EnrollResult) marshal(b *cryptobyte.Builder) {
	b.AddBytes(m.DeviceID[:])
	addChain(b, m.Chain)
}

func (m *EnrollResult) unmarshal(s *cryptobyte.String) bool {
	*m = EnrollResult{}
	return readFixed(s, m.DeviceID[:]) && readChain(s, &m.Chain)
}

func (m *RenewCertificate) marshal(b *cryptobyte.Builder) {
	addOpaque(b, m.CSR, 1, MaxCertificateSize, "certificate request")
}

func (m *RenewCertificate) unmarshal(s *cryptobyte.String) bool {
	*m = RenewCertificate{}
	return readOpaque(s, &m.CSR, 1, MaxCertificateSize)
}

func (m *CertificateResult) marshal(b *cryptobyte.Builder) { addChain(b, m.Chain) }

func (m *CertificateResult) unmarshal(s *cryptobyte.String) bool {
	*m = CertificateResult{}
	return readChain(s, &m.Chain)
}

// KeyPackages and directory.

func (m *UploadKeyPackages) marshal(b *cryptobyte.Builder) {
	n := len(m.KeyPackages)
	if n < 1 || n > MaxKeyPackages || (m.LastResort && n != 1) {
		b.SetError(errEncode("key packages"))
		return
	}
	addVector(b, func(b *cryptobyte.Builder) {
		for _, kp := range m.KeyPackages {
			addOpaque(b, kp, 1, MaxBodySize, "key package")
		}
	})
	addBool(b, m.LastResort)
}

func (m *UploadKeyPackages) unmarshal(s *cryptobyte.String) bool {
	*m = UploadKeyPackages{}
	ok := readVectorOf(s, func(s *cryptobyte.String) bool {
		var kp []byte
		if len(m.KeyPackages) == MaxKeyPackages || !readOpaque(s, &kp, 1, MaxBodySize) {
			return false
		}
		m.KeyPackages = append(m.KeyPackages, kp)
		return true
	})
	return ok && len(m.KeyPackages) >= 1 && readBool(s, &m.LastResort) &&
		(!m.LastResort || len(m.KeyPackages) == 1)
}

func (m *ClaimKeyPackage) marshal(b *cryptobyte.Builder) {
	if m.Official != "" {
		b.AddUint8(claimOfficial)
		addString(b, m.Official, 1, MaxNameSize, "official name")
		return
	}
	b.AddUint8(claimDevice)
	b.AddBytes(m.Device[:])
}

func (m *ClaimKeyPackage) unmarshal(s *cryptobyte.String) bool {
	*m = ClaimKeyPackage{}
	var target uint8
	if !s.ReadUint8(&target) {
		return false
	}
	switch target {
	case claimDevice:
		return readFixed(s, m.Device[:])
	case claimOfficial:
		return readString(s, &m.Official, 1, MaxNameSize)
	}
	return false
}

func (m *KeyPackages) marshal(b *cryptobyte.Builder) {
	if len(m.KeyPackages) < 1 || len(m.KeyPackages) > MaxKeyPackages {
		b.SetError(errEncode("key packages"))
		return
	}
	addVector(b, func(b *cryptobyte.Builder) {
		for i := range m.KeyPackages {
			b.AddBytes(m.KeyPackages[i].Device[:])
			addOpaque(b, m.KeyPackages[i].KeyPackage, 1, MaxBodySize, "key package")
		}
	})
}

func (m *KeyPackages) unmarshal(s *cryptobyte.String) bool {
	*m = KeyPackages{}
	ok := readVectorOf(s, func(s *cryptobyte.String) bool {
		var c ClaimedKeyPackage
		if len(m.KeyPackages) == MaxKeyPackages || !readFixed(s, c.Device[:]) ||
			!readOpaque(s, &c.KeyPackage, 1, MaxBodySize) {
			return false
		}
		m.KeyPackages = append(m.KeyPackages, c)
		return true
	})
	return ok && len(m.KeyPackages) >= 1
}

func (m *Directory) marshal(b *cryptobyte.Builder) {
	addOpaque(b, m.Signed, 1, MaxBodySize, "directory")
}

func (m *Directory) unmarshal(s *cryptobyte.String) bool {
	*m = Directory{}
	return readOpaque(s, &m.Signed, 1, MaxBodySize)
}

// Delivery.

func (m *Send) marshal(b *cryptobyte.Builder) {
	b.AddBytes(m.MessageID[:])
	addGroupID(b, m.GroupID)
	b.AddUint64(m.Epoch)
	addBool(b, m.IsCommit)
	addDeviceIDs(b, m.Recipients, 0, MaxRecipients)
	b.AddUint32(m.TTLSeconds)
	addOpaque(b, m.Payload, 1, MaxBodySize, "payload")
}

func (m *Send) unmarshal(s *cryptobyte.String) bool {
	*m = Send{}
	return readFixed(s, m.MessageID[:]) && readGroupID(s, &m.GroupID) && s.ReadUint64(&m.Epoch) &&
		readBool(s, &m.IsCommit) && readDeviceIDs(s, &m.Recipients, 0, MaxRecipients) &&
		s.ReadUint32(&m.TTLSeconds) && readOpaque(s, &m.Payload, 1, MaxBodySize)
}

func (m *SendResult) marshal(b *cryptobyte.Builder) {
	switch m.Status {
	case SendAccepted:
		b.AddUint8(uint8(m.Status))
		b.AddUint64(m.Sequence)
	case SendStaleEpoch:
		b.AddUint8(uint8(m.Status))
		b.AddUint64(m.CurrentEpoch)
	default:
		b.SetError(errEncode("send status"))
	}
}

func (m *SendResult) unmarshal(s *cryptobyte.String) bool {
	*m = SendResult{}
	if !s.ReadUint8((*uint8)(&m.Status)) {
		return false
	}
	switch m.Status {
	case SendAccepted:
		return s.ReadUint64(&m.Sequence)
	case SendStaleEpoch:
		return s.ReadUint64(&m.CurrentEpoch)
	}
	return false
}

func (m *Deliver) marshal(b *cryptobyte.Builder) {
	b.AddUint64(m.Sequence)
	b.AddBytes(m.MessageID[:])
	b.AddBytes(m.Sender[:])
	addGroupID(b, m.GroupID)
	addTime(b, m.SentAt, "sent at")
	addOpaque(b, m.Payload, 1, MaxBodySize, "payload")
}

func (m *Deliver) unmarshal(s *cryptobyte.String) bool {
	*m = Deliver{}
	return s.ReadUint64(&m.Sequence) && readFixed(s, m.MessageID[:]) && readFixed(s, m.Sender[:]) &&
		readGroupID(s, &m.GroupID) && readTime(s, &m.SentAt) && readOpaque(s, &m.Payload, 1, MaxBodySize)
}

func (m *Ack) marshal(b *cryptobyte.Builder) {
	if len(m.Sequences) < 1 || len(m.Sequences) > MaxAck {
		b.SetError(errEncode("sequences"))
		return
	}
	for i := 1; i < len(m.Sequences); i++ {
		if m.Sequences[i-1] >= m.Sequences[i] {
			b.SetError(errEncode("sequences: not strictly increasing"))
			return
		}
	}
	writeVarint(b, 8*len(m.Sequences))
	for _, seq := range m.Sequences {
		b.AddUint64(seq)
	}
}

func (m *Ack) unmarshal(s *cryptobyte.String) bool {
	*m = Ack{}
	var v cryptobyte.String
	if !readVector(s, &v) || len(v)%8 != 0 || len(v) == 0 || len(v)/8 > MaxAck {
		return false
	}
	m.Sequences = make([]uint64, 0, len(v)/8)
	for !v.Empty() {
		var seq uint64
		v.ReadUint64(&seq)
		if n := len(m.Sequences); n > 0 && m.Sequences[n-1] >= seq {
			return false
		}
		m.Sequences = append(m.Sequences, seq)
	}
	return true
}

func (m *Expired) marshal(b *cryptobyte.Builder) {
	if len(m.Messages) < 1 || len(m.Messages) > MaxAck {
		b.SetError(errEncode("expired messages"))
		return
	}
	writeVarint(b, 2*IDSize*len(m.Messages))
	for i := range m.Messages {
		b.AddBytes(m.Messages[i].MessageID[:])
		b.AddBytes(m.Messages[i].Recipient[:])
	}
}

func (m *Expired) unmarshal(s *cryptobyte.String) bool {
	*m = Expired{}
	var v cryptobyte.String
	if !readVector(s, &v) || len(v)%(2*IDSize) != 0 || len(v) == 0 || len(v)/(2*IDSize) > MaxAck {
		return false
	}
	m.Messages = make([]ExpiredMessage, len(v)/(2*IDSize))
	for i := range m.Messages {
		readFixed(&v, m.Messages[i].MessageID[:])
		readFixed(&v, m.Messages[i].Recipient[:])
	}
	return true
}

func (m *Revoked) marshal(b *cryptobyte.Builder) {
	addTime(b, m.RevokedAt, "revoked at")
	addOpaque(b, m.Proof, 0, MaxBodySize, "revocation proof")
}

func (m *Revoked) unmarshal(s *cryptobyte.String) bool {
	*m = Revoked{}
	if !readTime(s, &m.RevokedAt) || !readOpaque(s, &m.Proof, 0, MaxBodySize) {
		return false
	}
	if len(m.Proof) == 0 {
		m.Proof = nil // one form for "no proof", so that decoding re-encodes exactly
	}
	return true
}

// Attachments.

func (m *CreateBlob) marshal(b *cryptobyte.Builder) {
	b.AddBytes(m.BlobID[:])
	b.AddUint32(m.TTLSeconds)
	addDeviceIDs(b, m.Recipients, 1, MaxRecipients)
}

func (m *CreateBlob) unmarshal(s *cryptobyte.String) bool {
	*m = CreateBlob{}
	return readFixed(s, m.BlobID[:]) && s.ReadUint32(&m.TTLSeconds) &&
		readDeviceIDs(s, &m.Recipients, 1, MaxRecipients)
}

func (m *UploadChunk) marshal(b *cryptobyte.Builder) {
	b.AddBytes(m.BlobID[:])
	b.AddUint32(m.Index)
	addBool(b, m.Last)
	addOpaque(b, m.Data, 1, MaxChunkSize, "chunk")
}

func (m *UploadChunk) unmarshal(s *cryptobyte.String) bool {
	*m = UploadChunk{}
	return readFixed(s, m.BlobID[:]) && s.ReadUint32(&m.Index) && readBool(s, &m.Last) &&
		readOpaque(s, &m.Data, 1, MaxChunkSize)
}

func (m *DownloadChunk) marshal(b *cryptobyte.Builder) {
	b.AddBytes(m.BlobID[:])
	b.AddUint32(m.Index)
}

func (m *DownloadChunk) unmarshal(s *cryptobyte.String) bool {
	*m = DownloadChunk{}
	return readFixed(s, m.BlobID[:]) && s.ReadUint32(&m.Index)
}

func (m *BlobChunk) marshal(b *cryptobyte.Builder) {
	b.AddBytes(m.BlobID[:])
	b.AddUint32(m.Index)
	addBool(b, m.Last)
	addOpaque(b, m.Data, 1, MaxChunkSize, "chunk")
}

func (m *BlobChunk) unmarshal(s *cryptobyte.String) bool {
	*m = BlobChunk{}
	return readFixed(s, m.BlobID[:]) && s.ReadUint32(&m.Index) && readBool(s, &m.Last) &&
		readOpaque(s, &m.Data, 1, MaxChunkSize)
}
