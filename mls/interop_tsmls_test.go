package mls

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mahfooz/mls/internal/tsmlsdriver"
)

// TestInteropTSMLS runs whole group lives between this package and ts-mls, an
// independent TypeScript implementation of RFC 9420, driven by
// interop/tsmls/driver.mjs. Only wire bytes cross between the two: MLSMessages
// (KeyPackages, Welcomes, commits, application messages) and ratchet_tree
// extension data, all as hex. Each cipher suite runs in both directions:
//
//   - go-creates: a Go member creates the group and adds a ts-mls member by
//     Welcome; the ts-mls member adds a second Go member (tree out of band).
//   - tsmls-creates: a ts-mls member creates the group and adds a Go member
//     (tree out of band); the Go member adds a second, GREASEd ts-mls member.
//
// Then in each direction: application messages every way; update commits with
// a path from every member, in both PublicMessage and PrivateMessage; one side
// removes the creator, the other adds a fourth member into the blank leaf 0
// and removes the member of the first side in the middle (each removed member
// processes its removal and finds itself out); more updates; an MLS-Exporter
// secret. After every step all members must agree on the epoch, epoch
// authenticator, tree hash and roster.
func TestInteropTSMLS(t *testing.T) {
	node, dir := tsmlsSetup(t)
	directions := []struct {
		name string
		run  func(x *tsInterop)
	}{
		{"go-creates", tsGoCreates},
		{"tsmls-creates", tsTSCreates},
	}
	for _, cs := range []CipherSuite{
		MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
		MLS_128_DHKEMP256_AES128GCM_SHA256_P256,
		MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519,
		MLS_256_DHKEMP384_AES256GCM_SHA384_P384,
	} {
		for _, dr := range directions {
			t.Run(fmt.Sprintf("suite%d/%s", uint16(cs), dr.name), func(t *testing.T) {
				t.Parallel()
				d, err := tsmlsdriver.Start(node, dir, tsmlsTimeout)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					if err := d.Close(); err != nil {
						t.Errorf("closing the ts-mls driver: %v", err)
					}
				})
				x := &tsInterop{t: t, cs: cs, d: d, groupID: GroupID(fmt.Sprintf("interop-%s-%d", dr.name, uint16(cs)))}
				dr.run(x)
			})
		}
	}
}

// tsmlsTimeout bounds every request to the driver, whose slowest operation
// (a commit in suite 7) takes well under a second.
const tsmlsTimeout = 30 * time.Second

