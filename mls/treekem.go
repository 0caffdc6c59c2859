package mls

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// TreeKEM (RFC 9420 §7.4–§7.6): a committer draws a fresh leaf secret, derives a
// chain of path secrets up its filtered direct path, puts the derived public keys
// in the tree and encrypts each path secret to the resolution of the node's copath
// child. A receiver decrypts the one path secret meant for it and derives the rest.

// Labels of RFC 9420 §7.4 and §7.6.
const (
	labelUpdatePathNode = "UpdatePathNode"
	labelPath           = "path"
	labelNode           = "node"
)

// ErrInvalidUpdatePath is wrapped by every reason an UpdatePath is refused: a leaf
// node that is not a valid commit leaf, a wrong number of nodes or ciphertexts,
// reused keys, a parent hash that does not match, a path secret that does not
// decrypt or derives keys other than the ones sent.
var ErrInvalidUpdatePath = errors.New("mls: invalid update path")

func pathError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidUpdatePath}, args...)...)
}

// deriveNodeKey derives the key pair of a node from its path secret (RFC 9420 §7.4):
//
//	node_secret[n] = DeriveSecret(path_secret[n], "node")
//	node_priv[n], node_pub[n] = KEM.DeriveKeyPair(node_secret[n])
func deriveNodeKey(cs CipherSuite, pathSecret []byte) (*HPKEPrivateKey, error) {
	return cs.DeriveKeyPair(cs.DeriveSecret(pathSecret, labelNode))
}

// nextPathSecret is path_secret[n] = DeriveSecret(path_secret[n-1], "path") (RFC 9420 §7.4).
func nextPathSecret(cs CipherSuite, pathSecret []byte) []byte {
	return cs.DeriveSecret(pathSecret, labelPath)
}

// pathRecipient is one node of the resolution of a copath child, and its public key.
type pathRecipient struct {
	node NodeIndex
	key  HPKEPublicKey
}

// pendingPath is an UpdatePath being made (RFC 9420 §7.5, §12.4.1): its public keys
// are in the tree already, its path secrets not yet encrypted, since they are
// encrypted under the provisional GroupContext, whose tree hash covers the new keys.
// It holds secrets; it is not safe for concurrent use.
type pendingPath struct {
	cs       CipherSuite
	leaf     LeafIndex
	leafKey  *HPKEPrivateKey
	leafNode *LeafNode
	path     []NodeIndex       // the filtered direct path, bottom up
	secrets  [][]byte          // path_secret of each node of path
	keys     []*HPKEPrivateKey // node_priv of each node of path
	// recipients[i] is the resolution of the copath child of path[i], as it stood
	// when the path was made.
	recipients [][]pathRecipient

	// commitSecret is path_secret[n+1], derived from the last path secret
	// (RFC 9420 §12.4.1).
	commitSecret []byte
}

