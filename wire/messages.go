package wire

import (
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// Message is the body of one frame. Each message type has exactly one Go type; the
// set is closed. Decoded messages may alias the frame body they came from.
type Message interface {
	// Type returns the frame type that carries this message.
	Type() MessageType
	marshal(b *cryptobyte.Builder)
	unmarshal(s *cryptobyte.String) bool
}

// Hello is the first frame a client sends on every connection.
//
//	struct {
//	    uint16 versions<2..2*MaxVersions>;    /* offered, any order, no duplicates, none 0 */
//	    opaque software<0..MaxSoftwareSize>;  /* UTF-8, e.g. "mahfooz-device/1.2.0" */
//	} Hello;
type Hello struct {
	Versions []uint16
	Software string
}

// Welcome answers Hello with the version the exchange chose and the limits it enforces.
//
//	struct {
//	    uint16 version;
//	    uint64 server_time;   /* Unix milliseconds */
//	    Limits limits;
//	} Welcome;
type Welcome struct {
	Version    uint16
	ServerTime time.Time
	Limits     Limits
}

// Limits are the exchange's limits for this connection, each at least 1 and at most
// the package constant of the same name.
//
//	struct {
//	    uint32 max_frame_size;        /* ≤ MaxFrameSize; the client's frames must fit */
//	    uint32 max_chunk_size;        /* ≤ MaxChunkSize */
//	    uint32 max_recipients;        /* ≤ MaxRecipients */
//	    uint32 max_ttl;               /* seconds; longer TTLs are shortened to it */
//	    uint32 ping_interval;         /* seconds of silence after which the client pings */
//	} Limits;
type Limits struct {
	MaxFrameSize  uint32
	MaxChunkSize  uint32
	MaxRecipients uint32
	MaxTTL        uint32
	PingInterval  uint32
}

// Error answers a request that failed, or (with request ID 0) says why the sender is
// about to close the connection. Message is a short human-readable hint that never
// holds a secret, a ticket or message content.
//
//	struct {
//	    uint16 code;                              /* a known Code */
//	    opaque message<0..MaxErrorMessageSize>;   /* UTF-8 */
//	} Error;
//
// *Error implements error, so a client can return it as is.
type Error struct {
	Code    Code
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Message == "" {
		return "wire: exchange error " + e.Code.String()
	}
	return "wire: exchange error " + e.Code.String() + ": " + e.Message
}

// OK answers a request that succeeded and has nothing to return.
//
//	struct {} OK;
type OK struct{}

// Ping asks the peer to answer with Pong carrying the same request ID.
//
//	struct {} Ping;
type Ping struct{}

// Pong answers Ping.
//
//	struct {} Pong;
type Pong struct{}

// Enroll asks for a first device certificate, on a connection without a client
// certificate. It is the only request such a connection may make.
//
//	struct {
//	    opaque ticket<1..MaxTicketSize>;      /* the ticket text, UTF-8 */
//	    opaque csr<1..MaxCertificateSize>;    /* PKCS #10 CertificationRequest, DER */
//	} Enroll;
type Enroll struct {
	Ticket string
	CSR    []byte
}

// EnrollResult answers Enroll with the device's identity.
//
//	opaque Certificate<1..MaxCertificateSize>;  /* X.509, DER */
//	struct {
//	    DeviceID device_id;                   /* opaque device_id[16] */
//	    Certificate chain<V>;                 /* 1..MaxChainLength: device first, root last */
//	} EnrollResult;
type EnrollResult struct {
	DeviceID DeviceID
	Chain    [][]byte
}

// RenewCertificate asks for a fresh certificate for the authenticated device.
//
//	struct { opaque csr<1..MaxCertificateSize>; } RenewCertificate;
type RenewCertificate struct {
	CSR []byte
}

// CertificateResult answers RenewCertificate.
//
//	struct { Certificate chain<V>; } CertificateResult;
type CertificateResult struct {
	Chain [][]byte
}

// UploadKeyPackages stores KeyPackages for others to claim. With LastResort set the
// list holds exactly one package, which replaces the device's last-resort package.
//
//	struct {
//	    opaque key_packages<1..MaxBodySize><V>;   /* 1..MaxKeyPackages MLSMessage(KeyPackage) */
//	    bool last_resort;
//	} UploadKeyPackages;
type UploadKeyPackages struct {
	KeyPackages [][]byte
	LastResort  bool
}

// ClaimKeyPackage claims one KeyPackage of one device, or of every device of one
// official. A claimed package is deleted, unless it is the last-resort one.
//
//	enum { device(1), official(2), (255) } ClaimTarget;
//	struct {
//	    ClaimTarget target;
//	    select (ClaimKeyPackage.target) {
//	        case device:   DeviceID device_id;
//	        case official: opaque name<1..MaxNameSize>;   /* UTF-8 */
//	    };
//	} ClaimKeyPackage;
//
// Official selects the official case when it is not empty.
type ClaimKeyPackage struct {
	Device   DeviceID
	Official string
}

// Claim targets.
const (
	claimDevice   = 1
	claimOfficial = 2
)

// KeyPackages answers ClaimKeyPackage: one package per device that had one.
//
//	struct {
//	    DeviceID device_id;
//	    opaque key_package<1..MaxBodySize>;       /* MLSMessage(KeyPackage) */
//	} ClaimedKeyPackage;
//	struct { ClaimedKeyPackage key_packages<V>; } KeyPackages;   /* 1..MaxKeyPackages */
type KeyPackages struct {
	KeyPackages []ClaimedKeyPackage
}

// ClaimedKeyPackage is one device's claimed KeyPackage.
type ClaimedKeyPackage struct {
	Device     DeviceID
	KeyPackage []byte
}

// GetDirectory asks for the authority's current signed directory.
//
//	struct {} GetDirectory;
type GetDirectory struct{}

// Directory answers GetDirectory with the directory exactly as the authority signed it.
//
//	struct { opaque signed_directory<1..MaxBodySize>; } Directory;
type Directory struct {
	Signed []byte
}

// DirectoryUpdated tells a connected device the directory changed (an enrolment or a
// revocation); the device fetches it with GetDirectory.
//
//	struct {} DirectoryUpdated;
type DirectoryUpdated struct{}

// Send asks the exchange to store Payload for each recipient. The exchange answers
// with SendResult only once the message is stored durably for every recipient.
//
//	struct {
//	    MessageID message_id;                 /* opaque[16], random, for deduplication */
//	    opaque group_id<1..MaxGroupIDSize>;
//	    uint64 epoch;
//	    bool is_commit;
//	    DeviceID recipients<V>;               /* 0..MaxRecipients, strictly increasing */
//	    uint32 ttl;                           /* seconds; 0 means the exchange's default */
//	    opaque payload<1..MaxBodySize>;       /* one MLSMessage */
//	} Send;
type Send struct {
	MessageID  MessageID
	GroupID    GroupID
	Epoch      uint64
	IsCommit   bool
	Recipients []DeviceID
	TTLSeconds uint32
	Payload    []byte
}

// SendStatus is the outcome of a Send.
type SendStatus uint8

// Send outcomes.
const (
	SendAccepted   SendStatus = 1 // stored; Sequence is set
	SendStaleEpoch SendStatus = 2 // a commit lost its epoch; CurrentEpoch is set
)

// SendResult answers Send.
//
//	enum { accepted(1), stale_epoch(2), (255) } SendStatus;
//	struct {
//	    SendStatus status;
//	    select (SendResult.status) {
//	        case accepted:    uint64 sequence;        /* the exchange's number for the message */
//	        case stale_epoch: uint64 current_epoch;   /* the epoch a commit must now carry */
//	    };
//	} SendResult;
type SendResult struct {
	Status       SendStatus
	Sequence     uint64
	CurrentEpoch uint64
}

// Deliver pushes one stored message to a recipient (request ID 0). The recipient
// acknowledges it with Ack once it has processed and stored its effect.
//
//	struct {
//	    uint64 sequence;                      /* per-recipient mailbox sequence, increasing */
//	    MessageID message_id;
//	    DeviceID sender;
//	    opaque group_id<1..MaxGroupIDSize>;
//	    uint64 sent_at;                       /* Unix milliseconds, when the exchange stored it */
//	    opaque payload<1..MaxBodySize>;
//	} Deliver;
type Deliver struct {
	Sequence  uint64
	MessageID MessageID
	Sender    DeviceID
	GroupID   GroupID
	SentAt    time.Time
	Payload   []byte
}

// Ack deletes delivered messages from the device's mailbox.
//
//	struct { uint64 sequences<V>; } Ack;      /* 1..MaxAck, strictly increasing */
type Ack struct {
	Sequences []uint64
}

// Expired tells a sender that messages reached their TTL before some recipient
// fetched them (request ID 0); the exchange has deleted them.
//
//	struct {
//	    MessageID message_id;
//	    DeviceID recipient;
//	} ExpiredMessage;
//	struct { ExpiredMessage messages<V>; } Expired;   /* 1..MaxAck */
type Expired struct {
	Messages []ExpiredMessage
}

// ExpiredMessage names one message that one recipient never received.
type ExpiredMessage struct {
	MessageID MessageID
	Recipient DeviceID
}

// Revoked tells a device that the authority revoked it (request ID 0). The exchange
// closes the connection after sending it. Proof is the authority's signed directory
// listing the device as revoked: the device wipes its store only if the directory
// verifies against its root and names it, so that the exchange alone cannot make
// devices destroy their data. An exchange without the authority's key sends none.
//
//	struct {
//	    uint64 revoked_at;                     /* Unix milliseconds */
//	    opaque proof<V>;                       /* a signed directory, or empty */
//	} Revoked;
type Revoked struct {
	RevokedAt time.Time
	Proof     []byte
}

// CreateBlob announces an attachment: who may download it and for how long.
//
//	struct {
//	    BlobID blob_id;                       /* opaque[16], random */
//	    uint32 ttl;                           /* seconds; 0 means the exchange's default */
//	    DeviceID recipients<V>;               /* 1..MaxRecipients, strictly increasing */
//	} CreateBlob;
type CreateBlob struct {
	BlobID     BlobID
	TTLSeconds uint32
	Recipients []DeviceID
}

// UploadChunk stores one chunk of a blob's ciphertext; chunks are sent in order from
// index 0, and Last marks the final one.
//
//	struct {
//	    BlobID blob_id;
//	    uint32 index;
//	    bool last;
//	    opaque data<1..MaxChunkSize>;
//	} UploadChunk;
type UploadChunk struct {
	BlobID BlobID
	Index  uint32
	Last   bool
	Data   []byte
}

// DownloadChunk asks for one chunk of a blob.
//
//	struct {
//	    BlobID blob_id;
//	    uint32 index;
//	} DownloadChunk;
type DownloadChunk struct {
	BlobID BlobID
	Index  uint32
}

// BlobChunk answers DownloadChunk.
//
//	struct {
//	    BlobID blob_id;
//	    uint32 index;
//	    bool last;
//	    opaque data<1..MaxChunkSize>;
//	} BlobChunk;
type BlobChunk struct {
	BlobID BlobID
	Index  uint32
	Last   bool
	Data   []byte
}

func (*Hello) Type() MessageType             { return TypeHello }
func (*Welcome) Type() MessageType           { return TypeWelcome }
func (*Error) Type() MessageType             { return TypeError }
func (*OK) Type() MessageType                { return TypeOK }
func (*Ping) Type() MessageType              { return TypePing }
func (*Pong) Type() MessageType              { return TypePong }
func (*Enroll) Type() MessageType            { return TypeEnroll }
func (*EnrollResult) Type() MessageType      { return TypeEnrollResult }
func (*RenewCertificate) Type() MessageType  { return TypeRenewCertificate }
func (*CertificateResult) Type() MessageType { return TypeCertificateResult }
func (*UploadKeyPackages) Type() MessageType { return TypeUploadKeyPackages }
func (*ClaimKeyPackage) Type() MessageType   { return TypeClaimKeyPackage }
func (*KeyPackages) Type() MessageType       { return TypeKeyPackages }
func (*GetDirectory) Type() MessageType      { return TypeGetDirectory }
func (*Directory) Type() MessageType         { return TypeDirectory }
func (*DirectoryUpdated) Type() MessageType  { return TypeDirectoryUpdated }
func (*Send) Type() MessageType              { return TypeSend }
func (*SendResult) Type() MessageType        { return TypeSendResult }
func (*Deliver) Type() MessageType           { return TypeDeliver }
func (*Ack) Type() MessageType               { return TypeAck }
func (*Expired) Type() MessageType           { return TypeExpired }
func (*Revoked) Type() MessageType           { return TypeRevoked }
func (*CreateBlob) Type() MessageType        { return TypeCreateBlob }
func (*UploadChunk) Type() MessageType       { return TypeUploadChunk }
func (*DownloadChunk) Type() MessageType     { return TypeDownloadChunk }
func (*BlobChunk) Type() MessageType         { return TypeBlobChunk }
