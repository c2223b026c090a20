package partition

import (
	"fmt"
	"strings"
	"testing"
)

var base = Layout{Manifest: "ingest/manifest", Data: "ingest/data", DeadLetter: "ingest/dead-letter"}

func TestLayoutPartition(t *testing.T) {
	for _, tc := range []struct {
		p    int
		want Layout
	}{
		{0, base}, // partition 0 is today's queue, names unchanged
		{1, Layout{"ingest/manifest-0001", "ingest/data-0001", "ingest/dead-letter-0001"}},
		{3, Layout{"ingest/manifest-0003", "ingest/data-0003", "ingest/dead-letter-0003"}},
		{9999, Layout{"ingest/manifest-9999", "ingest/data-9999", "ingest/dead-letter-9999"}},
	} {
		if got := base.Partition(tc.p); got != tc.want {
			t.Errorf("Partition(%d) = %+v, want %+v", tc.p, got, tc.want)
		}
	}
	if got := LeasePath(base.Manifest); got != "ingest/manifest.leases" {
		t.Errorf("LeasePath = %q", got)
	}
}

func TestLayoutCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    Layout
		n    int
		want string // substring of the error, "" for none
	}{
		{"default 1", base, 1, ""},
		{"default 16", base, 16, ""},
		{"default max", base, MaxPartitions, ""},
		{"zero", base, 0, "outside 1..10000"},
		{"too many", base, MaxPartitions + 1, "outside 1..10000"},
		// Partition 5's data prefix would hold partition 0's manifest:
		// only a check of every partition, not just the first, finds it.
		{"manifest under a later data prefix", Layout{"q/d-0005/m", "q/d", "q/dl"}, 10, "partition 0 manifest \"q/d-0005/m\" is under partition 5 data prefix"},
		{"same layout fewer partitions", Layout{"q/d-0005/m", "q/d", "q/dl"}, 5, ""},
		{"lease table under data", Layout{"q/d/m", "q/d/m.leases", "q/dl"}, 1, "lease table"},
		{"dead letters in a later data prefix", Layout{"q/m", "q/d", "q/d-0002/dl"}, 3, "dead-letter prefix \"q/d-0002/dl\" overlaps partition 2 data prefix"},
		{"data prefixes nest", Layout{"q/m", "q/d", "q/x"}, 1, ""},
		{"unclean", Layout{"q/m", "q//d", "q/x"}, 2, "partition 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.l.Check(tc.n)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check(%d) = %v, want nil", tc.n, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check(%d) = %v, want an error containing %q", tc.n, err, tc.want)
			}
		})
	}
}

func TestHomeFor(t *testing.T) {
	first := HomeFor("host-a", 8)
	for range 3 {
		if HomeFor("host-a", 8) != first {
			t.Fatal("HomeFor is not stable")
		}
	}
	// 64 hosts over 8 partitions: every partition gets someone.
	count := make([]int, 8)
	for i := range 64 {
		count[HomeFor("ingest-"+itoa(i), 8)]++
	}
	for p, c := range count {
		if c == 0 {
			t.Errorf("partition %d got no host of 64: %v", p, count)
		}
	}
}

func TestChoose(t *testing.T) {
	for _, tc := range []struct {
		name string
		n, p int
		want []int
		err  string // substring of the error, "" for none
	}{
		{"all of one", 1, -1, []int{0}, ""},
		{"all of four", 4, -1, []int{0, 1, 2, 3}, ""},
		{"one", 4, 3, []int{3}, ""},
		{"zero of one", 1, 0, []int{0}, ""},
		{"at the count", 4, 4, nil, "partition 4 is not below partitions 4 (partitions are 0 to 3"},
		{"above one", 1, 2, nil, "partition 2 is not below partitions 1"},
		{"far above", 4, MaxPartitions, nil, "not below partitions 4"},
		{"no partitions", 0, -1, nil, "outside 1..10000"},
		{"too many", MaxPartitions + 1, 0, nil, "outside 1..10000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Choose(tc.n, tc.p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Choose(%d, %d) = %v, %v; want error %q", tc.n, tc.p, got, err, tc.err)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("Choose(%d, %d) = %v, %v; want %v", tc.n, tc.p, got, err, tc.want)
			}
		})
	}
}
