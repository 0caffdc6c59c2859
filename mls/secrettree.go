package mls

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"golang.org/x/crypto/cryptobyte"
)

// The secret tree of RFC 9420 §9 and the per-message key derivations of §6.3.

// Labels of RFC 9420 §9 and §9.1.
const (
	labelTree        = "tree"
	labelHandshake   = "handshake"
	labelApplication = "application"
	labelKey         = "key"
	labelNonce       = "nonce"
	labelSecret      = "secret"
)

// Contexts of the "tree" derivation of RFC 9420 §9.
var (
	contextLeft  = []byte("left")
	contextRight = []byte("right")
)

// Implementation limits on out-of-order decryption (RFC 9420 §9.2 leaves them to the
// application, with the advice that a too large window weakens forward secrecy).
const (
	// defaultMaxForwardDistance is how many generations a received message may be
	// ahead of the next expected one.
	defaultMaxForwardDistance = 1000
	// defaultMaxSkippedKeys is how many keys of skipped generations one ratchet keeps
	// for messages that arrive late.
	defaultMaxSkippedKeys = 128
)

// ErrGenerationUsed is returned by the secret tree when a message's generation has
// already been used to decrypt a message: a replay.
var ErrGenerationUsed = errors.New("mls: generation already used")

// ErrGenerationOutOfWindow is returned by the secret tree when a message's generation
// is further ahead than the configured forward distance, or so far behind that its key
// was deleted without being used (or was used and is no longer remembered).
var ErrGenerationOutOfWindow = errors.New("mls: generation outside the decryption window")

// ratchetType selects one of the two hash ratchets of a leaf (RFC 9420 §9.1):
// handshake messages (proposals, commits) and application messages each have their own.
type ratchetType uint8

const (
	handshakeRatchet   ratchetType = 0
	applicationRatchet ratchetType = 1
)

func (t ratchetType) String() string {
	switch t {
	case handshakeRatchet:
		return "handshake"
	case applicationRatchet:
		return "application"
	}
	return fmt.Sprintf("ratchetType(%d)", uint8(t))
}

// secretTree is the tree of secrets of RFC 9420 §9, rooted at the epoch's
// encryption_secret:
//
//	tree_node_[N]_secret
//	        |
//	        |
//	        +--> ExpandWithLabel(., "tree", "left", KDF.Nh)
//	        |    = tree_node_[left(N)]_secret
//	        |
//	        +--> ExpandWithLabel(., "tree", "right", KDF.Nh)
//	             = tree_node_[right(N)]_secret
//
// and, at the leaf node N of each member, two hash ratchets (§9.1):
//
//	handshake_ratchet_secret_[N]_[0]   = ExpandWithLabel(tree_node_[N]_secret, "handshake", "", KDF.Nh)
//	application_ratchet_secret_[N]_[0] = ExpandWithLabel(tree_node_[N]_secret, "application", "", KDF.Nh)
//
//	ratchet_key_[N]_[j]        = DeriveTreeSecret(ratchet_secret_[N]_[j], "key", j, AEAD.Nk)
//	ratchet_nonce_[N]_[j]      = DeriveTreeSecret(ratchet_secret_[N]_[j], "nonce", j, AEAD.Nn)
//	ratchet_secret_[N]_[j+1]   = DeriveTreeSecret(ratchet_secret_[N]_[j], "secret", j, KDF.Nh)
//
// Secrets are derived lazily and deleted as the deletion schedule of §9.2 requires: a
// node secret once its children's are derived, a leaf secret once its ratchets are,
// a ratchet secret once the next one and its key and nonce are, and a key and nonce
// once handed out. The tree keeps the nodes on the frontier only: for every leaf
// without ratchets, exactly one node on its path to the root holds a secret.
//
// A secretTree is not safe for concurrent use.
type secretTree struct {
	cs        CipherSuite
	leafCount uint32
	nodes     map[NodeIndex][]byte        // tree_node_[N]_secret of the frontier
	ratchets  map[LeafIndex]*leafRatchets // leaves whose ratchets have been derived

	// maxForwardDistance is how far ahead of a ratchet's next generation a received
	// generation may be; maxSkippedKeys is how many keys of skipped generations a
	// ratchet keeps. The defaults apply unless the group's configuration sets them.
	maxForwardDistance uint32
	maxSkippedKeys     uint32
}

