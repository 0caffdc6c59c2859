package mls

import "math/bits"

// Tree math of RFC 9420 Appendix C. A tree of n leaves is stored as an array of
// nodeWidth(n) nodes in left-to-right order: leaves at even indices, parents at odd
// indices, the level of a node being the number of trailing one bits of its index.
// RFC 9420 trees are always full (n is a power of two), but every function
// here is total over the indices it accepts, as in the appendix.

// LeafIndex is the position of a leaf among the leaves of a tree (RFC 9420 §4.1:
// "leaf_index"); leaf i is node 2*i.
type LeafIndex uint32

// NodeIndex is the position of a node in the array representation of a tree
// (RFC 9420 Appendix C).
type NodeIndex uint32

// nodeIndex returns the node index of leaf l.
func (l LeafIndex) nodeIndex() NodeIndex { return NodeIndex(l) * 2 }

// isLeaf reports whether x is a leaf (level 0).
func (x NodeIndex) isLeaf() bool { return x&1 == 0 }

// leafIndex returns the leaf index of x, and false when x is a parent node.
func (x NodeIndex) leafIndex() (LeafIndex, bool) {
	if !x.isLeaf() {
		return 0, false
	}
	return LeafIndex(x / 2), true
}

// log2 is the exponent of the largest power of two not exceeding x (0 for x = 0).
func log2(x uint32) uint {
	if x == 0 {
		return 0
	}
	return uint(bits.Len32(x) - 1)
}

// level is the level of x in the tree: 0 for leaves, k for a node whose subtree
// has 2^k leaves. It is the number of trailing one bits of x.
func (x NodeIndex) level() uint { return uint(bits.TrailingZeros32(^uint32(x))) }

// nodeWidth is the number of nodes in a tree with n leaves.
func nodeWidth(n uint32) uint32 {
	if n == 0 {
		return 0
	}
	return 2*(n-1) + 1
}

// root is the index of the root of a tree with n leaves (n > 0).
func root(n uint32) NodeIndex {
	w := nodeWidth(n)
	return NodeIndex(uint32(1)<<log2(w) - 1)
}

// left is the left child of x, and false when x is a leaf.
func (x NodeIndex) left() (NodeIndex, bool) {
	k := x.level()
	if k == 0 {
		return 0, false
	}
	return x ^ NodeIndex(1)<<(k-1), true
}

// right is the right child of x, and false when x is a leaf.
func (x NodeIndex) right() (NodeIndex, bool) {
	k := x.level()
	if k == 0 {
		return 0, false
	}
	return x ^ NodeIndex(3)<<(k-1), true
}

// parent is the parent of x in a tree with n leaves, and false when x is the root.
func (x NodeIndex) parent(n uint32) (NodeIndex, bool) {
	if x == root(n) {
		return 0, false
	}
	k := x.level()
	b := (x >> (k + 1)) & 1
	return (x | NodeIndex(1)<<k) ^ (b << (k + 1)), true
}

// sibling is the other child of x's parent in a tree with n leaves, and false when
// x is the root.
func (x NodeIndex) sibling(n uint32) (NodeIndex, bool) {
	p, ok := x.parent(n)
	if !ok {
		return 0, false
	}
	if x < p {
		r, _ := p.right()
		return r, true
	}
	l, _ := p.left()
	return l, true
}

// directPath is the list of x's ancestors in a tree with n leaves, from its parent
// up to and including the root; it is empty for the root, and for an x outside the
// tree.
func (x NodeIndex) directPath(n uint32) []NodeIndex {
	r := root(n)
	if x == r || x > 2*r {
		return nil
	}
	d := make([]NodeIndex, 0, r.level()-x.level())
	for x != r {
		x, _ = x.parent(n)
		d = append(d, x)
	}
	return d
}

// copath is the list of the siblings of x and of its ancestors below the root, in a
// tree with n leaves: the nodes whose subtrees the direct path does not contain.
// It is empty for the root, and for an x outside the tree.
func (x NodeIndex) copath(n uint32) []NodeIndex {
	r := root(n)
	if x == r || x > 2*r {
		return nil
	}
	d := make([]NodeIndex, 0, r.level()-x.level())
	for y := x; y != r; y, _ = y.parent(n) {
		s, _ := y.sibling(n)
		d = append(d, s)
	}
	return d
}

// commonAncestor is the lowest node that is x or an ancestor of x, and y or an
// ancestor of y (common_ancestor_direct of RFC 9420 Appendix C).
func commonAncestor(x, y NodeIndex) NodeIndex {
	lx, ly := x.level()+1, y.level()+1
	if lx <= ly && x>>ly == y>>ly {
		return y
	}
	if ly <= lx && x>>lx == y>>lx {
		return x
	}
	xn, yn := x, y
	k := uint(0)
	for xn != yn {
		xn, yn = xn>>1, yn>>1
		k++
	}
	return xn<<k + NodeIndex(1)<<(k-1) - 1
}