// tsmlsSetup finds node and the driver's directory, running `npm ci` once if
// its node_modules is missing. The test is skipped only when node is not on
// PATH or the packages cannot be installed; under CI (CI set) it fails
// instead, so that it cannot pass without running.
func tsmlsSetup(t *testing.T) (node, dir string) {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skip("ts-mls interop needs node on PATH: %v", err)
	}
	dir, err = filepath.Abs(filepath.Join("interop", "tsmls"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ts-mls", "package.json")); err == nil {
		return node, dir
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		skip("ts-mls interop: %s/node_modules is missing and npm is not on PATH to install it (cd mls/interop/tsmls && npm ci)", dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		skip("ts-mls interop: node_modules is missing and `npm ci` in %s failed: %v\n%s", dir, err, out)
	}
	return node, dir
}

// tsInterop is one scenario: a group shared between Go members and ts-mls
// clients of one driver process.
type tsInterop struct {
	t       *testing.T
	cs      CipherSuite
	d       *tsmlsdriver.Driver
	groupID GroupID
	members []*tsMember // the current members, in the order they joined
}

// tsMember is a Go member (g set once it is in the group) or a ts-mls client.
type tsMember struct {
	name string
	goM  bool

	// Go members only.
	cfg    Config
	sig    *SignaturePrivateKey
	kp     *KeyPackage
	kpPriv *KeyPackagePrivate
	g      *Group
}

func (m *tsMember) String() string {
	if m.goM {
		return m.name + "(go)"
	}
	return m.name + "(ts-mls)"
}

// tsState is the driver's answer to state.
type tsState struct {
	Epoch              uint64 `json:"epoch"`
	EpochAuthenticator string `json:"epochAuthenticator"`
	MyLeafIndex        uint32 `json:"myLeafIndex"`
	TreeHash           string `json:"treeHash"`
	Active             bool   `json:"active"`
	Members            []struct {
		LeafIndex          uint32 `json:"leafIndex"`
		Identity           string `json:"identity"`
		SignaturePublicKey string `json:"signaturePublicKey"`
	} `json:"members"`
}

// tsCommitOut is the driver's answer to add, remove, update and commit.
type tsCommitOut struct {
	Commit               string `json:"commit"`
	Welcome              string `json:"welcome"`
	RatchetTree          string `json:"ratchetTree"`
	RatchetTreeExtension bool   `json:"ratchetTreeExtension"`
	Epoch                uint64 `json:"epoch"`
}

// tsView is one member's view of the group, in a form both sides produce.
type tsView struct {
	epoch    uint64
	auth     string
	treeHash string
	roster   []string // "leaf:identity:signature key", hex
	self     string   // own identity as the roster shows it at the member's own leaf
	active   bool
}

func (x *tsInterop) call(op string, fields map[string]any, resp any) {
	x.t.Helper()
	if err := x.d.Call(op, fields, resp); err != nil {
		x.t.Fatalf("ts-mls %s: %v", op, err)
	}
}

// newGo makes a Go client with a basic credential; it is not in the group yet.
func (x *tsInterop) newGo(name string, encryptHandshake, omitTree bool) *tsMember {
	x.t.Helper()
	sig, err := GenerateSignatureKey(x.cs, rand.Reader)
	if err != nil {
		x.t.Fatal(err)
	}
	return &tsMember{name: name, goM: true, sig: sig, cfg: Config{
		Validator:        AcceptAllCredentials,
		EncryptHandshake: encryptHandshake,
		OmitRatchetTree:  omitTree,
	}}
}

// newTS makes a ts-mls client; it is not in the group yet.
func (x *tsInterop) newTS(name string, grease bool) *tsMember {
	x.t.Helper()
	var out struct {
		Suite              int    `json:"suite"`
		SignaturePublicKey string `json:"signaturePublicKey"`
	}
	x.call("newClient", map[string]any{"client": name, "identity": hex.EncodeToString([]byte(name)), "suite": int(x.cs), "grease": grease}, &out)
	if out.Suite != int(x.cs) {
		x.t.Fatalf("ts-mls client %s: suite %d, want %d", name, out.Suite, x.cs)
	}
	// Every signature the client makes is checked against this key; a key in a
	// form the RFC does not allow (such as a compressed SEC1 point) is named
	// here rather than as a bad signature later.
	if err := x.cs.ValidateSignaturePublicKey(x.unhex(out.SignaturePublicKey)); err != nil {
		x.t.Fatalf("ts-mls client %s has signature key %s (%d bytes): %v; RFC 9420 §5.1.1 wants an "+
			"UncompressedPointRepresentation for ECDSA, and @noble/curves' getPublicKey returns the compressed "+
			"form unless asked otherwise: driver.mjs newClient must publish getPublicKey(signKey, false)",
			name, out.SignaturePublicKey, len(out.SignaturePublicKey)/2, err)
	}
	return &tsMember{name: name}
}

// keyPackage returns a fresh KeyPackage of m as a hex MLSMessage.
func (x *tsInterop) keyPackage(m *tsMember) string {
	x.t.Helper()
	if !m.goM {
		var out struct {
			KeyPackage string `json:"keyPackage"`
		}
		x.call("keyPackage", map[string]any{"client": m.name}, &out)
		return out.KeyPackage
	}
	kp, priv, err := NewKeyPackage(x.cs, NewBasicCredential([]byte(m.name)), m.sig, KeyPackageOptions{}, time.Now(), rand.Reader)
	if err != nil {
		x.t.Fatal(err)
	}
	m.kp, m.kpPriv = kp, priv
	return hex.EncodeToString(NewKeyPackageMessage(kp).Bytes())
}

// goCreate has Go member m create the group.
func (x *tsInterop) goCreate(m *tsMember) {
	x.t.Helper()
	g, err := NewGroup(x.cs, x.groupID, NewBasicCredential([]byte(m.name)), m.sig, CreateOptions{}, m.cfg)
	if err != nil {
		x.t.Fatalf("%v creates the group: %v", m, err)
	}
	m.g = g
	x.members = append(x.members, m)
}

// tsCreate has ts-mls client m create the group.
func (x *tsInterop) tsCreate(m *tsMember) {
	x.t.Helper()
	x.call("createGroup", map[string]any{"client": m.name, "groupId": hex.EncodeToString(x.groupID)}, nil)
	x.members = append(x.members, m)
}

// join has m join from a hex Welcome, with the hex ratchet tree when the
// Welcome's GroupInfo leaves it out.
func (x *tsInterop) join(m *tsMember, welcome, tree string) {
	x.t.Helper()
	if m.goM {
		msg := x.parse(welcome, WireFormatWelcome)
		var opts JoinOptions
		if tree != "" {
			opts.RatchetTree = x.unhex(tree)
		}
		g, err := JoinGroup(msg.Welcome, m.kp, m.kpPriv, opts, m.cfg)
		if err != nil {
			x.t.Fatalf("%v joins: %v", m, err)
		}
		m.g = g
	} else {
		fields := map[string]any{"client": m.name, "welcome": welcome}
		if tree != "" {
			fields["ratchetTree"] = tree
		}
		x.call("join", fields, nil)
	}
	x.members = append(x.members, m)
}

// joinWithoutTree checks that m cannot join from a Welcome that lacks the
// ratchet tree when none is supplied, and that the attempt costs nothing.
func (x *tsInterop) joinWithoutTree(m *tsMember, welcome string) {
	x.t.Helper()
	if m.goM {
		msg := x.parse(welcome, WireFormatWelcome)
		if _, err := JoinGroup(msg.Welcome, m.kp, m.kpPriv, JoinOptions{}, m.cfg); err == nil {
			x.t.Fatalf("%v joined from a Welcome without a ratchet tree and with none supplied", m)
		}
		return
	}
	err := x.d.Call("join", map[string]any{"client": m.name, "welcome": welcome}, nil)
	var refused *tsmlsdriver.Error
	if !errors.As(err, &refused) {
		x.t.Fatalf("%v joining from a Welcome without a ratchet tree and with none supplied: got %v, want a refusal", m, err)
	}
}

// goCommit has Go member from commit opts in the given wire format, delivers
// the commit to every other member (removed ones included), merges it, and
// returns the result. removed lists the members the commit removes.
func (x *tsInterop) goCommit(step string, from *tsMember, private bool, opts CommitOptions, removed ...*tsMember) *CommitResult {
	x.t.Helper()
	// Config is fixed when a Group is made; flipping the field lets one member
	// send its commits in both wire formats.
	from.g.cfg.EncryptHandshake = private
	before := from.g.Epoch()
	res, err := from.g.Commit(opts)
	if err != nil {
		x.t.Fatalf("%s: %v commits: %v", step, from, err)
	}
	commit := hex.EncodeToString(res.Commit.Bytes())
	x.checkWire(step, commit, private)
	x.deliver(step, from, commit, before+1, removed)
	if _, err := from.g.MergePendingCommit(); err != nil {
		x.t.Fatalf("%s: %v merges its commit: %v", step, from, err)
	}
	if from.g.Epoch() != before+1 {
		x.t.Fatalf("%s: %v at epoch %d after merging, want %d", step, from, from.g.Epoch(), before+1)
	}
	return res
}

// tsCommit has ts-mls client from run a commit operation (add, remove,
// update), delivers the commit to every other member, and returns the
// driver's answer.
func (x *tsInterop) tsCommit(step string, from *tsMember, op string, private bool, fields map[string]any, removed ...*tsMember) tsCommitOut {
	x.t.Helper()
	req := map[string]any{"client": from.name, "wireFormat": "public"}
	if private {
		req["wireFormat"] = "private"
	}
	for k, v := range fields {
		req[k] = v
	}
	var out tsCommitOut
	x.call(op, req, &out)
	x.checkWire(step, out.Commit, private)
	x.deliver(step, from, out.Commit, out.Epoch, removed)
	return out
}

// checkWire checks a commit's wire format, and that Go parses it.
func (x *tsInterop) checkWire(step, commit string, private bool) {
	x.t.Helper()
	want := WireFormatPublicMessage
	if private {
		want = WireFormatPrivateMessage
	}
	msg, err := UnmarshalMLSMessage(x.unhex(commit))
	if err != nil {
		x.t.Fatalf("%s: parsing the commit: %v", step, err)
	}
	if msg.WireFormat != want {
		x.t.Fatalf("%s: commit in wire format %d, want %d", step, msg.WireFormat, want)
	}
}

// deliver hands a commit from one member to every other current member and
// checks that each ends in epoch; the removed ones must find themselves out,
// and leave the member list.
func (x *tsInterop) deliver(step string, from *tsMember, commit string, epoch uint64, removed []*tsMember) {
	x.t.Helper()
	for _, m := range x.members {
		if m == from {
			continue
		}
		gone := slices.Contains(removed, m)
		if m.goM {
			r, err := m.g.Process(x.parse(commit, 0))
			if err != nil {
				x.t.Fatalf("%s: %v processes the commit of %v: %v", step, m, from, err)
			}
			if r.ContentType != ContentTypeCommit || r.Commit == nil {
				x.t.Fatalf("%s: %v: content type %v, want commit", step, m, r.ContentType)
			}
			if r.Commit.SelfRemoved != gone || m.g.Active() == gone {
				x.t.Fatalf("%s: %v: SelfRemoved %v, Active %v; removed: %v", step, m, r.Commit.SelfRemoved, m.g.Active(), gone)
			}
			// A removed member cannot enter the new epoch: it cannot decrypt the path.
			if r.Commit.Epoch != epoch || (!gone && m.g.Epoch() != epoch) {
				x.t.Fatalf("%s: %v at epoch %d (commit effect %d), want %d", step, m, m.g.Epoch(), r.Commit.Epoch, epoch)
			}
			continue
		}
		var out struct {
			ContentType string `json:"contentType"`
			Epoch       uint64 `json:"epoch"`
			Active      bool   `json:"active"`
		}
		x.call("process", map[string]any{"client": m.name, "message": commit}, &out)
		if out.ContentType != "commit" || (!gone && out.Epoch != epoch) || out.Active == gone {
			x.t.Fatalf("%s: %v processed the commit of %v: content type %q, epoch %d, active %v; want commit, %d, %v",
				step, m, from, out.ContentType, out.Epoch, out.Active, epoch, !gone)
		}
	}
	x.members = slices.DeleteFunc(x.members, func(m *tsMember) bool { return slices.Contains(removed, m) })
}

// send has from protect text and every other member read it.
func (x *tsInterop) send(from *tsMember, text string) {
	x.t.Helper()
	aad := []byte("aad:" + from.name)
	var msg string
	if from.goM {
		m, err := from.g.Protect([]byte(text), aad)
		if err != nil {
			x.t.Fatalf("%v protects: %v", from, err)
		}
		msg = hex.EncodeToString(m.Bytes())
	} else {
		var out struct {
			Message string `json:"message"`
		}
		x.call("protect", map[string]any{"client": from.name, "data": hex.EncodeToString([]byte(text)), "authenticatedData": hex.EncodeToString(aad)}, &out)
		msg = out.Message
	}
	x.parse(msg, WireFormatPrivateMessage)
	for _, m := range x.members {
		if m == from {
			continue
		}
		if m.goM {
			r, err := m.g.Process(x.parse(msg, 0))
			if err != nil {
				x.t.Fatalf("%v reads a message of %v: %v", m, from, err)
			}
			if r.ContentType != ContentTypeApplication || string(r.ApplicationData) != text ||
				string(r.AuthenticatedData) != string(aad) || string(r.SenderCredential.Identity) != from.name {
				x.t.Fatalf("%v read %q (aad %q) from %q, want %q (aad %q) from %s",
					m, r.ApplicationData, r.AuthenticatedData, r.SenderCredential.Identity, text, aad, from.name)
			}
			continue
		}
		var out struct {
			ContentType string `json:"contentType"`
			Application string `json:"application"`
		}
		x.call("process", map[string]any{"client": m.name, "message": msg}, &out)
		if out.ContentType != "application" || out.Application != hex.EncodeToString([]byte(text)) {
			x.t.Fatalf("%v read %s %q from %v, want %q", m, out.ContentType, x.unhex(out.Application), from, text)
		}
	}
}

// view returns m's view of the group.
func (x *tsInterop) view(m *tsMember) tsView {
	x.t.Helper()
	if m.goM {
		g := m.g
		v := tsView{epoch: g.Epoch(), auth: hex.EncodeToString(g.EpochAuthenticator()), treeHash: hex.EncodeToString(g.TreeHash()), active: g.Active()}
		for _, mb := range g.Members() {
			v.roster = append(v.roster, fmt.Sprintf("%d:%x:%x", mb.Leaf, mb.Credential.Identity, mb.SignatureKey))
			if mb.Leaf == g.OwnLeaf() {
				v.self = string(mb.Credential.Identity)
			}
		}
		return v
	}
	var s tsState
	x.call("state", map[string]any{"client": m.name}, &s)
	v := tsView{epoch: s.Epoch, auth: strings.ToLower(s.EpochAuthenticator), treeHash: strings.ToLower(s.TreeHash), active: s.Active}
	for _, mb := range s.Members {
		v.roster = append(v.roster, fmt.Sprintf("%d:%s:%s", mb.LeafIndex, strings.ToLower(mb.Identity), strings.ToLower(mb.SignaturePublicKey)))
		if mb.LeafIndex == s.MyLeafIndex {
			v.self = string(x.unhex(mb.Identity))
		}
	}
	return v
}

// agree checks that every member is active, at the same epoch with the same
// epoch authenticator and tree hash, and sees the same roster: exactly the
// current members, want of them.
func (x *tsInterop) agree(step string, want int) {
	x.t.Helper()
	if len(x.members) != want {
		x.t.Fatalf("%s: %d members in the scenario, want %d", step, len(x.members), want)
	}
	var names []string
	for _, m := range x.members {
		names = append(names, hex.EncodeToString([]byte(m.name)))
	}
	slices.Sort(names)
	first := x.view(x.members[0])
	for _, m := range x.members {
		v := first
		if m != x.members[0] {
			v = x.view(m)
		}
		switch {
		case !v.active:
			x.t.Fatalf("%s: %v is not active", step, m)
		case v.self != m.name:
			x.t.Fatalf("%s: %v finds %q at its own leaf", step, m, v.self)
		case v.epoch != first.epoch:
			x.t.Fatalf("%s: %v at epoch %d, %v at %d", step, m, v.epoch, x.members[0], first.epoch)
		case v.auth != first.auth:
			x.t.Fatalf("%s: epoch authenticators differ at epoch %d: %v %s, %v %s", step, v.epoch, m, v.auth, x.members[0], first.auth)
		case v.treeHash != first.treeHash:
			x.t.Fatalf("%s: tree hashes differ: %v %s, %v %s", step, m, v.treeHash, x.members[0], first.treeHash)
		case !slices.Equal(v.roster, first.roster):
			x.t.Fatalf("%s: rosters differ:\n%v: %q\n%v: %q", step, m, v.roster, x.members[0], first.roster)
		}
	}
	var ids []string
	for _, r := range first.roster {
		ids = append(ids, strings.Split(r, ":")[1])
	}
	slices.Sort(ids)
	if !slices.Equal(ids, names) {
		x.t.Fatalf("%s: roster identities %q, want %q", step, ids, names)
	}
	x.t.Logf("%-52s epoch %2d, %d members, epoch authenticator %s…", step, first.epoch, len(x.members), first.auth[:16])
}

// exportAgrees checks that every member derives the same MLS-Exporter secret.
func (x *tsInterop) exportAgrees() {
	x.t.Helper()
	const label = "mahfooz interop"
	ctx := []byte("context")
	var want string
	for i, m := range x.members {
		var got string
		if m.goM {
			s, err := m.g.Export(label, ctx, 32)
			if err != nil {
				x.t.Fatal(err)
			}
			got = hex.EncodeToString(s)
		} else {
			var out struct {
				Secret string `json:"secret"`
			}
			x.call("export", map[string]any{"client": m.name, "label": label, "context": hex.EncodeToString(ctx), "length": 32}, &out)
			got = strings.ToLower(out.Secret)
		}
		if i == 0 {
			want = got
		} else if got != want {
			x.t.Fatalf("exporter secrets differ: %v %s, %v %s", m, got, x.members[0], want)
		}
	}
}

func (x *tsInterop) parse(h string, want WireFormat) *MLSMessage {
	x.t.Helper()
	msg, err := UnmarshalMLSMessage(x.unhex(h))
	if err != nil {
		x.t.Fatalf("parsing an MLSMessage: %v", err)
	}
	if want != 0 && msg.WireFormat != want {
		x.t.Fatalf("wire format %d, want %d", msg.WireFormat, want)
	}
	return msg
}

func (x *tsInterop) unhex(h string) []byte {
	x.t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		x.t.Fatalf("hex from the driver: %v", err)
	}
	return b
}

