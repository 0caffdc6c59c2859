package mls

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
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
