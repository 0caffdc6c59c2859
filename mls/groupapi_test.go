package mls

import (
	"bytes"
	"errors"
	"testing"
)

// apiSuite keeps these tests quick; the suites themselves are covered elsewhere.
const apiSuite = MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519

// deliver hands a proposal or commit to each member, as the delivery service would.
func deliver(t *testing.T, msg *MLSMessage, to ...*testMember) {
	t.Helper()
	for _, m := range to {
		if _, err := m.g.Process(wire(t, msg)); err != nil {
			t.Fatalf("%s processing: %v", m.name, err)
		}
	}
}

// committed returns the proposal list and path presence of a PublicMessage commit.
func committed(t *testing.T, res *CommitResult) ([]ProposalOrRef, bool) {
	t.Helper()
	pub := wire(t, res.Commit).PublicMessage
	if pub == nil || pub.Content.Commit == nil {
		t.Fatal("commit is not a PublicMessage commit")
	}
	c := pub.Content.Commit
	return c.Proposals, c.Path != nil
}

// refsOf returns the references of a commit's proposal list; a by-value proposal
// shows as nil.
func refsOf(list []ProposalOrRef) []ProposalRef {
	out := make([]ProposalRef, len(list))
	for i, p := range list {
		out[i] = p.Reference
	}
	return out
}

func equalRefs(a, b []ProposalRef) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func hasMember(g *Group, name string) bool {
	for _, m := range g.Members() {
		if string(m.Credential.Identity) == name {
			return true
		}
	}
	return false
}

func TestCommitProposalRefs(t *testing.T) {
	// setup: a, b and c in a group; b proposes adding carol and c adding dave, and
	// everyone holds both proposals.
	setup := func(t *testing.T) (a, b, c, carol, dave *testMember, refCarol, refDave ProposalRef) {
		ms := newTestGroup(t, apiSuite, 3)
		a, b, c = ms[0], ms[1], ms[2]
		carol, dave = newTestMember(t, apiSuite, "carol"), newTestMember(t, apiSuite, "dave")
		msg, refCarol, err := b.g.ProposeAdd(carol.kp, nil)
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, msg, a, c)
		msg, refDave, err = c.g.ProposeAdd(dave.kp, nil)
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, msg, a, b)
		return a, b, c, carol, dave, refCarol, refDave
	}

	t.Run("subset", func(t *testing.T) {
		a, b, c, _, dave, _, refDave := setup(t)
		commitAndDeliver(t, a, []*testMember{b, c}, []*testMember{dave}, CommitOptions{ProposalRefs: []ProposalRef{refDave}})
		if !hasMember(a.g, "dave") || hasMember(a.g, "carol") {
			t.Fatalf("roster after committing only dave's add: %v", a.g.Members())
		}
	})
	t.Run("order kept", func(t *testing.T) {
		a, b, c, carol, dave, refCarol, refDave := setup(t)
		want := []ProposalRef{refDave, refCarol}
		res, err := a.g.Commit(CommitOptions{ProposalRefs: want})
		if err != nil {
			t.Fatal(err)
		}
		list, _ := committed(t, res)
		if got := refsOf(list); !equalRefs(got, want) {
			t.Fatalf("committed refs %x, want %x", got, want)
		}
		if _, err := a.g.MergePendingCommit(); err != nil {
			t.Fatal(err)
		}
		deliver(t, res.Commit, b, c)
		for _, j := range []*testMember{carol, dave} {
			if _, err := JoinGroup(wire(t, res.Welcome).Welcome, j.kp, j.priv, JoinOptions{}, testConfig()); err != nil {
				t.Fatalf("%s joining: %v", j.name, err)
			}
		}
	})
	t.Run("none", func(t *testing.T) {
		a, b, c, _, _, _, _ := setup(t)
		commitAndDeliver(t, a, []*testMember{b, c}, nil, CommitOptions{ProposalRefs: []ProposalRef{}})
		if len(a.g.Members()) != 3 {
			t.Fatalf("an empty ProposalRefs committed proposals: %d members", len(a.g.Members()))
		}
	})
	t.Run("unknown ref", func(t *testing.T) {
		a, _, _, _, _, refCarol, _ := setup(t)
		_, err := a.g.Commit(CommitOptions{ProposalRefs: []ProposalRef{refCarol, ProposalRef("not a proposal ref")}})
		if !errors.Is(err, ErrUnknownProposal) {
			t.Fatalf("unknown ref: %v", err)
		}
		if a.g.HasPendingCommit() {
			t.Fatal("a refused commit is pending")
		}
	})
	t.Run("ref named twice", func(t *testing.T) {
		a, _, _, _, _, refCarol, _ := setup(t)
		if _, err := a.g.Commit(CommitOptions{ProposalRefs: []ProposalRef{refCarol, refCarol}}); err == nil {
			t.Fatal("a proposal named twice was committed")
		}
	})
}

