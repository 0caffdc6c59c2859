package mls

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

// secretTreeVector is one case of testdata/secret-tree.json.
type secretTreeVector struct {
	CipherSuite      uint16   `json:"cipher_suite"`
	EncryptionSecret hexBytes `json:"encryption_secret"`
	SenderData       struct {
		SenderDataSecret hexBytes `json:"sender_data_secret"`
		Ciphertext       hexBytes `json:"ciphertext"`
		Key              hexBytes `json:"key"`
		Nonce            hexBytes `json:"nonce"`
	} `json:"sender_data"`
	Leaves [][]struct {
		Generation       uint32   `json:"generation"`
		ApplicationKey   hexBytes `json:"application_key"`
		ApplicationNonce hexBytes `json:"application_nonce"`
		HandshakeKey     hexBytes `json:"handshake_key"`
		HandshakeNonce   hexBytes `json:"handshake_nonce"`
	} `json:"leaves"`
}

func TestSecretTreeVectors(t *testing.T) {
	cases := loadVectors[secretTreeVector](t, "secret-tree.json")
	c := vectorCount{name: "secret-tree.json"}
	for i, tc := range cases {
		c.run(t, fmt.Sprint(i), func(t *testing.T) {
			cs := suiteOrSkip(t, tc.CipherSuite)
			sd := tc.SenderData
			key, nonce := senderDataKeyNonce(cs, sd.SenderDataSecret, sd.Ciphertext)
			if !bytes.Equal(key, sd.Key) || !bytes.Equal(nonce, sd.Nonce) {
				t.Errorf("sender data key, nonce = %x, %x; want %x, %x", key, nonce, sd.Key, sd.Nonce)
			}

			n := uint32(len(tc.Leaves))
			check := func(t *testing.T, what string, leaf int, gen uint32, gotKey, gotNonce, wantKey, wantNonce []byte) {
				t.Helper()
				if !bytes.Equal(gotKey, wantKey) || !bytes.Equal(gotNonce, wantNonce) {
					t.Errorf("leaf %d %s generation %d: key, nonce = %x, %x; want %x, %x",
						leaf, what, gen, gotKey, gotNonce, wantKey, wantNonce)
				}
			}

			// A receiver, asking for each generation directly (skipping the ones
			// between), with a trip through storage halfway through the leaves.
			t.Run("receive", func(t *testing.T) {
				st := newSecretTree(cs, tc.EncryptionSecret, n)
				for leaf, gens := range tc.Leaves {
					if leaf == len(tc.Leaves)/2 {
						st = roundTrip(t, st)
					}
					for _, g := range gens {
						k, nn, err := st.keyNonce(LeafIndex(leaf), handshakeRatchet, g.Generation)
						if err != nil {
							t.Fatalf("leaf %d handshake generation %d: %v", leaf, g.Generation, err)
						}
						check(t, "handshake", leaf, g.Generation, k, nn, g.HandshakeKey, g.HandshakeNonce)
						k, nn, err = st.keyNonce(LeafIndex(leaf), applicationRatchet, g.Generation)
						if err != nil {
							t.Fatalf("leaf %d application generation %d: %v", leaf, g.Generation, err)
						}
						check(t, "application", leaf, g.Generation, k, nn, g.ApplicationKey, g.ApplicationNonce)
					}
				}
			})

			// A sender, stepping through every generation, leaves in reverse order.
			t.Run("send", func(t *testing.T) {
				st := newSecretTree(cs, tc.EncryptionSecret, n)
				for leaf := len(tc.Leaves) - 1; leaf >= 0; leaf-- {
					for _, g := range tc.Leaves[leaf] {
						for _, ct := range []ratchetType{handshakeRatchet, applicationRatchet} {
							var gen uint32
							var k, nn []byte
							for {
								var err error
								gen, k, nn, err = st.next(LeafIndex(leaf), ct)
								if err != nil {
									t.Fatal(err)
								}
								if gen >= g.Generation {
									break
								}
							}
							if gen != g.Generation {
								t.Fatalf("leaf %d %v: next generation %d, want %d", leaf, ct, gen, g.Generation)
							}
							if ct == handshakeRatchet {
								check(t, "handshake", leaf, gen, k, nn, g.HandshakeKey, g.HandshakeNonce)
							} else {
								check(t, "application", leaf, gen, k, nn, g.ApplicationKey, g.ApplicationNonce)
							}
						}
					}
				}
			})
		})
	}
	c.report(t)
}

