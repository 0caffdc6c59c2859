package mls

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"slices"

	"golang.org/x/crypto/cryptobyte"
)

// The ratchet tree of RFC 9420 §4 and §7, stored as an array of nodes as in
// Appendix C: leaf L at index 2L, parents at odd indices. The tree is always full
// (2^d leaves, §7.7): adding a leaf past the right edge doubles it, and removing a
// leaf truncates it while the right subtree of the root is all blank.

// NodeType is RFC 9420 §7.8:
//
//	enum {
//	    reserved(0),
//	    leaf(1),
//	    parent(2),
//	    (255)
//	} NodeType;
type NodeType uint8

// Node types.
const (
	NodeTypeLeaf   NodeType = 1
	NodeTypeParent NodeType = 2
)

// maxTreeLeaves is an implementation limit: the largest ratchet tree (in leaves,
// blank ones included) this package parses, far above any real group. It keeps a
// ratchet_tree extension of mostly blank nodes, one byte each, from making the
// parser allocate much more than a real tree would need.
const maxTreeLeaves = 1 << 18

// ErrInvalidTree is wrapped by every reason a ratchet tree is refused: a malformed
// or non-canonical ratchet_tree extension, and every failed check of RFC 9420
// §12.4.3.1 (parent hashes, leaf nodes, duplicate keys, unmerged leaves).
var ErrInvalidTree = errors.New("mls: invalid ratchet tree")

func treeError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidTree}, args...)...)
}

// ParentNode is RFC 9420 §7.1:
//
//	struct {
//	    HPKEPublicKey encryption_key;
//	    opaque parent_hash<V>;
//	    uint32 unmerged_leaves<V>;
//	} ParentNode;
//
// UnmergedLeaves is sorted in increasing order, as §7.1 requires.
type ParentNode struct {
	EncryptionKey  HPKEPublicKey
	ParentHash     []byte
	UnmergedLeaves []LeafIndex
}

func (p *ParentNode) marshal(b *cryptobyte.Builder) {
	addOpaque(b, p.EncryptionKey)
	addOpaque(b, p.ParentHash)
	addVector(b, func(b *cryptobyte.Builder) {
		for _, l := range p.UnmergedLeaves {
			b.AddUint32(uint32(l))
		}
	})
}

// unmarshal reads a ParentNode, rejecting unmerged_leaves that are not strictly
// increasing (§7.1: "MUST be sorted in increasing order").
func (p *ParentNode) unmarshal(s *cryptobyte.String) bool {
	*p = ParentNode{}
	return readOpaque(s, (*[]byte)(&p.EncryptionKey)) && readOpaque(s, &p.ParentHash) &&
		readVectorOf(s, func(s *cryptobyte.String) bool {
			var l uint32
			if !s.ReadUint32(&l) {
				return false
			}
			if n := len(p.UnmergedLeaves); n > 0 && LeafIndex(l) <= p.UnmergedLeaves[n-1] {
				return false
			}
			p.UnmergedLeaves = append(p.UnmergedLeaves, LeafIndex(l))
			return true
		})
}

// withUnmerged returns a copy of p whose unmerged leaves also include l.
func (p *ParentNode) withUnmerged(l LeafIndex) *ParentNode {
	c := *p
	i, found := slices.BinarySearch(p.UnmergedLeaves, l)
	if !found {
		c.UnmergedLeaves = slices.Insert(slices.Clone(p.UnmergedLeaves), i, l)
	}
	return &c
}

// Node is RFC 9420 §12.4.3.3:
//
//	struct {
//	    NodeType node_type;
//	    select (Node.node_type) {
//	        case leaf:   LeafNode leaf_node;
//	        case parent: ParentNode parent_node;
//	    };
//	} Node;
//
// Exactly the field matching Type is set.
type Node struct {
	Type   NodeType
	Leaf   *LeafNode
	Parent *ParentNode
}

func (n *Node) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(n.Type))
	switch n.Type {
	case NodeTypeLeaf:
		n.Leaf.marshal(b)
	case NodeTypeParent:
		n.Parent.marshal(b)
	default:
		b.SetError(errors.New("mls: unknown node type"))
	}
}

func (n *Node) unmarshal(s *cryptobyte.String) bool {
	*n = Node{}
	if !s.ReadUint8((*uint8)(&n.Type)) {
		return false
	}
	switch n.Type {
	case NodeTypeLeaf:
		n.Leaf = new(LeafNode)
		return n.Leaf.unmarshal(s)
	case NodeTypeParent:
		n.Parent = new(ParentNode)
		return n.Parent.unmarshal(s)
	}
	return false
}