func tsAdd(kp *KeyPackage) *Proposal {
	return &Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *kp}}
}

func tsRemove(leaf LeafIndex) *Proposal {
	return &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: leaf}}
}

// leafOf returns m's leaf as Go member g sees it.
func (x *tsInterop) leafOf(g *Group, m *tsMember) LeafIndex {
	x.t.Helper()
	for _, mb := range g.Members() {
		if string(mb.Credential.Identity) == m.name {
			return mb.Leaf
		}
	}
	x.t.Fatalf("%v is not in the roster", m)
	return 0
}

// tsGoCreates: Go creates the group; ts-mls joins by a Go Welcome and adds a
// second Go member; each side removes a member of the other.
func tsGoCreates(x *tsInterop) {
	alice := x.newGo("alice", false, false)
	x.goCreate(alice)
	x.agree("alice (go) creates the group", 1)

	bob := x.newTS("bob", false)
	kp := x.keyPackage(bob)
	res := x.goCommit("alice adds bob", alice, false, CommitOptions{Proposals: []*Proposal{tsAdd(x.parse(kp, WireFormatKeyPackage).KeyPackage)}})
	x.join(bob, hex.EncodeToString(res.Welcome.Bytes()), "")
	x.agree("alice adds bob (go welcome, tree inside)", 2)
	x.send(alice, "hello bob")
	x.send(bob, "hello alice")

	carol := x.newGo("carol", true, false)
	out := x.tsCommit("bob adds carol", bob, "add", true, map[string]any{"keyPackage": x.keyPackage(carol), "ratchetTreeExtension": false})
	if out.RatchetTreeExtension || out.Welcome == "" || out.RatchetTree == "" {
		x.t.Fatalf("bob adds carol: want a Welcome without the tree, and the tree apart")
	}
	x.joinWithoutTree(carol, out.Welcome)
	x.join(carol, out.Welcome, out.RatchetTree)
	x.agree("bob adds carol (ts welcome, tree apart)", 3)
	x.send(carol, "hello both")
	x.send(bob, "hello carol")

	x.updates([]tsUpdate{{alice, false}, {alice, true}, {bob, false}, {bob, true}, {carol, true}, {carol, false}}, 3)
	x.send(alice, "after updates")

	// The ts-mls member removes the creator, blanking leaf 0; a Go member adds
	// a ts-mls member there, then removes the other ts-mls member in the middle.
	x.tsCommit("bob removes alice", bob, "remove", false, map[string]any{"leafIndex": x.leafOf(carol.g, alice)}, alice)
	x.agree("bob removes alice (public)", 2)

	dave := x.newTS("dave", false)
	kp = x.keyPackage(dave)
	res = x.goCommit("carol adds dave", carol, false, CommitOptions{Proposals: []*Proposal{tsAdd(x.parse(kp, WireFormatKeyPackage).KeyPackage)}})
	x.join(dave, hex.EncodeToString(res.Welcome.Bytes()), "")
	if leaf := x.leafOf(carol.g, dave); leaf != 0 {
		x.t.Fatalf("dave at leaf %d, want the blank leaf 0", leaf)
	}
	x.agree("carol adds dave at leaf 0 (public)", 3)
	x.send(dave, "hello all")

	x.goCommit("carol removes bob", carol, true, CommitOptions{Proposals: []*Proposal{tsRemove(x.leafOf(carol.g, bob))}}, bob)
	x.agree("carol removes bob (private)", 2)

	x.updates([]tsUpdate{{dave, true}, {carol, false}, {dave, false}, {carol, true}}, 2)
	x.send(carol, "just us")
	x.send(dave, "just us two")
	x.exportAgrees()
}

