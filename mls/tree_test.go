package mls

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// treeOperationsVector is one case of testdata/tree-operations.json.
type treeOperationsVector struct {
	CipherSuite    uint16   `json:"cipher_suite"`
	TreeBefore     hexBytes `json:"tree_before"`
	Proposal       hexBytes `json:"proposal"`
	ProposalSender uint32   `json:"proposal_sender"`
	TreeAfter      hexBytes `json:"tree_after"`
	TreeHashBefore hexBytes `json:"tree_hash_before"`
	TreeHashAfter  hexBytes `json:"tree_hash_after"`
}

func TestTreeOperationsVectors(t *testing.T) {
	cases := loadVectors[treeOperationsVector](t, "tree-operations.json")
	c := vectorCount{name: "tree-operations.json"}
	for i, tc := range cases {
		c.run(t, fmt.Sprint(i), func(t *testing.T) {
			cs := suiteOrSkip(t, tc.CipherSuite)
			tree, err := unmarshalRatchetTree(tc.TreeBefore)
			if err != nil {
				t.Fatal(err)
			}
			if got := tree.treeHash(cs); !bytes.Equal(got, tc.TreeHashBefore) {
				t.Fatalf("tree hash before = %x, want %x", got, tc.TreeHashBefore)
			}
			var p Proposal
			if err := decodeAll(tc.Proposal, "Proposal", p.unmarshal); err != nil {
				t.Fatal(err)
			}
			sender := LeafIndex(tc.ProposalSender)
			switch p.Type {
			case ProposalTypeAdd:
				leaf := p.Add.KeyPackage.LeafNode
				l := tree.addLeaf(&leaf)
				if got := tree.leaf(l); got != &leaf {
					t.Fatalf("added leaf %d does not hold the new leaf node", l)
				}
			case ProposalTypeUpdate:
				leaf := p.Update.LeafNode
				err = tree.updateLeaf(sender, &leaf)
			case ProposalTypeRemove:
				err = tree.removeLeaf(p.Remove.Removed)
			default:
				t.Fatalf("unexpected proposal type %d", p.Type)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tree.marshalExtension(); !bytes.Equal(got, tc.TreeAfter) {
				t.Errorf("tree after the %d proposal differs from the vector", p.Type)
			}
			if got := tree.treeHash(cs); !bytes.Equal(got, tc.TreeHashAfter) {
				t.Errorf("tree hash after = %x, want %x", got, tc.TreeHashAfter)
			}
		})
	}
	c.report(t)
}

// treeValidationVector is one case of testdata/tree-validation.json.
type treeValidationVector struct {
	CipherSuite uint16     `json:"cipher_suite"`
	Tree        hexBytes   `json:"tree"`
	GroupID     hexBytes   `json:"group_id"`
	TreeHashes  []hexBytes `json:"tree_hashes"`
	Resolutions [][]uint32 `json:"resolutions"`
}

func TestTreeValidationVectors(t *testing.T) {
	cases := loadVectors[treeValidationVector](t, "tree-validation.json")
	c := vectorCount{name: "tree-validation.json"}
	for i, tc := range cases {
		c.run(t, fmt.Sprint(i), func(t *testing.T) {
			cs := suiteOrSkip(t, tc.CipherSuite)
			tree, err := unmarshalRatchetTree(tc.Tree)
			if err != nil {
				t.Fatal(err)
			}
			if got := tree.marshalExtension(); !bytes.Equal(got, tc.Tree) {
				t.Error("tree does not re-encode to the same bytes")
			}
			if int(tree.width()) != len(tc.TreeHashes) || len(tc.Resolutions) != len(tc.TreeHashes) {
				t.Fatalf("tree has %d nodes, vector %d hashes and %d resolutions", tree.width(), len(tc.TreeHashes), len(tc.Resolutions))
			}
			for x := range NodeIndex(tree.width()) {
				if got := tree.nodeHash(cs, x); !bytes.Equal(got, tc.TreeHashes[x]) {
					t.Errorf("tree hash of node %d = %x, want %x", x, got, tc.TreeHashes[x])
				}
				var got []uint32
				for _, r := range tree.resolution(x) {
					got = append(got, uint32(r))
				}
				if !slices.Equal(got, tc.Resolutions[x]) {
					t.Errorf("resolution of node %d = %v, want %v", x, got, tc.Resolutions[x])
				}
			}
			if err := tree.verifyParentHashes(cs); err != nil {
				t.Error(err)
			}
			// Leaf signatures with the group ID, and the rest of a joiner's checks.
			if err := tree.validateAgainst(cs, &GroupContext{GroupID: GroupID(tc.GroupID), TreeHash: tc.TreeHashes[tree.root()]}, time.Time{}); err != nil {
				t.Error(err)
			}
		})
	}
	c.report(t)
}

// treeKEMVector is one case of testdata/treekem.json.
type treeKEMVector struct {
	CipherSuite             uint16   `json:"cipher_suite"`
	GroupID                 hexBytes `json:"group_id"`
	Epoch                   uint64   `json:"epoch"`
	ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`
	RatchetTree             hexBytes `json:"ratchet_tree"`
	LeavesPrivate           []struct {
		Index          uint32   `json:"index"`
		EncryptionPriv hexBytes `json:"encryption_priv"`
		SignaturePriv  hexBytes `json:"signature_priv"`
		PathSecrets    []struct {
			Node       uint32   `json:"node"`
			PathSecret hexBytes `json:"path_secret"`
		} `json:"path_secrets"`
	} `json:"leaves_private"`
	UpdatePaths []struct {
		Sender        uint32     `json:"sender"`
		UpdatePath    hexBytes   `json:"update_path"`
		PathSecrets   []hexBytes `json:"path_secrets"` // by receiving leaf; null where none
		CommitSecret  hexBytes   `json:"commit_secret"`
		TreeHashAfter hexBytes   `json:"tree_hash_after"`
	} `json:"update_paths"`
}

// context returns the encoded GroupContext of the vector's group with treeHash.
func (tc *treeKEMVector) context(cs CipherSuite, treeHash []byte) []byte {
	gc := GroupContext{Version: ProtocolVersionMLS10, CipherSuite: cs, GroupID: GroupID(tc.GroupID), Epoch: tc.Epoch,
		TreeHash: treeHash, ConfirmedTranscriptHash: tc.ConfirmedTranscriptHash}
	return gc.Bytes()
}

func TestTreeKEMVectors(t *testing.T) {
	cases := loadVectors[treeKEMVector](t, "treekem.json")
	c := vectorCount{name: "treekem.json"}
	for i, tc := range cases {
		c.run(t, fmt.Sprint(i), func(t *testing.T) {
			cs := suiteOrSkip(t, tc.CipherSuite)
			tree, err := unmarshalRatchetTree(tc.RatchetTree)
			if err != nil {
				t.Fatal(err)
			}
			if err := tree.verifyParentHashes(cs); err != nil {
				t.Fatal(err)
			}
			// The private state of each leaf, checked against the tree.
			keys := make(map[LeafIndex]*treePrivateKeys)
			sigKeys := make(map[LeafIndex]*SignaturePrivateKey)
			for _, lp := range tc.LeavesPrivate {
				l := LeafIndex(lp.Index)
				priv, err := NewHPKEPrivateKey(cs, lp.EncryptionPriv)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(priv.Public(), tree.leaf(l).EncryptionKey) {
					t.Fatalf("leaf %d: encryption key does not match the tree", l)
				}
				k := newTreePrivateKeys(l, priv)
				for _, ps := range lp.PathSecrets {
					x := NodeIndex(ps.Node)
					node, err := deriveNodeKey(cs, ps.PathSecret)
					if err != nil {
						t.Fatal(err)
					}
					if p := tree.parentNode(x); p == nil || !bytes.Equal(node.Public(), p.EncryptionKey) {
						t.Fatalf("leaf %d: path secret of node %d does not derive its key", l, x)
					}
					k.nodes[x] = node
				}
				keys[l] = k
				if sigKeys[l], err = NewSignaturePrivateKey(cs, lp.SignaturePriv); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(sigKeys[l].Public(), tree.leaf(l).SignatureKey) {
					t.Fatalf("leaf %d: signature key does not match the tree", l)
				}
			}

			for _, up := range tc.UpdatePaths {
				sender := LeafIndex(up.Sender)
				var path UpdatePath
				if err := decodeAll(up.UpdatePath, "UpdatePath", path.unmarshal); err != nil {
					t.Fatal(err)
				}
				merged := tree.clone()
				if err := merged.mergeUpdatePath(cs, sender, &path, GroupID(tc.GroupID)); err != nil {
					t.Fatalf("update path of leaf %d: %v", sender, err)
				}
				if got := merged.treeHash(cs); !bytes.Equal(got, up.TreeHashAfter) {
					t.Fatalf("update path of leaf %d: tree hash after = %x, want %x", sender, got, up.TreeHashAfter)
				}
				if err := merged.verifyParentHashes(cs); err != nil {
					t.Fatalf("update path of leaf %d: %v", sender, err)
				}
				provisional := tc.context(cs, up.TreeHashAfter)
				fdp, _ := merged.filteredDirectPath(sender)
				checkedKeys := false
				for _, lp := range tc.LeavesPrivate {
					l, k := LeafIndex(lp.Index), keys[LeafIndex(lp.Index)]
					if l == sender {
						continue
					}
					at, secret, err := merged.decryptPathSecret(cs, k, sender, &path, provisional, nil)
					if err != nil {
						t.Fatalf("leaf %d decrypting the path of leaf %d: %v", l, sender, err)
					}
					if fdp[at] != commonAncestor(sender.nodeIndex(), l.nodeIndex()) {
						t.Errorf("leaf %d decrypted the secret of node %d of the path of leaf %d", l, fdp[at], sender)
					}
					if int(l) < len(up.PathSecrets) && up.PathSecrets[l] != nil && !bytes.Equal(secret, up.PathSecrets[l]) {
						t.Errorf("leaf %d: path secret of node %d in the path of leaf %d differs", l, fdp[at], sender)
					}
					for range fdp[at:] {
						secret = nextPathSecret(cs, secret)
					}
					if !bytes.Equal(secret, up.CommitSecret) {
						t.Errorf("leaf %d: commit secret of the path of leaf %d differs", l, sender)
					}
					if checkedKeys {
						continue // deriving every key pair again is slow for P-521
					}
					checkedKeys = true
					commitSecret, next, err := merged.decryptPath(cs, k, sender, &path, provisional, nil)
					if err != nil {
						t.Fatalf("leaf %d decrypting the path of leaf %d: %v", l, sender, err)
					}
					if !bytes.Equal(commitSecret, up.CommitSecret) {
						t.Errorf("leaf %d: commit secret of the path of leaf %d differs", l, sender)
					}
					next.prune(merged)
					for _, x := range fdp[at:] {
						if next.privateKey(x) == nil {
							t.Errorf("leaf %d: no key for node %d after the path of leaf %d", l, x, sender)
						}
					}
				}
			}

			// Paths made here: every other leaf with private keys must follow them.
			rnd := rand.NewChaCha8([32]byte{byte(i)})
			validated := false
			for _, lp := range tc.LeavesPrivate {
				sender, k := LeafIndex(lp.Index), keys[LeafIndex(lp.Index)]
				next := tree.clone()
				pp, err := next.newUpdatePath(cs, sender, nil, sigKeys[sender], GroupID(tc.GroupID), rnd)
				if err != nil {
					t.Fatal(err)
				}
				treeHash := next.treeHash(cs)
				if err := next.verifyParentHashes(cs); err != nil {
					t.Fatalf("path of leaf %d: %v", sender, err)
				}
				if !validated {
					if err := next.validate(cs, GroupID(tc.GroupID), time.Time{}); err != nil {
						t.Fatalf("path of leaf %d: %v", sender, err)
					}
					validated = true
				}
				provisional := tc.context(cs, treeHash)
				path, err := pp.encrypt(provisional, nil)
				if err != nil {
					t.Fatal(err)
				}
				var wire UpdatePath
				if err := decodeAll(mustEncode(path), "UpdatePath", wire.unmarshal); err != nil {
					t.Fatal(err)
				}
				mine := pp.privateKeys()
				if mine.leaf != k.leaf || mine.privateKey(sender.nodeIndex()) == nil {
					t.Fatalf("committer keys are for leaf %d", mine.leaf)
				}
				merged := tree.clone()
				if err := merged.mergeUpdatePath(cs, sender, &wire, GroupID(tc.GroupID)); err != nil {
					t.Fatalf("merging the path of leaf %d: %v", sender, err)
				}
				if got := merged.treeHash(cs); !bytes.Equal(got, treeHash) {
					t.Fatalf("tree hash after the path of leaf %d differs from the committer's", sender)
				}
				for l, rk := range keys {
					if l == sender {
						continue
					}
					commitSecret, next, err := merged.decryptPath(cs, rk, sender, &wire, provisional, nil)
					if err != nil {
						t.Fatalf("leaf %d decrypting the path of leaf %d: %v", l, sender, err)
					}
					if !bytes.Equal(commitSecret, pp.commitSecret) {
						t.Errorf("leaf %d: commit secret of the path of leaf %d differs from the committer's", l, sender)
					}
					for x, priv := range next.nodes {
						if mk := mine.nodes[x]; mk != nil && !bytes.Equal(mk.Public(), priv.Public()) {
							t.Errorf("leaf %d: key of node %d differs from the committer's", l, x)
						}
					}
				}
			}
		})
	}
	c.report(t)
}

// --- A group's tree from scratch ---

// treeMember is a member of a test tree: its signing key and its tree keys.
type treeMember struct {
	sig  *SignaturePrivateKey
	keys *treePrivateKeys
}

// newTreeTestLeaf makes a key_package leaf for a new member.
func newTreeTestLeaf(t testing.TB, cs CipherSuite, name string, rnd *rand.ChaCha8) (*LeafNode, *SignaturePrivateKey, *HPKEPrivateKey) {
	t.Helper()
	sig, err := GenerateSignatureKey(cs, rnd)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := cs.GenerateHPKEKey(rnd)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &LeafNode{
		EncryptionKey: enc.Public(),
		SignatureKey:  sig.Public(),
		Credential:    NewBasicCredential([]byte(name)),
		Capabilities:  DefaultCapabilities(),
		Source:        LeafNodeSourceKeyPackage,
		Lifetime:      Lifetime{NotBefore: 0, NotAfter: 1 << 62},
	}
	if err := leaf.sign(cs, sig, nil, 0, rnd); err != nil {
		t.Fatal(err)
	}
	return leaf, sig, enc
}

// treeGroup is the public tree shared by test members, and their private state.
type treeGroup struct {
	t       *testing.T
	cs      CipherSuite
	groupID GroupID
	epoch   uint64
	tree    *ratchetTree
	members map[LeafIndex]*treeMember
	rnd     *rand.ChaCha8
}

func newTreeGroup(t *testing.T, cs CipherSuite) *treeGroup {
	g := &treeGroup{t: t, cs: cs, groupID: GroupID("tree test group"), members: map[LeafIndex]*treeMember{}, rnd: rand.NewChaCha8([32]byte{7})}
	leaf, sig, enc := newTreeTestLeaf(t, cs, "member 0", g.rnd)
	g.tree = newRatchetTree(leaf)
	g.members[0] = &treeMember{sig: sig, keys: newTreePrivateKeys(0, enc)}
	return g
}

func (g *treeGroup) context() []byte {
	gc := GroupContext{Version: ProtocolVersionMLS10, CipherSuite: g.cs, GroupID: g.groupID, Epoch: g.epoch + 1, TreeHash: g.tree.treeHash(g.cs)}
	return gc.Bytes()
}

// add adds n members and returns their leaves.
func (g *treeGroup) add(n int) []LeafIndex {
	var added []LeafIndex
	for range n {
		leaf, sig, enc := newTreeTestLeaf(g.t, g.cs, fmt.Sprintf("member %d", len(g.members)), g.rnd)
		l := g.tree.addLeaf(leaf)
		g.members[l] = &treeMember{sig: sig, keys: newTreePrivateKeys(l, enc)}
		added = append(added, l)
	}
	return added
}

// commit has committer send an UpdatePath excluding the members just added, has
// every other existing member process it and every added one install its path
// secret, and checks that all agree and that the tree stays valid.
func (g *treeGroup) commit(committer LeafIndex, added []LeafIndex) {
	t := g.t
	t.Helper()
	before := g.tree.clone()
	pp, err := g.tree.newUpdatePath(g.cs, committer, nil, g.members[committer].sig, g.groupID, g.rnd)
	if err != nil {
		t.Fatal(err)
	}
	provisional := g.context()
	path, err := pp.encrypt(provisional, added)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.tree.validate(g.cs, g.groupID, time.Time{}); err != nil {
		t.Fatalf("tree after the commit of leaf %d: %v", committer, err)
	}
	for l, m := range g.members {
		switch {
		case l == committer:
			m.keys = pp.privateKeys()
		case slices.Contains(added, l):
			if err := g.tree.installPathSecret(g.cs, m.keys, committer, pp.pathSecretForJoiner(l)); err != nil {
				t.Fatalf("joiner %d: %v", l, err)
			}
		default:
			merged := before.clone()
			if err := merged.mergeUpdatePath(g.cs, committer, path, g.groupID); err != nil {
				t.Fatalf("leaf %d merging the path of leaf %d: %v", l, committer, err)
			}
			if !bytes.Equal(merged.marshalExtension(), g.tree.marshalExtension()) {
				t.Fatalf("leaf %d: merged tree differs from the committer's", l)
			}
			secret, keys, err := merged.decryptPath(g.cs, m.keys, committer, path, provisional, added)
			if err != nil {
				t.Fatalf("leaf %d decrypting the path of leaf %d: %v", l, committer, err)
			}
			if !bytes.Equal(secret, pp.commitSecret) {
				t.Fatalf("leaf %d: commit secret differs from the committer's", l)
			}
			m.keys = keys
		}
		m.keys.prune(g.tree)
	}
	g.epoch++
	g.checkKeys()
}

// checkKeys checks the tree invariant: each member holds the private key of every
// non-blank node of its direct path whose unmerged leaves do not include it.
func (g *treeGroup) checkKeys() {
	t := g.t
	t.Helper()
	for l, m := range g.members {
		if !bytes.Equal(m.keys.leafKey.Public(), g.tree.leaf(l).EncryptionKey) {
			t.Errorf("leaf %d: leaf key does not match the tree", l)
		}
		for _, x := range l.nodeIndex().directPath(g.tree.leafCount()) {
			p := g.tree.parentNode(x)
			if p == nil || slices.Contains(p.UnmergedLeaves, l) {
				continue
			}
			if k := m.keys.privateKey(x); k == nil || !bytes.Equal(k.Public(), p.EncryptionKey) {
				t.Errorf("leaf %d: no private key for node %d of its direct path", l, x)
			}
		}
	}
}

func TestTreeKEMGroupFlow(t *testing.T) {
	for _, cs := range []CipherSuite{MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, DefaultCipherSuite, MLS_128_DHKEMP256_AES128GCM_SHA256_P256} {
		t.Run(cs.String(), func(t *testing.T) {
			g := newTreeGroup(t, cs)
			g.commit(0, g.add(5)) // 0 adds 1..5 and welcomes them
			g.commit(3, nil)
			g.commit(5, g.add(2)) // unmerged leaves 6 and 7 under populated nodes
			g.commit(1, nil)
			for _, l := range []LeafIndex{2, 6} {
				if err := g.tree.removeLeaf(l); err != nil {
					t.Fatal(err)
				}
				delete(g.members, l)
			}
			g.commit(4, nil)
			g.commit(7, nil)

			// An external join takes the leftmost blank leaf.
			joiner := g.tree.nextLeaf()
			if joiner != 2 {
				t.Fatalf("next free leaf is %d, want 2", joiner)
			}
			before := g.tree.clone()
			leaf, sig, _ := newTreeTestLeaf(t, cs, "joiner", g.rnd)
			pp, err := g.tree.newUpdatePath(cs, joiner, leaf, sig, g.groupID, g.rnd)
			if err != nil {
				t.Fatal(err)
			}
			provisional := g.context()
			path, err := pp.encrypt(provisional, nil)
			if err != nil {
				t.Fatal(err)
			}
			for l, m := range g.members {
				merged := before.clone()
				if l%2 == 0 {
					merged.addLeaf(path.LeafNode.clone()) // the leaf placed first
				}
				if err := merged.mergeUpdatePath(cs, joiner, path, g.groupID); err != nil {
					t.Fatalf("leaf %d merging the external path: %v", l, err)
				}
				if !bytes.Equal(merged.treeHash(cs), g.tree.treeHash(cs)) {
					t.Fatalf("leaf %d: tree after the external path differs", l)
				}
				secret, keys, err := merged.decryptPath(cs, m.keys, joiner, path, provisional, nil)
				if err != nil {
					t.Fatalf("leaf %d decrypting the external path: %v", l, err)
				}
				if !bytes.Equal(secret, pp.commitSecret) {
					t.Fatalf("leaf %d: external commit secret differs", l)
				}
				m.keys = keys
				m.keys.prune(g.tree)
			}
			g.members[joiner] = &treeMember{sig: sig, keys: pp.privateKeys()}
			g.epoch++
			g.checkKeys()
			if err := g.tree.validate(cs, g.groupID, time.Time{}); err != nil {
				t.Fatal(err)
			}

			// The tree grows for a joiner when it is full, and the path covers it.
			g.commit(0, g.add(3))
			if got := g.tree.leafCount(); got != 16 {
				t.Fatalf("tree has %d leaves, want 16", got)
			}
			g.commit(9, nil)
		})
	}
}

func TestTreeKEMRejects(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newTreeGroup(t, cs)
	g.commit(0, g.add(3))
	before := g.tree.clone()
	pp, err := g.tree.newUpdatePath(cs, 1, nil, g.members[1].sig, g.groupID, g.rnd)
	if err != nil {
		t.Fatal(err)
	}
	provisional := g.context()
	good, err := pp.encrypt(provisional, nil)
	if err != nil {
		t.Fatal(err)
	}
	merge := func(p *UpdatePath) error { return before.clone().mergeUpdatePath(cs, 1, p, g.groupID) }
	if err := merge(good); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		change func(p *UpdatePath)
	}{
		{"fewer nodes", func(p *UpdatePath) { p.Nodes = p.Nodes[:1] }},
		{"reused key", func(p *UpdatePath) { p.Nodes[0].EncryptionKey = before.leaf(2).EncryptionKey }},
		{"key of the path twice", func(p *UpdatePath) { p.Nodes[1].EncryptionKey = p.Nodes[0].EncryptionKey }},
		{"malformed key", func(p *UpdatePath) { p.Nodes[1].EncryptionKey = before.leaf(2).EncryptionKey[:0] }},
		{"bad leaf signature", func(p *UpdatePath) { p.LeafNode.Signature[0] ^= 1 }},
		{"update source", func(p *UpdatePath) { p.LeafNode.Source = LeafNodeSourceUpdate }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p UpdatePath
			if err := decodeAll(mustEncode(good), "UpdatePath", p.unmarshal); err != nil {
				t.Fatal(err)
			}
			tc.change(&p)
			if err := merge(&p); !errors.Is(err, ErrInvalidUpdatePath) {
				t.Fatalf("merge = %v, want ErrInvalidUpdatePath", err)
			}
		})
	}

	t.Run("parent hash of a changed key", func(t *testing.T) {
		other, err := before.clone().newUpdatePath(cs, 1, nil, g.members[1].sig, g.groupID, g.rnd)
		if err != nil {
			t.Fatal(err)
		}
		var p UpdatePath
		if err := decodeAll(mustEncode(good), "UpdatePath", p.unmarshal); err != nil {
			t.Fatal(err)
		}
		p.Nodes[1].EncryptionKey = other.keys[1].Public()
		if err := merge(&p); err == nil || !strings.Contains(err.Error(), "parent_hash") {
			t.Fatalf("merge = %v, want a parent hash mismatch", err)
		}
	})

	t.Run("wrong group context", func(t *testing.T) {
		merged := before.clone()
		if err := merged.mergeUpdatePath(cs, 1, good, g.groupID); err != nil {
			t.Fatal(err)
		}
		wrong := slices.Clone(provisional)
		wrong[len(wrong)-1] ^= 1
		if _, _, err := merged.decryptPath(cs, g.members[0].keys, 1, good, wrong, nil); !errors.Is(err, ErrInvalidUpdatePath) {
			t.Fatalf("decrypt = %v, want ErrInvalidUpdatePath", err)
		}
		// A path secret that decrypts but does not derive the sent keys.
		evil := *good
		evil.Nodes = slices.Clone(good.Nodes)
		ct, err := cs.EncryptWithLabel(g.members[0].keys.leafKey.Public(), labelUpdatePathNode, provisional, make([]byte, cs.Nh()))
		if err != nil {
			t.Fatal(err)
		}
		evil.Nodes[0].EncryptedPathSecret = []HPKECiphertext{ct}
		if _, _, err := merged.decryptPath(cs, g.members[0].keys, 1, &evil, provisional, nil); !errors.Is(err, ErrInvalidUpdatePath) {
			t.Fatalf("decrypt = %v, want ErrInvalidUpdatePath", err)
		}
		// The joiners of a commit cannot decrypt it.
		if _, _, err := merged.decryptPath(cs, g.members[2].keys, 1, good, provisional, []LeafIndex{2}); err == nil {
			t.Fatal("a joiner decrypted the path")
		}
	})
}

func TestTreePrivateKeysStorage(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newTreeGroup(t, cs)
	g.commit(0, g.add(4))
	k := g.members[0].keys
	pending, err := cs.GenerateHPKEKey(g.rnd)
	if err != nil {
		t.Fatal(err)
	}
	k.pendingLeafKeys[string(pending.Public())] = pending
	data := mustEncode(k)
	back, err := unmarshalTreePrivateKeys(cs, data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustEncode(back), data) || back.leaf != k.leaf || len(back.nodes) != len(k.nodes) {
		t.Fatal("stored keys do not round-trip")
	}
	for x, priv := range k.nodes {
		if !bytes.Equal(back.nodes[x].Public(), priv.Public()) {
			t.Fatalf("key of node %d differs", x)
		}
	}
	if err := back.adoptPendingLeafKey(pending.Public()); err != nil || back.leafKey != back.privateKey(0) || !bytes.Equal(back.leafKey.Public(), pending.Public()) {
		t.Fatalf("adopting the pending key: %v", err)
	}
	if len(back.pendingLeafKeys) != 0 {
		t.Fatal("pending keys kept after adoption")
	}
	for n := range len(data) {
		if _, err := unmarshalTreePrivateKeys(cs, data[:n]); err == nil {
			t.Fatalf("truncated keys (%d of %d bytes) parsed", n, len(data))
		}
	}
	// Removing a member blanks its direct path: the keys there must go.
	if err := g.tree.removeLeaf(1); err != nil {
		t.Fatal(err)
	}
	k.prune(g.tree)
	for x := range k.nodes {
		if g.tree.parentNode(x) == nil {
			t.Errorf("key of blank node %d kept", x)
		}
	}
	if len(k.pendingLeafKeys) != 0 {
		t.Error("prune kept the keys of uncommitted updates")
	}
}

// --- Structure ---

// fakeLeaf is a leaf node with distinct random keys and no valid signature: enough
// for tree structure and hashing.
func fakeLeaf(rnd *rand.ChaCha8, i int) *LeafNode {
	key := func() []byte {
		b := make([]byte, 32)
		rnd.Read(b)
		return b
	}
	return &LeafNode{
		EncryptionKey: key(),
		SignatureKey:  key(),
		Credential:    NewBasicCredential(fmt.Appendf(nil, "member %d", i)),
		Capabilities:  DefaultCapabilities(),
		Source:        LeafNodeSourceKeyPackage,
		Lifetime:      Lifetime{NotAfter: 1 << 40},
		Signature:     key(),
	}
}

// checkTreeConsistent checks that t re-encodes canonically and that its cached tree
// hash is the one of its freshly parsed encoding.
func checkTreeConsistent(t *testing.T, tree *ratchetTree) {
	t.Helper()
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	data := tree.marshalExtension()
	back, err := unmarshalRatchetTree(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.width() != tree.width() {
		t.Fatalf("tree of width %d parses back with width %d", tree.width(), back.width())
	}
	if !bytes.Equal(back.treeHash(cs), tree.treeHash(cs)) {
		t.Fatal("cached tree hash differs from the hash of the parsed tree")
	}
}

func TestTreeTruncation(t *testing.T) {
	rnd := rand.NewChaCha8([32]byte{1})
	tree := newRatchetTree(fakeLeaf(rnd, 0))
	tree.treeHash(MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519)
	for i := 1; i < 9; i++ {
		if l := tree.addLeaf(fakeLeaf(rnd, i)); l != LeafIndex(i) {
			t.Fatalf("leaf %d added at %d", i, l)
		}
		checkTreeConsistent(t, tree)
	}
	if tree.leafCount() != 16 {
		t.Fatalf("9 members in %d leaves, want 16", tree.leafCount())
	}
	steps := []struct {
		remove LeafIndex
		leaves uint32
	}{
		{4, 16}, // a middle leaf: nothing to truncate
		{8, 8},  // the last member of the right half
		{7, 8},
		{6, 8},
		{5, 4}, // leaves 4..7 now all blank
		{3, 4},
		{1, 4},
		{2, 1}, // only leaf 0 is left
	}
	for _, s := range steps {
		if err := tree.removeLeaf(s.remove); err != nil {
			t.Fatal(err)
		}
		if got := tree.leafCount(); got != s.leaves {
			t.Fatalf("after removing leaf %d the tree has %d leaves, want %d", s.remove, got, s.leaves)
		}
		checkTreeConsistent(t, tree)
	}
	if err := tree.removeLeaf(3); err == nil {
		t.Fatal("removed a leaf outside the tree")
	}
	// A removed leaf's slot is reused before the tree grows.
	tree.addLeaf(fakeLeaf(rnd, 9))
	tree.addLeaf(fakeLeaf(rnd, 10))
	if err := tree.removeLeaf(1); err != nil {
		t.Fatal(err)
	}
	if l := tree.addLeaf(fakeLeaf(rnd, 11)); l != 1 || tree.leafCount() != 4 {
		t.Fatalf("new member at leaf %d of %d, want 1 of 4", l, tree.leafCount())
	}
}

func TestTreeUnmergedLeaves(t *testing.T) {
	rnd := rand.NewChaCha8([32]byte{2})
	tree := newRatchetTree(fakeLeaf(rnd, 0))
	for i := 1; i < 4; i++ {
		tree.addLeaf(fakeLeaf(rnd, i))
	}
	tree.setParent(3, &ParentNode{EncryptionKey: []byte("root key"), UnmergedLeaves: []LeafIndex{}})
	tree.setParent(5, &ParentNode{EncryptionKey: []byte("right key")})
	shared := tree.clone()
	if err := tree.removeLeaf(2); err != nil { // blanks node 5 and the root
		t.Fatal(err)
	}
	tree.setParent(3, &ParentNode{EncryptionKey: []byte("new root key")})
	tree.setParent(1, &ParentNode{EncryptionKey: []byte("left key")})
	if l := tree.addLeaf(fakeLeaf(rnd, 4)); l != 2 {
		t.Fatalf("added at leaf %d, want 2", l)
	}
	for x, want := range map[NodeIndex][]LeafIndex{1: nil, 3: {2}} {
		if got := tree.parentNode(x).UnmergedLeaves; !slices.Equal(got, want) {
			t.Errorf("unmerged leaves of node %d = %v, want %v", x, got, want)
		}
	}
	if got, want := tree.resolution(3), []NodeIndex{3, 4}; !slices.Equal(got, want) {
		t.Errorf("resolution of the root = %v, want %v", got, want)
	}
	if got, want := tree.resolution(5), []NodeIndex{4, 6}; !slices.Equal(got, want) {
		t.Errorf("resolution of node 5 = %v, want %v", got, want)
	}
	// Leaf 1's copath child 5 covers leaves 2 and 3; leaf 2's copath child 6 too.
	if path, copath := tree.filteredDirectPath(1); !slices.Equal(path, []NodeIndex{1, 3}) || !slices.Equal(copath, []NodeIndex{0, 5}) {
		t.Errorf("filtered direct path of leaf 1 = %v (copath %v)", path, copath)
	}
	if err := tree.removeLeaf(3); err != nil {
		t.Fatal(err)
	}
	if path, _ := tree.filteredDirectPath(2); !slices.Equal(path, []NodeIndex{3}) {
		t.Errorf("filtered direct path of leaf 2 = %v, want [3]: node 5 has a blank copath child", path)
	}
	// The clone taken earlier is unaffected.
	if shared.leaf(2) == nil || shared.parentNode(5) == nil || len(shared.parentNode(3).UnmergedLeaves) != 0 {
		t.Error("changing a tree changed its clone")
	}
	checkTreeConsistent(t, tree)
	checkTreeConsistent(t, shared)
}

// firstParentedVector returns a tree-validation case of suite 1 with parent nodes
// and unmerged leaves, and its tree.
func firstParentedVector(t *testing.T) (treeValidationVector, *ratchetTree) {
	t.Helper()
	for _, tc := range loadVectors[treeValidationVector](t, "tree-validation.json") {
		if CipherSuite(tc.CipherSuite) != MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 {
			continue
		}
		tree, err := unmarshalRatchetTree(tc.Tree)
		if err != nil {
			t.Fatal(err)
		}
		parents, unmerged := 0, 0
		for _, n := range tree.nodes {
			if n != nil && n.Type == NodeTypeParent {
				parents++
				unmerged += len(n.Parent.UnmergedLeaves)
			}
		}
		if parents >= 3 && unmerged > 0 && tree.leafCount() >= 8 {
			return tc, tree
		}
	}
	t.Fatal("no suitable tree-validation case")
	return treeValidationVector{}, nil
}

func TestTreeInvalid(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	tc, base := firstParentedVector(t)
	if err := base.validate(cs, GroupID(tc.GroupID), time.Time{}); err != nil {
		t.Fatalf("the unmodified tree: %v", err)
	}
	var parents []NodeIndex
	var withUnmerged NodeIndex
	for i, n := range base.nodes {
		if n != nil && n.Type == NodeTypeParent {
			parents = append(parents, NodeIndex(i))
			if len(n.Parent.UnmergedLeaves) > 0 {
				withUnmerged = NodeIndex(i)
			}
		}
	}
	var firstLeaf, lastLeaf LeafIndex
	for l := range base.members() {
		if base.leaf(firstLeaf) == nil {
			firstLeaf = l
		}
		lastLeaf = l
	}
	changeParent := func(tree *ratchetTree, x NodeIndex, f func(p *ParentNode)) {
		p := *tree.parentNode(x)
		f(&p)
		tree.setParent(x, &p)
	}

	tests := []struct {
		name   string
		change func(tree *ratchetTree)
		want   string
	}{
		{"bad parent hash", func(tree *ratchetTree) {
			for _, x := range parents {
				if len(tree.parentNode(x).ParentHash) > 0 {
					changeParent(tree, x, func(p *ParentNode) { p.ParentHash = slices.Clone(p.ParentHash); p.ParentHash[0] ^= 1 })
					return
				}
			}
		}, "parent-hash valid"},
		{"parent key changed", func(tree *ratchetTree) {
			changeParent(tree, parents[len(parents)-1], func(p *ParentNode) {
				k, _ := cs.GenerateHPKEKey(rand.NewChaCha8([32]byte{3}))
				p.EncryptionKey = k.Public()
			})
		}, "parent-hash valid"},
		{"duplicate encryption key", func(tree *ratchetTree) {
			changeParent(tree, parents[len(parents)-1], func(p *ParentNode) { p.EncryptionKey = tree.leaf(firstLeaf).EncryptionKey })
		}, "same encryption key"},
		{"duplicate leaf encryption key", func(tree *ratchetTree) {
			l := *tree.leaf(lastLeaf)
			l.EncryptionKey = tree.leaf(firstLeaf).EncryptionKey
			tree.setLeaf(lastLeaf, &l)
		}, "same encryption key"},
		{"duplicate signature key", func(tree *ratchetTree) {
			l := *tree.leaf(lastLeaf)
			l.SignatureKey = tree.leaf(firstLeaf).SignatureKey
			tree.setLeaf(lastLeaf, &l)
		}, "same signature key"},
		{"unmerged leaf not a descendant", func(tree *ratchetTree) {
			x := withUnmerged
			outside := LeafIndex(0)
			for l := range tree.members() {
				if !subtreeContains(x, l.nodeIndex()) {
					outside = l
					break
				}
			}
			changeParent(tree, x, func(p *ParentNode) { p.UnmergedLeaves = p.withUnmerged(outside).UnmergedLeaves })
		}, "not a descendant"},
		{"unmerged leaf blank", func(tree *ratchetTree) {
			x := withUnmerged
			for l := range LeafIndex(tree.leafCount()) {
				if tree.leaf(l) == nil && subtreeContains(x, l.nodeIndex()) {
					changeParent(tree, x, func(p *ParentNode) { p.UnmergedLeaves = p.withUnmerged(l).UnmergedLeaves })
					return
				}
			}
			changeParent(tree, x, func(p *ParentNode) { p.UnmergedLeaves = p.withUnmerged(LeafIndex(tree.leafCount())).UnmergedLeaves })
		}, "unmerged"},
		{"leaf signature", func(tree *ratchetTree) {
			l := *tree.leaf(lastLeaf)
			l.Signature = slices.Clone(l.Signature)
			l.Signature[3] ^= 1
			tree.setLeaf(lastLeaf, &l)
		}, "signature"},
		{"wrong group", func(tree *ratchetTree) {}, "signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := base.clone()
			tt.change(tree)
			groupID := GroupID(tc.GroupID)
			if tt.name == "wrong group" {
				groupID = GroupID("another group")
			}
			err := tree.validate(cs, groupID, time.Time{})
			if !errors.Is(err, ErrInvalidTree) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("validate = %v, want ErrInvalidTree mentioning %q", err, tt.want)
			}
		})
	}

	t.Run("tree hash", func(t *testing.T) {
		gc := &GroupContext{GroupID: GroupID(tc.GroupID), TreeHash: make([]byte, cs.Nh())}
		if err := base.validateAgainst(cs, gc, time.Time{}); !errors.Is(err, ErrInvalidTree) {
			t.Fatalf("validate = %v, want ErrInvalidTree", err)
		}
	})
}

// TestTreeInvalidUnmerged breaks the unmerged leaves of a valid tree in which leaf 6
// is unmerged at nodes 11 and 7, both set by one commit of leaf 4, with node 13
// between leaf 6 and node 11 blank.
func TestTreeInvalidUnmerged(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newTreeGroup(t, cs)
	g.commit(0, g.add(7))
	if err := g.tree.removeLeaf(6); err != nil {
		t.Fatal(err)
	}
	delete(g.members, 6)
	g.commit(4, nil)
	if added := g.add(1); added[0] != 6 {
		t.Fatalf("new member at leaf %d, want 6", added[0])
	}
	for x, want := range map[NodeIndex][]LeafIndex{7: {6}, 11: {6}, 9: nil, 3: nil} {
		if got := g.tree.parentNode(x).UnmergedLeaves; !slices.Equal(got, want) {
			t.Fatalf("unmerged leaves of node %d = %v, want %v", x, got, want)
		}
	}
	if err := g.tree.validate(cs, g.groupID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	drop := func(x NodeIndex) *ratchetTree {
		tree := g.tree.clone()
		p := *tree.parentNode(x)
		p.UnmergedLeaves = nil
		tree.setParent(x, &p)
		return tree
	}
	// Without leaf 6 at the root, node 11's parent hash still matches the root's,
	// but the root no longer accounts for the rest of node 11's resolution.
	if err := drop(7).validate(cs, g.groupID, time.Time{}); !errors.Is(err, ErrInvalidTree) || !strings.Contains(err.Error(), "parent node 7 is not parent-hash valid") {
		t.Errorf("validate = %v, want node 7 not parent-hash valid", err)
	}
	if err := drop(11).validate(cs, g.groupID, time.Time{}); !errors.Is(err, ErrInvalidTree) || !strings.Contains(err.Error(), "not at node 11") {
		t.Errorf("validate = %v, want leaf 6 missing at node 11", err)
	}
}

// ratchetTreeOf encodes a list of optional nodes, without any canonical checks.
func ratchetTreeOf(nodes []*Node) []byte {
	var b cryptobyte.Builder
	addVector(&b, func(b *cryptobyte.Builder) {
		for _, n := range nodes {
			addOptional(b, n != nil, func(b *cryptobyte.Builder) { n.marshal(b) })
		}
	})
	return b.BytesOrPanic()
}

func TestTreeUnmarshalRejects(t *testing.T) {
	rnd := rand.NewChaCha8([32]byte{4})
	leaf := func(i int) *Node { return &Node{Type: NodeTypeLeaf, Leaf: fakeLeaf(rnd, i)} }
	parent := func(unmerged ...LeafIndex) *Node {
		return &Node{Type: NodeTypeParent, Parent: &ParentNode{EncryptionKey: []byte("k"), UnmergedLeaves: unmerged}}
	}
	a, b, c := leaf(0), leaf(1), leaf(2)
	good := [][]*Node{
		{a},
		{a, nil, b},
		{a, parent(), b, nil, c}, // extended to 7 nodes
		{a, parent(1), b, parent(), c},
		{a, parent()}, // ends with the root: well-formed, though no valid tree looks so
		{a, nil, b, parent(0, 2), c},
	}
	for i, nodes := range good {
		data := ratchetTreeOf(nodes)
		tree, err := unmarshalRatchetTree(data)
		if err != nil {
			t.Fatalf("good tree %d: %v", i, err)
		}
		if !bytes.Equal(tree.marshalExtension(), data) {
			t.Errorf("good tree %d does not re-encode to the same bytes", i)
		}
		if w := tree.width(); w != nodeWidth(tree.leafCount()) || w&(w+1) != 0 {
			t.Errorf("good tree %d has width %d", i, w)
		}
	}
	bad := map[string][]*Node{
		"empty":                 {},
		"trailing blank":        {a, nil, b, nil},
		"only blank":            {nil},
		"leaf at parent index":  {a, leaf(9), b},
		"parent at leaf index":  {parent(), nil, b},
		"unsorted unmerged":     {a, nil, b, parent(2, 0), c},
		"repeated unmerged":     {a, nil, b, parent(2, 2), c},
		"trailing blank parent": {a, nil},
	}
	for name, nodes := range bad {
		if _, err := unmarshalRatchetTree(ratchetTreeOf(nodes)); !errors.Is(err, ErrInvalidTree) {
			t.Errorf("%s: unmarshal = %v, want ErrInvalidTree", name, err)
		}
	}
	data := ratchetTreeOf(good[2])
	for n := range len(data) {
		if _, err := unmarshalRatchetTree(data[:n]); err == nil {
			t.Fatalf("truncated tree (%d of %d bytes) parsed", n, len(data))
		}
	}
	if _, err := unmarshalRatchetTree(append(slices.Clone(data), 0)); err == nil {
		t.Fatal("tree with a trailing byte parsed")
	}
	// The exported pair round-trips too.
	tree, err := UnmarshalRatchetTree(data)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := MarshalRatchetTree(tree); err != nil || !bytes.Equal(out, data) {
		t.Fatalf("MarshalRatchetTree = %v", err)
	}
}

// --- Scale ---

// largeTree builds a tree of n members whose every parent node is populated, as
// after each member has committed once.
func largeTree(tb testing.TB, n int) *ratchetTree {
	tb.Helper()
	rnd := rand.NewChaCha8([32]byte{5})
	tree := newRatchetTree(fakeLeaf(rnd, 0))
	for i := 1; i < n; i++ {
		tree.addLeaf(fakeLeaf(rnd, i))
	}
	for x := 1; x < int(tree.width()); x += 2 {
		key := make([]byte, 32)
		rnd.Read(key)
		if !tree.blankSubtree(NodeIndex(x)) {
			tree.nodes[x] = &Node{Type: NodeTypeParent, Parent: &ParentNode{EncryptionKey: key, ParentHash: key}}
		}
	}
	clear(tree.hashes)
	return tree
}

func TestTreeLarge(t *testing.T) {
	const n = 10000
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	tree := largeTree(t, n)
	if got := tree.leafCount(); got != 16384 {
		t.Fatalf("%d members in %d leaves, want 16384", n, got)
	}
	if got := tree.nextLeaf(); got != n {
		t.Fatalf("next free leaf is %d, want %d", got, n)
	}
	before := tree.treeHash(cs)
	rnd := rand.NewChaCha8([32]byte{6})
	tree.setLeaf(4321, fakeLeaf(rnd, 4321))
	after := tree.treeHash(cs)
	if bytes.Equal(before, after) {
		t.Fatal("changing a leaf did not change the tree hash")
	}
	checkTreeConsistent(t, tree)
	// Leaf 0 has members in every copath subtree; leaf 9999 (0b10011100001111) has
	// none in the subtrees to its right, at the levels of its six zero bits.
	if path, _ := tree.filteredDirectPath(0); len(path) != 14 {
		t.Errorf("filtered direct path of leaf 0 has %d nodes, want 14", len(path))
	}
	if path, _ := tree.filteredDirectPath(n - 1); len(path) != 8 {
		t.Errorf("filtered direct path of leaf %d has %d nodes, want 8", n-1, len(path))
	}
	// Removing the last members shrinks the tree back.
	for l := LeafIndex(n - 1); l >= 8192; l-- {
		if err := tree.removeLeaf(l); err != nil {
			t.Fatal(err)
		}
	}
	if got := tree.leafCount(); got != 8192 {
		t.Fatalf("after removals the tree has %d leaves, want 8192", got)
	}
	checkTreeConsistent(t, tree)
}

func BenchmarkTreeHashAfterLeafChange(b *testing.B) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	tree := largeTree(b, 10000)
	tree.treeHash(cs)
	rnd := rand.NewChaCha8([32]byte{8})
	leaves := make([]*LeafNode, 64)
	for i := range leaves {
		leaves[i] = fakeLeaf(rnd, i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tree.setLeaf(LeafIndex(i*37%10000), leaves[i%len(leaves)])
		tree.treeHash(cs)
	}
}

func BenchmarkTreeHashFull(b *testing.B) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	tree := largeTree(b, 10000)
	b.ReportAllocs()
	for b.Loop() {
		clear(tree.hashes)
		tree.treeHash(cs)
	}
}

// populatedGroupTree builds a tree of n members with real keys, every parent
// populated by a commit, and returns it with member 0's signing key.
func populatedGroupTree(tb testing.TB, cs CipherSuite, n int) (*ratchetTree, *SignaturePrivateKey) {
	tb.Helper()
	rnd := rand.NewChaCha8([32]byte{9})
	leaf, sig, _ := newTreeTestLeaf(tb, cs, "member 0", rnd)
	tree := newRatchetTree(leaf)
	sigs := []*SignaturePrivateKey{sig}
	for i := 1; i < n; i++ {
		leaf, sig, _ := newTreeTestLeaf(tb, cs, fmt.Sprint("member ", i), rnd)
		tree.addLeaf(leaf)
		sigs = append(sigs, sig)
	}
	// One commit per pair of subtrees populates every parent node.
	for l := 0; l < n; l += 2 {
		if _, err := tree.newUpdatePath(cs, LeafIndex(l), nil, sigs[l], GroupID("bench"), rnd); err != nil {
			tb.Fatal(err)
		}
	}
	return tree, sigs[0]
}

func BenchmarkTreeKEMUpdatePath(b *testing.B) {
	for _, cs := range []CipherSuite{MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, DefaultCipherSuite} {
		b.Run(cs.String(), func(b *testing.B) {
			tree, sig := populatedGroupTree(b, cs, 128)
			gc := make([]byte, 100)
			rnd := rand.NewChaCha8([32]byte{10})
			b.ReportAllocs()
			for b.Loop() {
				next := tree.clone()
				pp, err := next.newUpdatePath(cs, 0, nil, sig, GroupID("bench"), rnd)
				if err != nil {
					b.Fatal(err)
				}
				next.treeHash(cs)
				if _, err := pp.encrypt(gc, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
