// Package server implements the MLS working group's interop service
// (MLSClient, internal/mlsinterop/pb) over package mls, so that the working
// group's test-runner can drive Mahfooz's MLS against itself and against other
// implementations.
//
// Credentials are basic credentials carrying the identity the runner gives, and
// every credential is accepted: this is a test harness, not a client.
package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mahfooz/internal/mlsinterop/pb"
	"mahfooz/mls"
)

// Name is what the Name RPC reports.
const Name = "mahfooz"

// maxPastEpochs bounds how many earlier epochs a state keeps to decrypt
// application messages that arrive after the commit that ended their epoch.
const maxPastEpochs = 8

// Options configure a Server. The zero value uses crypto/rand and time.Now.
type Options struct {
	Rand io.Reader
	Now  func() time.Time
}

// Server is a pb.MLSClientServer backed by package mls. One Server may play
// several actors: group states, KeyPackage transactions, reinitializations and
// external signers all get IDs from one counter, unique across the Server. It
// is safe for concurrent use; calls are serialized by one mutex.
type Server struct {
	pb.UnimplementedMLSClientServer

	rand io.Reader
	now  func() time.Time

	mu      sync.Mutex
	lastID  uint32
	states  map[uint32]*state
	txs     map[uint32]*transaction
	reinits map[uint32]*reinit
	signers map[uint32]*signer
}