// leafRatchets holds the two ratchets of one leaf, indexed by ratchetType.
type leafRatchets [2]hashRatchet

// hashRatchet is one ratchet of RFC 9420 §9.1 together with the keys of generations
// skipped over and not yet used.
type hashRatchet struct {
	// secret is ratchet_secret_[N]_[generation]. It is nil once the ratchet is
	// exhausted: generation 2^32-1 has been consumed and there is no next one.
	secret     []byte
	generation uint32
	// floor is the lowest generation the ratchet still accounts for: a generation in
	// [floor, generation) that is not in skipped has been used. Below floor, keys
	// were deleted unused or usage is no longer remembered.
	floor   uint32
	skipped []skippedKey // ascending generations in [floor, generation)
}

// skippedKey is the key and nonce of a generation a ratchet moved past.
type skippedKey struct {
	generation uint32
	key, nonce []byte
}

// newSecretTree builds the secret tree of an epoch from its encryption_secret, for a
// ratchet tree of leafCount leaves (leafCount > 0). The tree takes its own copy of
// the secret.
func newSecretTree(cs CipherSuite, encryptionSecret []byte, leafCount uint32) *secretTree {
	t := &secretTree{
		cs:                 cs,
		leafCount:          leafCount,
		nodes:              make(map[NodeIndex][]byte),
		ratchets:           make(map[LeafIndex]*leafRatchets),
		maxForwardDistance: defaultMaxForwardDistance,
		maxSkippedKeys:     defaultMaxSkippedKeys,
	}
	if leafCount > 0 {
		t.nodes[root(leafCount)] = append([]byte{}, encryptionSecret...)
	}
	return t
}

// setWindow sets the limits on out-of-order decryption: how far ahead of a ratchet a
// received generation may be, and how many keys of skipped generations each ratchet
// keeps. Zero selects the default (1000 and 128). Keys beyond a lowered limit are
// deleted at once.
func (t *secretTree) setWindow(maxForwardDistance, maxSkippedKeys uint32) {
	if maxForwardDistance == 0 {
		maxForwardDistance = defaultMaxForwardDistance
	}
	if maxSkippedKeys == 0 {
		maxSkippedKeys = defaultMaxSkippedKeys
	}
	t.maxForwardDistance, t.maxSkippedKeys = maxForwardDistance, maxSkippedKeys
	for _, lr := range t.ratchets {
		for i := range lr {
			lr[i].evict(maxSkippedKeys)
		}
	}
}

// leaf returns the ratchets of leaf, deriving them (and deleting the node secrets
// used on the way) the first time.
func (t *secretTree) leaf(leaf LeafIndex) (*leafRatchets, error) {
	if uint32(leaf) >= t.leafCount {
		return nil, fmt.Errorf("mls: secret tree: leaf %d outside a tree of %d leaves", leaf, t.leafCount)
	}
	if r := t.ratchets[leaf]; r != nil {
		return r, nil
	}
	target := leaf.nodeIndex()
	x := target
	for t.nodes[x] == nil {
		p, ok := x.parent(t.leafCount)
		if !ok {
			return nil, fmt.Errorf("mls: secret tree: no secret left for leaf %d", leaf)
		}
		x = p
	}
	for x != target {
		// In a tree whose leaf count is not a power of two, a right child may lie
		// past the last node; its secret is kept all the same, since the leaves of
		// its left subtree, if any, derive theirs from it.
		s := t.nodes[x]
		l, _ := x.left()
		r, _ := x.right()
		t.nodes[l] = t.cs.ExpandWithLabel(s, labelTree, contextLeft, t.cs.Nh())
		t.nodes[r] = t.cs.ExpandWithLabel(s, labelTree, contextRight, t.cs.Nh())
		clear(s)
		delete(t.nodes, x)
		if target < x {
			x = l
		} else {
			x = r
		}
	}
	s := t.nodes[target]
	lr := &leafRatchets{
		handshakeRatchet:   {secret: t.cs.ExpandWithLabel(s, labelHandshake, nil, t.cs.Nh())},
		applicationRatchet: {secret: t.cs.ExpandWithLabel(s, labelApplication, nil, t.cs.Nh())},
	}
	clear(s)
	delete(t.nodes, target)
	t.ratchets[leaf] = lr
	return lr, nil
}

