package mls

import (
	"bytes"
	"slices"

	"golang.org/x/crypto/cryptobyte"
)

// --- Tree hashes (RFC 9420 §7.8) ---

// useSuite readies the hash cache for cs.
func (t *ratchetTree) useSuite(cs CipherSuite) {
	if t.hashSuite != cs {
		clear(t.hashes)
		t.hashSuite = cs
	}
}

// treeHash returns the tree hash of the root (RFC 9420 §7.8).
func (t *ratchetTree) treeHash(cs CipherSuite) []byte {
	t.useSuite(cs)
	return slices.Clone(t.hashNode(cs, t.root()))
}

// nodeHash returns the tree hash of node x.
func (t *ratchetTree) nodeHash(cs CipherSuite, x NodeIndex) []byte {
	t.useSuite(cs)
	return slices.Clone(t.hashNode(cs, x))
}

// hashNode returns the tree hash of x, from the cache when it can; the cache must be
// set to cs.
func (t *ratchetTree) hashNode(cs CipherSuite, x NodeIndex) []byte {
	if h := t.hashes[x]; h != nil {
		return h
	}
	var h []byte
	if l, ok := x.leafIndex(); ok {
		var leaf *LeafNode
		if n := t.nodes[x]; n != nil {
			leaf = n.Leaf
		}
		h = leafTreeHash(cs, l, leaf)
	} else {
		left, _ := x.left()
		right, _ := x.right()
		var p *ParentNode
		if n := t.nodes[x]; n != nil {
			p = n.Parent
		}
		h = parentTreeHash(cs, p, t.hashNode(cs, left), t.hashNode(cs, right))
	}
	t.hashes[x] = h
	return h
}

// leafTreeHash hashes TreeHashInput for a leaf (RFC 9420 §7.8):
//
//	struct {
//	    NodeType node_type;
//	    select (TreeHashInput.node_type) {
//	        case leaf:   LeafNodeHashInput leaf_node;
//	        case parent: ParentNodeHashInput parent_node;
//	    };
//	} TreeHashInput;
//
//	struct {
//	    uint32 leaf_index;
//	    optional<LeafNode> leaf_node;
//	} LeafNodeHashInput;
func leafTreeHash(cs CipherSuite, l LeafIndex, leaf *LeafNode) []byte {
	var b cryptobyte.Builder
	b.AddUint8(uint8(NodeTypeLeaf))
	b.AddUint32(uint32(l))
	addOptional(&b, leaf != nil, func(b *cryptobyte.Builder) { leaf.marshal(b) })
	return cs.Hash(b.BytesOrPanic())
}

// parentTreeHash hashes TreeHashInput for a parent (RFC 9420 §7.8):
//
//	struct {
//	    optional<ParentNode> parent_node;
//	    opaque left_hash<V>;
//	    opaque right_hash<V>;
//	} ParentNodeHashInput;
func parentTreeHash(cs CipherSuite, p *ParentNode, left, right []byte) []byte {
	var b cryptobyte.Builder
	b.AddUint8(uint8(NodeTypeParent))
	addOptional(&b, p != nil, func(b *cryptobyte.Builder) { p.marshal(b) })
	addOpaque(&b, left)
	addOpaque(&b, right)
	return cs.Hash(b.BytesOrPanic())
}

// hashExcluding returns the tree hash of x in the tree modified as §7.9 describes
// for original_sibling_tree_hash: each leaf of excluded (sorted) is blanked and
// removed from the unmerged_leaves of every parent. Subtrees holding none of the
// excluded leaves come from the cache.
func (t *ratchetTree) hashExcluding(cs CipherSuite, x NodeIndex, excluded []LeafIndex) []byte {
	var under []LeafIndex
	for _, l := range excluded {
		if subtreeContains(x, l.nodeIndex()) {
			under = append(under, l)
		}
	}
	if len(under) == 0 {
		return t.hashNode(cs, x)
	}
	if l, ok := x.leafIndex(); ok {
		return leafTreeHash(cs, l, nil)
	}
	var p *ParentNode
	if n := t.nodes[x]; n != nil {
		c := *n.Parent
		c.UnmergedLeaves = slices.DeleteFunc(slices.Clone(c.UnmergedLeaves), func(l LeafIndex) bool {
			_, found := slices.BinarySearch(under, l)
			return found
		})
		p = &c
	}
	left, _ := x.left()
	right, _ := x.right()
	return parentTreeHash(cs, p, t.hashExcluding(cs, left, under), t.hashExcluding(cs, right, under))
}