// New returns a Server with no state.
func New(opts Options) *Server {
	s := &Server{
		rand:    opts.Rand,
		now:     opts.Now,
		states:  map[uint32]*state{},
		txs:     map[uint32]*transaction{},
		reinits: map[uint32]*reinit{},
		signers: map[uint32]*signer{},
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// pskStore holds external PSKs by ID. It is only touched with Server.mu held,
// including through mls.Config.ExternalPSK, which mls calls from Group methods.
type pskStore map[string][]byte

func (p pskStore) lookup(id []byte) ([]byte, bool) {
	v, ok := p[string(id)]
	return v, ok
}

func (p pskStore) clone() pskStore {
	out := make(pskStore, len(p))
	for k, v := range p {
		out[k] = v
	}
	return out
}

// state is one actor's membership of one group.
type state struct {
	group    *mls.Group
	identity []byte
	sigKey   *mls.SignaturePrivateKey
	encrypt  bool
	psks     pskStore
	// past holds this member's view of earlier epochs, oldest first, only to
	// decrypt delayed application messages.
	past []*mls.Group
	// seen holds the proposals (as sent) already cached in epoch seenEpoch, with
	// their references, so that a proposal handed over twice, or back to its
	// sender, is cached once.
	seen      map[string]mls.ProposalRef
	seenEpoch uint64
}

// transaction is a KeyPackage waiting for a Welcome.
type transaction struct {
	kp       *mls.KeyPackage
	priv     *mls.KeyPackagePrivate
	identity []byte
	psks     pskStore
}

// reinit is a member of a group ended by a ReInit commit, with the KeyPackage it
// offers for the successor group.
type reinit struct {
	old      *mls.Group
	identity []byte
	encrypt  bool
	psks     pskStore
	kp       *mls.KeyPackage
	priv     *mls.KeyPackagePrivate
}

// signer is an external sender (RFC 9420 §12.1.8.1).
type signer struct {
	cs     mls.CipherSuite
	sigKey *mls.SignaturePrivateKey
}

// newID returns the next ID of the Server's single ID space.
func (s *Server) newID() uint32 {
	s.lastID++
	return s.lastID
}

func (s *Server) config(encrypt bool, psks pskStore) mls.Config {
	return mls.Config{
		Rand:             s.rand,
		Now:              s.now,
		Validator:        mls.AcceptAllCredentials,
		ExternalPSK:      psks.lookup,
		EncryptHandshake: encrypt,
	}
}

func (s *Server) addState(st *state) uint32 {
	id := s.newID()
	s.states[id] = st
	return id
}

// advance gives a state that moved to a new epoch a new ID, retiring the old one.
func (s *Server) advance(id uint32, st *state) uint32 {
	delete(s.states, id)
	return s.addState(st)
}

// --- errors ---

func notFound(what string, id uint32) error {
	return status.Errorf(codes.NotFound, "no %s with id %d", what, id)
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// mlsError maps an error of package mls to a gRPC status: misuse of a state is
// FailedPrecondition, anything the peer sent or asked for is InvalidArgument.
func mlsError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, mls.ErrPendingCommit), errors.Is(err, mls.ErrNoPendingCommit),
		errors.Is(err, mls.ErrInactive), errors.Is(err, mls.ErrWrongEpoch):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return status.Error(codes.InvalidArgument, err.Error())
}

// --- lookups and parsing ---

func (s *Server) state(id uint32) (*state, error) {
	st, ok := s.states[id]
	if !ok {
		return nil, notFound("state", id)
	}
	return st, nil
}

func cipherSuite(v uint32) (mls.CipherSuite, error) {
	cs := mls.CipherSuite(v)
	if v > 0xffff || !cs.Supported() {
		return 0, invalid("unsupported cipher suite 0x%04x", v)
	}
	return cs, nil
}

func parseMessage(data []byte, wf mls.WireFormat) (*mls.MLSMessage, error) {
	msg, err := mls.UnmarshalMLSMessage(data)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if wf != 0 && msg.WireFormat != wf {
		return nil, invalid("message has wire format %d, want %d", msg.WireFormat, wf)
	}
	return msg, nil
}

// parseKeyPackage accepts a KeyPackage in an MLSMessage, as the interop
// runner passes them, or bare.
func parseKeyPackage(data []byte) (*mls.KeyPackage, error) {
	if msg, err := mls.UnmarshalMLSMessage(data); err == nil && msg.WireFormat == mls.WireFormatKeyPackage {
		return msg.KeyPackage, nil
	}
	kp, err := mls.UnmarshalKeyPackage(data)
	if err != nil {
		return nil, invalid("key package: %v", err)
	}
	return kp, nil
}

func parseKeyPackages(data [][]byte) ([]*mls.KeyPackage, error) {
	out := make([]*mls.KeyPackage, len(data))
	for i, d := range data {
		var err error
		if out[i], err = parseKeyPackage(d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func parseWelcome(data []byte) (*mls.Welcome, error) {
	msg, err := parseMessage(data, mls.WireFormatWelcome)
	if err != nil {
		return nil, err
	}
	return msg.Welcome, nil
}

func parseGroupInfo(data []byte) (*mls.GroupInfo, error) {
	msg, err := parseMessage(data, mls.WireFormatGroupInfo)
	if err != nil {
		return nil, err
	}
	if !msg.GroupInfo.GroupContext.CipherSuite.Supported() {
		return nil, invalid("unsupported cipher suite %v", msg.GroupInfo.GroupContext.CipherSuite)
	}
	return msg.GroupInfo, nil
}

// contentType is the content type a PublicMessage or PrivateMessage shows in
// the clear, so that a message is checked for what it claims to be before Process
// applies it.
func contentType(msg *mls.MLSMessage) mls.ContentType {
	switch {
	case msg.PublicMessage != nil:
		return msg.PublicMessage.Content.ContentType
	case msg.PrivateMessage != nil:
		return msg.PrivateMessage.ContentType
	}
	return 0
}

// optionalTree returns nil for an absent out-of-band tree.
func optionalTree(data []byte) []byte {
	if len(data) == 0 {
		return nil
	}
	return data
}

func extensions(in []*pb.Extension) (mls.Extensions, error) {
	var out mls.Extensions
	seen := map[uint32]bool{}
	for _, e := range in {
		t := e.GetExtensionType()
		if t > 0xffff || seen[t] {
			return nil, invalid("bad or repeated extension type %d", t)
		}
		seen[t] = true
		out = append(out, mls.Extension{Type: mls.ExtensionType(t), Data: e.GetExtensionData()})
	}
	return out, nil
}

// leafOf finds the member whose basic credential holds identity.
func leafOf(members []mls.Member, identity []byte) (mls.LeafIndex, error) {
	for _, m := range members {
		if m.Credential.Type == mls.CredentialTypeBasic && bytes.Equal(m.Credential.Identity, identity) {
			return m.Leaf, nil
		}
	}
	return 0, invalid("no member with identity %q", identity)
}

// treeMembers returns the members of the tree in gi, or of the out-of-band tree.
func treeMembers(gi *mls.GroupInfo, outOfBand []byte) ([]mls.Member, error) {
	data, ok := gi.Extensions.Find(mls.ExtensionTypeRatchetTree)
	if !ok {
		data = outOfBand
	}
	if len(data) == 0 {
		return nil, invalid("no ratchet tree")
	}
	members, err := mls.RatchetTreeMembers(data)
	if err != nil {
		return nil, invalid("%v", err)
	}
	return members, nil
}

func (s *Server) nonce(cs mls.CipherSuite) ([]byte, error) {
	n := make([]byte, cs.Nh())
	if _, err := io.ReadFull(s.rand, n); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return n, nil
}

// resumptionFrom looks up resumption PSKs of the group g.
func resumptionFrom(g *mls.Group) func(mls.GroupID, uint64) ([]byte, bool) {
	id := g.GroupID()
	return func(groupID mls.GroupID, epoch uint64) ([]byte, bool) {
		if !bytes.Equal(groupID, id) {
			return nil, false
		}
		return g.ResumptionPSK(epoch)
	}
}

// --- per-state bookkeeping ---

// remember copies the group in its current epoch before an operation that may
// end that epoch, so that application messages of the epoch can still be read.
// A copy that cannot be made only costs that ability.
func (s *Server) remember(st *state) *mls.Group {
	data, err := st.group.MarshalState()
	if err != nil {
		return nil
	}
	old, err := mls.LoadGroup(data, s.config(st.encrypt, st.psks))
	if err != nil {
		return nil
	}
	return old
}

// keep files a copy made by remember if the group has since left its epoch.
func (st *state) keep(old *mls.Group) {
	if old == nil || (old.Epoch() == st.group.Epoch() && bytes.Equal(old.GroupID(), st.group.GroupID())) {
		return
	}
	st.past = append(st.past, old)
	if len(st.past) > maxPastEpochs {
		st.past = st.past[len(st.past)-maxPastEpochs:]
	}
}

func (st *state) markSeen(msg []byte, ref mls.ProposalRef) {
	if st.seen == nil || st.seenEpoch != st.group.Epoch() {
		st.seen = map[string]mls.ProposalRef{}
		st.seenEpoch = st.group.Epoch()
	}
	st.seen[string(msg)] = ref
}

// seenRef returns the reference of a proposal already cached in this epoch.
func (st *state) seenRef(msg []byte) (mls.ProposalRef, bool) {
	if st.seenEpoch != st.group.Epoch() {
		return nil, false
	}
	ref, ok := st.seen[string(msg)]
	return ref, ok
}

// receiveProposals caches proposals sent by others, skipping those already
// cached (including this member's own), and returns the references of all of
// them, each once, in order.
func (st *state) receiveProposals(msgs [][]byte) ([]mls.ProposalRef, error) {
	refs := make([]mls.ProposalRef, 0, len(msgs))
	listed := map[string]bool{}
	for _, data := range msgs {
		ref, ok := st.seenRef(data)
		if !ok {
			msg, err := parseMessage(data, 0)
			if err != nil {
				return nil, err
			}
			if ct := contentType(msg); ct != mls.ContentTypeProposal {
				return nil, invalid("message handed over as a proposal has content type %d", ct)
			}
			r, err := st.group.Process(msg)
			if err != nil {
				return nil, mlsError(fmt.Errorf("proposal: %w", err))
			}
			ref = r.ProposalRef
			st.markSeen(data, ref)
		}
		if !listed[string(ref)] {
			listed[string(ref)] = true
			refs = append(refs, ref)
		}
	}
	return refs, nil
}

// propose caches and returns a proposal of this member.
func (st *state) propose(msg *mls.MLSMessage, ref mls.ProposalRef, err error) (*pb.ProposalResponse, error) {
	if err != nil {
		return nil, mlsError(err)
	}
	data := msg.Bytes()
	st.markSeen(data, ref)
	return &pb.ProposalResponse{Proposal: data}, nil
}

// --- RPCs: the stack ---

// Name reports the stack's name.
func (s *Server) Name(context.Context, *pb.NameRequest) (*pb.NameResponse, error) {
	return &pb.NameResponse{Name: Name}, nil
}

// SupportedCiphersuites lists the cipher suites package mls implements.
func (s *Server) SupportedCiphersuites(context.Context, *pb.SupportedCiphersuitesRequest) (*pb.SupportedCiphersuitesResponse, error) {
	resp := &pb.SupportedCiphersuitesResponse{}
	for _, cs := range mls.SupportedCipherSuites {
		resp.Ciphersuites = append(resp.Ciphersuites, uint32(cs))
	}
	return resp, nil
}

// --- RPCs: becoming a member ---

// CreateGroup creates a one-member group.
func (s *Server) CreateGroup(_ context.Context, req *pb.CreateGroupRequest) (*pb.CreateGroupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, err := cipherSuite(req.GetCipherSuite())
	if err != nil {
		return nil, err
	}
	sigKey, err := mls.GenerateSignatureKey(cs, s.rand)
	if err != nil {
		return nil, mlsError(err)
	}
	psks := pskStore{}
	g, err := mls.NewGroup(cs, req.GetGroupId(), mls.NewBasicCredential(req.GetIdentity()), sigKey,
		mls.CreateOptions{}, s.config(req.GetEncryptHandshake(), psks))
	if err != nil {
		return nil, mlsError(err)
	}
	id := s.addState(&state{group: g, identity: req.GetIdentity(), sigKey: sigKey, encrypt: req.GetEncryptHandshake(), psks: psks})
	return &pb.CreateGroupResponse{StateId: id}, nil
}

// newKeyPackage makes a KeyPackage with a fresh signature key.
func (s *Server) newKeyPackage(cs mls.CipherSuite, identity []byte) (*mls.KeyPackage, *mls.KeyPackagePrivate, error) {
	sigKey, err := mls.GenerateSignatureKey(cs, s.rand)
	if err != nil {
		return nil, nil, mlsError(err)
	}
	kp, priv, err := mls.NewKeyPackage(cs, mls.NewBasicCredential(identity), sigKey, mls.KeyPackageOptions{}, s.now(), s.rand)
	if err != nil {
		return nil, nil, mlsError(err)
	}
	return kp, priv, nil
}

// CreateKeyPackage makes a KeyPackage and keeps its private keys for JoinGroup.
func (s *Server) CreateKeyPackage(_ context.Context, req *pb.CreateKeyPackageRequest) (*pb.CreateKeyPackageResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, err := cipherSuite(req.GetCipherSuite())
	if err != nil {
		return nil, err
	}
	kp, priv, err := s.newKeyPackage(cs, req.GetIdentity())
	if err != nil {
		return nil, err
	}
	id := s.newID()
	s.txs[id] = &transaction{kp: kp, priv: priv, identity: req.GetIdentity(), psks: pskStore{}}
	return &pb.CreateKeyPackageResponse{
		TransactionId:  id,
		KeyPackage:     mls.NewKeyPackageMessage(kp).Bytes(),
		InitPriv:       priv.InitKey.Bytes(),
		EncryptionPriv: priv.EncryptionKey.Bytes(),
		SignaturePriv:  priv.SignatureKey.Bytes(),
	}, nil
}

// JoinGroup joins from a Welcome with the KeyPackage of a transaction.
func (s *Server) JoinGroup(_ context.Context, req *pb.JoinGroupRequest) (*pb.JoinGroupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, ok := s.txs[req.GetTransactionId()]
	if !ok {
		return nil, notFound("transaction", req.GetTransactionId())
	}
	w, err := parseWelcome(req.GetWelcome())
	if err != nil {
		return nil, err
	}
	g, err := mls.JoinGroup(w, tx.kp, tx.priv, mls.JoinOptions{RatchetTree: optionalTree(req.GetRatchetTree())},
		s.config(req.GetEncryptHandshake(), tx.psks))
	if err != nil {
		return nil, mlsError(err)
	}
	delete(s.txs, req.GetTransactionId())
	id := s.addState(&state{group: g, identity: tx.identity, sigKey: tx.priv.SignatureKey, encrypt: req.GetEncryptHandshake(), psks: tx.psks})
	return &pb.JoinGroupResponse{StateId: id, EpochAuthenticator: g.EpochAuthenticator()}, nil
}

// ExternalJoin joins by external commit (RFC 9420 §12.4.3.2).
func (s *Server) ExternalJoin(_ context.Context, req *pb.ExternalJoinRequest) (*pb.ExternalJoinResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gi, err := parseGroupInfo(req.GetGroupInfo())
	if err != nil {
		return nil, err
	}
	cs := gi.GroupContext.CipherSuite
	sigKey, err := mls.GenerateSignatureKey(cs, s.rand)
	if err != nil {
		return nil, mlsError(err)
	}
	opts := mls.ExternalJoinOptions{RatchetTree: optionalTree(req.GetRatchetTree())}
	psks := pskStore{}
	for _, p := range req.GetPsks() {
		psks[string(p.GetPskId())] = p.GetPskSecret()
		opts.PSKs = append(opts.PSKs, mls.PreSharedKeyID{PSKType: mls.PSKTypeExternal, PSKID: p.GetPskId()})
	}
	if req.GetRemovePrior() {
		members, err := treeMembers(gi, req.GetRatchetTree())
		if err != nil {
			return nil, err
		}
		prior, err := leafOf(members, req.GetIdentity())
		if err != nil {
			return nil, err
		}
		opts.RemovePrior = &prior
	}
	g, commit, err := mls.ExternalJoin(gi, mls.NewBasicCredential(req.GetIdentity()), sigKey, opts, s.config(req.GetEncryptHandshake(), psks))
	if err != nil {
		return nil, mlsError(err)
	}
	id := s.addState(&state{group: g, identity: req.GetIdentity(), sigKey: sigKey, encrypt: req.GetEncryptHandshake(), psks: psks})
	return &pb.ExternalJoinResponse{StateId: id, Commit: commit.Bytes(), EpochAuthenticator: g.EpochAuthenticator()}, nil
}

// --- RPCs: using a group state ---

// GroupInfo returns a GroupInfo that allows external joins, with the ratchet
// tree inside or, for external_tree, beside it.
func (s *Server) GroupInfo(_ context.Context, req *pb.GroupInfoRequest) (*pb.GroupInfoResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	gi, err := st.group.GroupInfo(mls.GroupInfoOptions{ExternalPub: true, RatchetTree: new(!req.GetExternalTree())})
	if err != nil {
		return nil, mlsError(err)
	}
	resp := &pb.GroupInfoResponse{GroupInfo: gi.Bytes()}
	if req.GetExternalTree() {
		resp.RatchetTree = st.group.RatchetTree()
	}
	return resp, nil
}

// StateAuth returns the epoch authenticator.
func (s *Server) StateAuth(_ context.Context, req *pb.StateAuthRequest) (*pb.StateAuthResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	return &pb.StateAuthResponse{StateAuthSecret: st.group.EpochAuthenticator()}, nil
}

// Export runs MLS-Exporter.
func (s *Server) Export(_ context.Context, req *pb.ExportRequest) (*pb.ExportResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	if req.GetKeyLength() > 0xffff {
		return nil, invalid("key length %d too large", req.GetKeyLength())
	}
	secret, err := st.group.Export(req.GetLabel(), req.GetContext(), int(req.GetKeyLength()))
	if err != nil {
		return nil, mlsError(err)
	}
	return &pb.ExportResponse{ExportedSecret: secret}, nil
}

// Protect encrypts application data.
func (s *Server) Protect(_ context.Context, req *pb.ProtectRequest) (*pb.ProtectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	msg, err := st.group.Protect(req.GetPlaintext(), req.GetAuthenticatedData())
	if err != nil {
		return nil, mlsError(err)
	}
	return &pb.ProtectResponse{Ciphertext: msg.Bytes()}, nil
}

// Unprotect decrypts application data of the current epoch or of one of the
// last few.
func (s *Server) Unprotect(_ context.Context, req *pb.UnprotectRequest) (*pb.UnprotectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.GetStateId())
	if err != nil {
		return nil, err
	}
	msg, err := parseMessage(req.GetCiphertext(), mls.WireFormatPrivateMessage)
	if err != nil {
		return nil, err
	}
	if ct := contentType(msg); ct != mls.ContentTypeApplication {
		return nil, invalid("not an application message (content type %d)", ct)
	}
	pm := msg.PrivateMessage
	g := st.group
	if pm.Epoch != g.Epoch() {
		for _, old := range st.past {
			if old.Epoch() == pm.Epoch && bytes.Equal(old.GroupID(), pm.GroupID) {
				g = old
			}
		}
	}
	r, err := g.Process(msg)
	if err != nil {
		return nil, mlsError(err)
	}
	if r.ContentType != mls.ContentTypeApplication {
		return nil, invalid("not an application message (content type %d)", r.ContentType)
	}
	return &pb.UnprotectResponse{AuthenticatedData: r.AuthenticatedData, Plaintext: r.ApplicationData}, nil
}

// StorePSK installs an external PSK in a state or a pending transaction.
func (s *Server) StorePSK(_ context.Context, req *pb.StorePSKRequest) (*pb.StorePSKResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := req.GetStateOrTransactionId()
	var psks pskStore
	if st, ok := s.states[id]; ok {
		psks = st.psks
	} else if tx, ok := s.txs[id]; ok {
		psks = tx.psks
	} else if ri, ok := s.reinits[id]; ok {
		psks = ri.psks
	} else {
		return nil, notFound("state or transaction", id)
	}
	psks[string(req.GetPskId())] = bytes.Clone(req.GetPskSecret())
	return &pb.StorePSKResponse{}, nil
}
