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
)

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