// roundTrip stores and restores st, checking that the encoding is canonical.
func roundTrip(t *testing.T, st *secretTree) *secretTree {
	t.Helper()
	enc, err := encode(st)
	if err != nil {
		t.Fatal(err)
	}
	var back secretTree
	if err := decodeAll(enc, "secret tree", back.unmarshal); err != nil {
		t.Fatalf("restoring the secret tree: %v", err)
	}
	if re, _ := encode(&back); !bytes.Equal(re, enc) {
		t.Fatal("restored secret tree encodes differently")
	}
	return &back
}

// refKeyNonce derives ratchet_key_[2*leaf]_[gen] and ratchet_nonce_[2*leaf]_[gen]
// straight from the RFC 9420 §9 formulas, as an oracle for the lazy tree.
func refKeyNonce(cs CipherSuite, encryptionSecret []byte, n uint32, leaf LeafIndex, ct ratchetType, gen uint32) (key, nonce []byte) {
	target := leaf.nodeIndex()
	x, s := root(n), encryptionSecret
	for x != target {
		if target < x {
			x, _ = x.left()
			s = cs.ExpandWithLabel(s, "tree", []byte("left"), cs.Nh())
		} else {
			x, _ = x.right()
			s = cs.ExpandWithLabel(s, "tree", []byte("right"), cs.Nh())
		}
	}
	label := "handshake"
	if ct == applicationRatchet {
		label = "application"
	}
	s = cs.ExpandWithLabel(s, label, nil, cs.Nh())
	for j := range gen {
		s = cs.DeriveTreeSecret(s, "secret", j, cs.Nh())
	}
	return cs.DeriveTreeSecret(s, "key", gen, cs.Nk()), cs.DeriveTreeSecret(s, "nonce", gen, cs.Nn())
}

var secretTreeTestSecret = bytes.Repeat([]byte{0x42}, 32)

const secretTreeTestSuite = MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519

func TestSecretTreeOutOfOrder(t *testing.T) {
	st := newSecretTree(secretTreeTestSuite, secretTreeTestSecret, 4)
	for _, gen := range []uint32{5, 2, 0, 3, 1, 4, 9, 6} {
		key, nonce, err := st.keyNonce(2, applicationRatchet, gen)
		if err != nil {
			t.Fatalf("generation %d: %v", gen, err)
		}
		wk, wn := refKeyNonce(secretTreeTestSuite, secretTreeTestSecret, 4, 2, applicationRatchet, gen)
		if !bytes.Equal(key, wk) || !bytes.Equal(nonce, wn) {
			t.Errorf("generation %d: wrong key or nonce", gen)
		}
	}
	// Replays of every generation handed out, before and after storage.
	for _, st := range []*secretTree{st, roundTrip(t, st)} {
		for _, gen := range []uint32{0, 1, 2, 3, 4, 5, 6, 9} {
			if _, _, err := st.keyNonce(2, applicationRatchet, gen); !errors.Is(err, ErrGenerationUsed) {
				t.Errorf("replay of generation %d: got %v, want ErrGenerationUsed", gen, err)
			}
		}
		// 7 and 8 were skipped and are still there, once each.
		for _, gen := range []uint32{8, 7} {
			if _, _, err := st.keyNonce(2, applicationRatchet, gen); err != nil {
				t.Errorf("late generation %d: %v", gen, err)
			}
			if _, _, err := st.keyNonce(2, applicationRatchet, gen); !errors.Is(err, ErrGenerationUsed) {
				t.Errorf("replay of late generation %d: got %v, want ErrGenerationUsed", gen, err)
			}
		}
	}
	// The other ratchet of the leaf, and the other leaves, are untouched.
	for _, r := range []struct {
		leaf LeafIndex
		ct   ratchetType
	}{{2, handshakeRatchet}, {0, applicationRatchet}, {3, handshakeRatchet}} {
		key, _, err := st.keyNonce(r.leaf, r.ct, 0)
		wk, _ := refKeyNonce(secretTreeTestSuite, secretTreeTestSecret, 4, r.leaf, r.ct, 0)
		if err != nil || !bytes.Equal(key, wk) {
			t.Errorf("leaf %d %v generation 0: %v or wrong key", r.leaf, r.ct, err)
		}
	}
}