// newUpdatePath makes a new UpdatePath for leaf (RFC 9420 §7.4, §7.5) and applies
// its public part to t: the leaf's direct path is blanked, the filtered direct path
// gets fresh keys and parent hashes (computed root first, §7.9), and the leaf a new
// LeafNode of source commit, signed by sigKey for group groupID. The new leaf takes
// its credential, capabilities and extensions from template (the current leaf when
// template is nil) and its signature key from sigKey. The leaf secret comes from
// rand.
//
// leaf is normally occupied; for an external commit it may be the leftmost blank
// leaf, or leafCount() when there is none (the tree then grows), with a template.
// On error t is unchanged.
func (t *ratchetTree) newUpdatePath(cs CipherSuite, leaf LeafIndex, template *LeafNode, sigKey *SignaturePrivateKey, groupID GroupID, rand io.Reader) (*pendingPath, error) {
	if !cs.Supported() {
		return nil, fmt.Errorf("%w: 0x%04x", ErrUnsupportedCipherSuite, uint16(cs))
	}
	if sigKey == nil {
		return nil, errors.New("mls: no signature key")
	}
	if template == nil {
		template = t.leaf(leaf)
	}
	if template == nil {
		return nil, fmt.Errorf("mls: update path for blank leaf %d", leaf)
	}
	if t.leaf(leaf) == nil && leaf != t.nextLeaf() {
		return nil, fmt.Errorf("mls: update path for leaf %d, which is neither occupied nor the next free one", leaf)
	}
	work := t
	if uint32(leaf) >= t.leafCount() {
		work = t.clone()
		for uint32(leaf) >= work.leafCount() {
			work.extend()
		}
	}

	leafSecret := make([]byte, cs.Nh())
	if _, err := io.ReadFull(rand, leafSecret); err != nil {
		return nil, fmt.Errorf("mls: drawing leaf secret: %w", err)
	}
	leafKey, err := deriveNodeKey(cs, leafSecret)
	if err != nil {
		return nil, err
	}
	path, copath := work.filteredDirectPath(leaf)
	pp := &pendingPath{
		cs:         cs,
		leaf:       leaf,
		leafKey:    leafKey,
		path:       path,
		secrets:    make([][]byte, len(path)),
		keys:       make([]*HPKEPrivateKey, len(path)),
		recipients: make([][]pathRecipient, len(path)),
	}
	secret := nextPathSecret(cs, leafSecret)
	for i := range path {
		pp.secrets[i] = secret
		if pp.keys[i], err = deriveNodeKey(cs, secret); err != nil {
			return nil, err
		}
		secret = nextPathSecret(cs, secret)
	}
	pp.commitSecret = secret

	work.useSuite(cs)
	parents := make([]*ParentNode, len(path))
	parentHash := []byte{} // the topmost node's parent_hash is empty (§7.9)
	for i := len(path) - 1; i >= 0; i-- {
		parents[i] = &ParentNode{EncryptionKey: pp.keys[i].Public(), ParentHash: parentHash}
		// The copath child's subtree is untouched by the path, and the new node
		// has no unmerged leaves: its current tree hash is the original one.
		parentHash = computeParentHash(cs, parents[i].EncryptionKey, parentHash, work.hashNode(cs, copath[i]))
		for _, x := range work.resolution(copath[i]) {
			pp.recipients[i] = append(pp.recipients[i], pathRecipient{x, work.nodes[x].encryptionKey()})
		}
	}
	pp.leafNode = &LeafNode{
		EncryptionKey: leafKey.Public(),
		SignatureKey:  sigKey.Public(),
		Credential:    template.Credential,
		Capabilities:  template.Capabilities,
		Source:        LeafNodeSourceCommit,
		ParentHash:    parentHash,
		Extensions:    template.Extensions,
	}
	if err := pp.leafNode.sign(cs, sigKey, groupID, leaf, rand); err != nil {
		return nil, err
	}
	pp.leafNode = pp.leafNode.clone() // own copies of the template's fields

	work.blankPath(leaf)
	for i, x := range path {
		work.setParent(x, parents[i])
	}
	work.setLeaf(leaf, pp.leafNode)
	if work != t {
		*t = *work
	}
	return pp, nil
}

// encrypt encrypts each path secret to the resolution of its node's copath child,
// leaving out the leaves in excluded (the members the commit adds), under the
// provisional GroupContext groupContext (RFC 9420 §7.6, §12.4.1):
//
//	(kem_output, ciphertext) = EncryptWithLabel(node_public_key, "UpdatePathNode",
//	                                            group_context, path_secret)
func (pp *pendingPath) encrypt(groupContext []byte, excluded []LeafIndex) (*UpdatePath, error) {
	up := &UpdatePath{LeafNode: *pp.leafNode.clone(), Nodes: make([]UpdatePathNode, len(pp.path))}
	for i := range pp.path {
		n := &up.Nodes[i]
		n.EncryptionKey = pp.keys[i].Public()
		for _, r := range pp.recipients[i] {
			if l, ok := r.node.leafIndex(); ok && slices.Contains(excluded, l) {
				continue
			}
			ct, err := pp.cs.EncryptWithLabel(r.key, labelUpdatePathNode, groupContext, pp.secrets[i])
			if err != nil {
				return nil, fmt.Errorf("mls: encrypting path secret to node %d: %w", r.node, err)
			}
			n.EncryptedPathSecret = append(n.EncryptedPathSecret, ct)
		}
	}
	return up, nil
}

