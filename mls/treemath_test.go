package mls

import (
	"fmt"
	"slices"
	"testing"
)

// treeMathVector is one case of testdata/tree-math.json.
type treeMathVector struct {
	NLeaves uint32    `json:"n_leaves"`
	NNodes  uint32    `json:"n_nodes"`
	Root    uint32    `json:"root"`
	Left    []*uint32 `json:"left"`
	Right   []*uint32 `json:"right"`
	Parent  []*uint32 `json:"parent"`
	Sibling []*uint32 `json:"sibling"`
}

func TestTreeMathVectors(t *testing.T) {
	cases := loadVectors[treeMathVector](t, "tree-math.json")
	c := vectorCount{name: "tree-math.json"}
	for i, tc := range cases {
		c.run(t, fmt.Sprint(i), func(t *testing.T) {
			n := tc.NLeaves
			if got := nodeWidth(n); got != tc.NNodes {
				t.Errorf("nodeWidth(%d) = %d, want %d", n, got, tc.NNodes)
			}
			if got := root(n); uint32(got) != tc.Root {
				t.Errorf("root(%d) = %d, want %d", n, got, tc.Root)
			}
			for _, list := range [][]*uint32{tc.Left, tc.Right, tc.Parent, tc.Sibling} {
				if uint32(len(list)) != tc.NNodes {
					t.Fatalf("vector has %d entries, want %d", len(list), tc.NNodes)
				}
			}
			check := func(what string, x uint32, got NodeIndex, ok bool, want *uint32) {
				t.Helper()
				switch {
				case want == nil && ok:
					t.Errorf("%s(%d) = %d, want none", what, x, got)
				case want != nil && !ok:
					t.Errorf("%s(%d) = none, want %d", what, x, *want)
				case want != nil && uint32(got) != *want:
					t.Errorf("%s(%d) = %d, want %d", what, x, got, *want)
				}
			}
			for x := range tc.NNodes {
				l, ok := NodeIndex(x).left()
				check("left", x, l, ok, tc.Left[x])
				r, ok := NodeIndex(x).right()
				check("right", x, r, ok, tc.Right[x])
				p, ok := NodeIndex(x).parent(n)
				check("parent", x, p, ok, tc.Parent[x])
				s, ok := NodeIndex(x).sibling(n)
				check("sibling", x, s, ok, tc.Sibling[x])
			}
		})
	}
	c.report(t)
}

// TestTreeMathPaths checks direct paths, copaths and common ancestors against their
// definitions in terms of parent and sibling, for every node pair of small trees.
func TestTreeMathPaths(t *testing.T) {
	for _, n := range []uint32{1, 2, 4, 8, 16, 32, 3, 5, 7} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			w := nodeWidth(n)
			ancestors := func(x NodeIndex) []NodeIndex { // x, then its direct path
				out := []NodeIndex{x}
				for {
					p, ok := x.parent(n)
					if !ok {
						return out
					}
					out = append(out, p)
					x = p
				}
			}
			for x := range NodeIndex(w) {
				want := ancestors(x)[1:]
				if got := x.directPath(n); !slices.Equal(got, want) {
					t.Errorf("directPath(%d) = %v, want %v", x, got, want)
				}
				var wantCopath []NodeIndex
				for _, y := range ancestors(x) {
					if s, ok := y.sibling(n); ok {
						wantCopath = append(wantCopath, s)
					}
				}
				if got := x.copath(n); !slices.Equal(got, wantCopath) {
					t.Errorf("copath(%d) = %v, want %v", x, got, wantCopath)
				}
				if len(x.directPath(n)) != len(x.copath(n)) {
					t.Errorf("node %d: direct path and copath lengths differ", x)
				}
				for y := range NodeIndex(w) {
					ay := ancestors(y)
					var want NodeIndex
					for _, a := range ancestors(x) {
						if slices.Contains(ay, a) {
							want = a
							break
						}
					}
					if got := commonAncestor(x, y); got != want {
						t.Errorf("commonAncestor(%d, %d) = %d, want %d", x, y, got, want)
					}
				}
			}
			for l := range LeafIndex(n) {
				x := l.nodeIndex()
				if !x.isLeaf() || x.level() != 0 {
					t.Errorf("leaf %d: node %d is not a leaf", l, x)
				}
				if back, ok := x.leafIndex(); !ok || back != l {
					t.Errorf("leaf %d: node %d converts back to %d, %v", l, x, back, ok)
				}
				if p, ok := x.parent(n); ok {
					if _, ok := p.leafIndex(); ok {
						t.Errorf("parent %d of leaf %d converts to a leaf index", p, l)
					}
				}
			}
		})
	}
	if got := NodeIndex(100).directPath(4); got != nil {
		t.Errorf("directPath of a node outside the tree = %v, want none", got)
	}
}