// encryptionKey returns the node's HPKE public key.
func (n *Node) encryptionKey() HPKEPublicKey {
	if n.Type == NodeTypeLeaf {
		return n.Leaf.EncryptionKey
	}
	return n.Parent.EncryptionKey
}

// ratchetTree is the public state of a group's ratchet tree (RFC 9420 §4, §7).
//
// Nodes in a ratchetTree are never modified in place: every change installs a new
// *Node (and *LeafNode or *ParentNode). That makes clone cheap, since copies share
// the unchanged nodes, and lets the tree cache each node's tree hash. Callers must
// therefore treat the *LeafNode and *ParentNode values the tree returns as read-only.
//
// A ratchetTree is not safe for concurrent use, not even by readers only: computing
// a tree hash fills the cache.
type ratchetTree struct {
	nodes []*Node // nil is a blank node; len is always 2^(d+1) - 1

	// hashes[x] caches the tree hash of node x under hashSuite, nil when unknown.
	// A node's hash is only ever cached together with those of all its descendants,
	// so a node without a cached hash has no ancestor with one.
	hashes    [][]byte
	hashSuite CipherSuite
}

// newRatchetTree returns the one-leaf tree of a group's creator (RFC 9420 §11).
func newRatchetTree(leaf *LeafNode) *ratchetTree {
	return &ratchetTree{nodes: []*Node{{Type: NodeTypeLeaf, Leaf: leaf}}, hashes: make([][]byte, 1)}
}

// leafCount is the number of leaves of the tree, blank ones included: a power of two.
func (t *ratchetTree) leafCount() uint32 { return uint32(len(t.nodes)+1) / 2 }

// width is the number of nodes of the tree.
func (t *ratchetTree) width() uint32 { return uint32(len(t.nodes)) }

// root is the index of the root node.
func (t *ratchetTree) root() NodeIndex { return root(t.leafCount()) }

// node returns node x, nil when it is blank or outside the tree.
func (t *ratchetTree) node(x NodeIndex) *Node {
	if uint64(x) >= uint64(len(t.nodes)) {
		return nil
	}
	return t.nodes[x]
}

// leaf returns the leaf node at l, nil when it is blank or outside the tree.
func (t *ratchetTree) leaf(l LeafIndex) *LeafNode {
	if n := t.node(l.nodeIndex()); n != nil {
		return n.Leaf
	}
	return nil
}

// parentNode returns parent node x, nil when it is blank, a leaf or outside the tree.
func (t *ratchetTree) parentNode(x NodeIndex) *ParentNode {
	if n := t.node(x); n != nil {
		return n.Parent
	}
	return nil
}

// setNode installs n (nil for blank) at x and forgets the hashes it affects.
func (t *ratchetTree) setNode(x NodeIndex, n *Node) {
	t.nodes[x] = n
	t.invalidate(x)
}

// setLeaf installs leaf at l (which must lie within the tree).
func (t *ratchetTree) setLeaf(l LeafIndex, leaf *LeafNode) {
	t.setNode(l.nodeIndex(), &Node{Type: NodeTypeLeaf, Leaf: leaf})
}

// setParent installs p at parent position x.
func (t *ratchetTree) setParent(x NodeIndex, p *ParentNode) {
	t.setNode(x, &Node{Type: NodeTypeParent, Parent: p})
}

// blankPath blanks the direct path of leaf l.
func (t *ratchetTree) blankPath(l LeafIndex) {
	for _, x := range l.nodeIndex().directPath(t.leafCount()) {
		if t.nodes[x] != nil {
			t.setNode(x, nil)
		}
	}
}

// invalidate forgets the cached hashes of x and its ancestors.
func (t *ratchetTree) invalidate(x NodeIndex) {
	n := t.leafCount()
	for t.hashes[x] != nil {
		t.hashes[x] = nil
		p, ok := x.parent(n)
		if !ok {
			return
		}
		x = p
	}
}

// clone returns a copy of t that can be changed independently of t. The copies
// share the (immutable) nodes themselves.
func (t *ratchetTree) clone() *ratchetTree {
	return &ratchetTree{nodes: slices.Clone(t.nodes), hashes: slices.Clone(t.hashes), hashSuite: t.hashSuite}
}

// --- Membership changes (RFC 9420 §7.7, §12.1) ---

// nextLeaf returns the leftmost blank leaf, or leafCount() when every leaf is
// taken: the position a new member gets (RFC 9420 §7.7, §12.1.1, §12.4.2).
func (t *ratchetTree) nextLeaf() LeafIndex {
	n := t.leafCount()
	for l := range LeafIndex(n) {
		if t.nodes[l.nodeIndex()] == nil {
			return l
		}
	}
	return LeafIndex(n)
}