// pathSecretForJoiner returns the path secret of the lowest common ancestor of the
// committer and the new member at joiner, for the joiner's GroupSecrets (RFC 9420
// §12.4.3.1), or nil when that node is not on the filtered direct path.
func (pp *pendingPath) pathSecretForJoiner(joiner LeafIndex) []byte {
	i := slices.Index(pp.path, commonAncestor(pp.leaf.nodeIndex(), joiner.nodeIndex()))
	if i < 0 {
		return nil
	}
	return slices.Clone(pp.secrets[i])
}

// privateKeys returns the committer's private keys once the path is applied: the
// new leaf key and the key of every node of the filtered direct path, the only
// nodes of its direct path left non-blank.
func (pp *pendingPath) privateKeys() *treePrivateKeys {
	k := newTreePrivateKeys(pp.leaf, pp.leafKey)
	for i, x := range pp.path {
		k.nodes[x] = pp.keys[i]
	}
	return k
}

// mergeUpdatePath checks the UpdatePath that sender committed and merges it into t
// (RFC 9420 §7.5, §12.4.2): the leaf node must be of source commit and signed for
// group groupID at leaf sender (its lifetime is not checked: commit leaves have
// none), the path must have one node per node of the sender's filtered direct path
// with well-formed keys that appear nowhere in the tree, and the parent hash chain
// rebuilt from those keys must end at the leaf's parent_hash. Then the sender's
// direct path is blanked, its filtered direct path takes the new keys, empty
// unmerged leaves and the parent hashes, and its leaf the new leaf node.
//
// For an external commit, sender may be the leftmost blank leaf (or leafCount()),
// or a leaf where the caller already put path.LeafNode. The checks a member leaf
// needs beyond these (credential, capabilities, signature key uniqueness) are the
// caller's. On error t is unchanged.
func (t *ratchetTree) mergeUpdatePath(cs CipherSuite, sender LeafIndex, path *UpdatePath, groupID GroupID) error {
	if !cs.Supported() {
		return fmt.Errorf("%w: 0x%04x", ErrUnsupportedCipherSuite, uint16(cs))
	}
	cur := t.leaf(sender)
	if cur == nil && sender != t.nextLeaf() {
		return pathError("sender leaf %d is blank", sender)
	}
	leaf := &path.LeafNode
	if leaf.Source != LeafNodeSourceCommit {
		return pathError("leaf node source is %d, not commit", leaf.Source)
	}
	if err := leaf.validateSelf(cs, groupID, sender, time.Time{}); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidUpdatePath, err)
	}
	work := t
	if uint32(sender) >= t.leafCount() {
		work = t.clone()
		for uint32(sender) >= work.leafCount() {
			work.extend()
		}
	}
	fdp, copath := work.filteredDirectPath(sender)
	if len(path.Nodes) != len(fdp) {
		return pathError("%d nodes for a filtered direct path of %d", len(path.Nodes), len(fdp))
	}

	fresh := map[string]bool{string(leaf.EncryptionKey): true}
	for i := range path.Nodes {
		key := path.Nodes[i].EncryptionKey
		if err := cs.ValidateHPKEPublicKey(key); err != nil {
			return pathError("node %d: %v", fdp[i], err)
		}
		if fresh[string(key)] {
			return pathError("encryption key used twice")
		}
		fresh[string(key)] = true
	}
	// The caller may have placed the new leaf already (external join); any other
	// leaf, the sender's current one included, must not share a key with the path.
	placeholder := cur != nil && bytes.Equal(mustEncode(cur), mustEncode(leaf))
	for i, n := range work.nodes {
		if n == nil || (placeholder && NodeIndex(i) == sender.nodeIndex()) {
			continue
		}
		if fresh[string(n.encryptionKey())] {
			return pathError("encryption key already used by node %d", i)
		}
	}

	work.useSuite(cs)
	parents := make([]*ParentNode, len(fdp))
	parentHash := []byte{}
	for i := len(fdp) - 1; i >= 0; i-- {
		parents[i] = &ParentNode{EncryptionKey: slices.Clone(path.Nodes[i].EncryptionKey), ParentHash: parentHash}
		parentHash = computeParentHash(cs, parents[i].EncryptionKey, parentHash, work.hashNode(cs, copath[i]))
	}
	if !bytes.Equal(parentHash, leaf.ParentHash) {
		return pathError("leaf parent_hash does not match the path")
	}

	work.blankPath(sender)
	for i, x := range fdp {
		work.setParent(x, parents[i])
	}
	work.setLeaf(sender, leaf.clone())
	if work != t {
		*t = *work
	}
	return nil
}

