package mls

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// --- Validation (RFC 9420 §12.4.3.1) ---

// validate checks a tree received from outside, as a joiner must before using it
// (RFC 9420 §12.4.3.1), except for comparing its tree hash with the GroupContext,
// which the caller does (see validateAgainst): every non-blank parent is
// parent-hash valid; every leaf node is valid on its own (§7.3) as leaf l of
// group groupID, with its lifetime checked at now unless now is zero; the credential
// type of every member is supported by all members; encryption keys are unique
// among all nodes and signature keys among leaves; and the unmerged leaves of every
// parent are non-blank descendants, also listed at each non-blank node in between.
// Credentials themselves are the caller's to check with the Authentication Service.
func (t *ratchetTree) validate(cs CipherSuite, groupID GroupID, now time.Time) error {
	if !cs.Supported() {
		return fmt.Errorf("%w: 0x%04x", ErrUnsupportedCipherSuite, uint16(cs))
	}
	if right, ok := t.root().right(); ok && t.blankSubtree(right) {
		// A right subtree without members is truncated away (§7.7), so no group
		// has one; an encoding ending with the root would give one.
		return treeError("right subtree of the root is blank")
	}
	nodeErrs := t.checkNodesConcurrently(cs, groupID, now)
	encKeys := make(map[string]NodeIndex)
	sigKeys := make(map[string]LeafIndex)
	var credTypes []CredentialType
	for i, node := range t.nodes {
		x := NodeIndex(i)
		if node == nil {
			continue
		}
		if x.isLeaf() != (node.Type == NodeTypeLeaf) {
			return treeError("node %d has the wrong type", x)
		}
		key := string(node.encryptionKey())
		if prev, dup := encKeys[key]; dup {
			return treeError("nodes %d and %d have the same encryption key", prev, x)
		}
		encKeys[key] = x
		if node.Type == NodeTypeParent {
			if err := nodeErrs[i]; err != nil {
				return treeError("parent node %d: %v", x, err)
			}
			if err := t.checkUnmerged(x); err != nil {
				return err
			}
			continue
		}
		l, _ := x.leafIndex()
		if prev, dup := sigKeys[string(node.Leaf.SignatureKey)]; dup {
			return treeError("leaves %d and %d have the same signature key", prev, l)
		}
		sigKeys[string(node.Leaf.SignatureKey)] = l
		if err := nodeErrs[i]; err != nil {
			return fmt.Errorf("%w: leaf %d: %w", ErrInvalidTree, l, err)
		}
		if !slices.Contains(credTypes, node.Leaf.Credential.Type) {
			credTypes = append(credTypes, node.Leaf.Credential.Type)
		}
	}
	for l, leaf := range t.members() {
		for _, ct := range credTypes {
			if !slices.Contains(leaf.Capabilities.Credentials, ct) {
				return treeError("leaf %d does not support credential type %d, which a member uses", l, ct)
			}
		}
	}
	return t.verifyParentHashes(cs)
}

// validateAgainst runs validate and checks that the tree hash is the one of the
// GroupContext gc (RFC 9420 §12.4.3.1, §12.4.3.3).
func (t *ratchetTree) validateAgainst(cs CipherSuite, gc *GroupContext, now time.Time) error {
	if !bytes.Equal(t.treeHash(cs), gc.TreeHash) {
		return treeError("tree hash does not match the group context")
	}
	return t.validate(cs, gc.GroupID, now)
}

// checkUnmerged checks the unmerged leaves of parent x (RFC 9420 §12.4.3.1).
func (t *ratchetTree) checkUnmerged(x NodeIndex) error {
	n := t.leafCount()
	for _, l := range t.nodes[x].Parent.UnmergedLeaves {
		if uint64(l) >= uint64(n) || t.nodes[l.nodeIndex()] == nil {
			return treeError("parent node %d lists blank or absent leaf %d as unmerged", x, l)
		}
		if !subtreeContains(x, l.nodeIndex()) {
			return treeError("parent node %d lists leaf %d, not a descendant, as unmerged", x, l)
		}
		for _, y := range l.nodeIndex().directPath(n) {
			if y == x {
				break
			}
			if p := t.parentNode(y); p != nil {
				if _, found := slices.BinarySearch(p.UnmergedLeaves, l); !found {
					return treeError("leaf %d is unmerged at node %d but not at node %d below it", l, x, y)
				}
			}
		}
	}
	return nil
}

// checkNodesConcurrently runs the costly checks of every node — leaf signatures and
// key parsing — on all CPUs, since a joiner of a large group verifies one signature
// per member. It returns each node's error by node index.
func (t *ratchetTree) checkNodesConcurrently(cs CipherSuite, groupID GroupID, now time.Time) []error {
	errs := make([]error, len(t.nodes))
	check := func(i int) {
		node := t.nodes[i]
		switch {
		case node == nil:
		case node.Type == NodeTypeParent && !NodeIndex(i).isLeaf():
			errs[i] = cs.ValidateHPKEPublicKey(node.Parent.EncryptionKey)
		case node.Type == NodeTypeLeaf && NodeIndex(i).isLeaf():
			l, _ := NodeIndex(i).leafIndex()
			errs[i] = node.Leaf.validateSelf(cs, groupID, l, now)
		}
	}
	workers := runtime.GOMAXPROCS(0)
	if workers < 2 || len(t.nodes) < 64 {
		for i := range t.nodes {
			check(i)
		}
		return errs
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(t.nodes) {
					return
				}
				check(i)
			}
		})
	}
	wg.Wait()
	return errs
}