// extend doubles the tree: the old tree becomes the left subtree of a new blank
// root whose right subtree is blank (RFC 9420 §7.7).
func (t *ratchetTree) extend() {
	w := len(t.nodes)
	t.nodes = append(t.nodes, make([]*Node, w+1)...)
	t.hashes = append(t.hashes, make([][]byte, w+1)...)
}

// truncate removes the right subtree of the root, and the root, for as long as
// that subtree is all blank (RFC 9420 §7.7).
func (t *ratchetTree) truncate() {
	for t.leafCount() > 1 {
		r := int(t.root())
		if slices.ContainsFunc(t.nodes[r+1:], func(n *Node) bool { return n != nil }) {
			return
		}
		clear(t.nodes[r:])
		t.nodes = t.nodes[:r]
		t.hashes = t.hashes[:r]
	}
}

// addLeaf puts leaf at the leftmost blank leaf, extending the tree when there is
// none, and lists the new leaf as unmerged at each non-blank node of its direct
// path (RFC 9420 §7.7, §12.1.1). It returns the new leaf's index.
func (t *ratchetTree) addLeaf(leaf *LeafNode) LeafIndex {
	l := t.nextLeaf()
	for uint32(l) >= t.leafCount() {
		t.extend()
	}
	for _, x := range l.nodeIndex().directPath(t.leafCount()) {
		if p := t.parentNode(x); p != nil {
			t.setParent(x, p.withUnmerged(l))
		}
	}
	t.setLeaf(l, leaf)
	return l
}

// updateLeaf replaces the leaf at l, as an Update proposal does, and blanks its
// direct path (RFC 9420 §12.1.2).
func (t *ratchetTree) updateLeaf(l LeafIndex, leaf *LeafNode) error {
	if t.leaf(l) == nil {
		return fmt.Errorf("mls: updating blank leaf %d", l)
	}
	t.setLeaf(l, leaf)
	t.blankPath(l)
	return nil
}

// removeLeaf blanks the leaf at l and its direct path, then truncates the tree
// (RFC 9420 §7.7, §12.1.3).
func (t *ratchetTree) removeLeaf(l LeafIndex) error {
	if t.leaf(l) == nil {
		return fmt.Errorf("mls: removing blank leaf %d", l)
	}
	t.setNode(l.nodeIndex(), nil)
	t.blankPath(l)
	t.truncate()
	return nil
}

// --- Lookups ---

// members yields every non-blank leaf with its index, in leaf order.
func (t *ratchetTree) members() iter.Seq2[LeafIndex, *LeafNode] {
	return func(yield func(LeafIndex, *LeafNode) bool) {
		for x := 0; x < len(t.nodes); x += 2 {
			if n := t.nodes[x]; n != nil && !yield(LeafIndex(x/2), n.Leaf) {
				return
			}
		}
	}
}

// findLeaf returns the leaf whose encryption key is pub.
func (t *ratchetTree) findLeaf(pub HPKEPublicKey) (LeafIndex, bool) {
	for l, leaf := range t.members() {
		if bytes.Equal(leaf.EncryptionKey, pub) {
			return l, true
		}
	}
	return 0, false
}

// findLeafBySignatureKey returns the leaf whose signature key is pub.
func (t *ratchetTree) findLeafBySignatureKey(pub SignaturePublicKey) (LeafIndex, bool) {
	for l, leaf := range t.members() {
		if bytes.Equal(leaf.SignatureKey, pub) {
			return l, true
		}
	}
	return 0, false
}

// hasEncryptionKey reports whether any node, leaf or parent, has encryption key pub.
func (t *ratchetTree) hasEncryptionKey(pub HPKEPublicKey) bool {
	for _, n := range t.nodes {
		if n != nil && bytes.Equal(n.encryptionKey(), pub) {
			return true
		}
	}
	return false
}

// --- Resolution and paths (RFC 9420 §4.1.1, §4.1.2) ---

// resolution returns the resolution of x (RFC 9420 §4.1.1): x itself followed by its
// unmerged leaves when x is not blank, nothing for a blank leaf, and the resolutions
// of its children for a blank parent.
func (t *ratchetTree) resolution(x NodeIndex) []NodeIndex { return t.appendResolution(nil, x) }

func (t *ratchetTree) appendResolution(out []NodeIndex, x NodeIndex) []NodeIndex {
	if n := t.nodes[x]; n != nil {
		out = append(out, x)
		if n.Type == NodeTypeParent {
			for _, l := range n.Parent.UnmergedLeaves {
				out = append(out, l.nodeIndex())
			}
		}
		return out
	}
	left, ok := x.left()
	if !ok {
		return out
	}
	right, _ := x.right()
	return t.appendResolution(t.appendResolution(out, left), right)
}