// decryptPath recovers, for the member holding keys, the path secrets of an
// UpdatePath from sender that mergeUpdatePath has merged into t (RFC 9420 §7.5):
// it decrypts the path secret of the lowest node of the filtered direct path above
// the member, derives the secrets of the nodes above it, and checks that each
// derived public key is the one in the tree. groupContext is the provisional
// GroupContext and excluded the leaves the commit adds. It returns the
// commit_secret and the member's private keys for the new epoch; keys is unchanged.
func (t *ratchetTree) decryptPath(cs CipherSuite, keys *treePrivateKeys, sender LeafIndex, path *UpdatePath, groupContext []byte, excluded []LeafIndex) ([]byte, *treePrivateKeys, error) {
	i, secret, err := t.decryptPathSecret(cs, keys, sender, path, groupContext, excluded)
	if err != nil {
		return nil, nil, err
	}
	fdp, _ := t.filteredDirectPath(sender)
	next := keys.clone()
	for _, x := range sender.nodeIndex().directPath(t.leafCount()) {
		delete(next.nodes, x) // blanked or replaced by the path
	}
	for ; i < len(fdp); i++ {
		priv, err := deriveNodeKey(cs, secret)
		if err != nil {
			return nil, nil, err
		}
		if p := t.parentNode(fdp[i]); p == nil || !bytes.Equal(priv.Public(), p.EncryptionKey) {
			return nil, nil, pathError("path secret for node %d does not derive its public key", fdp[i])
		}
		next.nodes[fdp[i]] = priv
		secret = nextPathSecret(cs, secret)
	}
	return secret, next, nil
}

// decryptPathSecret finds the node of the sender's filtered direct path whose
// copath child covers the member holding keys, and decrypts its path secret with
// the first key of that child's resolution the member holds (RFC 9420 §7.5, §7.6).
// It returns the node's position in the filtered direct path and the path secret.
func (t *ratchetTree) decryptPathSecret(cs CipherSuite, keys *treePrivateKeys, sender LeafIndex, path *UpdatePath, groupContext []byte, excluded []LeafIndex) (int, []byte, error) {
	me := keys.leaf
	if me == sender {
		return 0, nil, errors.New("mls: decrypting an update path of our own")
	}
	if slices.Contains(excluded, me) {
		return 0, nil, errors.New("mls: a member added by the commit takes its path secret from the Welcome")
	}
	fdp, copath := t.filteredDirectPath(sender)
	if len(path.Nodes) != len(fdp) {
		return 0, nil, pathError("%d nodes for a filtered direct path of %d", len(path.Nodes), len(fdp))
	}
	at := -1
	var recipients []NodeIndex
	for i, c := range copath {
		res := slices.DeleteFunc(t.resolution(c), func(x NodeIndex) bool {
			l, ok := x.leafIndex()
			return ok && slices.Contains(excluded, l)
		})
		if n := len(path.Nodes[i].EncryptedPathSecret); n != len(res) {
			return 0, nil, pathError("node %d has %d encrypted path secrets for a resolution of %d", fdp[i], n, len(res))
		}
		if at < 0 && subtreeContains(c, me.nodeIndex()) {
			at, recipients = i, res
		}
	}
	if at < 0 {
		return 0, nil, fmt.Errorf("mls: leaf %d is not covered by the update path of leaf %d", me, sender)
	}
	for j, x := range recipients {
		priv := keys.privateKey(x)
		if priv == nil || !bytes.Equal(priv.Public(), t.nodes[x].encryptionKey()) {
			continue
		}
		secret, err := cs.DecryptWithLabel(priv, labelUpdatePathNode, groupContext, path.Nodes[at].EncryptedPathSecret[j])
		if err != nil {
			return 0, nil, fmt.Errorf("%w: path secret for node %d: %w", ErrInvalidUpdatePath, fdp[at], err)
		}
		return at, secret, nil
	}
	return 0, nil, fmt.Errorf("mls: no private key for the resolution of node %d", copath[at])
}

