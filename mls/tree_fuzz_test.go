package mls

import (
	"bytes"
	"testing"
)

// FuzzUnmarshalRatchetTree checks that the ratchet_tree parser never panics, that
// whatever it accepts re-encodes to the same bytes, and that the tree operations a
// joiner runs on an accepted tree (hashes, resolutions, paths, parent-hash checks)
// do not panic either.
func FuzzUnmarshalRatchetTree(f *testing.F) {
	for _, tc := range loadVectors[treeValidationVector](f, "tree-validation.json") {
		f.Add([]byte(tc.Tree))
	}
	for _, tc := range loadVectors[treeOperationsVector](f, "tree-operations.json") {
		f.Add([]byte(tc.TreeBefore))
		f.Add([]byte(tc.TreeAfter))
	}
	for _, tc := range loadVectors[treeKEMVector](f, "treekem.json") {
		f.Add([]byte(tc.RatchetTree))
	}
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	f.Fuzz(func(t *testing.T, data []byte) {
		tree, err := unmarshalRatchetTree(data)
		if err != nil {
			return
		}
		if out := tree.marshalExtension(); !bytes.Equal(out, data) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", data, out)
		}
		tree.treeHash(cs)
		_ = tree.verifyParentHashes(cs)
		for x := range NodeIndex(tree.width()) {
			tree.resolution(x)
		}
		for l := range tree.members() {
			tree.filteredDirectPath(l)
		}
	})
}