func TestCommitSkipsInvalidCachedProposals(t *testing.T) {
	t.Run("second remove of a leaf", func(t *testing.T) {
		ms := newTestGroup(t, apiSuite, 4)
		a, b, c, d := ms[0], ms[1], ms[2], ms[3]
		for _, from := range []*testMember{b, c} {
			msg, _, err := from.g.ProposeRemove(d.g.OwnLeaf(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var others []*testMember
			for _, m := range ms {
				if m != from {
					others = append(others, m)
				}
			}
			deliver(t, msg, others...)
		}
		res, err := a.g.Commit(CommitOptions{})
		if err != nil {
			t.Fatalf("default commit with two removes of one leaf: %v", err)
		}
		if list, _ := committed(t, res); len(list) != 1 {
			t.Fatalf("committed %d proposals, want the first remove only", len(list))
		}
		effect, err := a.g.MergePendingCommit()
		if err != nil {
			t.Fatal(err)
		}
		if len(effect.Removed) != 1 || string(effect.Removed[0].Credential.Identity) != d.name {
			t.Fatalf("removed %v, want %s", effect.Removed, d.name)
		}
		deliver(t, res.Commit, b, c)
		if r, err := d.g.Process(wire(t, res.Commit)); err != nil || !r.Commit.SelfRemoved {
			t.Fatalf("%s not told it was removed: %v", d.name, err)
		}
	})

	t.Run("add of a client already in the group", func(t *testing.T) {
		ms := newTestGroup(t, apiSuite, 3)
		a, b, c := ms[0], ms[1], ms[2]
		carol := newTestMember(t, apiSuite, "carol")
		c.newKeyPackage(t) // a fresh KeyPackage of a client that is a member
		stale, staleRef, err := b.g.ProposeAdd(c.kp, nil)
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, stale, a, c)
		fresh, freshRef, err := b.g.ProposeAdd(carol.kp, nil)
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, fresh, a, c)

		// Named or given by value, the invalid add still fails loudly.
		if _, err := a.g.Commit(CommitOptions{ProposalRefs: []ProposalRef{staleRef, freshRef}}); !errors.Is(err, ErrInvalidProposal) {
			t.Fatalf("explicitly named invalid add: %v", err)
		}
		if _, err := a.g.Commit(CommitOptions{ProposalRefs: []ProposalRef{}, Proposals: []*Proposal{addProposal(c)}}); !errors.Is(err, ErrInvalidProposal) {
			t.Fatalf("invalid add by value: %v", err)
		}

		res, err := a.g.Commit(CommitOptions{})
		if err != nil {
			t.Fatalf("default commit with an add of a member: %v", err)
		}
		if list, _ := committed(t, res); !equalRefs(refsOf(list), []ProposalRef{freshRef}) {
			t.Fatalf("committed %x, want only carol's add %x", refsOf(list), freshRef)
		}
		a.g.ClearPendingCommit()
		commitAndDeliver(t, a, []*testMember{b, c}, []*testMember{carol}, CommitOptions{})
		if n := len(a.g.Members()); n != 4 {
			t.Fatalf("%d members, want 4", n)
		}
	})

	t.Run("remove wins over update of the same leaf", func(t *testing.T) {
		ms := newTestGroup(t, apiSuite, 3)
		a, b, c := ms[0], ms[1], ms[2]
		upd, _, err := b.g.ProposeUpdate(nil)
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, upd, a, c)
		rm, rmRef, err := c.g.ProposeRemove(b.g.OwnLeaf(), nil)
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, rm, a, b)
		res, err := a.g.Commit(CommitOptions{})
		if err != nil {
			t.Fatalf("default commit with an update and a remove of one leaf: %v", err)
		}
		if list, _ := committed(t, res); !equalRefs(refsOf(list), []ProposalRef{rmRef}) {
			t.Fatalf("committed %x, want only the remove %x", refsOf(list), rmRef)
		}
		if _, err := a.g.MergePendingCommit(); err != nil {
			t.Fatal(err)
		}
		deliver(t, res.Commit, c)
		if r, err := b.g.Process(wire(t, res.Commit)); err != nil || !r.Commit.SelfRemoved {
			t.Fatalf("%s not told it was removed: %v", b.name, err)
		}
	})

	t.Run("own update becomes the path", func(t *testing.T) {
		ms := newTestGroup(t, apiSuite, 2)
		a, b := ms[0], ms[1]
		carol := newTestMember(t, apiSuite, "carol")
		upd, _, err := a.g.ProposeUpdate(nil)
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, upd, b)
		add, addRef, err := b.g.ProposeAdd(carol.kp, nil)
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, add, a)
		res, err := a.g.Commit(CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// An Add alone needs no path; a's Update, left out, asks for one.
		list, withPath := committed(t, res)
		if !equalRefs(refsOf(list), []ProposalRef{addRef}) || !withPath {
			t.Fatalf("committed %x with path %v, want only the add %x, with a path", refsOf(list), withPath, addRef)
		}
	})
}