// tsTSCreates: ts-mls creates the group and adds a Go member, which adds a
// second ts-mls member; each side removes a member of the other.
func tsTSCreates(x *tsInterop) {
	alice := x.newTS("alice", false)
	x.tsCreate(alice)
	x.agree("alice (ts-mls) creates the group", 1)

	bob := x.newGo("bob", true, true)
	out := x.tsCommit("alice adds bob", alice, "add", false, map[string]any{"keyPackage": x.keyPackage(bob), "ratchetTreeExtension": false})
	if out.RatchetTreeExtension {
		x.t.Fatalf("alice adds bob: the Welcome carries the tree")
	}
	x.joinWithoutTree(bob, out.Welcome)
	x.join(bob, out.Welcome, out.RatchetTree)
	x.agree("alice adds bob (ts welcome, tree apart)", 2)
	x.send(alice, "hello bob")
	x.send(bob, "hello alice")

	carol := x.newTS("carol", true)
	kp := x.keyPackage(carol)
	res := x.goCommit("bob adds carol", bob, true, CommitOptions{Proposals: []*Proposal{tsAdd(x.parse(kp, WireFormatKeyPackage).KeyPackage)}})
	welcome := hex.EncodeToString(res.Welcome.Bytes())
	x.joinWithoutTree(carol, welcome)
	x.join(carol, welcome, hex.EncodeToString(bob.g.RatchetTree()))
	x.agree("bob adds greased carol (go welcome, tree apart)", 3)
	x.send(carol, "hello both")
	x.send(bob, "hello carol")

	x.updates([]tsUpdate{{bob, true}, {bob, false}, {alice, true}, {alice, false}, {carol, false}, {carol, true}}, 3)
	x.send(alice, "after updates")

	// The Go member removes the creator, blanking leaf 0; the other ts-mls
	// member adds a Go member there, then removes the Go member in the middle.
	x.goCommit("bob removes alice", bob, false, CommitOptions{Proposals: []*Proposal{tsRemove(x.leafOf(bob.g, alice))}}, alice)
	x.agree("bob removes alice (public)", 2)

	dave := x.newGo("dave", false, false)
	out = x.tsCommit("carol adds dave", carol, "add", true, map[string]any{"keyPackage": x.keyPackage(dave)})
	if !out.RatchetTreeExtension {
		x.t.Fatalf("carol adds dave: the Welcome lacks the tree")
	}
	x.join(dave, out.Welcome, "")
	if dave.g.OwnLeaf() != 0 {
		x.t.Fatalf("dave at leaf %d, want the blank leaf 0", dave.g.OwnLeaf())
	}
	x.agree("carol adds dave at leaf 0 (ts welcome, tree inside)", 3)
	x.send(dave, "hello all")

	x.tsCommit("carol removes bob", carol, "remove", true, map[string]any{"leafIndex": x.leafOf(dave.g, bob)}, bob)
	x.agree("carol removes bob (private)", 2)

	x.updates([]tsUpdate{{dave, true}, {carol, false}, {dave, false}, {carol, true}}, 2)
	x.send(carol, "just us")
	x.send(dave, "just us two")
	x.exportAgrees()
}

// tsUpdate is one empty commit with a path.
type tsUpdate struct {
	from    *tsMember
	private bool
}

// updates runs update commits in order, checking agreement after each.
func (x *tsInterop) updates(list []tsUpdate, want int) {
	x.t.Helper()
	for _, u := range list {
		wf := "public"
		if u.private {
			wf = "private"
		}
		step := fmt.Sprintf("%s updates (%s)", u.from.name, wf)
		if u.from.goM {
			x.goCommit(step, u.from, u.private, CommitOptions{ForcePath: true})
		} else {
			x.tsCommit(step, u.from, "update", u.private, nil)
		}
		x.agree(step, want)
	}
}