// --- Parent hashes (RFC 9420 §7.9) ---

// computeParentHash hashes ParentHashInput (RFC 9420 §7.9):
//
//	struct {
//	    HPKEPublicKey encryption_key;
//	    opaque parent_hash<V>;
//	    opaque original_sibling_tree_hash<V>;
//	} ParentHashInput;
func computeParentHash(cs CipherSuite, encryptionKey HPKEPublicKey, parentHash, originalSiblingTreeHash []byte) []byte {
	var b cryptobyte.Builder
	addOpaque(&b, encryptionKey)
	addOpaque(&b, parentHash)
	addOpaque(&b, originalSiblingTreeHash)
	return cs.Hash(b.BytesOrPanic())
}

// parentHashOf returns the parent hash of the non-blank parent p with copath child
// s (RFC 9420 §7.9); the cache must be set to cs.
func (t *ratchetTree) parentHashOf(cs CipherSuite, p, s NodeIndex) []byte {
	pn := t.nodes[p].Parent
	return computeParentHash(cs, pn.EncryptionKey, pn.ParentHash, t.hashExcluding(cs, s, pn.UnmergedLeaves))
}

// verifyParentHashes checks that every non-blank parent node is parent-hash valid
// (RFC 9420 §7.9.2), bottom up: each non-blank node D is linked to its lowest
// non-blank ancestor P when D's parent_hash is the parent hash of P with D's
// sibling side as copath child, D is in the resolution of P's child C towards D,
// and P's unmerged leaves under C are exactly that resolution without D. Each
// non-blank parent must be the target of exactly one link, which chains it back to
// a leaf. (Only P can qualify: a non-blank node strictly between D and P would keep
// D out of the resolution of C, or put itself in it.)
func (t *ratchetTree) verifyParentHashes(cs CipherSuite) error {
	t.useSuite(cs)
	n := t.leafCount()
	links := make(map[NodeIndex]int)
	type target struct{ p, s NodeIndex }
	memo := make(map[target][]byte)
	for i, d := range t.nodes {
		x := NodeIndex(i)
		if d == nil {
			continue
		}
		var ph []byte
		switch {
		case d.Type == NodeTypeParent:
			ph = d.Parent.ParentHash
		case d.Leaf.Source == LeafNodeSourceCommit:
			ph = d.Leaf.ParentHash
		default:
			continue
		}
		c := x
		p, ok := c.parent(n)
		for ok && t.nodes[p] == nil {
			c = p
			p, ok = c.parent(n)
		}
		if !ok {
			continue
		}
		s, _ := c.sibling(n)
		want, ok := memo[target{p, s}]
		if !ok {
			want = t.parentHashOf(cs, p, s)
			memo[target{p, s}] = want
		}
		if !bytes.Equal(ph, want) || !t.linkedUnder(x, p, c) {
			continue
		}
		links[p]++
	}
	for i, node := range t.nodes {
		if node == nil || node.Type != NodeTypeParent {
			continue
		}
		switch links[NodeIndex(i)] {
		case 1:
		case 0:
			return treeError("parent node %d is not parent-hash valid", i)
		default:
			return treeError("parent node %d is covered by %d parent-hash chains", i, links[NodeIndex(i)])
		}
	}
	return nil
}

// linkedUnder checks the resolution condition of §7.9.2 for descendant d of parent p
// through p's child c: d is in the resolution of c, and the rest of that resolution
// is exactly p's unmerged leaves under c.
func (t *ratchetTree) linkedUnder(d, p, c NodeIndex) bool {
	res := t.resolution(c)
	i := slices.Index(res, d)
	if i < 0 {
		return false
	}
	rest := slices.Delete(res, i, i+1)
	var want []NodeIndex
	for _, l := range t.nodes[p].Parent.UnmergedLeaves {
		if x := l.nodeIndex(); subtreeContains(c, x) {
			want = append(want, x)
		}
	}
	slices.Sort(rest)
	return slices.Equal(rest, want)
}
