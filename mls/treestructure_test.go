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