func (t *secretTree) ratchet(leaf LeafIndex, ct ratchetType) (*hashRatchet, error) {
	if ct != handshakeRatchet && ct != applicationRatchet {
		return nil, fmt.Errorf("mls: secret tree: unknown ratchet %v", ct)
	}
	lr, err := t.leaf(leaf)
	if err != nil {
		return nil, err
	}
	return &lr[ct], nil
}

// keyNonceAt derives ratchet_key_[N]_[j] and ratchet_nonce_[N]_[j] for the ratchet's
// current generation j.
func (r *hashRatchet) keyNonceAt(cs CipherSuite) (key, nonce []byte) {
	key = cs.DeriveTreeSecret(r.secret, labelKey, r.generation, cs.Nk())
	nonce = cs.DeriveTreeSecret(r.secret, labelNonce, r.generation, cs.Nn())
	return key, nonce
}

// advance replaces ratchet_secret_[N]_[j] by ratchet_secret_[N]_[j+1], deleting the
// former; after generation 2^32-1 the ratchet is exhausted.
func (r *hashRatchet) advance(cs CipherSuite) {
	if r.generation == math.MaxUint32 {
		clear(r.secret)
		r.secret = nil
		return
	}
	next := cs.DeriveTreeSecret(r.secret, labelSecret, r.generation, cs.Nh())
	clear(r.secret)
	r.secret = next
	r.generation++
}

// next returns the generation, key and nonce with which leaf encrypts its next
// message of type ct, and moves its ratchet past them.
func (t *secretTree) next(leaf LeafIndex, ct ratchetType) (generation uint32, key, nonce []byte, err error) {
	r, err := t.ratchet(leaf, ct)
	if err != nil {
		return 0, nil, nil, err
	}
	if r.secret == nil {
		return 0, nil, nil, fmt.Errorf("mls: secret tree: %v ratchet of leaf %d is exhausted", ct, leaf)
	}
	generation = r.generation
	key, nonce = r.keyNonceAt(t.cs)
	r.advance(t.cs)
	return generation, key, nonce, nil
}

// keyNonce returns the key and nonce of generation of leaf's ratchet ct, to decrypt a
// received message, and deletes them from the tree: each is handed out once.
// Generations between the ratchet's next one and the requested one keep their keys
// (up to maxSkippedKeys of them, the most recent) for messages that arrive late.
//
// It returns ErrGenerationUsed for a generation already handed out, and
// ErrGenerationOutOfWindow for one more than maxForwardDistance ahead or one whose
// key has been deleted unused.
func (t *secretTree) keyNonce(leaf LeafIndex, ct ratchetType, generation uint32) (key, nonce []byte, err error) {
	r, err := t.ratchet(leaf, ct)
	if err != nil {
		return nil, nil, err
	}
	if generation < r.generation || r.secret == nil {
		i, found := r.findSkipped(generation)
		if found {
			k := r.skipped[i]
			r.skipped = slices.Delete(r.skipped, i, i+1)
			return k.key, k.nonce, nil
		}
		if generation >= r.floor {
			return nil, nil, ErrGenerationUsed
		}
		return nil, nil, ErrGenerationOutOfWindow
	}
	if generation-r.generation > t.maxForwardDistance {
		return nil, nil, ErrGenerationOutOfWindow
	}
	for r.generation < generation {
		// Only the most recent maxSkippedKeys generations would survive eviction;
		// older ones are not worth deriving.
		if generation-r.generation <= t.maxSkippedKeys {
			k, n := r.keyNonceAt(t.cs)
			r.skipped = append(r.skipped, skippedKey{generation: r.generation, key: k, nonce: n})
		} else {
			r.floor = r.generation + 1
		}
		r.advance(t.cs)
	}
	key, nonce = r.keyNonceAt(t.cs)
	r.advance(t.cs)
	r.evict(t.maxSkippedKeys)
	return key, nonce, nil
}

// evict deletes the oldest skipped keys beyond limit.
func (r *hashRatchet) evict(limit uint32) {
	if uint32(len(r.skipped)) <= limit {
		return
	}
	n := len(r.skipped) - int(limit)
	for _, k := range r.skipped[:n] {
		clear(k.key)
		clear(k.nonce)
	}
	r.floor = max(r.floor, r.skipped[n-1].generation+1)
	r.skipped = slices.Delete(r.skipped, 0, n)
}