// installPathSecret gives a member who joins by Welcome the private keys of its
// direct path (RFC 9420 §12.4.3.1): pathSecret is the path secret of the lowest
// common ancestor of the member's leaf and signer's, and the nodes above it that the
// signer's commit set (the non-blank ones) take the secrets derived from it. Each
// derived public key must be the one in the tree. On error keys is unchanged.
func (t *ratchetTree) installPathSecret(cs CipherSuite, keys *treePrivateKeys, signer LeafIndex, pathSecret []byte) error {
	if signer == keys.leaf {
		return errors.New("mls: path secret from our own leaf")
	}
	n := t.leafCount()
	if uint32(signer) >= n {
		return fmt.Errorf("mls: signer leaf %d outside the tree", signer)
	}
	x := commonAncestor(keys.leaf.nodeIndex(), signer.nodeIndex())
	if t.parentNode(x) == nil {
		return fmt.Errorf("mls: common ancestor %d of the path secret is blank", x)
	}
	derived := make(map[NodeIndex]*HPKEPrivateKey)
	secret := pathSecret
	for {
		if p := t.parentNode(x); p != nil {
			priv, err := deriveNodeKey(cs, secret)
			if err != nil {
				return err
			}
			if !bytes.Equal(priv.Public(), p.EncryptionKey) {
				return fmt.Errorf("mls: path secret does not derive the public key of node %d", x)
			}
			derived[x] = priv
			secret = nextPathSecret(cs, secret)
		}
		parent, ok := x.parent(n)
		if !ok {
			break
		}
		x = parent
	}
	maps.Copy(keys.nodes, derived)
	return nil
}

// treePrivateKeys are the private keys a member holds in the ratchet tree (RFC 9420
// §4.2): its leaf's, and those of parent nodes on its direct path. It also keeps the
// leaf keys of the member's Update proposals until a commit applies one. It is not
// safe for concurrent use.
type treePrivateKeys struct {
	leaf    LeafIndex
	leafKey *HPKEPrivateKey
	nodes   map[NodeIndex]*HPKEPrivateKey
	// pendingLeafKeys maps the encryption key of each Update proposal the member
	// sent this epoch to its private key.
	pendingLeafKeys map[string]*HPKEPrivateKey
}

// newTreePrivateKeys returns the keys of a member at leaf that knows only its leaf key.
func newTreePrivateKeys(leaf LeafIndex, leafKey *HPKEPrivateKey) *treePrivateKeys {
	return &treePrivateKeys{
		leaf:            leaf,
		leafKey:         leafKey,
		nodes:           make(map[NodeIndex]*HPKEPrivateKey),
		pendingLeafKeys: make(map[string]*HPKEPrivateKey),
	}
}

// clone returns an independent copy (the keys themselves are immutable and shared).
func (k *treePrivateKeys) clone() *treePrivateKeys {
	return &treePrivateKeys{leaf: k.leaf, leafKey: k.leafKey, nodes: maps.Clone(k.nodes), pendingLeafKeys: maps.Clone(k.pendingLeafKeys)}
}

// privateKey returns the private key of node x, nil when the member holds none.
func (k *treePrivateKeys) privateKey(x NodeIndex) *HPKEPrivateKey {
	if x == k.leaf.nodeIndex() {
		return k.leafKey
	}
	return k.nodes[x]
}