func TestRatchetTreePerCall(t *testing.T) {
	no, yes := false, true
	for _, tc := range []struct {
		name     string
		omit     bool  // Config.OmitRatchetTree
		choice   *bool // CommitOptions.RatchetTree
		wantTree bool
	}{
		{"config default", false, nil, true},
		{"config omits", true, nil, false},
		{"call omits", false, &no, false},
		{"call includes despite config", true, &yes, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := newTestGroup(t, apiSuite, 2)
			a, b := ms[0], ms[1]
			a.g.cfg.OmitRatchetTree = tc.omit
			joiner := newTestMember(t, apiSuite, "joiner")
			res, err := a.g.Commit(CommitOptions{Proposals: []*Proposal{addProposal(joiner)}, RatchetTree: tc.choice})
			if err != nil {
				t.Fatal(err)
			}
			if _, has := res.GroupInfo.GroupInfo.Extensions.Find(ExtensionTypeRatchetTree); has != tc.wantTree {
				t.Fatalf("GroupInfo carries the tree: %v, want %v", has, tc.wantTree)
			}
			tree, ok := a.g.PendingRatchetTree()
			if !ok {
				t.Fatal("no pending tree")
			}
			if _, err := a.g.MergePendingCommit(); err != nil {
				t.Fatal(err)
			}
			deliver(t, res.Commit, b)
			welcome := wire(t, res.Welcome).Welcome
			_, err = JoinGroup(welcome, joiner.kp, joiner.priv, JoinOptions{}, testConfig())
			if tc.wantTree != (err == nil) {
				t.Fatalf("joining without an out-of-band tree: %v", err)
			}
			g, err := JoinGroup(welcome, joiner.kp, joiner.priv, JoinOptions{RatchetTree: tree}, testConfig())
			if err != nil {
				t.Fatalf("joining with the tree out of band: %v", err)
			}
			if !bytes.Equal(g.EpochAuthenticator(), a.g.EpochAuthenticator()) {
				t.Fatal("joiner's epoch authenticator differs")
			}
		})
	}

	t.Run("GroupInfo", func(t *testing.T) {
		ms := newTestGroup(t, apiSuite, 2)
		a := ms[0]
		for _, tc := range []struct {
			opts             GroupInfoOptions
			wantTree, wantEP bool
		}{
			{GroupInfoOptions{}, true, false},
			{GroupInfoOptions{ExternalPub: true}, true, true},
			{GroupInfoOptions{ExternalPub: true, RatchetTree: &no}, false, true},
			{GroupInfoOptions{RatchetTree: &yes}, true, false},
		} {
			msg, err := a.g.GroupInfo(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			exts := wire(t, msg).GroupInfo.Extensions
			_, tree := exts.Find(ExtensionTypeRatchetTree)
			_, ep := exts.Find(ExtensionTypeExternalPub)
			if tree != tc.wantTree || ep != tc.wantEP {
				t.Errorf("GroupInfo(%+v): tree %v, external_pub %v; want %v, %v", tc.opts, tree, ep, tc.wantTree, tc.wantEP)
			}
		}
	})

	t.Run("external join from a GroupInfo without the tree", func(t *testing.T) {
		ms := newTestGroup(t, apiSuite, 2)
		a, b := ms[0], ms[1]
		msg, err := a.g.GroupInfo(GroupInfoOptions{ExternalPub: true, RatchetTree: &no})
		if err != nil {
			t.Fatal(err)
		}
		gi := wire(t, msg).GroupInfo
		eve := newTestMember(t, apiSuite, "eve")
		if _, _, err := ExternalJoin(gi, eve.cred, eve.sig, ExternalJoinOptions{}, testConfig()); err == nil {
			t.Fatal("external join without any tree succeeded")
		}
		g, commit, err := ExternalJoin(gi, eve.cred, eve.sig, ExternalJoinOptions{RatchetTree: a.g.RatchetTree()}, testConfig())
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, commit, a, b)
		if !bytes.Equal(g.EpochAuthenticator(), a.g.EpochAuthenticator()) {
			t.Fatal("external joiner's epoch authenticator differs")
		}
	})
}