// erase deletes every secret the tree holds; the tree is unusable afterwards. It is
// called when the epoch ends (RFC 9420 §9.2).
func (t *secretTree) erase() {
	for x, s := range t.nodes {
		clear(s)
		delete(t.nodes, x)
	}
	for l, lr := range t.ratchets {
		for i := range lr {
			clear(lr[i].secret)
			for _, k := range lr[i].skipped {
				clear(k.key)
				clear(k.nonce)
			}
		}
		delete(t.ratchets, l)
	}
	t.leafCount = 0
}

// marshal writes the tree for group-state storage, in the presentation language:
//
//	struct {
//	    uint32 generation;
//	    uint32 floor;
//	    opaque secret<V>;       // empty once exhausted
//	    struct {
//	        uint32 generation;
//	        opaque key<V>;
//	        opaque nonce<V>;
//	    } skipped<V>;
//	} HashRatchetState;
//
//	struct {
//	    CipherSuite cipher_suite;
//	    uint32 leaf_count;
//	    uint32 max_forward_distance;
//	    uint32 max_skipped_keys;
//	    struct { uint32 node; opaque secret<V>; } nodes<V>;
//	    struct {
//	        uint32 leaf;
//	        HashRatchetState handshake;
//	        HashRatchetState application;
//	    } ratchets<V>;
//	} SecretTreeState;
//
// with nodes and ratchets in ascending index order.
func (t *secretTree) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(t.cs))
	b.AddUint32(t.leafCount)
	b.AddUint32(t.maxForwardDistance)
	b.AddUint32(t.maxSkippedKeys)
	addVector(b, func(b *cryptobyte.Builder) {
		for _, x := range slices.Sorted(maps.Keys(t.nodes)) {
			b.AddUint32(uint32(x))
			addOpaque(b, t.nodes[x])
		}
	})
	addVector(b, func(b *cryptobyte.Builder) {
		for _, l := range slices.Sorted(maps.Keys(t.ratchets)) {
			b.AddUint32(uint32(l))
			for i := range t.ratchets[l] {
				t.ratchets[l][i].marshal(b)
			}
		}
	})
}

func (r *hashRatchet) marshal(b *cryptobyte.Builder) {
	b.AddUint32(r.generation)
	b.AddUint32(r.floor)
	addOpaque(b, r.secret)
	addVector(b, func(b *cryptobyte.Builder) {
		for _, k := range r.skipped {
			b.AddUint32(k.generation)
			addOpaque(b, k.key)
			addOpaque(b, k.nonce)
		}
	})
}

// unmarshal reads a tree written by marshal, rejecting any state the tree could not
// have reached: unsupported suite, wrong secret sizes, indices outside the tree or
// out of order, two secrets on one path, skipped keys outside their window.
func (t *secretTree) unmarshal(s *cryptobyte.String) bool {
	*t = secretTree{
		nodes:    make(map[NodeIndex][]byte),
		ratchets: make(map[LeafIndex]*leafRatchets),
	}
	if !s.ReadUint16((*uint16)(&t.cs)) || !t.cs.Supported() ||
		!s.ReadUint32(&t.leafCount) || t.leafCount == 0 || t.leafCount > 1<<31 ||
		!s.ReadUint32(&t.maxForwardDistance) ||
		!s.ReadUint32(&t.maxSkippedKeys) {
		return false
	}
	lastNode := 2 * uint32(root(t.leafCount)) // the last node of the full tree
	var last int64 = -1
	if !readVectorOf(s, func(s *cryptobyte.String) bool {
		var x uint32
		var secret []byte
		if !s.ReadUint32(&x) || int64(x) <= last || x > lastNode ||
			!readOpaque(s, &secret) || len(secret) != t.cs.Nh() {
			return false
		}
		last = int64(x)
		t.nodes[NodeIndex(x)] = secret
		return true
	}) {
		return false
	}
	last = -1
	if !readVectorOf(s, func(s *cryptobyte.String) bool {
		var l uint32
		if !s.ReadUint32(&l) || int64(l) <= last || l >= t.leafCount {
			return false
		}
		last = int64(l)
		lr := new(leafRatchets)
		for i := range lr {
			if !lr[i].unmarshal(s, t.cs, t.maxSkippedKeys) {
				return false
			}
		}
		t.ratchets[LeafIndex(l)] = lr
		return true
	}) {
		return false
	}
	// A node secret derives everything below it, so no stored node may lie above
	// another, nor above a leaf whose ratchets exist.
	for x := range t.nodes {
		for _, p := range x.directPath(t.leafCount) {
			if t.nodes[p] != nil {
				return false
			}
		}
	}
	for l := range t.ratchets {
		x := l.nodeIndex()
		if t.nodes[x] != nil {
			return false
		}
		for _, p := range x.directPath(t.leafCount) {
			if t.nodes[p] != nil {
				return false
			}
		}
	}
	return true
}