// TestSecretTreeUnbalanced checks a leaf count that is not a power of two: the tree
// is shaped as the next full one (RFC 9420 Appendix C), so the keys are those of
// that tree.
func TestSecretTreeUnbalanced(t *testing.T) {
	for _, n := range []uint32{3, 5, 6, 7} {
		st := newSecretTree(secretTreeTestSuite, secretTreeTestSecret, n)
		full := uint32(1) << bits.Len32(n-1) // the next power of two
		for leaf := LeafIndex(n - 1); ; leaf-- {
			key, nonce, err := st.keyNonce(leaf, handshakeRatchet, 1)
			wk, wn := refKeyNonce(secretTreeTestSuite, secretTreeTestSecret, n, leaf, handshakeRatchet, 1)
			fk, _ := refKeyNonce(secretTreeTestSuite, secretTreeTestSecret, full, leaf, handshakeRatchet, 1)
			if err != nil || !bytes.Equal(key, wk) || !bytes.Equal(nonce, wn) || !bytes.Equal(key, fk) {
				t.Errorf("%d leaves, leaf %d: %v or wrong key", n, leaf, err)
			}
			if uint32(leaf) == n/2 {
				st = roundTrip(t, st)
			}
			if leaf == 0 {
				break
			}
		}
	}
}

func TestSecretTreeWindow(t *testing.T) {
	t.Run("forward distance", func(t *testing.T) {
		st := newSecretTree(secretTreeTestSuite, secretTreeTestSecret, 2)
		if _, _, err := st.keyNonce(1, handshakeRatchet, defaultMaxForwardDistance+1); !errors.Is(err, ErrGenerationOutOfWindow) {
			t.Errorf("generation %d ahead: got %v, want ErrGenerationOutOfWindow", defaultMaxForwardDistance+1, err)
		}
		if _, _, err := st.keyNonce(1, handshakeRatchet, defaultMaxForwardDistance); err != nil {
			t.Errorf("generation %d ahead: %v", defaultMaxForwardDistance, err)
		}
		// The distance counts from the next expected generation.
		if _, _, err := st.keyNonce(1, handshakeRatchet, 2*defaultMaxForwardDistance+1); err != nil {
			t.Errorf("generation %d after %d: %v", 2*defaultMaxForwardDistance+1, defaultMaxForwardDistance, err)
		}
		st.setWindow(10, 0)
		if _, _, err := st.keyNonce(0, handshakeRatchet, 11); !errors.Is(err, ErrGenerationOutOfWindow) {
			t.Errorf("generation 11 with a window of 10: got %v, want ErrGenerationOutOfWindow", err)
		}
	})

	t.Run("skipped keys", func(t *testing.T) {
		st := newSecretTree(secretTreeTestSuite, secretTreeTestSecret, 2)
		st.setWindow(0, 4)
		if _, _, err := st.keyNonce(0, applicationRatchet, 10); err != nil {
			t.Fatal(err)
		}
		r := &st.ratchets[0][applicationRatchet]
		if len(r.skipped) != 4 {
			t.Errorf("%d skipped keys kept, want 4", len(r.skipped))
		}
		for gen := range uint32(6) {
			if _, _, err := st.keyNonce(0, applicationRatchet, gen); !errors.Is(err, ErrGenerationOutOfWindow) {
				t.Errorf("evicted generation %d: got %v, want ErrGenerationOutOfWindow", gen, err)
			}
		}
		key, _, err := st.keyNonce(0, applicationRatchet, 6)
		wk, _ := refKeyNonce(secretTreeTestSuite, secretTreeTestSecret, 2, 0, applicationRatchet, 6)
		if err != nil || !bytes.Equal(key, wk) {
			t.Errorf("kept generation 6: %v or wrong key", err)
		}
		if _, _, err := st.keyNonce(0, applicationRatchet, 6); !errors.Is(err, ErrGenerationUsed) {
			t.Errorf("replay of generation 6: got %v, want ErrGenerationUsed", err)
		}
		// Moving on to 13 keeps 11 and 12, evicting 7 to stay at 4 keys.
		if _, _, err := st.keyNonce(0, applicationRatchet, 13); err != nil {
			t.Fatal(err)
		}
		for gen, want := range map[uint32]error{6: ErrGenerationOutOfWindow, 7: ErrGenerationOutOfWindow, 8: nil, 9: nil, 10: ErrGenerationUsed, 11: nil, 12: nil, 13: ErrGenerationUsed} {
			if _, _, err := st.keyNonce(0, applicationRatchet, gen); !errors.Is(err, want) {
				t.Errorf("generation %d: got %v, want %v", gen, err, want)
			}
		}
		// Lowering the limit deletes keys at once.
		if _, _, err := st.keyNonce(0, handshakeRatchet, 3); err != nil {
			t.Fatal(err)
		}
		st.setWindow(0, 1)
		if _, _, err := st.keyNonce(0, handshakeRatchet, 1); !errors.Is(err, ErrGenerationOutOfWindow) {
			t.Errorf("generation 1 after lowering the limit: got %v, want ErrGenerationOutOfWindow", err)
		}
		if _, _, err := st.keyNonce(0, handshakeRatchet, 2); err != nil {
			t.Errorf("generation 2 after lowering the limit: %v", err)
		}
	})

	t.Run("far jump", func(t *testing.T) {
		st := newSecretTree(secretTreeTestSuite, secretTreeTestSecret, 2)
		st.setWindow(0, 4)
		if _, _, err := st.keyNonce(1, handshakeRatchet, 100); err != nil {
			t.Fatal(err)
		}
		r := &st.ratchets[1][handshakeRatchet]
		if len(r.skipped) != 4 || r.skipped[0].generation != 96 || r.floor != 96 {
			t.Errorf("after a jump to 100: %d skipped from %d, floor %d; want 4 from 96, floor 96",
				len(r.skipped), r.skipped[0].generation, r.floor)
		}
		if _, _, err := st.keyNonce(1, handshakeRatchet, 95); !errors.Is(err, ErrGenerationOutOfWindow) {
			t.Errorf("generation 95: got %v, want ErrGenerationOutOfWindow", err)
		}
	})
}