// adoptPendingLeafKey switches the leaf key to the one of the member's committed
// Update proposal whose public key is pub, and forgets the other pending ones.
func (k *treePrivateKeys) adoptPendingLeafKey(pub HPKEPublicKey) error {
	priv := k.pendingLeafKeys[string(pub)]
	if priv == nil {
		return errors.New("mls: committed update of this member has an unknown encryption key")
	}
	k.leafKey = priv
	clear(k.pendingLeafKeys)
	return nil
}

// prune drops, once a commit is applied to t, every key the member should no
// longer hold: those of nodes that were blanked, replaced or cut off, or that are
// not on its direct path, and those of Update proposals the commit did not apply,
// which are void in the new epoch.
func (k *treePrivateKeys) prune(t *ratchetTree) {
	n := t.leafCount()
	mine := k.leaf.nodeIndex().directPath(n)
	for x, priv := range k.nodes {
		p := t.parentNode(x)
		if p == nil || !slices.Contains(mine, x) || !bytes.Equal(priv.Public(), p.EncryptionKey) {
			delete(k.nodes, x)
		}
	}
	clear(k.pendingLeafKeys)
}

// marshal writes the keys for storage:
//
//	struct {
//	    uint32 node;
//	    opaque private_key<V>;
//	} NodePrivateKey;
//
//	struct {
//	    uint32 leaf_index;
//	    opaque leaf_private_key<V>;
//	    NodePrivateKey nodes<V>;
//	    opaque pending_leaf_private_keys<V><V>;
//	} TreePrivateKeys;
//
// Private keys are in SerializePrivateKey form. The result is secret.
func (k *treePrivateKeys) marshal(b *cryptobyte.Builder) {
	b.AddUint32(uint32(k.leaf))
	addOpaque(b, k.leafKey.Bytes())
	addVector(b, func(b *cryptobyte.Builder) {
		for _, x := range slices.Sorted(maps.Keys(k.nodes)) {
			b.AddUint32(uint32(x))
			addOpaque(b, k.nodes[x].Bytes())
		}
	})
	addVector(b, func(b *cryptobyte.Builder) {
		for _, pub := range slices.Sorted(maps.Keys(k.pendingLeafKeys)) {
			addOpaque(b, k.pendingLeafKeys[pub].Bytes())
		}
	})
}

// unmarshalTreePrivateKeys parses keys stored by marshal for suite cs.
func unmarshalTreePrivateKeys(cs CipherSuite, data []byte) (*treePrivateKeys, error) {
	var k *treePrivateKeys
	var bad error
	key := func(raw []byte) *HPKEPrivateKey {
		priv, err := NewHPKEPrivateKey(cs, raw)
		if err != nil {
			bad = err
		}
		return priv
	}
	err := decodeAll(data, "tree private keys", func(s *cryptobyte.String) bool {
		var leaf uint32
		var raw []byte
		if !s.ReadUint32(&leaf) || !readOpaque(s, &raw) {
			return false
		}
		leafKey := key(raw)
		if leafKey == nil {
			return false
		}
		k = newTreePrivateKeys(LeafIndex(leaf), leafKey)
		return readVectorOf(s, func(s *cryptobyte.String) bool {
			var x uint32
			if !s.ReadUint32(&x) || !readOpaque(s, &raw) {
				return false
			}
			priv := key(raw)
			if priv == nil || k.nodes[NodeIndex(x)] != nil {
				return false
			}
			k.nodes[NodeIndex(x)] = priv
			return true
		}) && readVectorOf(s, func(s *cryptobyte.String) bool {
			if !readOpaque(s, &raw) {
				return false
			}
			priv := key(raw)
			if priv == nil {
				return false
			}
			k.pendingLeafKeys[string(priv.Public())] = priv
			return true
		})
	})
	if bad != nil {
		return nil, fmt.Errorf("mls: stored tree private keys: %w", bad)
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}