func (r *hashRatchet) unmarshal(s *cryptobyte.String, cs CipherSuite, maxSkipped uint32) bool {
	if !s.ReadUint32(&r.generation) || !s.ReadUint32(&r.floor) || r.floor > r.generation ||
		!readOpaque(s, &r.secret) {
		return false
	}
	switch {
	case len(r.secret) == cs.Nh():
	case len(r.secret) == 0 && r.generation == math.MaxUint32:
		r.secret = nil
	default:
		return false
	}
	var last int64 = int64(r.floor) - 1
	return readVectorOf(s, func(s *cryptobyte.String) bool {
		var k skippedKey
		if !s.ReadUint32(&k.generation) || int64(k.generation) <= last || k.generation >= r.generation ||
			!readOpaque(s, &k.key) || len(k.key) != cs.Nk() ||
			!readOpaque(s, &k.nonce) || len(k.nonce) != cs.Nn() ||
			uint32(len(r.skipped)) >= maxSkipped {
			return false
		}
		last = int64(k.generation)
		r.skipped = append(r.skipped, k)
		return true
	})
}

// reuseGuardLen is the size of SenderData.reuse_guard (RFC 9420 §6.3.1).
const reuseGuardLen = 4

// applyReuseGuard returns a copy of nonce whose first four bytes are XORed with
// reuse_guard (RFC 9420 §6.3.1):
//
//	reuse_guard = fresh random 4 bytes
//	nonce = ratchet_nonce_[N]_[j] XOR (reuse_guard || 0...0)
//
// so that a sender that lost its ratchet state and reuses a generation does not
// also reuse a nonce.
func applyReuseGuard(nonce []byte, reuseGuard [reuseGuardLen]byte) []byte {
	out := append([]byte{}, nonce...)
	for i := range reuseGuard {
		out[i] ^= reuseGuard[i]
	}
	return out
}

// senderDataKeyNonce derives the key and nonce protecting a PrivateMessage's sender
// data (RFC 9420 §6.3.2):
//
//	ciphertext_sample = ciphertext[0..KDF.Nh-1]
//
//	sender_data_key = ExpandWithLabel(sender_data_secret, "key",
//	                      ciphertext_sample, AEAD.Nk)
//	sender_data_nonce = ExpandWithLabel(sender_data_secret, "nonce",
//	                      ciphertext_sample, AEAD.Nn)
//
// where the whole ciphertext is the sample when it is shorter than KDF.Nh.
func senderDataKeyNonce(cs CipherSuite, senderDataSecret, ciphertext []byte) (key, nonce []byte) {
	sample := ciphertext
	if len(sample) > cs.Nh() {
		sample = sample[:cs.Nh()]
	}
	key = cs.ExpandWithLabel(senderDataSecret, labelKey, sample, cs.Nk())
	nonce = cs.ExpandWithLabel(senderDataSecret, labelNonce, sample, cs.Nn())
	return key, nonce
}

// restore puts back the key and nonce of a generation that keyNonce handed out for a
// message that then failed to decrypt, so that a forged or damaged copy cannot
// destroy the key of the genuine message (a malformed frame loses nothing).
func (t *secretTree) restore(leaf LeafIndex, ct ratchetType, generation uint32, key, nonce []byte) {
	r, err := t.ratchet(leaf, ct)
	if err != nil {
		return
	}
	i, found := r.findSkipped(generation)
	if found {
		return
	}
	r.skipped = slices.Insert(r.skipped, i, skippedKey{generation: generation,
		key: append([]byte{}, key...), nonce: append([]byte{}, nonce...)})
	r.evict(t.maxSkippedKeys)
}

// findSkipped finds generation among the ratchet's kept keys (sorted by generation).
func (r *hashRatchet) findSkipped(generation uint32) (int, bool) {
	return slices.BinarySearchFunc(r.skipped, generation, func(k skippedKey, g uint32) int {
		return cmp.Compare(k.generation, g)
	})
}