func TestSecretTreeSend(t *testing.T) {
	sender := newSecretTree(secretTreeTestSuite, secretTreeTestSecret, 8)
	receiver := newSecretTree(secretTreeTestSuite, secretTreeTestSecret, 8)
	for want := range uint32(5) {
		gen, key, nonce, err := sender.next(5, handshakeRatchet)
		if err != nil || gen != want {
			t.Fatalf("next = %d, %v; want %d", gen, err, want)
		}
		rk, rn, err := receiver.keyNonce(5, handshakeRatchet, gen)
		if err != nil || !bytes.Equal(key, rk) || !bytes.Equal(nonce, rn) {
			t.Errorf("generation %d: receiver disagrees (%v)", gen, err)
		}
	}
	if len(receiver.ratchets[5][handshakeRatchet].skipped) != 0 {
		t.Error("in-order reception kept skipped keys")
	}
}

func TestSecretTreeErrors(t *testing.T) {
	st := newSecretTree(secretTreeTestSuite, secretTreeTestSecret, 4)
	if _, _, err := st.keyNonce(4, handshakeRatchet, 0); err == nil {
		t.Error("keyNonce accepted a leaf outside the tree")
	}
	if _, _, _, err := st.next(4, applicationRatchet); err == nil {
		t.Error("next accepted a leaf outside the tree")
	}
	if _, _, err := st.keyNonce(0, ratchetType(2), 0); err == nil {
		t.Error("keyNonce accepted an unknown ratchet type")
	}

	// The last generation of a ratchet can be used once; then the ratchet is spent.
	if _, _, _, err := st.next(1, applicationRatchet); err != nil {
		t.Fatal(err)
	}
	r := &st.ratchets[1][applicationRatchet]
	r.generation = math.MaxUint32
	gen, _, _, err := st.next(1, applicationRatchet)
	if err != nil || gen != math.MaxUint32 {
		t.Fatalf("next at the last generation = %d, %v", gen, err)
	}
	if _, _, _, err := st.next(1, applicationRatchet); err == nil {
		t.Error("next continued past generation 2^32-1")
	}
	if _, _, err := st.keyNonce(1, applicationRatchet, math.MaxUint32); !errors.Is(err, ErrGenerationUsed) {
		t.Errorf("keyNonce of the spent last generation: got %v, want ErrGenerationUsed", err)
	}
	roundTrip(t, st)

	st.erase()
	if _, _, err := st.keyNonce(0, handshakeRatchet, 0); err == nil {
		t.Error("an erased tree still gives keys")
	}
}