func TestJoinResumptionExpectation(t *testing.T) {
	const nextSuite = MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519

	// resumeFrom resolves the resumption PSKs of prior, as a member of it would.
	resumeFrom := func(prior *Group) func(GroupID, uint64) ([]byte, bool) {
		return func(id GroupID, epoch uint64) ([]byte, bool) {
			if !bytes.Equal(id, prior.GroupID()) {
				return nil, false
			}
			return prior.ResumptionPSK(epoch)
		}
	}
	type joinCase struct {
		name   string
		opts   func(JoinOptions) JoinOptions
		wantOK bool
	}
	// check joins joiner from welcome with each case's options, and compares the
	// epoch authenticator with the welcoming group's when the join must succeed.
	check := func(t *testing.T, welcome *Welcome, joiner *testMember, base JoinOptions, host *Group, cases []joinCase) {
		t.Helper()
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				g, err := JoinGroup(welcome, joiner.kp, joiner.priv, tc.opts(base), testConfig())
				if !tc.wantOK {
					if !errors.Is(err, ErrResumptionMismatch) {
						t.Fatalf("got %v, want ErrResumptionMismatch", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(g.EpochAuthenticator(), host.EpochAuthenticator()) {
					t.Fatal("joined with another epoch authenticator")
				}
			})
		}
	}

	t.Run("reinit", func(t *testing.T) {
		// b commits a's ReInit to nextSuite, then starts the successor group adding a.
		ms := newTestGroup(t, apiSuite, 2)
		a, b := ms[0], ms[1]
		ri := ReInit{GroupID: GroupID("successor"), Version: ProtocolVersionMLS10, CipherSuite: nextSuite}
		msg, _, err := a.g.ProposeReInit(ri, nil)
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, msg, b)
		commitAndDeliver(t, b, []*testMember{a}, nil, CommitOptions{})
		prior := a.g
		if prior.PendingReInit() == nil {
			t.Fatal("the ReInit was not committed")
		}
		aNext, bNext := newTestMember(t, nextSuite, a.name), newTestMember(t, nextSuite, b.name)
		next, res, err := b.g.ReInitGroup(bNext.cred, bNext.sig, []*KeyPackage{aNext.kp}, CommitOptions{}, testConfig())
		if err != nil {
			t.Fatal(err)
		}
		expect := ResumptionExpectation{Usage: ResumptionPSKUsageReinit, PriorGroupID: prior.GroupID(),
			PriorEpoch: prior.Epoch(), ReInit: prior.PendingReInit()}
		with := func(f func(*ResumptionExpectation)) func(JoinOptions) JoinOptions {
			return func(o JoinOptions) JoinOptions {
				e := expect
				f(&e)
				o.Resumption = &e
				return o
			}
		}
		base := JoinOptions{ResumptionPSK: resumeFrom(prior)}
		check(t, wire(t, res.Welcome).Welcome, aNext, base, next, []joinCase{
			{"as expected", with(func(*ResumptionExpectation) {}), true},
			{"another prior epoch", with(func(e *ResumptionExpectation) { e.PriorEpoch-- }), false},
			{"another prior group", with(func(e *ResumptionExpectation) { e.PriorGroupID = GroupID("other") }), false},
			{"a branch", with(func(e *ResumptionExpectation) {
				e.Usage, e.ReInit, e.CipherSuite = ResumptionPSKUsageBranch, nil, nextSuite
			}), false},
			{"another group ID", with(func(e *ResumptionExpectation) {
				r := *e.ReInit
				r.GroupID = GroupID("elsewhere")
				e.ReInit = &r
			}), false},
			{"other extensions", with(func(e *ResumptionExpectation) {
				r := *e.ReInit
				r.Extensions = r.Extensions.With(ExtensionTypeExternalSenders, MarshalExternalSenders(nil))
				e.ReInit = &r
			}), false},
			{"the prior suite", with(func(e *ResumptionExpectation) { e.CipherSuite = apiSuite }), false},
			{"nothing expected nor resolvable", func(JoinOptions) JoinOptions { return JoinOptions{} }, false},
			{"resolvable but not checked", func(o JoinOptions) JoinOptions { return o }, true},
		})
	})

	t.Run("branch", func(t *testing.T) {
		ms := newTestGroup(t, apiSuite, 2)
		a, b := ms[0], ms[1]
		b.newKeyPackage(t)
		sub, res, err := a.g.Branch(GroupID("subgroup"), []*KeyPackage{b.kp}, CreateOptions{}, CommitOptions{}, testConfig())
		if err != nil {
			t.Fatal(err)
		}
		prior := b.g
		expect := ResumptionExpectation{Usage: ResumptionPSKUsageBranch, PriorGroupID: prior.GroupID(),
			PriorEpoch: prior.Epoch(), CipherSuite: prior.CipherSuite()}
		with := func(f func(*ResumptionExpectation)) func(JoinOptions) JoinOptions {
			return func(o JoinOptions) JoinOptions {
				e := expect
				f(&e)
				o.Resumption = &e
				return o
			}
		}
		base := JoinOptions{ResumptionPSK: resumeFrom(prior)}
		check(t, wire(t, res.Welcome).Welcome, b, base, sub, []joinCase{
			{"as expected", with(func(*ResumptionExpectation) {}), true},
			{"another prior epoch", with(func(e *ResumptionExpectation) { e.PriorEpoch++ }), false},
			{"another suite", with(func(e *ResumptionExpectation) { e.CipherSuite = nextSuite }), false},
			{"a reinit", with(func(e *ResumptionExpectation) {
				e.Usage = ResumptionPSKUsageReinit
				e.ReInit = &ReInit{GroupID: GroupID("subgroup"), Version: ProtocolVersionMLS10, CipherSuite: apiSuite}
			}), false},
			{"nothing expected nor resolvable", func(JoinOptions) JoinOptions { return JoinOptions{} }, false},
		})
	})
}

