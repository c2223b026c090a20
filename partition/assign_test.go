package partition

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestAssign(t *testing.T) {
	for _, tc := range []struct {
		name   string
		owners []string
		live   []string
		n      int
		want   []string
	}{
		{"empty table", nil, []string{"a", "b"}, 4, []string{"a", "b", "a", "b"}},
		{"one member takes all", []string{"", "", ""}, []string{"a"}, 3, []string{"a", "a", "a"}},
		{"balanced stays", []string{"b", "a", "a", "b"}, []string{"a", "b"}, 4, []string{"b", "a", "a", "b"}},
		// The crash of the chaos test: c held 1 and 3 and died; its
		// replacement d takes exactly those, a keeps 0 and 2.
		{"dead member's partitions go to the newcomer", []string{"a", "c", "a", "c"}, []string{"a", "d"}, 4, []string{"a", "d", "a", "d"}},
		{"joiner gets the over-share", []string{"a", "a", "a", "a"}, []string{"a", "b"}, 4, []string{"a", "a", "b", "b"}},
		{"odd count: one extra", []string{"a", "a", "a", "b", "b"}, []string{"a", "b"}, 5, []string{"a", "a", "a", "b", "b"}},
		{"three members, four partitions", []string{"a", "a", "b", "b"}, []string{"a", "b", "c"}, 4, []string{"a", "a", "b", "c"}},
		{"more members than partitions", []string{"", ""}, []string{"a", "b", "c"}, 2, []string{"a", "b"}},
		{"owners beyond n ignored", []string{"b", "", "x", "x"}, []string{"a", "b"}, 2, []string{"b", "a"}},
		{"no live member", []string{"a"}, nil, 1, []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := assign(tc.owners, tc.live, tc.n, nil); !slices.Equal(got, tc.want) {
				t.Fatalf("assign(%q, %q, %d) = %q, want %q", tc.owners, tc.live, tc.n, got, tc.want)
			}
		})
	}
}

// TestAssignServes: members configured with fewer partitions get none
// beyond them, and every partition some live member serves has an owner.
func TestAssignServes(t *testing.T) {
	serves := func(id string) int { return map[string]int{"n": 2, "w": 6}[id] }
	for _, owners := range [][]string{nil, {"w", "w", "w", "w", "w", "w"}, {"n", "n", "w", "w", "w", "w"}, {"n", "n", "n", "n", "n", "n"}} {
		got := assign(owners, []string{"n", "w"}, 6, serves)
		for p, o := range got {
			if o == "" || p >= serves(o) {
				t.Fatalf("assign(%q) = %q: partition %d to %q", owners, got, p, o)
			}
		}
		if again := assign(got, []string{"n", "w"}, 6, serves); !slices.Equal(again, got) {
			t.Fatalf("assign(%q) = %q, not a fixed point: %q", owners, got, again)
		}
	}
	if got := assign(nil, []string{"n"}, 4, serves); !slices.Equal(got, []string{"n", "n", "", ""}) {
		t.Fatalf("only a narrow member: %q, want partitions 2 and 3 unowned", got)
	}
}

// TestAssignProperties checks on random tables that assign is balanced
// (shares differ by at most one, only live members), keeps every partition
// whose live owner is within its share, and is a fixed point.
func TestAssignProperties(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	ids := []string{"a", "b", "c", "d", "e"}
	for i := range 2000 {
		n := 1 + rnd.IntN(12)
		live := slices.Clone(ids[:1+rnd.IntN(len(ids))])
		owners := make([]string, rnd.IntN(n+3))
		for p := range owners {
			if k := rnd.IntN(len(ids) + 1); k < len(ids) {
				owners[p] = ids[k]
			}
		}
		got := assign(owners, live, n, nil)
		desc := fmt.Sprintf("case %d: assign(%q, %q, %d) = %q", i, owners, live, n, got)
		count := map[string]int{}
		for _, o := range got {
			if !slices.Contains(live, o) {
				t.Fatalf("%s: %q is not live", desc, o)
			}
			count[o]++
		}
		lo, hi := n, 0
		for _, id := range live {
			lo, hi = min(lo, count[id]), max(hi, count[id])
		}
		if hi-lo > 1 {
			t.Fatalf("%s: unbalanced %v", desc, count)
		}
		// Kept: no live owner within its share lost a partition while
		// another member gained one beyond what freed partitions explain.
		kept := map[string]int{}
		for p := range min(n, len(owners)) {
			if owners[p] != "" && got[p] == owners[p] {
				kept[owners[p]]++
			}
		}
		for _, id := range live {
			had := 0
			for p := range min(n, len(owners)) {
				if owners[p] == id {
					had++
				}
			}
			if kept[id] < min(had, lo) {
				t.Fatalf("%s: %s held %d, kept only %d with a share of at least %d", desc, id, had, kept[id], lo)
			}
		}
		if again := assign(got, live, n, nil); !slices.Equal(again, got) {
			t.Fatalf("%s: not a fixed point, then %q", desc, again)
		}
	}
}