// TestSecretTreeDeletion checks the deletion schedule of RFC 9420 §9.2: the state the
// tree keeps (and stores) holds no secret from which a key already handed out could
// be derived again.
func TestSecretTreeDeletion(t *testing.T) {
	cs := secretTreeTestSuite
	const n = 8
	st := newSecretTree(cs, secretTreeTestSecret, n)
	if _, _, _, err := st.next(3, applicationRatchet); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.keyNonce(3, handshakeRatchet, 2); err != nil {
		t.Fatal(err)
	}
	// Only the copath of leaf 3 remains of the tree: one secret per level.
	if got, want := len(st.nodes), len(LeafIndex(3).nodeIndex().copath(n)); got != want {
		t.Errorf("%d node secrets kept, want %d", got, want)
	}
	for _, x := range LeafIndex(3).nodeIndex().copath(n) {
		if st.nodes[x] == nil {
			t.Errorf("copath node %d has no secret", x)
		}
	}
	enc, err := encode(st)
	if err != nil {
		t.Fatal(err)
	}
	forbidden := map[string][]byte{"encryption_secret": secretTreeTestSecret}
	x, s := root(n), secretTreeTestSecret
	for x != LeafIndex(3).nodeIndex() {
		forbidden[fmt.Sprintf("tree_node_[%d]_secret", x)] = s
		if LeafIndex(3).nodeIndex() < x {
			x, _ = x.left()
			s = cs.ExpandWithLabel(s, "tree", []byte("left"), cs.Nh())
		} else {
			x, _ = x.right()
			s = cs.ExpandWithLabel(s, "tree", []byte("right"), cs.Nh())
		}
	}
	forbidden["leaf secret"] = s
	app := cs.ExpandWithLabel(s, "application", nil, cs.Nh())
	hs := cs.ExpandWithLabel(s, "handshake", nil, cs.Nh())
	forbidden["application_ratchet_secret_[6]_[0]"] = app
	forbidden["handshake_ratchet_secret_[6]_[0]"] = hs
	hs1 := cs.DeriveTreeSecret(hs, "secret", 0, cs.Nh())
	forbidden["handshake_ratchet_secret_[6]_[1]"] = hs1
	forbidden["handshake_ratchet_secret_[6]_[2]"] = cs.DeriveTreeSecret(hs1, "secret", 1, cs.Nh())
	k, _ := refKeyNonce(cs, secretTreeTestSecret, n, 3, handshakeRatchet, 2)
	forbidden["handshake key 2"] = k
	for name, secret := range forbidden {
		if bytes.Contains(enc, secret) {
			t.Errorf("stored state still holds %s", name)
		}
	}
	// The skipped generations 0 and 1 are kept, as they must be.
	k, _ = refKeyNonce(cs, secretTreeTestSecret, n, 3, handshakeRatchet, 1)
	if !bytes.Contains(enc, k) {
		t.Error("stored state lost the key of skipped generation 1")
	}
}