func TestMergeWithoutPendingCommit(t *testing.T) {
	a := newTestGroup(t, apiSuite, 1)[0]
	if _, err := a.g.MergePendingCommit(); !errors.Is(err, ErrNoPendingCommit) {
		t.Fatalf("merge before any commit: %v", err)
	}
	if _, err := a.g.Commit(CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	a.g.ClearPendingCommit()
	if _, err := a.g.MergePendingCommit(); !errors.Is(err, ErrNoPendingCommit) {
		t.Fatalf("merge after clearing: %v", err)
	}
	if _, err := a.g.Commit(CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.g.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.g.MergePendingCommit(); !errors.Is(err, ErrNoPendingCommit) {
		t.Fatalf("second merge: %v", err)
	}
	if a.g.Epoch() != 1 {
		t.Fatalf("epoch %d, want 1", a.g.Epoch())
	}
}

func TestExternalJoinPSKNonce(t *testing.T) {
	psk := []byte("shared out of band")
	cfg := testConfig()
	cfg.ExternalPSK = func(id []byte) ([]byte, bool) { return psk, string(id) == "psk" }
	ms := newTestGroup(t, apiSuite, 1)
	a := ms[0]
	a.g.cfg.ExternalPSK = cfg.ExternalPSK
	msg, err := a.g.GroupInfo(GroupInfoOptions{ExternalPub: true})
	if err != nil {
		t.Fatal(err)
	}
	eve := newTestMember(t, apiSuite, "eve")
	ids := []PreSharedKeyID{{PSKType: PSKTypeExternal, PSKID: []byte("psk")}}
	g, commit, err := ExternalJoin(wire(t, msg).GroupInfo, eve.cred, eve.sig, ExternalJoinOptions{PSKs: ids}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ids[0].PSKNonce != nil {
		t.Fatal("ExternalJoin wrote into the caller's PSKs")
	}
	var nonce []byte
	for _, p := range wire(t, commit).PublicMessage.Content.Commit.Proposals {
		if p.Proposal != nil && p.Proposal.Type == ProposalTypePSK {
			nonce = p.Proposal.PreSharedKey.PSK.PSKNonce
		}
	}
	if len(nonce) != apiSuite.Nh() {
		t.Fatalf("psk nonce of %d bytes, want %d", len(nonce), apiSuite.Nh())
	}
	deliver(t, commit, a)
	if !bytes.Equal(g.EpochAuthenticator(), a.g.EpochAuthenticator()) {
		t.Fatal("external joiner's epoch authenticator differs")
	}
}

// TestCommitNewCredential: a member replaces its credential (a renewed
// certificate for the same key, say) with a commit; every member then sees the
// new one in the member's leaf, and a joiner validates the new tree. A credential
// the validator refuses, or of another type, is refused before anything is sent.
func TestCommitNewCredential(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	ms := newTestGroup(t, cs, 3)
	renewed := NewBasicCredential([]byte("member-1, renewed"))
	commitAndDeliver(t, ms[1], []*testMember{ms[0], ms[2]}, nil, CommitOptions{Credential: &renewed})
	for _, m := range ms {
		got := m.g.Members()[1].Credential
		if !bytes.Equal(got.Identity, renewed.Identity) {
			t.Errorf("%s sees member-1's credential %q, want the renewed one", m.name, got.Identity)
		}
	}
	joiner := newTestMember(t, cs, "joiner")
	commitAndDeliver(t, ms[0], []*testMember{ms[1], ms[2]}, []*testMember{joiner}, CommitOptions{Proposals: []*Proposal{addProposal(joiner)}})
	if got := joiner.g.Members()[1].Credential.Identity; !bytes.Equal(got, renewed.Identity) {
		t.Errorf("joiner sees %q", got)
	}

	refusing := errors.New("not this one")
	ms[2].g.cfg.Validator = CredentialValidatorFunc(func(c Credential, _ SignaturePublicKey) error {
		if bytes.Equal(c.Identity, []byte("forged")) {
			return refusing
		}
		return nil
	})
	forged := NewBasicCredential([]byte("forged"))
	if _, err := ms[2].g.Commit(CommitOptions{Credential: &forged}); !errors.Is(err, ErrCredentialRejected) {
		t.Errorf("commit with a refused credential: %v", err)
	}
	x509 := Credential{Type: CredentialTypeX509, Certificates: [][]byte{{1}}}
	if _, err := ms[2].g.Commit(CommitOptions{Credential: &x509}); !errors.Is(err, ErrInvalidProposal) {
		t.Errorf("commit with a credential of another type: %v", err)
	}
}