// blankSubtree reports whether every node under (and including) x is blank, which
// is when the resolution of x is empty.
func (t *ratchetTree) blankSubtree(x NodeIndex) bool {
	if t.nodes[x] != nil {
		return false
	}
	left, ok := x.left()
	if !ok {
		return true
	}
	right, _ := x.right()
	return t.blankSubtree(left) && t.blankSubtree(right)
}

// filteredDirectPath returns the filtered direct path of leaf l (RFC 9420 §4.1.2),
// from the bottom up, and for each of its nodes the child on l's copath: the direct
// path without the nodes whose copath child has an empty resolution.
func (t *ratchetTree) filteredDirectPath(l LeafIndex) (path, copath []NodeIndex) {
	n := t.leafCount()
	x := l.nodeIndex()
	dp, cp := x.directPath(n), x.copath(n)
	for i := range dp {
		if !t.blankSubtree(cp[i]) {
			path = append(path, dp[i])
			copath = append(copath, cp[i])
		}
	}
	return path, copath
}

// subtreeContains reports whether y is x or one of its descendants.
func subtreeContains(x, y NodeIndex) bool {
	span := int64(1)<<x.level() - 1
	d := int64(y) - int64(x)
	return -span <= d && d <= span
}

// --- Encoding: the ratchet_tree extension (RFC 9420 §12.4.3.3) ---

// marshal writes the tree as the ratchet_tree extension does:
//
//	optional<Node> ratchet_tree<V>;
//
// in array order, without the blank nodes after the last non-blank one. This is
// also the storage format of a tree.
func (t *ratchetTree) marshal(b *cryptobyte.Builder) {
	last := len(t.nodes) - 1
	for last >= 0 && t.nodes[last] == nil {
		last--
	}
	addVector(b, func(b *cryptobyte.Builder) {
		for _, n := range t.nodes[:last+1] {
			addOptional(b, n != nil, func(b *cryptobyte.Builder) { n.marshal(b) })
		}
	})
}

// marshalExtension returns the tree as ratchet_tree extension data.
func (t *ratchetTree) marshalExtension() []byte { return mustEncode(t) }

// unmarshalRatchetTree parses ratchet_tree extension data (RFC 9420 §12.4.3.3): the
// last node must be non-blank, each node must have the type its position calls for,
// and the tree is extended with blank nodes to the width of a full tree. The result
// is only well-formed: validate checks the rest.
func unmarshalRatchetTree(data []byte) (*ratchetTree, error) {
	var nodes []*Node
	err := decodeAll(data, "ratchet_tree", func(s *cryptobyte.String) bool {
		return readVectorOf(s, func(s *cryptobyte.String) bool {
			if len(nodes) >= 2*maxTreeLeaves-1 {
				return false
			}
			var present bool
			var n *Node
			if !readOptional(s, &present, func(s *cryptobyte.String) bool {
				n = new(Node)
				return n.unmarshal(s)
			}) {
				return false
			}
			if n != nil && NodeIndex(len(nodes)).isLeaf() != (n.Type == NodeTypeLeaf) {
				return false
			}
			nodes = append(nodes, n)
			return true
		})
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTree, err)
	}
	if len(nodes) == 0 {
		return nil, treeError("empty ratchet_tree")
	}
	if nodes[len(nodes)-1] == nil {
		return nil, treeError("ratchet_tree ends with a blank node")
	}
	leaves := uint32(1)
	for nodeWidth(leaves) < uint32(len(nodes)) {
		leaves *= 2
	}
	w := nodeWidth(leaves)
	nodes = append(nodes, make([]*Node, int(w)-len(nodes))...)
	return &ratchetTree{nodes: nodes, hashes: make([][]byte, w)}, nil
}

// RatchetTree is the public state of a group's ratchet tree, as the ratchet_tree
// extension carries it (RFC 9420 §12.4.3.3). Outside this package it is opaque: it
// can be parsed and encoded, and is otherwise used through a Group.
type RatchetTree = ratchetTree

// MarshalRatchetTree encodes t as ratchet_tree extension data (RFC 9420 §12.4.3.3),
// leaving out the blank nodes after the last non-blank one.
func MarshalRatchetTree(t *RatchetTree) ([]byte, error) { return encode(t) }

// UnmarshalRatchetTree decodes ratchet_tree extension data (RFC 9420 §12.4.3.3),
// extending the tree with blank nodes to the width of a full tree. It checks the
// encoding (node types by position, no trailing blank node, sorted unmerged
// leaves), not the tree: a joiner must still validate it against the group.
func UnmarshalRatchetTree(data []byte) (*RatchetTree, error) { return unmarshalRatchetTree(data) }