func TestSecretTreeUnmarshalRejects(t *testing.T) {
	st := newSecretTree(secretTreeTestSuite, secretTreeTestSecret, 4)
	if _, _, err := st.keyNonce(1, applicationRatchet, 3); err != nil {
		t.Fatal(err)
	}
	good, err := encode(st)
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(good) {
		var back secretTree
		if err := decodeAll(good[:n], "secret tree", back.unmarshal); err == nil {
			t.Errorf("truncation to %d bytes parsed", n)
		}
	}

	build := func(f func(b *cryptobyte.Builder)) []byte {
		var b cryptobyte.Builder
		f(&b)
		return b.BytesOrPanic()
	}
	header := func(b *cryptobyte.Builder, cs CipherSuite, leaves uint32) {
		b.AddUint16(uint16(cs))
		b.AddUint32(leaves)
		b.AddUint32(1000)
		b.AddUint32(128)
	}
	secret := bytes.Repeat([]byte{7}, 32)
	node := func(b *cryptobyte.Builder, x uint32, s []byte) {
		b.AddUint32(x)
		addOpaque(b, s)
	}
	for _, tc := range []struct {
		name string
		enc  []byte
	}{
		{"unsupported suite", build(func(b *cryptobyte.Builder) {
			header(b, MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448, 4)
			addVector(b, func(b *cryptobyte.Builder) {})
			addVector(b, func(b *cryptobyte.Builder) {})
		})},
		{"no leaves", build(func(b *cryptobyte.Builder) {
			header(b, secretTreeTestSuite, 0)
			addVector(b, func(b *cryptobyte.Builder) {})
			addVector(b, func(b *cryptobyte.Builder) {})
		})},
		{"node outside the tree", build(func(b *cryptobyte.Builder) {
			header(b, secretTreeTestSuite, 4)
			addVector(b, func(b *cryptobyte.Builder) { node(b, 7, secret) })
			addVector(b, func(b *cryptobyte.Builder) {})
		})},
		{"leaf outside the tree", build(func(b *cryptobyte.Builder) {
			header(b, secretTreeTestSuite, 4)
			addVector(b, func(b *cryptobyte.Builder) {})
			addVector(b, func(b *cryptobyte.Builder) {
				b.AddUint32(4)
				for range 2 {
					b.AddUint32(0)
					b.AddUint32(0)
					addOpaque(b, secret)
					addVector(b, func(b *cryptobyte.Builder) {})
				}
			})
			addVector(b, func(b *cryptobyte.Builder) {})
		})},
		{"short node secret", build(func(b *cryptobyte.Builder) {
			header(b, secretTreeTestSuite, 4)
			addVector(b, func(b *cryptobyte.Builder) { node(b, 3, secret[:31]) })
			addVector(b, func(b *cryptobyte.Builder) {})
		})},
		{"nodes out of order", build(func(b *cryptobyte.Builder) {
			header(b, secretTreeTestSuite, 4)
			addVector(b, func(b *cryptobyte.Builder) { node(b, 5, secret); node(b, 1, secret) })
			addVector(b, func(b *cryptobyte.Builder) {})
		})},
		{"two secrets on one path", build(func(b *cryptobyte.Builder) {
			header(b, secretTreeTestSuite, 4)
			addVector(b, func(b *cryptobyte.Builder) { node(b, 1, secret); node(b, 3, secret) })
			addVector(b, func(b *cryptobyte.Builder) {})
		})},
		{"trailing bytes", append(append([]byte{}, good...), 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var back secretTree
			if err := decodeAll(tc.enc, "secret tree", back.unmarshal); !errors.Is(err, ErrDecode) {
				t.Errorf("got %v, want ErrDecode", err)
			}
		})
	}
	// The well-formed counterpart of the cases above parses.
	var back secretTree
	ok := build(func(b *cryptobyte.Builder) {
		header(b, secretTreeTestSuite, 4)
		addVector(b, func(b *cryptobyte.Builder) { node(b, 1, secret); node(b, 5, secret) })
		addVector(b, func(b *cryptobyte.Builder) {})
	})
	if err := decodeAll(ok, "secret tree", back.unmarshal); err != nil {
		t.Errorf("well-formed state: %v", err)
	}
}

func TestSecretTreeReuseGuard(t *testing.T) {
	nonce := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	orig := append([]byte{}, nonce...)
	got := applyReuseGuard(nonce, [4]byte{0xff, 0x00, 0x0f, 0xf0})
	want := []byte{0xfe, 2, 0x0c, 0xf4, 5, 6, 7, 8, 9, 10, 11, 12}
	if !bytes.Equal(got, want) {
		t.Errorf("applyReuseGuard = %x, want %x", got, want)
	}
	if !bytes.Equal(nonce, orig) {
		t.Error("applyReuseGuard modified its input")
	}
}

func TestSecretTreeSenderDataShortCiphertext(t *testing.T) {
	cs := secretTreeTestSuite
	secret := bytes.Repeat([]byte{9}, 32)
	short := []byte{1, 2, 3}
	key, nonce := senderDataKeyNonce(cs, secret, short)
	if !bytes.Equal(key, cs.ExpandWithLabel(secret, "key", short, cs.Nk())) ||
		!bytes.Equal(nonce, cs.ExpandWithLabel(secret, "nonce", short, cs.Nn())) {
		t.Error("a ciphertext shorter than KDF.Nh is not used whole as the sample")
	}
	long := bytes.Repeat([]byte{5}, 100)
	k1, _ := senderDataKeyNonce(cs, secret, long)
	k2, _ := senderDataKeyNonce(cs, secret, long[:cs.Nh()])
	if !bytes.Equal(k1, k2) {
		t.Error("bytes beyond KDF.Nh change the sender data key")
	}
}

func BenchmarkSecretTree(b *testing.B) {
	for _, cs := range []CipherSuite{MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, MLS_256_DHKEMP384_AES256GCM_SHA384_P384} {
		b.Run(cs.String(), func(b *testing.B) {
			st := newSecretTree(cs, make([]byte, cs.Nh()), 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, _, err := st.next(17, applicationRatchet); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
